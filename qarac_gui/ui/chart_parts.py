"""The parts of a chart around its plot: value axes whose ticks read plainly, and one-row legends."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt


def tick_strings(values: list[float], spacing: float) -> list[str]:
    """Ticks as the numbers they are: 0.0005, 0.5, 1500, 1e-05, never a scaled "500" with a unit prefix."""
    if not values or not spacing > 0:
        return [f"{v:g}" for v in values]
    biggest = max(abs(v) for v in values)
    if biggest >= 1e6 or biggest < 1e-3:
        # too many zeros to write out: as many significant digits as tell neighbouring ticks apart
        digits = max(1, math.ceil(math.log10(max(biggest, spacing) / spacing)) + 1)
        return ["0" if abs(v) < spacing * 1e-6 else f"{v:.{digits}g}" for v in values]
    decimals = next(d for d in range(13) if abs(round(spacing, d) - spacing) <= spacing * 1e-6 or d == 12)
    return [f"{0.0 if abs(v) < spacing * 1e-6 else v:.{decimals}f}" for v in values]


def log_tick_strings(exponents: list[float]) -> list[str]:
    """Log-axis ticks (pyqtgraph passes their base-10 exponents) as the values: 1e-05, 0.0002, 1."""
    return [f"{10.0 ** e:.3g}" for e in exponents]


def log_labelled(exponents: list[float], decade_px: float, text_px: float) -> list[bool]:
    """Which log-axis ticks get a label, so that labels never pile up: the decades always; between them 2 and 5
    when a decade is tall enough for three labels, every one of 2..9 when even 8 and 9 stand apart."""
    room = 1.25 * text_px
    if decade_px * math.log10(10 / 9) >= room:
        shown = set(range(1, 10))
    elif decade_px * math.log10(2) >= room:
        shown = {1, 2, 5}
    else:
        shown = {1}
    return [round(10 ** (e - math.floor(e + 1e-9))) in shown for e in exponents]


class ValueAxis(pg.AxisItem):
    """An axis that writes the data's own numbers, in log mode too."""

    def __init__(self, orientation: str, whole: bool = False, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)
        self.whole = whole          # only whole numbers have ticks (steps): no step 2.5

    def tickSpacing(self, minVal, maxVal, size):
        levels = super().tickSpacing(minVal, maxVal, size)
        if not self.whole or self.logMode:
            return levels
        return [(spacing, offset) for spacing, offset in levels if spacing >= 1] or [(1.0, 0.0)]

    def tickStrings(self, values, scale, spacing):
        if self.logMode:
            return self.logTickStrings(values, scale, spacing)
        return tick_strings([v * scale for v in values], spacing * scale)

    def logTickValues(self, minVal, maxVal, size, stdTicks):
        self._decade_px = size / max(maxVal - minVal, 1e-12)       # for the labels, drawn next
        return super().logTickValues(minVal, maxVal, size, stdTicks)

    def logTickStrings(self, values, scale, spacing):
        from PySide6.QtGui import QFontMetricsF
        strings = log_tick_strings(list(values))
        text_px = QFontMetricsF(self.style["tickFont"] or self.font()).height() if self.orientation in (
            "left", "right") else QFontMetricsF(self.style["tickFont"] or self.font()).horizontalAdvance("0.0005")
        shown = log_labelled(list(values), getattr(self, "_decade_px", float("inf")), text_px)
        # None, as pyqtgraph marks a tick out of view: the tick and its grid line stay, its label goes
        return [text if keep else None for text, keep in zip(strings, shown)]


class _Sample(pg.ItemSample):
    """A legend sample that only shows the line: tasks are shown and hidden with the panel's check boxes."""

    def mouseClickEvent(self, event) -> None:
        event.ignore()


class LegendRow(pg.LegendItem):
    """The legend as a row of the plot's own layout, under the axis: it takes its room from the plot area, so it
    can never cover a curve. Entries wrap into as many columns as the width allows."""

    def __init__(self, **kwargs) -> None:
        super().__init__(frame=False, horSpacing=8, labelTextSize="8pt", **kwargs)
        self.columns = 1

    def updateSize(self) -> None:
        # the plot's layout places and sizes the legend; only tell it that the wanted size changed
        self.updateGeometry()

    def mouseDragEvent(self, event) -> None:
        event.ignore()          # it stays in its row

    def entry_width(self) -> float:
        # the text's own width: the label's geometry is stretched to its column
        return max((20 + label.item.boundingRect().width() + 2 * self.layout.horizontalSpacing()
                    for _, label in self.items), default=0.0)

    def fit(self, width: float) -> None:
        """Lay the entries out in as many columns as `width` holds."""
        columns = max(1, min(len(self.items), int(width // max(self.entry_width(), 1.0))))
        if columns == self.columns and self.layout.count() == 2 * len(self.items):
            return
        self.columns = self.columnCount = columns
        for i in range(self.layout.count() - 1, -1, -1):
            self.layout.removeAt(i)
        for i, (sample, label) in enumerate(self.items):
            row, col = divmod(i, columns)
            self.layout.addItem(sample, row, 2 * col, alignment=Qt.AlignmentFlag.AlignVCenter)
            self.layout.addItem(label, row, 2 * col + 1)
        self.updateGeometry()

    def _addItemToLayout(self, sample, label) -> None:
        row, col = divmod(len(self.items) - 1, self.columns)
        self.layout.addItem(sample, row, 2 * col, alignment=Qt.AlignmentFlag.AlignVCenter)
        self.layout.addItem(label, row, 2 * col + 1)
