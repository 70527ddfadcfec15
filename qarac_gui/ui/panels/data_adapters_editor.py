"""A task's data adapters: the row filter, the label map, and the union of sources that makes its one text column."""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.project.config import Project, SourceConfig
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.panels.data_adapter_rows import (
    COLUMNS_TIP,
    DATA_FILTER,
    KEY_TIP,
    LOCATION_TIPS,
    SOURCE_FILTER_TIP,
    TASK_FILTER_TIP,
    VALUE_TIP,
    LabelRow,
    SourceRow,
    columns_of,
    mark,
    parse_value,
    refused,
    shown_value,
    value_problem,
)


class DataAdaptersEditor(QWidget):
    """Edits tasks.N.data.filter, .label_map and .union; each change one edit, and the display follows undo."""

    def __init__(self, document: ProjectDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("data_adapters_editor")
        self.document = document
        self.index = -1
        self.label_rows: list[LabelRow] = []
        self.source_rows: list[SourceRow] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        self.filter_edit = QLineEdit()
        self.filter_edit.setObjectName("data_filter")
        self.filter_edit.setPlaceholderText("e.g. label != -1")
        self.filter_edit.setToolTip(TASK_FILTER_TIP)
        self.filter_edit.editingFinished.connect(self._on_filter_edited)
        form.addRow("Keep rows where", self.filter_edit)
        layout.addLayout(form)

        self.relabel = QWidget()
        rl = QVBoxLayout(self.relabel)
        rl.setContentsMargins(0, 0, 0, 0)
        self.relabel_title = QLabel()
        self.relabel_title.setWordWrap(True)
        rl.addWidget(self.relabel_title)
        self.label_grid = QGridLayout()
        self.label_grid.setColumnStretch(0, 1)
        self.label_grid.setColumnStretch(2, 1)
        rl.addLayout(self.label_grid)
        self.label_problem = QLabel()
        self.label_problem.setObjectName("label_map_problem")
        self.label_problem.setWordWrap(True)
        self.label_problem.setStyleSheet("color: #d04040;")
        rl.addWidget(self.label_problem)
        self.add_label_button = QPushButton("Add relabel row")
        self.add_label_button.setObjectName("add_label")
        self.add_label_button.setToolTip("Replace one more label cell's text with a value of your choosing")
        self.add_label_button.clicked.connect(self.add_label)
        rl.addWidget(self.add_label_button)
        layout.addWidget(self.relabel)
        layout.addSpacing(6)

        title = QLabel("<b>Sources</b>: gather the texts of several files or Hub splits into the task's text column "
                       "(each text once, in first-seen order).")
        title.setWordWrap(True)
        layout.addWidget(title)
        self.union_note = QLabel()
        self.union_note.setObjectName("union_note")
        self.union_note.setWordWrap(True)
        layout.addWidget(self.union_note)
        self.sources_box = QVBoxLayout()
        layout.addLayout(self.sources_box)
        self.add_source_button = QPushButton("Add source")
        self.add_source_button.setObjectName("add_source")
        self.add_source_button.setToolTip("Another file or Hub split whose texts join the task's text column. The "
                                          "first one takes over the task's own training file or Hub dataset.")
        self.add_source_button.clicked.connect(self.add_source)
        layout.addWidget(self.add_source_button)
        layout.addStretch(1)            # taller than its rows (alone in a panel): the rows stay together at the top
        document.changed.connect(self._on_document_changed)

    def set_task(self, index: int) -> None:
        self.index = index
        self.refresh()

    def _task(self):
        return self.document.project.tasks[self.index]

    def _valid(self) -> bool:
        return 0 <= self.index < len(self.document.project.tasks)

    def _edit(self, change: Callable[[Project], None], label: str) -> None:
        self.document.edit(change, f"tasks.{self.index}", f"{label} of {self._task().name}")

    def _on_document_changed(self, _section: str) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.setEnabled(self._valid())
        if not self._valid():
            return
        task = self._task()
        d = task.data
        self.filter_edit.blockSignals(True)
        self.filter_edit.setText(d.filter)
        self.filter_edit.blockSignals(False)
        mark(self.filter_edit, "", TASK_FILTER_TIP)
        # the fields show the project's filters again
        self.document.accept(f"tasks.{self.index}.data.filter")
        self.document.accept_under(f"tasks.{self.index}.data.union[")
        self._show_label_map(task)
        self._show_union(task)

    # -- label map

    def _show_label_map(self, task) -> None:
        label_map = task.data.label_map
        kind = HEAD_KINDS.get(task.head.kind)
        maps = kind is None or kind.maps_labels
        self.relabel.setVisible(maps or bool(label_map))     # shown while there are rows to remove
        self.relabel_title.setText(f"<b>Relabel</b> the cells of the label column ({task.data.label}); "
                                   "cells not listed are an error, so list every value a kept row has."
                                   if label_map else "<b>Relabel</b>: none; the label cells are used as they are.")
        while len(self.label_rows) < len(label_map):
            row = LabelRow(self)
            for c, widget in enumerate(row.widgets()):
                self.label_grid.addWidget(widget, len(self.label_rows), c)
                widget.show()           # now, not when the layout gets round to it: add_label() focuses it
            self.label_rows.append(row)
        while len(self.label_rows) > len(label_map):
            for widget in self.label_rows.pop().widgets():
                self.label_grid.removeWidget(widget)
                widget.deleteLater()
        for row, (key, value) in zip(self.label_rows, label_map.items()):
            row.shown = key
            for edit, text, tip in ((row.key, key, KEY_TIP), (row.value, shown_value(value), VALUE_TIP)):
                edit.blockSignals(True)
                edit.setText(text)
                edit.blockSignals(False)
                mark(edit, "", tip)
        texts = {isinstance(v, str) for v in label_map.values()}
        problem = ""
        if not maps:
            problem = f"A {kind.title} task has no labels to map; remove these rows."
        elif len(texts) > 1:
            problem = ("The values mix numbers and text: map every cell to a number, or every cell to a text, so "
                       "that the label column holds one type.")
        self.label_problem.setText(problem)
        self.label_problem.setVisible(bool(problem))
        self.add_label_button.setEnabled(maps)

    def add_label(self) -> str:
        if not self._valid():
            return ""
        label_map, i = self._task().data.label_map, self.index
        n = 0
        while str(n) in label_map:
            n += 1
        key = str(n)
        texts = bool(label_map) and all(isinstance(v, str) for v in label_map.values())
        value: int | str = key if texts else n          # of the type the map already holds
        self._edit(lambda p: p.tasks[i].data.label_map.__setitem__(key, value), f"relabel {key}")
        row = self.label_rows[-1]
        row.key.setFocus()
        row.key.selectAll()
        return key

    def _on_label_key_edited(self, row: LabelRow) -> None:
        if not self._valid() or row.shown not in self._task().data.label_map:
            return
        old, new = row.shown, row.key.text().strip()
        if new == old:
            mark(row.key, "", KEY_TIP)
            return
        label_map = self._task().data.label_map
        if not new:
            problem = "A cell text cannot be empty; remove the row instead."
        elif new in label_map:
            problem = f"The cell text {new!r} is relabelled already."
        else:
            problem = ""
        if problem:
            mark(row.key, problem, KEY_TIP)
            return
        i = self.index

        def rename(p: Project) -> None:        # keeps the rows' order
            d = p.tasks[i].data
            d.label_map = {new if k == old else k: v for k, v in d.label_map.items()}
        self._edit(rename, f"relabel {old} as {new}")

    def _on_label_value_edited(self, row: LabelRow) -> None:
        if not self._valid() or row.shown not in self._task().data.label_map:
            return
        text = row.value.text()
        problem = value_problem(text)
        if problem:
            mark(row.value, f"{problem[0].upper()}{problem[1:]}.", VALUE_TIP)
            return
        i, key, value = self.index, row.shown, parse_value(text)
        current = self._task().data.label_map[key]
        if type(current) is type(value) and current == value:
            mark(row.value, "", VALUE_TIP)
            return
        self._edit(lambda p: p.tasks[i].data.label_map.__setitem__(key, value), f"relabel {key}")

    def _on_label_removed(self, row: LabelRow) -> None:
        if self._valid() and row.shown in self._task().data.label_map:
            i, key = self.index, row.shown
            self._edit(lambda p: p.tasks[i].data.label_map.pop(key), f"remove relabel {key}")

    # -- filter

    def _on_filter_edited(self) -> None:
        if not self._valid():
            return
        text = self.filter_edit.text().strip()
        key = f"tasks.{self.index}.data.filter"
        why = refused(self.filter_edit, text, TASK_FILTER_TIP)
        if why:             # blocks Start: a run would keep every row the typed filter meant to leave out
            self.document.refuse(key, why)
            return
        self.document.accept(key)
        if text != self._task().data.filter:
            i = self.index
            self._edit(lambda p: setattr(p.tasks[i].data, "filter", text), "row filter")

    # -- union

    def _show_union(self, task) -> None:
        union = task.data.union
        self.union_note.setText(
            f"The task trains on these sources' texts, as its column {task.data.text!r}: its own training file, "
            "Hub dataset and validation data are not used. Validation rows are held out with the held-out share."
            if union else "None: the task reads its training file or Hub dataset. A union of several sources' texts "
                          "suits a task that reads texts alone, such as masked language modelling.")
        while len(self.source_rows) < len(union):
            row = SourceRow(self, self.source_rows[-1].kind if self.source_rows else "file")
            self.sources_box.addWidget(row)
            row.show()
            self.source_rows.append(row)
        while len(self.source_rows) > len(union):
            row = self.source_rows.pop()
            self.sources_box.removeWidget(row)
            row.deleteLater()
        for n, (row, source) in enumerate(zip(self.source_rows, union)):
            if source.hub or source.train:
                row.kind = "hub" if source.hub else "file"
            for widget in row.editors():
                widget.blockSignals(True)
            row.number.setText(f"{n + 1}.")
            row.name_fields(n)
            row.show_kind()
            row.location.setText(source.hub or source.train)
            row.hub_config.setText(source.hub_config)
            row.split.setText(source.split)
            row.format.setCurrentText(source.format)
            row.columns.setText(", ".join(source.columns))
            row.filter.setText(source.filter)
            for widget in row.editors():
                widget.blockSignals(False)
            row.up.setEnabled(n > 0)
            row.down.setEnabled(n < len(union) - 1)
            mark(row.location, self._location_problem(row.kind, source), LOCATION_TIPS[row.kind])
            mark(row.columns, "" if source.columns else "Name at least one text column.", COLUMNS_TIP)
            mark(row.filter, "", SOURCE_FILTER_TIP)

    def _location_problem(self, kind: str, source: SourceConfig) -> str:
        if kind == "hub":
            return "" if source.hub else "Give a Hub dataset id."
        if not source.train:
            return "Choose a local file (Browse…)."
        if not self.document.project.resolve(source.train).is_file():
            return f"There is no file at {source.train} (relative paths start at the project file's folder)."
        return ""

    def add_source(self) -> int:
        """Append a source; the first one takes over the task's own data, which a union leaves unused."""
        if not self._valid():
            return -1
        i = self.index

        def add(p: Project) -> None:
            d = p.tasks[i].data
            source = SourceConfig()
            if not d.union and (d.train or d.hub):
                # The union's rows hold only the text column, so a filter on the file's columns goes with the file.
                source = SourceConfig(train=d.train, hub=d.hub, hub_config=d.hub_config if d.hub else "",
                                      split=d.train_split if d.hub else "train",
                                      format=d.format if d.train else "auto",
                                      columns=[c for c in (d.text, d.text_pair) if c], filter=d.filter)
                d.train = d.hub = d.hub_config = d.validation = d.validation_split = d.filter = ""
                d.train_split, d.format = "train", "auto"
            d.union.append(source)
        self._edit(add, "add source")
        row = self.source_rows[-1]
        row.location.setFocus()
        return len(self.source_rows) - 1

    def _row_index(self, row: SourceRow) -> int:
        if not self._valid() or row not in self.source_rows:
            return -1
        n = self.source_rows.index(row)
        return n if n < len(self._task().data.union) else -1

    def _set_source(self, row: SourceRow, label: str, **fields: Any) -> None:
        n = self._row_index(row)
        if n < 0:
            return
        source = self._task().data.union[n]
        if all(getattr(source, k) == v for k, v in fields.items()):
            return
        i = self.index

        def change(p: Project) -> None:
            for key, value in fields.items():
                setattr(p.tasks[i].data.union[n], key, value)
        self._edit(change, f"{label} {n + 1}")

    def _on_source_kind_chosen(self, row: SourceRow, kind: str) -> None:
        if self._row_index(row) < 0 or kind == row.kind:
            return
        row.kind = kind
        row.show_kind()
        location = row.location.text().strip()
        if location:        # what was typed moves to the other field: one edit
            self._set_source(row, "source", train="" if kind == "hub" else location,
                             hub=location if kind == "hub" else "")
        else:
            self.refresh()

    def _on_source_edited(self, row: SourceRow) -> None:
        location = row.location.text().strip()
        fields: dict[str, Any] = {"train": "" if row.kind == "hub" else location,
                                  "hub": location if row.kind == "hub" else "",
                                  "columns": columns_of(row.columns.text())}
        if row.kind == "hub":
            fields.update(hub_config=row.hub_config.text().strip(), split=row.split.text().strip() or "train")
        else:
            fields["format"] = row.format.currentText()
        self._set_source(row, "source", **fields)

    def _on_source_filter_edited(self, row: SourceRow) -> None:
        n = self._row_index(row)
        if n < 0:
            return
        text = row.filter.text().strip()
        key = f"tasks.{self.index}.data.union[{n}].filter"
        why = refused(row.filter, text, SOURCE_FILTER_TIP)
        if why:             # blocks Start, as the task's own filter does
            self.document.refuse(key, why)
            return
        self.document.accept(key)
        self._set_source(row, "filter of source", filter=text)

    def _on_source_browse_clicked(self, row: SourceRow) -> None:
        start = str(self.document.project.root)
        path, _ = QFileDialog.getOpenFileName(self, "Choose a data file", start, DATA_FILTER)
        if path:
            self._set_source(row, "file of source", train=path, hub="")

    def _on_source_moved(self, row: SourceRow, step: int) -> None:
        n = self._row_index(row)
        if n < 0 or not 0 <= n + step < len(self.source_rows):
            return
        i = self.index

        def move(p: Project) -> None:
            union = p.tasks[i].data.union
            union[n], union[n + step] = union[n + step], union[n]
        self._edit(move, f"move source {n + 1} {'up' if step < 0 else 'down'}")

    def _on_source_removed(self, row: SourceRow) -> None:
        n = self._row_index(row)
        if n >= 0:
            i = self.index
            self._edit(lambda p: p.tasks[i].data.union.pop(n), f"remove source {n + 1}")
