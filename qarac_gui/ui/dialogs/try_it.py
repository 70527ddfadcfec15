"""*Run > Try it…*: type text for a task and see what a run's model predicts, from its export or, while it trains,
its latest checkpoint; loading and predicting run in the background."""

from __future__ import annotations

import functools
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.kinds import kind_of
from qarac_gui.core.results.predict import TrialModel, has_model, load_trial_model, runs_with_models
from qarac_gui.ui.form import ComboBox
from qarac_gui.ui.widgets import row_table, status_label
from qarac_gui.ui.worker import Failure, JobRunner

ERROR_STYLE = "color: #d04040;"


class TryItDialog(QDialog):
    """Loads the model of a run (or of an exported folder) and shows each task's prediction for typed text."""

    def __init__(self, runs_base: Path, current: Path | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("try_it_dialog")
        self.setWindowTitle("Try it")
        self.resize(760, 560)
        self.runs_base = runs_base
        self.model: TrialModel | None = None
        self._loaded: Path | None = None            # the folder of the model loaded (or being loaded)
        self.fields: dict[str, QLineEdit | QPlainTextEdit] = {}
        self.jobs = JobRunner(self)
        self.jobs.finished.connect(self._on_jobs_finished)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        source = QHBoxLayout()
        self.run_combo = ComboBox()
        self.run_combo.setObjectName("try_it_run")
        self.run_combo.currentIndexChanged.connect(self._on_run_changed)
        source.addWidget(self.run_combo, 1)
        self.reload_button = QPushButton("Reload")
        self.reload_button.setToolTip("Load the model again: a run that is training has a newer checkpoint by now")
        self.reload_button.clicked.connect(self.load)
        source.addWidget(self.reload_button)
        folder = QPushButton("Folder…")
        folder.setToolTip("Another run folder, or an exported multi-task model (a copy of export/full)")
        folder.clicked.connect(self._on_folder_clicked)
        source.addWidget(folder)
        form.addRow("Model of", source)
        self.origin = status_label("try_it_origin")
        form.addRow("", self.origin)
        self.task_combo = ComboBox()
        self.task_combo.setObjectName("try_it_task")
        self.task_combo.currentIndexChanged.connect(self._on_task_changed)
        form.addRow("Task", self.task_combo)
        layout.addLayout(form)
        self.inputs_form = QFormLayout()
        layout.addLayout(self.inputs_form)
        self.hint = status_label("try_it_hint")
        layout.addWidget(self.hint)
        row = QHBoxLayout()
        row.addStretch(1)
        self.try_button = QPushButton("Try")
        self.try_button.setObjectName("try_it_button")
        self.try_button.setDefault(True)
        self.try_button.clicked.connect(self.start_prediction)
        row.addWidget(self.try_button)
        layout.addLayout(row)
        self.result = status_label("try_it_result")
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = QFont(self.result.font())
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        self.result.setFont(font)
        layout.addWidget(self.result)
        self.table = row_table("try_it_table", [])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setVisible(False)
        layout.addWidget(self.table, 100)
        layout.addStretch(1)                            # holds the rest up when there is no table to show
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.refresh_runs(current)

    # --- which model -----------------------------------------------------------------------------------------
    def refresh_runs(self, current: Path | None = None) -> None:
        """List the runs that hold a model, and the window's current run (which may not have one yet); keep the
        folder already chosen, or else choose the current run."""
        chosen = self.folder() or (Path(current) if current is not None else None)
        runs = runs_with_models(self.runs_base)
        for extra in (current, chosen):                 # the current run, a folder chosen with Folder…
            if extra is not None and Path(extra) not in runs:
                runs.insert(0, Path(extra))
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for path in runs:
            self.run_combo.addItem(path.name, str(path))
        self.run_combo.setCurrentIndex(max(self.run_combo.findData(str(chosen)), 0) if chosen is not None else 0)
        self.run_combo.blockSignals(False)
        if self.model is None or self.folder() != self._loaded:
            self._on_run_changed()

    def folder(self) -> Path | None:
        data = self.run_combo.currentData()
        return Path(data) if data else None

    def _on_run_changed(self) -> None:
        folder = self.folder()
        if folder is None:
            self._no_model("No run has a model to try yet: start a run; its first checkpoint can be tried as soon as "
                           "it is written (Reload then).")
        elif not has_model(folder):
            self._no_model(f"{folder.name} has no model yet: a run writes its first checkpoint after checkpoint.every "
                           "steps or checkpoint.minutes minutes, and when it stops. Reload then.")
        else:
            self.load()

    def _on_folder_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A run folder, or an exported multi-task model",
                                                  str(self.runs_base))
        if folder:
            self.choose_folder(Path(folder))

    def choose_folder(self, folder: Path) -> None:
        index = self.run_combo.findData(str(folder))
        if index < 0:
            self.run_combo.addItem(folder.name, str(folder))
            index = self.run_combo.count() - 1
        if index == self.run_combo.currentIndex():
            self._on_run_changed()
        self.run_combo.setCurrentIndex(index)

    def load(self) -> None:
        folder = self.folder()
        if folder is None:
            return
        self._set_status(f"Loading the model of {folder.name}…")
        self.try_button.setEnabled(False)
        self.reload_button.setEnabled(False)
        self._loaded = folder
        self.jobs.submit("load", functools.partial(load_trial_model, folder), uses_transformers=True)

    def _no_model(self, message: str) -> None:
        self.model = self._loaded = None
        self._set_status(message, error=True)
        self.task_combo.clear()
        self._build_inputs()
        self.try_button.setEnabled(False)
        self.reload_button.setEnabled(self.folder() is not None)

    # --- typing and trying -----------------------------------------------------------------------------------
    def _show_model(self, model: TrialModel) -> None:
        self.model = model
        folder = self.folder()
        more = " Reload to take a newer one while the run goes on." if model.from_checkpoint else ""
        self._set_status(f"{folder.name if folder else ''}: {model.origin}.{more}")
        previous = self.task_combo.currentData()
        self.task_combo.blockSignals(True)
        self.task_combo.clear()
        for task in model.project.tasks:
            self.task_combo.addItem(f"{task.name} — {kind_of(task.head).title}", task.name)
        index = self.task_combo.findData(previous)
        self.task_combo.setCurrentIndex(max(index, 0))
        self.task_combo.blockSignals(False)
        self._on_task_changed()
        self.reload_button.setEnabled(True)

    def task(self) -> str:
        return self.task_combo.currentData() or ""

    def _on_task_changed(self) -> None:
        typed = {name: self._text(field) for name, field in self.fields.items()}
        self._build_inputs()
        for name in self.fields:                             # what was typed stays when the task reads it too
            if typed.get(name):
                self.set_input(name, typed[name])
        self._show_result(None)
        self.try_button.setEnabled(self.model is not None and bool(self.task()))

    def _build_inputs(self) -> None:
        while self.inputs_form.rowCount():
            self.inputs_form.removeRow(0)
        self.fields.clear()
        self.hint.setText("")
        if self.model is None or not self.task():
            return
        task = self.model.project.task(self.task())
        for typed in self.model.typed_inputs(task.name):
            if typed.lines:
                field = QPlainTextEdit()
                field.setPlaceholderText("one text per line")
                field.setFixedHeight(field.fontMetrics().lineSpacing() * 4 + 12)
            else:
                field = QLineEdit()
                field.returnPressed.connect(self.start_prediction)
            field.setObjectName(f"try_it_input_{typed.name}")
            self.inputs_form.addRow(typed.label, field)
            self.fields[typed.name] = field
        self.hint.setText(kind_of(task.head).typed_hint(task))

    @staticmethod
    def _text(field: QLineEdit | QPlainTextEdit) -> str:
        return field.toPlainText() if isinstance(field, QPlainTextEdit) else field.text()

    def set_input(self, name: str, text: str) -> None:
        field = self.fields[name]
        if isinstance(field, QPlainTextEdit):
            field.setPlainText(text)
        else:
            field.setText(text)

    def start_prediction(self) -> None:
        if self.model is None or not self.task() or not self.try_button.isEnabled():
            return
        inputs = {name: self._text(field) for name, field in self.fields.items()}
        self.try_button.setEnabled(False)
        self.result.setStyleSheet("")
        self.result.setText("Predicting…")
        self.jobs.submit("predict", functools.partial(self.model.predict, self.task(), inputs), uses_transformers=True)

    def _show_result(self, prediction) -> None:
        self.table.clear()
        self.table.setVisible(bool(prediction is not None and prediction.rows))
        self.result.setStyleSheet("")
        self.result.setText("" if prediction is None else prediction.text)
        if prediction is None or not prediction.rows:
            return
        self.table.setColumnCount(len(prediction.columns))
        self.table.setHorizontalHeaderLabels(list(prediction.columns))
        self.table.setRowCount(len(prediction.rows))
        for r, row in enumerate(prediction.rows):
            for c, value in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()

    # --- background results ----------------------------------------------------------------------------------
    @Slot(str, object)
    def _on_jobs_finished(self, key: str, result) -> None:
        if key == "load":
            if isinstance(result, Failure):
                self._no_model(f"Cannot load this model: {result.shown}")
            else:
                self._show_model(result)
        elif key == "predict":
            self.try_button.setEnabled(self.model is not None)
            if isinstance(result, Failure):
                self._show_result(None)
                self.result.setStyleSheet(ERROR_STYLE)
                self.result.setText(result.shown)
            else:
                self._show_result(result)

    def _set_status(self, message: str, error: bool = False) -> None:
        self.origin.setStyleSheet(ERROR_STYLE if error else "")
        self.origin.setText(message)
