"""A task's named inputs, one row each: its name, the encoder that reads it and the column it reads."""

from __future__ import annotations

import re

from PySide6.QtWidgets import QGridLayout, QLabel, QLineEdit, QPushButton, QToolButton, QVBoxLayout, QWidget

from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.project.config import Project
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.form import INVALID_STYLE, ComboBox, set_columns

NAME_TIP = ("The input's name, used in the head's expressions (e.g. q, or p1 + p2): letters, digits and '_', "
            "starting with a letter.")
BACKBONE_TIP = "The encoder that reads this column into one vector per row (with that encoder's pooling)."
COLUMN_TIP = "The column of the task's data that holds this input's text."
INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def rename_input(project: Project, index: int, old: str, new: str) -> None:
    """Rename a task's input in place, keeping the inputs' order, and in the head's expressions that name it."""
    task = project.tasks[index]
    task.inputs = {new if k == old else k: v for k, v in task.inputs.items()}
    kind = HEAD_KINDS.get(task.head.kind)
    for key in getattr(kind, "expressions", ()):
        text = getattr(task.head, key)
        setattr(task.head, key, re.sub(rf"(?<![A-Za-z0-9_]){re.escape(old)}(?![A-Za-z0-9_])", new, text))


class _Row:
    def __init__(self, editor: InputsEditor) -> None:
        self.name = QLineEdit()
        self.name.setToolTip(NAME_TIP)
        self.name.setMinimumWidth(48)
        self.backbone = ComboBox()
        self.backbone.setToolTip(BACKBONE_TIP)
        self.column = ComboBox()
        self.column.setEditable(True)
        self.column.setInsertPolicy(ComboBox.InsertPolicy.NoInsert)
        self.column.setToolTip(COLUMN_TIP)
        for combo in (self.backbone, self.column):      # long names must not widen the form past the tab
            combo.setSizeAdjustPolicy(ComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
        self.remove = QToolButton()
        self.remove.setText("✕")
        self.remove.setToolTip("Remove this input")
        self.key = ""          # the input's name in the project, as shown
        self.name.editingFinished.connect(lambda: editor._on_name_edited(self))
        self.backbone.activated.connect(lambda _: editor._on_spec_edited(self))
        self.column.activated.connect(lambda _: editor._on_spec_edited(self))
        self.column.lineEdit().editingFinished.connect(lambda: editor._on_spec_edited(self))
        self.remove.clicked.connect(lambda: editor._on_remove_clicked(self))

    def widgets(self) -> tuple:
        return self.name, self.backbone, self.column, self.remove


class InputsEditor(QWidget):
    """Edits tasks.N.inputs: add, rename, point at another encoder or column, remove; each change one edit."""

    def __init__(self, document: ProjectDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inputs_editor")
        self.document = document
        self.index = -1
        self.columns: list[str] = []
        self.rows: list[_Row] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Inputs: each one a column of the data, read by an encoder into one vector per row.")
        title.setWordWrap(True)
        layout.addWidget(title)
        self.grid = QGridLayout()
        self.grid.setColumnStretch(0, 2)
        self.grid.setColumnStretch(1, 3)
        self.grid.setColumnStretch(2, 3)
        for c, (text, tip) in enumerate((("Name", NAME_TIP), ("Read by", BACKBONE_TIP), ("Column", COLUMN_TIP))):
            label = QLabel(f"<b>{text}</b>")
            label.setToolTip(tip)
            self.grid.addWidget(label, 0, c)
        layout.addLayout(self.grid)
        self.empty = QLabel("No inputs yet: add one for each text the head reads.")
        self.empty.setWordWrap(True)
        layout.addWidget(self.empty)
        self.add_button = QPushButton("Add input")
        self.add_button.setObjectName("add_input")
        self.add_button.setToolTip("Another column for the head to read, with the encoder that reads it")
        self.add_button.clicked.connect(self.add_input)
        layout.addWidget(self.add_button)

    def set_task(self, index: int) -> None:
        self.index = index
        self.refresh()

    def set_columns(self, columns: list[str]) -> None:
        self.columns = list(columns)
        for row in self.rows:
            set_columns(row.column, self.columns)

    def refresh(self) -> None:
        project = self.document.project
        if not 0 <= self.index < len(project.tasks):
            return
        inputs = project.tasks[self.index].inputs
        while len(self.rows) < len(inputs):      # rows are kept, not rebuilt: a field being edited keeps its focus
            row = _Row(self)
            for c, widget in enumerate(row.widgets()):
                self.grid.addWidget(widget, len(self.rows) + 1, c)
            set_columns(row.column, self.columns)
            self.rows.append(row)
        while len(self.rows) > len(inputs):
            for widget in self.rows.pop().widgets():
                self.grid.removeWidget(widget)
                widget.deleteLater()
        encoders = [n for n, bb in project.backbones.items() if bb.role == "encoder"]
        self.document.accept(f"tasks.{self.index}.inputs")          # every row shows the project's name again
        for row, (name, spec) in zip(self.rows, inputs.items()):
            backbone, _, column = spec.partition(":")
            backbone = backbone.strip()
            for widget in row.widgets():
                widget.blockSignals(True)
            row.key = name
            row.name.setText(name)
            row.name.setStyleSheet("")
            row.name.setToolTip(NAME_TIP)
            row.backbone.clear()
            row.backbone.addItems(encoders)
            if backbone not in encoders:      # a decoder, or a backbone that is gone: shown, so it can be changed
                row.backbone.addItem(backbone)
            row.backbone.setCurrentText(backbone)
            row.column.setEditText(column.strip())
            for widget in row.widgets():
                widget.blockSignals(False)
        self.empty.setVisible(not inputs)

    def _task(self):
        return self.document.project.tasks[self.index]

    def _edit(self, change, label: str) -> None:
        self.document.edit(change, f"tasks.{self.index}", f"{label} of {self._task().name}")

    def add_input(self) -> str:
        if self.index < 0:
            return ""
        project, i = self.document.project, self.index
        inputs = self._task().inputs
        n = len(inputs) + 1
        while f"x{n}" in inputs:
            n += 1
        name = f"x{n}"
        last = next(reversed(inputs.values()), "").partition(":")[0].strip()
        encoders = [b for b, bb in project.backbones.items() if bb.role == "encoder"]
        backbone = last or (encoders[0] if encoders else next(iter(project.backbones), "encoder"))
        used = {v.partition(":")[2].strip() for v in inputs.values()}
        column = next((c for c in self.columns if c not in used), self._task().data.text)

        def add(p: Project) -> None:
            p.tasks[i].inputs[name] = f"{backbone}:{column}"
        self._edit(add, f"add input {name}")
        return name

    def _on_name_edited(self, row: _Row) -> None:
        new = row.name.text().strip()
        old = row.key
        if new == old or self.index < 0:
            return
        inputs = self._task().inputs
        if not INPUT_NAME.fullmatch(new):
            problem = f"{new!r}: an input's name uses letters, digits and '_', starting with a letter"
        elif new in inputs:
            problem = f"there is already an input named {new!r}"
        else:
            problem = ""
        key = f"tasks.{self.index}.inputs"
        if problem:
            row.name.setStyleSheet(INVALID_STYLE)
            row.name.setToolTip(f"{problem}. {NAME_TIP}")
            # blocks Start: the input keeps its old name, which the user no longer sees
            self.document.refuse(key, f"{problem}; the input keeps its name {old!r} until then")
            return
        self.document.accept(key)
        i = self.index
        self._edit(lambda p: rename_input(p, i, old, new), f"rename input {old}")

    def _on_spec_edited(self, row: _Row) -> None:
        if self.index < 0 or row.key not in self._task().inputs:
            return
        spec = f"{row.backbone.currentText().strip()}:{row.column.currentText().strip()}"
        i, key = self.index, row.key
        if self._task().inputs[key] != spec:
            self._edit(lambda p: p.tasks[i].inputs.__setitem__(key, spec), f"input {key}")

    def _on_remove_clicked(self, row: _Row) -> None:
        if self.index < 0 or row.key not in self._task().inputs:
            return
        i, key = self.index, row.key
        self._edit(lambda p: p.tasks[i].inputs.pop(key), f"remove input {key}")
