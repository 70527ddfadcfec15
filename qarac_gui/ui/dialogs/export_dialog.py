"""Export: pick a finished run, the tasks, and a destination; see what will be written; copy it; open it; or push it
to the Hugging Face Hub."""

from __future__ import annotations

import html
import tempfile
import threading
from pathlib import Path

from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.results.adapter_export import WORDS, copy_export_as, lora_backbones, rewrite_problem, run_project
from qarac_gui.core.results.history import copy_export, exported_folders, human_size, list_runs
from qarac_gui.core.results.onnx_export import EXTRA, copy_with_onnx, missing_libraries
from qarac_gui.core.results.push import LAYOUTS, PushProgress, push_run
from qarac_gui.ui.form import ComboBox
from qarac_gui.ui.worker import Failure, JobRunner


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _export_as(run: Path, dest: Path, names: list[str], adapter: str, onnx: bool):
    """The chosen folders with the adapters written as `adapter`, then (when asked) as ONNX."""
    written = copy_export_as(run, dest, names, adapter)
    if not onnx:
        return written
    from qarac_gui.core.results.onnx_export import export_folders_onnx
    done, skipped = export_folders_onnx({p.name: p for p in written})
    return written, done, skipped


class ExportDialog(QDialog):
    """Copies what a run exported to a folder of the user's choice."""

    def __init__(self, runs_base: Path, current: Path | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("export_dialog")
        self.setWindowTitle("Export models")
        self.resize(760, 560)       # room for the push section under the export
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.run_combo = ComboBox()
        self.run_combo.setObjectName("export_run")
        runs = [r.path for r in list_runs(runs_base) if r.exported]
        if current is not None and (Path(current) / "export").is_dir() and Path(current) not in runs:
            runs.insert(0, Path(current))            # a run kept outside the runs folder
        for path in runs:
            self.run_combo.addItem(path.name, str(path))
        if current is not None:
            index = self.run_combo.findData(str(current))
            if index >= 0:
                self.run_combo.setCurrentIndex(index)
        self.run_combo.currentIndexChanged.connect(self._on_run_changed)
        form.addRow("Run", self.run_combo)
        row = QHBoxLayout()
        self.destination = QLineEdit()
        self.destination.setObjectName("export_destination")
        self.destination.setPlaceholderText("a new or empty folder")
        self.destination.textChanged.connect(self._update)
        row.addWidget(self.destination, 1)
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._on_browse_clicked)
        row.addWidget(browse)
        form.addRow("Destination", row)
        layout.addLayout(form)
        self.tasks_box = QVBoxLayout()
        self.models_label = QLabel("Write these models (each folder loads with plain transformers; 'full' is the "
                                   "whole multi-task model for qarac_gui):")
        self.models_label.setWordWrap(True)
        layout.addWidget(self.models_label)
        layout.addLayout(self.tasks_box)
        layout.addWidget(self._adapter_row())
        self.onnx_box = QCheckBox("Also write each task as ONNX (onnx/model.onnx beside its tokenizer, checked "
                                  "against transformers with onnxruntime)")
        self.onnx_box.setObjectName("export_onnx")
        if missing_libraries():
            self.onnx_box.setEnabled(False)
            self.onnx_box.setText(self.onnx_box.text() + f"; needs pip install '{EXTRA}'")
        layout.addWidget(self.onnx_box)
        self.summary = QLabel("")
        self.summary.setObjectName("export_summary")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        layout.addWidget(self._push_box())
        layout.addStretch(1)
        buttons = QDialogButtonBox()
        self.export_button = buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setObjectName("export_button")
        self.open_button = buttons.addButton("Open folder", QDialogButtonBox.ButtonRole.ActionRole)
        self.open_button.setVisible(False)
        close = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start_export)
        self.open_button.clicked.connect(self._on_open_clicked)
        close.clicked.connect(self.reject)
        layout.addWidget(buttons)
        self.checks: dict[str, QCheckBox] = {}
        self.jobs = JobRunner(self)
        self.jobs.finished.connect(self._on_job_finished)
        self.written: list[Path] = []
        self._push_cancel = threading.Event()
        self._push_state: PushProgress | None = None
        self._push_timer = QTimer(self)
        self._push_timer.setInterval(100)
        self._push_timer.timeout.connect(self._on_push_timer_timeout)
        self._on_run_changed()

    def run_dir(self) -> Path | None:
        data = self.run_combo.currentData()
        return Path(data) if data else None

    def _on_run_changed(self) -> None:
        for box in self.checks.values():
            box.deleteLater()
        self.checks.clear()
        run = self.run_dir()
        self.folders = exported_folders(run) if run else {}
        for name, folder in self.folders.items():
            box = QCheckBox(f"{name}  ({_size(folder) / 2**20:.1f} MiB)")
            box.setObjectName(f"export_{name}")
            box.setChecked(True)
            box.toggled.connect(self._update)
            self.tasks_box.addWidget(box)
            self.checks[name] = box
        self._show_adapter_choice(run)
        self._update()

    def chosen(self) -> list[str]:
        return [n for n, box in self.checks.items() if box.isChecked()]

    def _update(self) -> None:
        names, dest = self.chosen(), self.destination.text().strip()
        if not self.folders:
            self.summary.setText("No finished run with exported models yet: train one first.")
        elif not names:
            self.summary.setText("Choose at least one model.")
        elif not dest:
            self.summary.setText("Choose a destination folder.")
        else:
            total = sum(_size(self.folders[n]) for n in names)
            parts = [f"{n}/ ({sum(1 for p in self.folders[n].rglob('*') if p.is_file())} files)" for n in names]
            self.summary.setText(f"Will write {len(names)} folder(s), {total / 2**20:.1f} MiB, into {dest}: "
                                 f"{', '.join(parts)}. Nothing there is overwritten: the folder must be new or "
                                 "empty.")
            if self.adapter_choice():
                self.summary.setText(self.summary.text() + " The tasks on LoRA backbones are exported again from the "
                                     f"run's whole model, as {WORDS[self.adapter_choice()]}.")
        alone = not self.adapter_box.isHidden() and self.adapter_combo.currentData() == "separate"
        self.models_label.setText("Write these models (each folder loads with plain transformers, or with peft where "
                                  "it holds a LoRA adapter alone; 'full' is the whole multi-task model for qarac_gui):"
                                  if alone else "Write these models (each folder loads with plain transformers; "
                                  "'full' is the whole multi-task model for qarac_gui):")
        self.export_button.setEnabled(bool(self.folders and names and dest))
        self.push_button.setEnabled(bool(self.folders and names and self.push_repo.text().strip())
                                    and not self._push_timer.isActive())

    def _on_browse_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into")
        if folder:
            self.destination.setText(folder)

    def start_export(self) -> None:
        run, names, dest = self.run_dir(), self.chosen(), Path(self.destination.text().strip()).expanduser()
        if run is None or not names:
            return
        self.export_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        adapter = self.adapter_choice()
        if adapter:
            onnx = self.onnx_box.isChecked()
            self.summary.setText(f"Writing {len(names)} folder(s) with the adapters as {WORDS[adapter]}…")
            self.jobs.submit("export", lambda: _export_as(run, dest, names, adapter, onnx), uses_transformers=True)
        elif self.onnx_box.isChecked():
            self.summary.setText(f"Copying {len(names)} folder(s) and writing them as ONNX…")
            self.jobs.submit("export", lambda: copy_with_onnx(run, dest, names), uses_transformers=True)
        else:
            self.summary.setText(f"Copying {len(names)} folder(s)…")
            self.jobs.submit("export", lambda: copy_export(run, dest, names))

    @Slot(str, object)
    def _on_job_finished(self, key: str, result) -> None:
        if key == "push":
            self._on_push_finished(result)
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        if isinstance(result, Failure):
            self.progress.setVisible(False)
            self.summary.setText(f"<span style='color:#d04040'>Export failed: {result.message}</span>")
            self.export_button.setEnabled(True)
            return
        notes = ""
        if isinstance(result, tuple):       # copy_with_onnx: (folders, ONNX exports, why the others were not)
            result, onnx, skipped = result
            if onnx:
                notes += (f" Written as ONNX: {', '.join(onnx)} (largest difference from transformers "
                          f"{max(r.max_difference for r in onnx.values()):.1g}).")
            notes += "".join(f" {note}." for note in skipped)
        self.written = result
        self.summary.setText(f"Done: {len(result)} folder(s) written to {Path(result[0]).parent}.{notes}")
        self.open_button.setVisible(True)

    def _on_open_clicked(self) -> None:
        if self.written:
            parent = self.parent()
            if hasattr(parent, "open_folder"):
                parent.open_folder(Path(self.written[0]).parent)

    def _adapter_row(self) -> QWidget:
        """The choice for backbones with LoRA adapters: shown only for a run that trained some."""
        self.adapter_box = QWidget()
        row = QHBoxLayout(self.adapter_box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("LoRA adapters as"))
        self.adapter_combo = ComboBox()
        self.adapter_combo.setObjectName("export_adapter")
        for key, words in WORDS.items():
            self.adapter_combo.addItem(words, key)
        self.adapter_combo.setToolTip("Merged: each task folder holds plain transformers weights with its adapter "
                                      "added in; no peft needed to load it. The adapter alone: a small folder in "
                                      "peft's format (adapter_config.json and the adapter's weights, the head "
                                      "saved whole) that PeftModel.from_pretrained puts on the base model.")
        self.adapter_combo.currentIndexChanged.connect(self._update)
        row.addWidget(self.adapter_combo)
        self.adapter_note = QLabel("")
        self.adapter_note.setObjectName("export_adapter_note")
        self.adapter_note.setWordWrap(True)
        row.addWidget(self.adapter_note, 1)
        self.adapter_box.setVisible(False)
        self.run_adapter = "merged"
        return self.adapter_box

    def _show_adapter_choice(self, run: Path | None) -> None:
        project = run_project(run) if run else None
        lora = lora_backbones(project)
        self.adapter_box.setVisible(bool(lora))
        if not lora:
            return
        self.run_adapter = project.export.adapter
        self.adapter_combo.setCurrentIndex(self.adapter_combo.findData(self.run_adapter))
        problem = rewrite_problem(run)
        self.adapter_combo.setEnabled(not problem)
        self.adapter_note.setText(f"Only as the run wrote them: {problem}." if problem else
                                  f"The run wrote: {WORDS[self.run_adapter]}.")
        self.adapter_note.setToolTip(f"Backbones with LoRA adapters: {', '.join(lora)}. Tasks of other kinds than "
                                     "classification, regression, tagging and question answering (similarity, "
                                     "masked LM) are always written merged.")

    def adapter_choice(self) -> str:
        """The adapter export asked for when it differs from what the run wrote; "" to copy the run's folders."""
        if self.adapter_box.isHidden() or not self.adapter_combo.isEnabled():
            return ""
        chosen = self.adapter_combo.currentData()
        return chosen if chosen != self.run_adapter else ""

    def _push_box(self) -> QGroupBox:
        box = QGroupBox("Push to the Hub")
        form = QFormLayout(box)
        self.push_repo = QLineEdit()
        self.push_repo.setObjectName("push_repo")
        self.push_repo.setPlaceholderText("ORG/NAME (your user name or an organisation)")
        self.push_repo.textChanged.connect(self._update)
        form.addRow("Repository", self.push_repo)
        self.push_layout = ComboBox()
        self.push_layout.setObjectName("push_layout")
        for key, words in LAYOUTS.items():
            self.push_layout.addItem(words, key)
        form.addRow("Layout", self.push_layout)
        self.push_private = QCheckBox("Private: only you (or the organisation) can see it")
        self.push_private.setObjectName("push_private")
        self.push_private.setChecked(True)
        form.addRow(self.push_private)
        row = QHBoxLayout()
        self.push_button = QPushButton("Push")
        self.push_button.setObjectName("push_button")
        self.push_button.clicked.connect(self.start_push)
        self.push_cancel = QPushButton("Cancel push")
        self.push_cancel.setObjectName("push_cancel")
        self.push_cancel.setEnabled(False)
        self.push_cancel.clicked.connect(self._on_push_cancel_clicked)
        row.addWidget(self.push_button)
        row.addWidget(self.push_cancel)
        row.addStretch(1)
        form.addRow(row)
        self.push_progress = QProgressBar()
        self.push_progress.setObjectName("push_progress")
        self.push_progress.setVisible(False)
        form.addRow(self.push_progress)
        self.push_status = QLabel("Uses the Hugging Face login saved on this computer (`hf auth login`). A model card "
                                  "with the tasks, metrics, base models, data and project file goes with the models.")
        self.push_status.setObjectName("push_status")
        self.push_status.setWordWrap(True)
        self.push_status.setOpenExternalLinks(True)
        form.addRow(self.push_status)
        return box

    def start_push(self) -> None:
        run, names, repo = self.run_dir(), self.chosen(), self.push_repo.text().strip()
        if run is None or not names or not repo:
            return
        layout, private, cancel = self.push_layout.currentData(), self.push_private.isChecked(), self._push_cancel
        cancel.clear()
        self._push_state = None
        self.push_button.setEnabled(False)
        self.push_cancel.setEnabled(True)
        self.push_progress.setVisible(True)
        self.push_progress.setRange(0, 0)
        self.push_status.setText(f"Pushing {len(names)} folder(s) to {repo}…")
        self._push_timer.start()

        def track(state: PushProgress) -> None:
            self._push_state = state          # the timer reads it; an attribute swap needs no lock
        adapter = self.adapter_choice()

        def job() -> list[str]:
            if not adapter:
                return push_run(run, repo, names, layout=layout, private=private, progress=track, cancel=cancel)
            # the adapters as chosen above, written into a temporary folder and pushed from there
            with tempfile.TemporaryDirectory(prefix="qarac-push-") as tmp:
                track(PushProgress(f"Writing the models with the adapters as {WORDS[adapter]}", 0, 0, 0, 0))
                copy_export_as(run, Path(tmp) / "models", names, adapter)
                return push_run(run, repo, names, layout=layout, private=private, progress=track, cancel=cancel,
                                folders=Path(tmp) / "models")
        self.jobs.submit("push", job, uses_transformers=bool(adapter))

    def _on_push_cancel_clicked(self) -> None:
        # The folder being sent finishes (huggingface_hub sends it as one commit); nothing after it starts.
        self._push_cancel.set()
        self.push_cancel.setEnabled(False)
        self.push_status.setText("Cancelling after the folder being sent…")

    def _on_push_timer_timeout(self) -> None:
        p = self._push_state
        if p is None:
            return
        self.push_progress.setRange(0, max(1, p.files_total))
        self.push_progress.setValue(p.files_done)
        self.push_progress.setFormat(f"{p.files_done} of {p.files_total} files · {human_size(p.bytes_done)} of "
                                     f"{human_size(p.bytes_total)}")
        if not self._push_cancel.is_set():
            self.push_status.setText(p.message + "…")

    def _on_push_finished(self, result) -> None:
        self._on_push_timer_timeout()
        self._push_timer.stop()
        self.push_cancel.setEnabled(False)
        self._update()
        if isinstance(result, Failure) and self._push_cancel.is_set() and result.user_error:
            self.push_status.setText(html.escape(result.message[:1].upper() + result.message[1:]))
            return
        if isinstance(result, Failure):
            self.push_progress.setVisible(False)
            self.push_status.setText(f"<span style='color:#d04040'>Push failed: {html.escape(result.shown)}</span>")
            return
        links = ", ".join(f"<a href='{url}'>{url}</a>" for url in result)
        self.push_status.setText(f"Pushed to {links}")

    def reject(self) -> None:
        self._push_cancel.set()           # a push in progress stops after its current folder
        super().reject()
