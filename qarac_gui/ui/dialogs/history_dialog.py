"""Past runs: reopen one's charts, overlay a second one, continue a stopped one, see what each takes on disk and
delete the ones not worth keeping."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMessageBox,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.errors import UserError
from qarac_gui.core.results.history import (
    RunSummary,
    delete_run,
    folder_size,
    human_size,
    list_all_runs,
    run_folders,
)
from qarac_gui.ui.dialogs.compare_dialog import CompareDialog
from qarac_gui.ui.widgets import row_table

COLUMNS = ("Run", "Started", "Status", "Steps", "Tasks", "Best", "Size", "Folder")
SIZE_COLUMN = COLUMNS.index("Size")


class HistoryDialog(QDialog):
    """The runs of the runs folder and of every other folder runs were written into, newest first."""

    show_run = Signal(str)
    overlay_run = Signal(str)
    continue_run = Signal(str)
    run_deleted = Signal(str)

    def __init__(self, runs_base: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("history_dialog")
        self.setWindowTitle("Run history")
        self.resize(960, 420)
        self.runs_base = Path(runs_base)
        layout = QVBoxLayout(self)
        self.where = QLabel()
        self.where.setObjectName("history_where")
        layout.addWidget(self.where)
        self.table = row_table("history_table", COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)      # a long folder keeps its own name in view
        self.table.setSelectionMode(self.table.SelectionMode.ExtendedSelection)     # two, to compare them
        self.table.itemSelectionChanged.connect(self._update)
        self.table.doubleClicked.connect(lambda _: self._emit(self.show_run))
        layout.addWidget(self.table, 1)
        self.total = QLabel()
        self.total.setObjectName("history_total")
        layout.addWidget(self.total)
        buttons = QDialogButtonBox()
        self.show_button = buttons.addButton("Show charts", QDialogButtonBox.ButtonRole.ActionRole)
        self.overlay_button = buttons.addButton("Overlay on the charts", QDialogButtonBox.ButtonRole.ActionRole)
        self.continue_button = buttons.addButton("Continue this run", QDialogButtonBox.ButtonRole.ActionRole)
        self.compare_button = buttons.addButton("Compare…", QDialogButtonBox.ButtonRole.ActionRole)
        self.compare_button.setObjectName("history_compare")
        self.compare_button.clicked.connect(self.compare_selected)
        self.delete_button = buttons.addButton("Delete…", QDialogButtonBox.ButtonRole.DestructiveRole)
        self.delete_button.setObjectName("history_delete")
        self.show_button.clicked.connect(lambda: self._emit(self.show_run))
        self.overlay_button.clicked.connect(lambda: self._emit(self.overlay_run))
        self.continue_button.clicked.connect(lambda: self._emit(self.continue_run, close=True))
        self.delete_button.clicked.connect(self.delete_selected)
        buttons.addButton(QDialogButtonBox.StandardButton.Close).clicked.connect(self.reject)
        layout.addWidget(buttons)
        self.runs: list[RunSummary] = []
        self.sizes: dict[Path, int] = {}
        self.refresh()

    def refresh(self) -> None:
        """Read the run folders again and show what is there now."""
        folders = run_folders(self.runs_base)
        others = len([f for f in folders if f != self.runs_base])
        self.where.setText(f"Runs in {self.runs_base}" + (f" and {others} other folder{'s' * (others != 1)} "
                                                          "that runs were written into" if others else ""))
        self.where.setToolTip("\n".join(str(f) for f in folders))
        self.runs = list_all_runs(self.runs_base)
        self.sizes = {r.path: folder_size(r.path) for r in self.runs}
        self.table.clearSelection()
        self.table.setRowCount(len(self.runs))
        for row, r in enumerate(self.runs):
            best = "" if r.best_value is None else f"{r.monitored} {r.best_value:.4g}"
            values = (r.name, time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)), r.status,
                      f"{r.step} / {r.total_steps}", ", ".join(r.tasks), best, human_size(self.sizes[r.path]),
                      _shown(r.path.parent))
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                if col == SIZE_COLUMN:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    item.setToolTip(f"{self.sizes[r.path]:,} bytes")
                elif col in (0, len(COLUMNS) - 1):
                    item.setToolTip(str(r.path))
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.total.setText(f"{len(self.runs)} run{'s' * (len(self.runs) != 1)}, "
                           f"{human_size(sum(self.sizes.values()))} in all")
        if self.runs:
            self.table.selectRow(0)
        self._update()

    def selected(self) -> RunSummary | None:
        """The one selected run; None when none or several are."""
        rows = self.selected_runs()
        return rows[0] if len(rows) == 1 else None

    def selected_runs(self) -> list[RunSummary]:
        return [self.runs[i.row()] for i in sorted(self.table.selectionModel().selectedRows(), key=lambda i: i.row())]

    def compare_selected(self) -> CompareDialog | None:
        """The two selected runs side by side (the older one as A)."""
        runs = self.selected_runs()
        if len(runs) != 2:
            return None
        older, newer = sorted(runs, key=lambda r: r.started)
        try:
            dialog = CompareDialog(older.path, newer.path, self)
        except UserError as e:
            QMessageBox.warning(self, "Cannot compare", str(e))
            return None
        dialog.show()
        return dialog

    def delete_selected(self) -> None:
        """Ask, then delete the selected run's folder; a running run is never deleted."""
        run = self.selected()
        if run is None or run.status == "running":
            return
        answer = QMessageBox.question(
            self, "Delete run",
            f"Delete the run {run.name} and everything in its folder ({human_size(self.sizes[run.path])}): "
            f"its checkpoints, charts and exported models?\n\n{run.path}\n\nThis cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            delete_run(run.path)
        except UserError as e:
            QMessageBox.warning(self, "Run not deleted", str(e))
        else:
            self.run_deleted.emit(str(run.path))
        self.refresh()

    def _update(self) -> None:
        run = self.selected()
        self.show_button.setEnabled(run is not None)
        self.overlay_button.setEnabled(run is not None)
        self.continue_button.setEnabled(run is not None and run.resumable)
        self.continue_button.setToolTip("" if run is None or run.resumable else
                                        "Only a stopped run with a checkpoint and no export can continue")
        self.compare_button.setEnabled(len(self.selected_runs()) == 2)
        self.compare_button.setToolTip("Select two runs (Ctrl+click) to see how their settings and results differ")
        running = run is not None and run.status == "running"
        self.delete_button.setEnabled(run is not None and not running)
        self.delete_button.setToolTip("A run that is training cannot be deleted; stop it first" if running else
                                      "Delete the selected run's folder, after asking")

    def _emit(self, signal, close: bool = False) -> None:
        run = self.selected()
        if run is not None:
            signal.emit(str(run.path))
            if close:
                self.accept()


def _shown(folder: Path) -> str:
    """A folder as a person reads it: under the home folder, from ~."""
    try:
        return str(Path("~") / folder.relative_to(Path.home()))
    except (ValueError, RuntimeError):
        return str(folder)
