"""Bar charts beside the live ones: the token lengths of a task's rows, and what the mixing plan gives each task."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from qarac_gui.ui.charts import LiveChart, color_of


class LengthHistogram(LiveChart):
    """Tokens per sampled training row of one task, with the max-length cut marked: what truncation costs."""

    def __init__(self, parent=None) -> None:
        super().__init__("Tokens per row", "rows", parent=parent)
        self.setObjectName("length_histogram")
        item = self.getPlotItem()
        item.setLabel("bottom", "tokens")
        item.setTitle("")
        self.legend.hide()
        self.setMouseEnabled(x=False, y=False)
        self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush=pg.mkBrush("#3b82f6"), pen=pg.mkPen(None))
        self.cut = pg.InfiniteLine(angle=90, pen=pg.mkPen("#d04040", width=2, style=Qt.PenStyle.DashLine))
        self.addItem(self.bars)
        self.addItem(self.cut)
        self.counts: list[int] = []
        self._show_if_empty()

    @property
    def empty(self) -> bool:
        return not getattr(self, "counts", None)

    def show_lengths(self, lengths: list[int], max_length: int) -> None:
        self.setVisible(bool(lengths))
        if not lengths:
            self.counts = []
            return
        low, high = min(lengths), max(max(lengths), max_length)
        bins = min(30, high - low + 1)
        counts, edges = np.histogram(lengths, bins=bins, range=(low, high + 1))
        self.counts = counts.tolist()
        self.bars.setOpts(x0=edges[:-1], x1=edges[1:], height=counts)
        self.cut.setValue(max_length + 0.5)       # rows longer than max_length lie right of the line
        self._show_if_empty()
        self.getPlotItem().autoRange()


class MixChart(LiveChart):
    """Before Start: how many passes over its training data each task gets from the plan, one bar a task."""

    def __init__(self, parent=None) -> None:
        super().__init__("Passes over each task's data", "passes", parent=parent,
                         empty_text="Shown once every task's data has been read")
        self.setObjectName("mix_preview")
        self.legend.hide()
        self.setMouseEnabled(x=False, y=False)
        item = self.getPlotItem()
        item.setLabel("bottom", "")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.6, brushes=[], pen=pg.mkPen(None))
        self.addItem(self.bars)
        self.passes: dict[str, float] = {}
        self._show_if_empty()

    @property
    def empty(self) -> bool:
        return not getattr(self, "passes", None)

    def show_passes(self, passes: dict[str, float]) -> None:
        self.passes = dict(passes)
        names = list(passes)
        self.bars.setOpts(x=list(range(len(names))), height=[passes[n] for n in names], width=0.6,
                          brushes=[pg.mkBrush(color_of(i)) for i in range(len(names))])
        self.getPlotItem().getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names)]])
        self._show_if_empty()
        self.getPlotItem().enableAutoRange()
