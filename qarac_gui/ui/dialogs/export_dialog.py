"""Export: pick a finished run, the tasks, and a destination; see what will be written; copy it; open it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.results.history import copy_export, exported_folders, list_runs
from qarac_gui.ui.form import ComboBox
from qarac_gui.ui.worker import Failure, JobRunner


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class ExportDialog(QDialog):
    """Copies what a run exported to a folder of the user's choice."""

    def __init__(self, runs_base: Path, current: Path | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("export_dialog")
        self.setWindowTitle("Export models")
        self.resize(620, 420)
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
        layout.addWidget(QLabel("Write these models (each folder loads with plain transformers; 'full' is the "
                                "whole multi-task model for qarac_gui):"))
        layout.addLayout(self.tasks_box)
        self.summary = QLabel("")
        self.summary.setObjectName("export_summary")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
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
        self.export_button.setEnabled(bool(self.folders and names and dest))

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
        self.summary.setText(f"Copying {len(names)} folder(s)…")
        self.jobs.submit("export", lambda: copy_export(run, dest, names))

    @Slot(str, object)
    def _on_job_finished(self, key: str, result) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        if isinstance(result, Failure):
            self.progress.setVisible(False)
            self.summary.setText(f"<span style='color:#d04040'>Export failed: {result.message}</span>")
            self.export_button.setEnabled(True)
            return
        self.written = result
        self.summary.setText(f"Done: {len(result)} folder(s) written to {Path(result[0]).parent}.")
        self.open_button.setVisible(True)

    def _on_open_clicked(self) -> None:
        if self.written:
            parent = self.parent()
            if hasattr(parent, "open_folder"):
                parent.open_folder(Path(self.written[0]).parent)
