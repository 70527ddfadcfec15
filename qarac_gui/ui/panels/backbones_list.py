"""The project's backbones in a compact table: add, rename (every task that names one follows) and remove (refused
while a task reads it)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QMessageBox,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.project.config import NAME_PATTERN, BackboneConfig, Project, TaskConfig
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.widgets import row_table

VISIBLE_ROWS = 6
DEFAULT = TaskConfig().backbone


def backbone_users(project: Project, name: str) -> list[str]:
    """The tasks that read a backbone: as their encoder, through a named input, or as the decoder they write with."""
    users = []
    for task in project.tasks:
        kind = HEAD_KINDS.get(task.head.kind)
        if task.inputs:
            reads = {spec.partition(":")[0].strip() for spec in task.inputs.values()}
        else:
            reads = {task.backbone}
        if kind is not None and "decoder" in kind.options:
            reads.add(task.head.decoder)
        if name in reads:
            users.append(task.name)
    return users


def rename_backbone(project: Project, old: str, new: str) -> None:
    """Rename a backbone in place, and every task's mention of it, keeping the backbones' order."""
    project.backbones = {new if k == old else k: v for k, v in project.backbones.items()}
    for task in project.tasks:
        if task.backbone == old:
            task.backbone = new
        if task.head.decoder == old:
            task.head.decoder = new
        for name, spec in task.inputs.items():
            backbone, sep, column = spec.partition(":")
            if sep and backbone.strip() == old:
                task.inputs[name] = f"{new}:{column}"


def name_problem(name: str, taken: set[str]) -> str:
    if not NAME_PATTERN.fullmatch(name):
        return "A backbone name starts with a letter or digit and uses only letters, digits, '-' and '_'."
    if name.lower() in {t.lower() for t in taken}:
        return f"There is already a backbone named {name!r}."
    return ""


class BackbonesList(QGroupBox):
    """The backbones: name, role, pooling and model of each; the selected one is edited below the table."""

    selected = Signal(str)          # backbone name

    def __init__(self, document: ProjectDocument, parent: QWidget | None = None) -> None:
        super().__init__("Backbones", parent)
        self.document = document
        self._current = ""
        layout = QHBoxLayout(self)
        self.table = row_table("backbone_table", ("Name", "Role", "Pooling", "Model"))
        self.table.setToolTip("The models the tasks read their text with. One encoder is enough for most projects; "
                              "heads over named inputs can read several, and decode heads write with a decoder.")
        self.table.verticalHeader().hide()
        self.table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)       # long folder paths keep their ends
        header = self.table.horizontalHeader()
        for column in range(3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.currentCellChanged.connect(self._on_table_current_cell_changed)
        layout.addWidget(self.table, 1)
        column = QVBoxLayout()
        self.buttons = {}
        for key, text, tip, slot in (
                ("add", "Add", "Add a backbone (the same base model as the selected one, to start with)",
                 self.add_backbone),
                ("rename", "Rename…", "Rename the selected backbone; the tasks that name it follow",
                 self.rename_backbone),
                ("remove", "Remove", "Remove the selected backbone (only when no task reads it)",
                 self.remove_backbone)):
            button = QPushButton(text)
            button.setObjectName(f"backbone_{key}")
            button.setToolTip(tip)
            button.clicked.connect(slot)
            column.addWidget(button)
            self.buttons[key] = button
        column.addStretch(1)
        layout.addLayout(column)
        self.refresh()

    def current(self) -> str:
        return self._current

    def set_compact(self, compact: bool) -> None:
        """One encoder under ordinary heads: its role and pooling do not matter, so they are not shown."""
        for column in (1, 2):
            self.table.setColumnHidden(column, compact)

    def refresh(self) -> None:
        backbones = self.document.project.backbones
        names = list(backbones)
        row = self.table.currentRow()
        if not self._current and DEFAULT in backbones:      # at first the one the tasks sit on by default
            self._current = DEFAULT
        if self._current not in backbones:       # removed, renamed or undone: keep the place in the list
            self._current = names[min(max(row, 0), len(names) - 1)] if names else ""
        self.table.blockSignals(True)
        self.table.setRowCount(len(names))
        for r, (name, bb) in enumerate(backbones.items()):
            pooling = bb.pooling if bb.role == "encoder" else "–"
            for c, text in enumerate((name, bb.role, pooling, bb.model or "(not chosen)")):
                item = QTableWidgetItem(text)
                item.setToolTip(bb.model if c == 3 else text)
                self.table.setItem(r, c, item)
        if self._current:
            self.table.setCurrentCell(names.index(self._current), 0)
        self.table.blockSignals(False)
        rows = min(max(len(names), 1), VISIBLE_ROWS)
        self.table.setFixedHeight(self.table.horizontalHeader().height() + rows * self.table.verticalHeader()
                                  .defaultSectionSize() + 2 * self.table.frameWidth() + 2)
        self.buttons["rename"].setEnabled(bool(names))
        self.buttons["remove"].setEnabled(len(names) > 1)

    def select(self, name: str) -> None:
        if name in self.document.project.backbones and name != self._current:
            self._current = name
            self.refresh()
            self.selected.emit(name)

    def _on_table_current_cell_changed(self, row: int, *_: int) -> None:
        names = list(self.document.project.backbones)
        if 0 <= row < len(names) and names[row] != self._current:
            self._current = names[row]
            self.selected.emit(self._current)

    def add_backbone(self) -> str:
        project = self.document.project
        n = len(project.backbones) + 1
        while f"backbone-{n}" in project.backbones:
            n += 1
        name = f"backbone-{n}"
        base = project.backbones.get(self._current, BackboneConfig())
        fresh = BackboneConfig(model=base.model, revision=base.revision, trust_remote_code=base.trust_remote_code,
                               allow_pickle=base.allow_pickle)

        def add(p: Project) -> None:
            p.backbones[name] = fresh
        self.document.edit(add, "backbones", f"add backbone {name}")
        self.select(name)
        return name

    def rename_backbone(self, new_name: str | None = None) -> str:
        """Rename the selected backbone; returns why it was refused ("" when done)."""
        old = self._current
        if not old:
            return ""
        if not isinstance(new_name, str):
            new_name, ok = QInputDialog.getText(self, "Rename backbone", "New name:", text=old)
            if not ok:
                return ""
        new_name = new_name.strip()
        if new_name == old:
            return ""
        problem = name_problem(new_name, set(self.document.project.backbones) - {old})
        if problem:
            QMessageBox.warning(self, "Rename backbone", problem)
            return problem
        self._current = new_name
        self.document.edit(lambda p: rename_backbone(p, old, new_name), "", f"rename backbone {old}")
        self.selected.emit(new_name)
        return ""

    def remove_backbone(self) -> str:
        """Remove the selected backbone; returns why it was refused ("" when done)."""
        name = self._current
        project = self.document.project
        if not name:
            return ""
        users = backbone_users(project, name)
        if users:
            problem = (f"{name!r} is read by the task{'s' if len(users) > 1 else ''} {', '.join(users)}. Point "
                       f"{'them' if len(users) > 1 else 'it'} at another backbone first (or remove "
                       f"{'them' if len(users) > 1 else 'it'}).")
        elif len(project.backbones) < 2:
            problem = "A project needs one backbone at least."
        else:
            problem = ""
        if problem:
            QMessageBox.warning(self, "Remove backbone", problem)
            return problem

        def remove(p: Project) -> None:
            del p.backbones[name]
        self.document.edit(remove, "backbones", f"remove backbone {name}")
        self.selected.emit(self._current)
        return ""
