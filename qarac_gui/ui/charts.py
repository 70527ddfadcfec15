"""Live charts: series buffered in growable arrays, drawn on a timer, fast for long runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

SMOOTHING = 0.9                 # EMA factor of the smoothed loss curves, like TensorBoard's default slider

pg.setConfigOptions(antialias=False)


def color_of(index: int) -> pg.QtGui.QColor:
    return pg.intColor(index, hues=9, values=1, maxValue=220, minValue=150, sat=200)


class Series:
    """x and y in arrays that double when full: appending is O(1) and setData gets views, not copies."""

    def __init__(self) -> None:
        self._x = np.empty(256)
        self._y = np.empty(256)
        self.size = 0

    def append(self, x: float, y: float) -> None:
        if self.size == len(self._x):
            self._x = np.concatenate([self._x, np.empty(len(self._x))])
            self._y = np.concatenate([self._y, np.empty(len(self._y))])
        self._x[self.size], self._y[self.size] = x, y
        self.size += 1

    def set(self, xs, ys) -> None:
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        self.size = len(xs)
        self._x = np.empty(max(256, self.size))
        self._y = np.empty(max(256, self.size))
        self._x[:self.size], self._y[:self.size] = xs, ys

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.size]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.size]


class LiveChart(pg.PlotWidget):
    """One quantity over steps; each named series is one curve. Call flush() from a timer to redraw."""

    def __init__(self, title: str, y_label: str, log_y: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName(f"chart_{title.lower().replace(' ', '_')}")
        self.title = title
        item = self.getPlotItem()
        self._apply_palette()
        item.setLabel("bottom", "step")
        item.setLabel("left", y_label)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setLogMode(y=log_y)
        item.setDownsampling(auto=True, mode="peak")
        item.setClipToView(True)
        self.legend = item.addLegend(offset=(-10, 10))
        self.series: dict[str, Series] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._dirty: set[str] = set()

    def _apply_palette(self) -> None:
        """Follow the system palette, light or dark, instead of pyqtgraph's fixed black background."""
        palette = QApplication.palette()
        text = palette.color(QPalette.ColorRole.Text)
        self.setBackground(palette.color(QPalette.ColorRole.Base))
        item = self.getPlotItem()
        item.setTitle(self.title, color=text.name())
        for side in ("left", "bottom"):
            item.getAxis(side).setPen(text)
            item.getAxis(side).setTextPen(text)

    def changeEvent(self, event) -> None:
        # Qt sends palette events during construction too, before the plot exists.
        ready = hasattr(self, "title")
        if ready and event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._apply_palette()
        super().changeEvent(event)

    def add_series(self, name: str, color, *, width: float = 1, dashed: bool = False, symbol: str | None = None,
                   legend: bool = True, alpha: int = 255) -> None:
        if name in self.series:
            return
        color = pg.mkColor(color)
        color.setAlpha(alpha)
        pen = pg.mkPen(color, width=width, style=Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
        curve = self.getPlotItem().plot(
            name=name if legend else None, pen=pen, symbol=symbol, symbolSize=6,
            symbolBrush=color if symbol else None, symbolPen=None)
        self.series[name] = Series()
        self.curves[name] = curve

    def append(self, name: str, x: float, y: float) -> None:
        if name not in self.series:
            self.add_series(name, color_of(len(self.series)))
        self.series[name].append(x, y)
        self._dirty.add(name)

    def set_data(self, name: str, xs, ys) -> None:
        if name not in self.series:
            self.add_series(name, color_of(len(self.series)))
        self.series[name].set(xs, ys)
        self._dirty.add(name)

    def set_visible(self, name: str, visible: bool) -> None:
        if name in self.curves:
            self.curves[name].setVisible(visible)

    def flush(self) -> None:
        for name in self._dirty:
            s = self.series[name]
            self.curves[name].setData(s.x, s.y)
        self._dirty.clear()

    def clear_all(self) -> None:
        for curve in self.curves.values():
            self.getPlotItem().removeItem(curve)
        self.legend.clear()
        self.series.clear()
        self.curves.clear()
        self._dirty.clear()

    def export_image(self, path: Path) -> None:
        """PNG or SVG by the file's extension."""
        self.flush()
        path = Path(path)
        if path.suffix.lower() == ".svg":
            # pyqtgraph's SVGExporter cannot parse the path data this Qt writes (pyqtgraph issue 3495): render
            # the chart through Qt's own SVG generator instead.
            from PySide6.QtCore import QRect, QSize
            from PySide6.QtGui import QPainter
            from PySide6.QtSvg import QSvgGenerator
            generator = QSvgGenerator()
            generator.setFileName(str(path))
            generator.setSize(QSize(self.width(), self.height()))
            generator.setViewBox(QRect(0, 0, self.width(), self.height()))
            generator.setTitle(self.getPlotItem().titleLabel.text)
            painter = QPainter(generator)
            try:
                self.render(painter)
            finally:
                painter.end()
            return
        from pyqtgraph import exporters
        exporter = exporters.ImageExporter(self.getPlotItem())
        exporter.parameters()["width"] = max(800, int(self.width() * self.devicePixelRatioF()))
        exporter.export(str(path))


class LossChart(LiveChart):
    """Per-task training loss: the raw values thin and faint, an exponential moving average over them."""

    def __init__(self, parent=None) -> None:
        super().__init__("Training loss", "loss", parent=parent)
        self._ema: dict[str, float] = {}
        self._visible: dict[str, bool] = {}

    def add_task(self, task: str, index: int) -> None:
        color = color_of(index)
        self.add_series(f"{task} (raw)", color, alpha=90, legend=False)
        self.add_series(task, color, width=2)

    def append_loss(self, task: str, step: float, loss: float) -> None:
        if task not in self.series:
            self.add_task(task, len(self.series) // 2)
        self.append(f"{task} (raw)", step, loss)
        previous = self._ema.get(task)
        smooth = loss if previous is None else SMOOTHING * previous + (1 - SMOOTHING) * loss
        self._ema[task] = smooth
        self.append(task, step, smooth)

    def set_task_visible(self, task: str, visible: bool) -> None:
        self._visible[task] = visible
        self.set_visible(task, visible)
        self.set_visible(f"{task} (raw)", visible)

    def tasks(self) -> list[str]:
        return [n for n in self.series if not n.endswith(" (raw)")]

    def clear_all(self) -> None:
        super().clear_all()
        self._ema.clear()


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
        self.getPlotItem().autoRange()
