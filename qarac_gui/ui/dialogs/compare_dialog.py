"""Two runs side by side: where each ended, their final metrics, and the settings that differ, highlighted."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QLabel, QTableWidgetItem, QVBoxLayout, QWidget

from qarac_gui.core.results.compare import MISSING, Comparison, compare_runs
from qarac_gui.ui.widgets import row_table

CHANGED = QColor(255, 200, 60, 90)          # a soft amber that reads on light and dark palettes


def _value(value) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class CompareDialog(QDialog):
    """Run A and run B: steps, final metrics (with B - A), and every setting, the differing ones first and marked."""

    def __init__(self, a: Path, b: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compare_dialog")
        self.setWindowTitle(f"Compare {Path(a).name} and {Path(b).name}")
        self.resize(900, 560)
        self.comparison: Comparison = compare_runs(a, b)
        c = self.comparison
        layout = QVBoxLayout(self)
        self.summary = QLabel(f"A: {c.runs[0].name} — {c.steps[0]}\nB: {c.runs[1].name} — {c.steps[1]}")
        self.summary.setObjectName("compare_summary")
        layout.addWidget(self.summary)
        self.metrics = row_table("compare_metrics", ("Final metric", "A", "B", "B - A"))
        self.metrics.setRowCount(len(c.metrics))
        for row, (name, (x, y)) in enumerate(c.metrics.items()):
            delta = "" if x is None or y is None else f"{y - x:+.4g}"
            for col, text in enumerate((name, _value(x), _value(y), delta)):
                self.metrics.setItem(row, col, QTableWidgetItem(text))
        self.metrics.resizeColumnsToContents()
        self.metrics.horizontalHeader().setStretchLastSection(True)
        self.metrics.verticalHeader().hide()
        self.metrics.setVisible(bool(c.metrics))
        layout.addWidget(self.metrics, 2)
        count = len(c.differing)
        self.diff_note = QLabel(f"{count} setting{'s' * (count != 1)} differ (marked)" if count else
                                "The two projects have the same settings.")
        self.diff_note.setObjectName("compare_note")
        layout.addWidget(self.diff_note)
        self.show_all = QCheckBox("Show the settings that are the same too")
        self.show_all.setObjectName("compare_show_all")
        self.show_all.toggled.connect(self._fill_settings)
        layout.addWidget(self.show_all)
        self.settings = row_table("compare_settings", ("Setting", "A", "B"))
        self.settings.horizontalHeader().setStretchLastSection(True)
        self.settings.verticalHeader().hide()
        layout.addWidget(self.settings, 3)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._fill_settings()

    def _fill_settings(self) -> None:
        c = self.comparison
        keys = c.differing + ([k for k in c.settings if k not in c.differing] if self.show_all.isChecked() else [])
        self.settings.setRowCount(len(keys))
        bold = QFont()
        bold.setBold(True)
        for row, key in enumerate(keys):
            changed = key in c.differing
            for col, text in enumerate((key, *map(_value, c.settings[key]))):
                item = QTableWidgetItem(text)
                if changed:
                    item.setBackground(QBrush(CHANGED))
                    item.setFont(bold)
                self.settings.setItem(row, col, item)
        self.settings.resizeColumnsToContents()

    def shown_settings(self) -> list[tuple[str, bool]]:
        """(key, marked as differing) of each row, top to bottom."""
        return [(self.settings.item(r, 0).text(), self.settings.item(r, 0).font().bold())
                for r in range(self.settings.rowCount())]
