"""Past runs: reopen one's charts, overlay a second one, continue a stopped one, open its folder."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.results.history import RunSummary, list_runs
from qarac_gui.ui.widgets import row_table

COLUMNS = ("Run", "Started", "Status", "Steps", "Tasks", "Best")


class HistoryDialog(QDialog):
    """The runs kept in the runs folder, newest first."""

    show_run = Signal(str)
    overlay_run = Signal(str)
    continue_run = Signal(str)

    def __init__(self, runs_base: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("history_dialog")
        self.setWindowTitle("Run history")
        self.resize(860, 420)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Runs in {runs_base}"))
        self.runs: list[RunSummary] = list_runs(runs_base)
        self.table = row_table("history_table", COLUMNS, len(self.runs))
        for row, r in enumerate(self.runs):
            best = "" if r.best_value is None else f"{r.monitored} {r.best_value:.4g}"
            values = (r.name, time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)), r.status,
                      f"{r.step} / {r.total_steps}", ", ".join(r.tasks), best)
            for col, value in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        self.table.itemSelectionChanged.connect(self._update)
        self.table.doubleClicked.connect(lambda _: self._emit(self.show_run))
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox()
        self.show_button = buttons.addButton("Show charts", QDialogButtonBox.ButtonRole.ActionRole)
        self.overlay_button = buttons.addButton("Overlay on the charts", QDialogButtonBox.ButtonRole.ActionRole)
        self.continue_button = buttons.addButton("Continue this run", QDialogButtonBox.ButtonRole.ActionRole)
        self.show_button.clicked.connect(lambda: self._emit(self.show_run))
        self.overlay_button.clicked.connect(lambda: self._emit(self.overlay_run))
        self.continue_button.clicked.connect(lambda: self._emit(self.continue_run, close=True))
        buttons.addButton(QDialogButtonBox.StandardButton.Close).clicked.connect(self.reject)
        layout.addWidget(buttons)
        if self.runs:
            self.table.selectRow(0)
        self._update()

    def selected(self) -> RunSummary | None:
        rows = self.table.selectionModel().selectedRows()
        return self.runs[rows[0].row()] if rows else None

    def _update(self) -> None:
        run = self.selected()
        self.show_button.setEnabled(run is not None)
        self.overlay_button.setEnabled(run is not None)
        self.continue_button.setEnabled(run is not None and run.resumable)
        self.continue_button.setToolTip("" if run is None or run.resumable else
                                        "Only a stopped run with a checkpoint and no export can continue")

    def _emit(self, signal, close: bool = False) -> None:
        run = self.selected()
        if run is not None:
            signal.emit(str(run.path))
            if close:
                self.accept()
