"""The list of tasks: add, duplicate, rename, remove; the selected one is edited in the TaskEditor beside it."""

from __future__ import annotations

import copy
import re

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.data.preview import TaskPreview, two_column_mapping
from qarac_gui.core.project.config import NAME_PATTERN, RESERVED_NAMES, HeadConfig, TaskConfig
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.panels.task_editor import TaskEditor


def unique_name(base: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-_")[:60] or "task"
    if not base[0].isalnum():
        base = "t" + base
    name, n = base, 1
    while name.lower() in {t.lower() for t in taken} or name.lower() in RESERVED_NAMES:
        n += 1
        name = f"{base}-{n}"
    return name


def name_problem(name: str, taken: set[str]) -> str:
    if not NAME_PATTERN.fullmatch(name):
        return ("A task name starts with a letter or digit and uses only letters, digits, '-' and '_' "
                "(up to 64): it becomes a folder name on export.")
    if name.lower() in RESERVED_NAMES:
        return f"{name!r} is reserved; choose another name."
    if name.lower() in {t.lower() for t in taken}:
        return f"There is already a task named {name!r}."
    return ""


def rename_in(p, row: int, old: str, new: str) -> None:
    """Rename task `row` and what names it: the epoch task, the metric that picks the best step, the exported tasks."""
    p.tasks[row].name = new
    if p.train.epoch_task == old:
        p.train.epoch_task = new
    if p.eval.metric.startswith(f"{old}/"):
        p.eval.metric = new + p.eval.metric[len(old):]
    p.export.tasks = [new if n == old else n for n in p.export.tasks]


def named_after_kind(name: str, kind: str) -> bool:
    """Whether a task still has the name Add gave it from its head kind ("token-classification-2")."""
    return re.fullmatch(re.escape(kind.replace("_", "-")) + r"(-\d+)?", name) is not None


ERROR_RED = "#d04040"


def error_icon(size: int = 16) -> QIcon:
    """A red "!" disc: the selection highlight paints over a red text colour, so a selected task with errors would
    look like the others; the icon is drawn the same, selected or not."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(ERROR_RED))
    painter.drawEllipse(QRectF(1, 1, size - 2, size - 2))
    font = QFont()
    font.setBold(True)
    font.setPixelSize(size - 4)
    painter.setFont(font)
    painter.setPen(Qt.GlobalColor.white)
    painter.drawText(QRectF(0, 0, size, size), Qt.AlignmentFlag.AlignCenter, "!")
    painter.end()
    return _same_when_selected(pixmap)


def blank_icon(size: int = 16) -> QIcon:
    """Room for the error icon on every row, so that the names stay in line."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    return _same_when_selected(pixmap)


def _same_when_selected(pixmap: QPixmap) -> QIcon:
    icon = QIcon()
    for mode in (QIcon.Mode.Normal, QIcon.Mode.Active, QIcon.Mode.Selected):     # no highlight tint over it
        icon.addPixmap(pixmap, mode)
    return icon


class TasksPanel(QWidget):
    """Tasks and their heads."""

    preview_requested = Signal(str)          # task name
    hub_dataset_requested = Signal(int)      # task index

    def __init__(self, document: ProjectDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        layout = QHBoxLayout(self)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("tasks_splitter")
        layout.addWidget(self.splitter)
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        self.list = QListWidget()
        self.list.setObjectName("task_list")
        self._error_icon, self._blank_icon = error_icon(), blank_icon()
        self.list.currentRowChanged.connect(self._on_list_row_changed)
        column.addWidget(self.list, 1)
        self.buttons = {}
        for key, text, tip, slot in (
                ("add", "Add", "Add a task with a new head (Ctrl+T)", self.add_task),
                ("duplicate", "Duplicate", "Copy the selected task and its settings", self.duplicate_task),
                ("rename", "Rename…", "Rename the selected task", self.rename_task),
                ("remove", "Remove", "Remove the selected task (Edit > Undo brings it back)", self.remove_task)):
            button = QPushButton(text)
            button.setObjectName(f"task_{key}")
            button.setToolTip(tip)
            button.clicked.connect(slot)
            column.addWidget(button)
            self.buttons[key] = button
        self.splitter.addWidget(left)
        self.editor = TaskEditor(document)
        self.editor.preview_requested.connect(self.preview_requested)
        self.editor.data_file_chosen.connect(lambda name, path: self._chosen.add((name, path)))
        self.editor.hub_dataset_requested.connect(self.hub_dataset_requested)
        self.editor.kind_chosen.connect(self.set_kind)
        self.splitter.addWidget(self.editor)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([150, 650])
        self.previews: dict[str, TaskPreview] = {}
        self._chosen: set[tuple[str, str]] = set()     # (task, file) the user just chose, not yet read
        document.changed.connect(self._on_document_changed)
        self.refresh()

    def current_index(self) -> int:
        return self.list.currentRow()

    def refresh(self) -> None:
        tasks = self.document.project.tasks
        row = self.list.currentRow()
        self.list.blockSignals(True)
        self.list.clear()
        for task in tasks:
            item = QListWidgetItem(task.name or "(unnamed)")
            item.setIcon(self._blank_icon)
            preview = self.previews.get(task.name)
            if preview is not None and preview.errors:
                item.setForeground(QColor(ERROR_RED))
                item.setIcon(self._error_icon)
                item.setToolTip("\n".join(preview.errors))
                item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{task.name}: has errors")
            self.list.addItem(item)
        self.list.blockSignals(False)
        row = min(max(row, 0), len(tasks) - 1)
        self.list.setCurrentRow(row)
        self.editor.set_task(row if tasks else -1, self.previews.get(tasks[row].name) if tasks else None)
        for key in ("duplicate", "rename", "remove"):
            self.buttons[key].setEnabled(bool(tasks))

    def _on_document_changed(self, section: str) -> None:
        if section in ("", "tasks") or section.startswith(("tasks.", "backbones")):    # the editor offers backbones
            self.refresh()

    def _on_list_row_changed(self, row: int) -> None:
        tasks = self.document.project.tasks
        if 0 <= row < len(tasks):
            self.editor.set_task(row, self.previews.get(tasks[row].name))

    def show_preview(self, preview: TaskPreview) -> None:
        self.previews[preview.task] = preview
        self.refresh()
        self._map_two_columns(preview)

    def _map_two_columns(self, preview: TaskPreview) -> None:
        """A file of two columns, just chosen for a task whose columns it does not name, is mapped as text and label
        (once: an undo of it stays undone; a project opened with a wrong column is left for the user to see)."""
        index = next((i for i, t in enumerate(self.document.project.tasks) if t.name == preview.task), -1)
        if index < 0:
            return
        task = self.document.project.tasks[index]
        mapping = two_column_mapping(task, preview.columns)
        key = (task.name, task.data.train)
        if mapping is None or key not in self._chosen:
            return
        self._chosen.discard(key)
        text, label = mapping

        def change(p) -> None:
            p.tasks[index].data.text, p.tasks[index].data.label = text, label
        self.document.edit(change, f"tasks.{index}", f"column mapping of {task.name} ({text}, {label})")

    def select(self, name: str) -> None:
        for i, task in enumerate(self.document.project.tasks):
            if task.name == name:
                self.list.setCurrentRow(i)

    def _taken(self, skip: int = -1) -> set[str]:
        return {t.name for i, t in enumerate(self.document.project.tasks) if i != skip}

    def add_task(self, kind: str = "") -> str:
        if not isinstance(kind, str) or not kind:      # a button's clicked(bool) lands here too
            kind = HeadConfig().kind
        name = unique_name(kind.replace("_", "-"), self._taken())
        task = TaskConfig(name=name)
        task.head.kind = kind
        self.document.edit(lambda p: p.tasks.append(task), "tasks", f"add task {name}")
        self.select(name)
        return name

    def duplicate_task(self) -> None:
        row = self.current_index()
        if row < 0:
            return
        task = copy.deepcopy(self.document.project.tasks[row])
        task.name = unique_name(f"{task.name}-copy", self._taken())
        self.document.edit(lambda p: p.tasks.insert(row + 1, task), "tasks", f"duplicate {task.name}")
        self.select(task.name)

    def rename_task(self, new_name: str | None = None) -> None:
        row = self.current_index()
        if row < 0:
            return
        old = self.document.project.tasks[row].name
        if not isinstance(new_name, str):
            new_name, ok = QInputDialog.getText(self, "Rename task", "New name:", text=old)
            if not ok:
                return
        new_name = new_name.strip()
        problem = name_problem(new_name, self._taken(skip=row))
        if problem:
            QMessageBox.warning(self, "Rename task", problem)
            return
        if old in self.previews:
            self.previews[new_name] = self.previews.pop(old)
        self.document.edit(lambda p: rename_in(p, row, old, new_name), "tasks", f"rename {old}")
        self.select(new_name)

    def set_kind(self, row: int, kind: str) -> None:
        """A new head type, in one edit with the task's name when that is still the one Add made from the old type:
        a regression task left named "classification-2" would be exported under that name."""
        tasks = self.document.project.tasks
        if not 0 <= row < len(tasks) or tasks[row].head.kind == kind:
            return
        old = new = tasks[row].name
        if named_after_kind(old, tasks[row].head.kind):
            new = unique_name(kind.replace("_", "-"), self._taken(skip=row))

        def change(p) -> None:
            p.tasks[row].head.kind = kind
            if new != old:
                rename_in(p, row, old, new)
        if new != old:
            if old in self.previews:
                self.previews[new] = self.previews.pop(old)
            self._chosen = {(new if t == old else t, path) for t, path in self._chosen}
        self.document.edit(change, "tasks" if new != old else f"tasks.{row}.head", "change of Type")
        self.select(new)

    def remove_task(self) -> None:
        row = self.current_index()
        if row < 0:
            return
        name = self.document.project.tasks[row].name

        def remove(p):
            del p.tasks[row]
            if p.train.epoch_task == name:
                p.train.epoch_task = ""
            if p.eval.metric.startswith(f"{name}/"):
                p.eval.metric = ""
            p.export.tasks = [n for n in p.export.tasks if n != name]
        self.document.edit(remove, "tasks", f"remove task {name}")
