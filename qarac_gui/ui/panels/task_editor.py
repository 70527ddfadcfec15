"""One task: its head, its data and column mapping, a preview of the rows, and what to fix before training."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.data.load import EXTENSION_FORMATS
from qarac_gui.core.data.preview import TaskPreview
from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.project.config import FORMATS
from qarac_gui.ui.bar_charts import LengthHistogram
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.field_words import FieldWords, Place
from qarac_gui.ui.form import Binder, ComboBox, set_columns, set_relevant
from qarac_gui.ui.panels.data_adapters_editor import DataAdaptersEditor
from qarac_gui.ui.panels.inputs_editor import InputsEditor

DATA_FILTER = "Data files (*.csv *.tsv *.tab *.json *.jsonl *.ndjson *.parquet *.pq);;All files (*)"

COLUMN_ROLES = {   # what the label column holds, per head, in the user's words
    "label": "Label column", "labels": "Labels column", "score": "Score column", "tags": "Tags column",
    "answers": "Answers column", "target": "Target text column",
}
COMPARISONS = [("cosine", "cosine, regressed onto a score column"),
               ("distance", "distance to zero (the two should embed alike)")]
EXPRESSION_TIP = "Names of the inputs above joined by + and -, e.g. q, or p1 + p2."
# The task's own data fields, which a union of sources replaces (validate() refuses train, hub, validation and
# validation_split beside a union; the others are then read by nothing).
UNION_UNUSED = ("data.train", "data.hub", "data.hub_config", "data.train_split", "data.validation",
                "data.validation_split", "data.format")


def is_data_file(path: str) -> bool:
    return Path(path).suffix.lower() in EXTENSION_FORMATS


KEEP_TIP = ("A keep task is never trained: it is evaluated before the first step and at every validation, and "
            "the charts show how much it got worse since step 0. A masked-LM task on general text measures what the "
            "encoder forgets. Its validation rows are evaluated, or all its rows when it names no validation file or "
            "split. Keep tasks are not exported.")


class TaskEditor(QScrollArea):
    """Edits the selected task."""

    preview_requested = Signal(str)
    data_file_chosen = Signal(str, str)          # task name, path: the user picked (or dropped) a training file
    hub_dataset_requested = Signal(int)          # task index
    kind_chosen = Signal(int, str)               # task index, head kind: the tasks panel names the task after it

    def __init__(self, document: ProjectDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.index = -1
        self.binder = Binder(document)
        self.setWidgetResizable(True)
        self.setAcceptDrops(True)
        body = QWidget()
        self.setWidget(body)
        layout = QVBoxLayout(body)
        b = self.binder

        head = QGroupBox("Head")
        hf = QFormLayout(head)
        self.kind = b.choice("head.kind", [(k.name, k.title) for k in HEAD_KINDS.values()],
                             "What the head predicts. The encoder is shared; every task gets its own head.")
        b.commit_hooks["head.kind"] = lambda kind: self.kind_chosen.emit(self.index, kind)
        hf.addRow("Type", self.kind)
        self.kind_help = QLabel()
        self.kind_help.setWordWrap(True)
        hf.addRow("", self.kind_help)
        self.head_form = hf
        self.inputs = InputsEditor(document)          # the names the expressions below combine
        hf.addRow(self.inputs)
        self.encoder = ComboBox()
        self.encoder.setObjectName("task_backbone")
        self.encoder.setToolTip("The encoder this task's head sits on (the project has several backbones).")
        self.encoder.activated.connect(lambda _: self._set_backbone("backbone", self.encoder))
        hf.addRow("Encoder", self.encoder)
        self.left = b.text("head.left", "What is compared: " + EXPRESSION_TIP, "e.g. q")
        hf.addRow("Left", self.left)
        self.right = b.text("head.right", "What it is compared with: " + EXPRESSION_TIP, "e.g. a")
        hf.addRow("Right", self.right)
        self.compare = b.choice("head.compare", COMPARISONS, "cosine: the cosine of left and right learns the "
                                "score column, in [-1, 1]. distance: left - right is pulled to zero; no label "
                                "column.")
        hf.addRow("Compare by", self.compare)
        self.decoder = ComboBox()
        self.decoder.setObjectName("head_decoder")
        self.decoder.setToolTip("The backbone of role decoder that writes the target text. To have one, add a "
                                "backbone in tab 1 and set its role to decoder.")
        self.decoder.setPlaceholderText("none yet (see tab 1)")
        self.decoder.activated.connect(lambda _: self._set_backbone("head.decoder", self.decoder))
        hf.addRow("Decoder", self.decoder)
        self.condition = b.text("head.condition", "The vector the decoder starts from: " + EXPRESSION_TIP,
                                "e.g. s, or p1 + p2")
        hf.addRow("Condition", self.condition)
        for combo in (self.encoder, self.decoder):     # long names and the placeholder must not widen the form
            combo.setSizeAdjustPolicy(ComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.pooling = b.choice("head.pooling", [(None, "default for the head"), ("cls", "first token (CLS)"),
                                                 ("mean", "mean of all tokens")],
                                "How one vector is taken from the encoder's token vectors.")
        hf.addRow("Pooling", self.pooling)
        self.dropout = b.decimal("head.dropout", "Dropout before the head's layers; regularises small datasets.",
                                 0.0, 0.9, 0.05, 2)
        hf.addRow("Dropout", self.dropout)
        self.hidden_layer = b.choice("head.hidden_layer", [(None, "default for the head"), (True, "yes"),
                                                           (False, "no")],
                                     "A dense layer plus activation before the output layer, like the "
                                     "architecture's own classifier.")
        hf.addRow("Hidden layer", self.hidden_layer)
        self.labels_edit = QLineEdit()
        self.labels_edit.setObjectName("head_labels")
        self.labels_edit.setPlaceholderText("detected from the data")
        self.labels_edit.setToolTip("Label names in the order of their ids, separated by commas; empty to take "
                                    "them from the data.")
        self.labels_edit.editingFinished.connect(self._on_labels_edited)
        hf.addRow("Labels", self.labels_edit)
        self.threshold = b.decimal("head.threshold", "Multi-label: a label is predicted when its probability "
                                   "is above this.", 0.01, 0.99, 0.05, 2)
        hf.addRow("Threshold", self.threshold)
        self.mlm_probability = b.decimal("head.mlm_probability", "Share of tokens masked for the model to "
                                         "predict (BERT used 0.15).", 0.01, 0.99, 0.01, 2)
        hf.addRow("Mask share", self.mlm_probability)
        layout.addWidget(head)

        data = QGroupBox("Data (drop a file here)")
        df = QFormLayout(data)
        row = QHBoxLayout()
        self.train_edit = b.text("data.train", "Training data file: CSV, TSV, JSON, JSONL or Parquet.",
                                 "a local file…")
        row.addWidget(self.train_edit, 1)
        browse = QPushButton("Browse…")
        browse.setObjectName("browse_train")
        browse.clicked.connect(lambda: self._browse("data.train"))
        row.addWidget(browse)
        df.addRow("Training file", row)
        hrow = QHBoxLayout()
        hrow.addWidget(b.text("data.hub", "A dataset id on the Hugging Face Hub, e.g. glue.", "e.g. imdb"), 1)
        hub_button = QPushButton("Hub…")
        hub_button.setObjectName("browse_hub_dataset")
        hub_button.setToolTip("Search the Hub for a dataset and see its configs, splits, columns and first rows")
        hub_button.clicked.connect(lambda: self.hub_dataset_requested.emit(self.index))
        hrow.addWidget(hub_button)
        df.addRow("or Hub dataset", hrow)
        df.addRow("Hub config", b.text("data.hub_config", "The dataset's configuration, e.g. sst2 for glue."))
        df.addRow("Hub train split", b.text("data.train_split", "Which split to train on."))
        vrow = QHBoxLayout()
        vrow.addWidget(b.text("data.validation", "A separate validation file (same columns).",
                              "held out from the training data"), 1)
        vbrowse = QPushButton("Browse…")
        vbrowse.clicked.connect(lambda: self._browse("data.validation"))
        vrow.addWidget(vbrowse)
        df.addRow("Validation file", vrow)
        df.addRow("Hub validation split", b.text("data.validation_split", "A split of the Hub dataset."))
        df.addRow("Held-out share", b.decimal("data.validation_fraction", "Share of the training rows held out "
                                              "for validation when no validation data is given.", 0.0, 0.9))
        df.addRow("Format", b.choice("data.format", [(f, f) for f in FORMATS], "auto: from the extension."))
        df.addRow("Row limit", b.integer("data.limit", "Use at most this many training rows (0: all).",
                                         0, 10**9, "all rows"))
        self.adapters = DataAdaptersEditor(document)
        df.addRow(self.adapters)
        self.own_data_buttons = (browse, hub_button, vbrowse)
        layout.addWidget(data)

        self.columns_box = columns = QGroupBox("Columns")
        self.columns_form = QFormLayout(columns)
        self.text_column = b.column("data.text", "The column with the input text.")
        self.pair_column = b.column("data.text_pair", "A second text for pair tasks (optional for classification "
                                    "and regression).")
        self.label_column = b.column("data.label", "The column with what the head learns to predict.")
        self.columns_form.addRow("Text column", self.text_column)
        self.columns_form.addRow("Second text", self.pair_column)
        self.columns_form.addRow("Label column", self.label_column)
        layout.addWidget(columns)

        training = QGroupBox("Training")
        tg = QGridLayout(training)
        tg.addWidget(QLabel("Batch size"), 0, 0)
        tg.addWidget(b.integer("batch_size", "Rows per batch for this task. Larger is faster on a GPU but uses "
                               "more memory.", 1, 4096), 0, 1)
        tg.addWidget(QLabel("Max length"), 0, 2)
        tg.addWidget(b.integer("max_length", "Longer inputs are cut to this many tokens. Batches are padded "
                               "only to their longest row.", 8, 8192), 0, 3)
        tg.addWidget(QLabel("Loss weight"), 0, 4)
        tg.addWidget(b.number("weight", "This task's share of the summed loss. Raise it for a task that lags.",
                              0.0, 1000.0), 0, 5)
        tg.addWidget(b.check("keep", "Keep: evaluate only, never train (measures forgetting)", KEEP_TIP), 1, 0, 1, 6)
        layout.addWidget(training)

        check = QGroupBox("Preview and checks")
        cl = QVBoxLayout(check)
        top = QHBoxLayout()
        self.summary = QLabel("Choose data to see a preview.")
        self.summary.setObjectName("preview_summary")
        self.summary.setWordWrap(True)
        top.addWidget(self.summary, 1)
        refresh = QPushButton("Refresh")
        refresh.setToolTip("Read the data again (after editing the file)")
        refresh.clicked.connect(self._on_refresh_clicked)
        top.addWidget(refresh)
        cl.addLayout(top)
        self.report = QListWidget()
        self.report.setObjectName("task_report")
        self.report.setMaximumHeight(130)
        self.report.setWordWrap(True)          # a warning says what to change: all of it must be readable
        self.lengths = LengthHistogram()
        self.lengths.setFixedHeight(130)
        self.lengths.setToolTip("Tokens per training row (a sample of up to 1000), with the model's tokenizer. "
                                "Rows right of the red line are cut to the task's max length.")
        self.lengths.hide()
        checks = QHBoxLayout()
        checks.addWidget(self.report, 3)
        checks.addWidget(self.lengths, 2)
        cl.addLayout(checks)
        self.table = QTableWidget()
        self.table.setObjectName("preview_table")
        self.table.setMinimumHeight(180)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        cl.addWidget(self.table, 1)
        layout.addWidget(check, 1)
        self.groups = (head, data, columns, training, check)
        self.empty = QLabel("No task yet. Add one with the Add button on the left, then choose its head and its "
                            "data here.")
        self.empty.setObjectName("no_task")
        self.empty.setWordWrap(True)
        layout.insertWidget(0, self.empty)
        layout.addStretch(0)
        self.set_task(-1, None)

    def set_task(self, index: int, preview: TaskPreview | None) -> None:
        self.index = index
        self.setEnabled(index >= 0)
        self.empty.setVisible(index < 0)
        for group in self.groups:           # no task: no fields showing values of none
            group.setVisible(index >= 0)
        self.adapters.set_task(index)
        if index < 0:
            self.show_preview(None)
            return
        self.binder.prefix = f"tasks.{index}"
        self.binder.refresh()
        task = self.document.project.tasks[index]
        kind = HEAD_KINDS.get(task.head.kind)
        self.kind_help.setText(kind.help if kind else "")
        self.labels_edit.setText(", ".join(task.head.labels))
        self.pooling.setEnabled(bool(kind and kind.pooled))
        options = kind.options if kind else ()
        named = bool(kind and kind.takes_inputs)
        hf, cf = self.head_form, self.columns_form
        for key, widget in (("threshold", self.threshold), ("mlm_probability", self.mlm_probability),
                            ("left", self.left), ("right", self.right), ("compare", self.compare),
                            ("decoder", self.decoder), ("condition", self.condition)):
            widget.setEnabled(key in options)
            hf.setRowVisible(widget, key in options)
        for widget in (self.pooling, self.dropout, self.hidden_layer, self.labels_edit):
            hf.setRowVisible(widget, not named)    # a head over named inputs has no layers: its backbones pool
        backbones = self.document.project.backbones
        encoders = [n for n, bb in backbones.items() if bb.role == "encoder"]
        self._offer(self.encoder, encoders, task.backbone)
        hf.setRowVisible(self.encoder, not named and (len(backbones) > 1 or task.backbone not in encoders))
        self._offer(self.decoder, [n for n, bb in backbones.items() if bb.role == "decoder"], task.head.decoder)
        self.inputs.set_task(index)
        self._show_relevance(task, kind)
        hf.setRowVisible(self.inputs, named or bool(task.inputs))     # shown while there are inputs to remove
        cf.setRowVisible(self.text_column, not named)
        cf.setRowVisible(self.pair_column, not named)
        label_role = kind.label_role_for(task.head) if kind else "label"
        self.label_column.setEnabled(bool(label_role))
        cf.setRowVisible(self.label_column, bool(label_role) or not named)
        self.columns_box.setVisible(bool(label_role) or not named)      # the inputs name every column read
        self.inputs.set_columns(preview.columns if preview else [])
        self.columns_form.labelForField(self.label_column).setText(COLUMN_ROLES.get(label_role, "Label column"))
        self.columns_form.labelForField(self.text_column).setText(kind.text_role if kind else "Text column")
        self.columns_form.labelForField(self.pair_column).setText(kind.pair_role if kind else "Second text")
        self.show_preview(preview)

    def _show_relevance(self, task, kind) -> None:
        """Grey out the fields this task's other settings make moot, saying which setting does."""
        d = task.data
        field = {f.key: f.widget for f in self.binder.fields}
        union = bool(d.union)
        for key in UNION_UNUSED:
            set_relevant(field[key], not union, "the sources below give the task's rows.")
        for button in self.own_data_buttons:
            button.setEnabled(not union)
        if not union:
            hub = bool(d.hub)
            for key in ("data.hub_config", "data.train_split", "data.validation_split"):
                set_relevant(field[key], hub, "the task reads a local file, not a Hub dataset.")
            set_relevant(field["data.validation"], not hub or bool(d.validation),      # still clearable
                         "a Hub dataset's validation comes from its validation split.")
            set_relevant(field["data.format"], not hub, "a Hub dataset has a format of its own.")
        separate = bool(d.validation or (d.hub and d.validation_split))
        set_relevant(field["data.validation_fraction"], not separate and not task.keep,
                     "a keep task holds no rows out: all of them are evaluated." if task.keep and not separate
                     else "the validation file or split gives the validation rows.")
        set_relevant(field["weight"], not task.keep, "a keep task is never trained, so its loss is never weighed.")
        set_relevant(self.labels_edit, bool(kind and kind.has_classes),
                     f"a {kind.title.lower() if kind else 'this'} head has no classes to name.")

    def show_preview(self, preview: TaskPreview | None) -> None:
        self.report.clear()
        self.lengths.show_lengths(preview.token_lengths if preview else [], preview.max_length if preview else 0)
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)
        if preview is None:
            self.summary.setText("Choose data to see a preview.")
            return
        for combo, empty in ((self.text_column, False), (self.pair_column, True), (self.label_column, False)):
            set_columns(combo, preview.columns, allow_empty=empty)
        self.inputs.set_columns(preview.columns)
        words = FieldWords({"tasks": self})
        project = self.document.project

        def shown(text: str) -> str:          # in this task's own editor: without "task x:", fields by their labels
            rest = text.split(": ", 1)[1] if text.startswith(f"task {preview.task}: ") else text
            return words.inline(rest, Place("tasks", task=preview.task), project)
        for text in preview.errors:
            item = QListWidgetItem(f"Error: {shown(text)}")
            item.setForeground(QColor("#d04040"))
            self.report.addItem(item)
        for text in preview.warnings:
            item = QListWidgetItem(f"Warning: {shown(text)}")
            item.setForeground(QColor("#c08000"))
            self.report.addItem(item)
        if not preview.errors and not preview.warnings:
            self.report.addItem("No problems found.")
        if preview.errors and not preview.rows:
            self.summary.setText("The data cannot be used yet: see the errors below.")
            return
        labels = ""
        if preview.labels:
            counts = ", ".join(f"{k}: {preview.label_counts.get(k, 0)}" for k in preview.labels[:12])
            labels = f" Labels ({len(preview.labels)}): {counts}{' …' if len(preview.labels) > 12 else ''}."
        share = "" if preview.truncated_share is None else f" {preview.truncated_share:.0%} longer than max length."
        kept = (f" The filter kept {preview.filter_kept} of {preview.filter_read} rows of the training data."
                if preview.filter_read else "")
        self.summary.setText(f"{preview.train_rows} training rows, {preview.valid_rows} validation rows."
                             f"{kept}{labels}{share}")
        self.table.setColumnCount(len(preview.headers))
        self.table.setHorizontalHeaderLabels(preview.headers)
        self.table.setRowCount(len(preview.rows))
        for r, row in enumerate(preview.rows):
            for c, value in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        for c in range(self.table.columnCount()):     # long texts must not push the label column out of view
            self.table.setColumnWidth(c, min(self.table.columnWidth(c), 300))

    @staticmethod
    def _offer(combo: ComboBox, names: list[str], current: str) -> None:
        """Fill a backbone choice; a name that is not among them (gone, or of the other role) shows too."""
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        if current and current not in names:
            combo.addItem(current)
        combo.setCurrentIndex(combo.findText(current) if current else -1)
        combo.blockSignals(False)

    def _set_backbone(self, key: str, combo: ComboBox) -> None:
        if self.index >= 0 and combo.currentText():
            self.document.set_value(f"tasks.{self.index}.{key}", combo.currentText(),
                                    "Encoder" if key == "backbone" else "Decoder")

    def _browse(self, key: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a data file", "", DATA_FILTER)
        if path:
            self.set_data_file(path, key)

    def set_data_file(self, path: str, key: str = "data.train") -> None:
        if self.index < 0:
            return
        prefix = f"tasks.{self.index}"

        def change(p):
            task = p.tasks[self.index]
            if key == "data.train":
                task.data.train, task.data.hub = path, ""
            else:
                task.data.validation = path
        name = self.document.project.tasks[self.index].name
        self.document.edit(change, prefix, f"{key} of {name}")
        if key == "data.train":
            self.data_file_chosen.emit(name, path)

    def set_hub_dataset(self, index: int, fields: dict) -> None:
        """Use a Hub dataset (fields as DatasetDialog.choice() gives them) instead of local files."""
        if not 0 <= index < len(self.document.project.tasks):
            return

        def change(p):
            data = p.tasks[index].data
            data.train = data.validation = ""
            for key, value in fields.items():
                setattr(data, key, value)
        self.document.edit(change, f"tasks.{index}", f"Hub dataset of {self.document.project.tasks[index].name}")

    def _on_labels_edited(self) -> None:
        if self.index < 0:
            return
        labels = [s.strip() for s in self.labels_edit.text().split(",") if s.strip()]
        self.document.set_value(f"tasks.{self.index}.head.labels", labels, "Labels")

    def _on_refresh_clicked(self) -> None:
        if self.index >= 0:
            self.preview_requested.emit(self.document.project.tasks[self.index].name)

    def dragEnterEvent(self, event) -> None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        union = self.index >= 0 and bool(self.document.project.tasks[self.index].data.union)
        if self.index >= 0 and not union and urls and is_data_file(urls[0].toLocalFile()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        path = event.mimeData().urls()[0].toLocalFile()
        if is_data_file(path):
            self.set_data_file(path)
            event.acceptProposedAction()
