"""Live charts: series buffered in growable arrays, drawn on a timer, fast for long runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QLabel, QSizePolicy

from qarac_gui.ui.chart_parts import LegendRow, ValueAxis, _Sample
from qarac_gui.ui.chart_series import DETAIL, LONG, Envelope, Series

SMOOTHING = 0.6                 # weight of the past in the smoothed loss: enough to calm the noise, little lag
SPARSE = 30                     # a series with fewer points in view than this marks each point
LEGEND_ROW = 24                 # pixels a row of legend entries takes
TITLE_AND_AXIS = 75             # pixels the title and the step axis take
RAW_ALPHA = 150                 # the raw loss under its smoothed curve: fainter, still plain to see
AUTO_DOWNSAMPLE = 2.0

pg.setConfigOptions(antialias=False)


# Tableau's ten: neighbours differ in hue and lightness, so the first tasks never look alike (evenly spaced hues
# made the first two red and orange)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def color_of(index: int) -> pg.QtGui.QColor:
    return pg.mkColor(PALETTE[index % len(PALETTE)])


def settle_range(view: pg.ViewBox) -> None:
    """Let a view that follows its data take its new range now, not when it paints.

    pyqtgraph fits the range lazily, at paint time; a new range re-clips and re-samples the curves, whose new
    bounds ask for another fit and another paint, and so on: two to four paints a frame. Fitting here until it
    holds leaves one."""
    for _ in range(6):
        if not getattr(view, "_autoRangeNeedsUpdate", True):
            return
        view.prepareForPaint()


class LiveChart(pg.PlotWidget):
    """One quantity over steps; each named series is one curve. Call flush() from a timer to redraw."""

    log_y_changed = Signal(bool)

    def __init__(self, title: str, y_label: str, log_y: bool = False, parent=None,
                 empty_text: str = "Shown once a run starts") -> None:
        super().__init__(parent, axisItems={"left": ValueAxis("left"), "bottom": ValueAxis("bottom", whole=True)})
        self.setObjectName(f"chart_{title.lower().replace(' ', '_')}")
        self.title = title
        # An empty chart says why instead of showing the made-up ticks of an empty axis (0 to 1, or 2 to 9 in log).
        self.empty_label = QLabel(empty_text, self)
        self.empty_label.setObjectName("empty_chart")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        item = self.getPlotItem()
        for side in ("top", "right"):
            # hidden, yet on every range change they would set their label's HTML and lay themselves out again
            item.getAxis(side).enableAutoSIPrefix(False)
        self.legend = LegendRow(sampleType=self._sample_type())
        item.legend = self.legend               # PlotItem.plot(name=...) adds its entries here
        item.layout.addItem(self.legend, 4, 1)  # below the step axis, outside the plot area
        self.legend.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)   # as wide as its entries
        item.layout.setAlignment(self.legend, Qt.AlignmentFlag.AlignHCenter)
        self._apply_palette()
        item.setLabel("bottom", "step")
        item.setLabel("left", y_label)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setDownsampling(auto=True, mode="peak")
        item.setClipToView(True)
        self.series: dict[str, Series] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        # Curves and legend entries are made when the chart is next flushed, not when a series is added: a run's
        # start adds a dozen curves to several charts (about 1 ms each), and the charts are flushed in turns.
        self._unbuilt: dict[str, dict] = {}     # name -> how to make its curve
        self._legend_later: list[tuple] = []     # (color, name) entries added with their curves
        self._auto_symbols: dict[str, bool] = {}     # name -> marked now; only series that mark sparse points
        self._dirty: set[str] = set()
        self._shown_empty: bool | None = None
        self._envelopes: dict[str, Envelope] = {}
        self._fed: dict[str, tuple[int, int] | None] = {}   # a long series' raw slice drawn; None: its envelope
        self._flushing = False
        self.markers: list[pg.InfiniteLine] = []     # vertical lines at steps where something happened
        item.setLogMode(y=log_y)
        item.ctrl.logYCheck.toggled.connect(self._on_log_y_toggled)     # the context menu's "Log Y" too
        item.getViewBox().sigXRangeChanged.connect(self._on_view_x_range_changed)
        self._show_legend_if_useful()
        self._show_if_empty()

    @property
    def empty(self) -> bool:
        return not any(s.size for s in self.series.values())

    def _show_if_empty(self) -> None:
        empty = self.empty
        if empty == self._shown_empty:
            return                  # setStyle lays the axes out again: a flush would pay it on every frame
        self._shown_empty = empty
        self.empty_label.setVisible(empty)
        for side in ("left", "bottom"):
            self.getPlotItem().getAxis(side).setStyle(showValues=not empty)
        # laid out now, not on the event loop's next turn: the plot's new size then comes before the range is
        # settled and the chart painted, instead of a paint, a layout and more paints after it
        self.getPlotItem().layout.activate()

    def _sample_type(self) -> type:
        return pg.ItemSample

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
        self.legend.setLabelTextColor(text)

    def changeEvent(self, event) -> None:
        # Qt sends palette events during construction too, before the plot exists.
        ready = hasattr(self, "title")
        if ready and event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._apply_palette()
        super().changeEvent(event)

    def resizeEvent(self, event) -> None:
        # Qt resizes during construction, and pyqtgraph's close() drops the plot before its last resize
        if hasattr(self, "legend") and self.getPlotItem() is not None:
            self._show_legend_if_useful()   # first: the legend's width bounds how narrow the plot may be laid out
        super().resizeEvent(event)
        if hasattr(self, "empty_label"):
            self.empty_label.setGeometry(0, 0, self.width(), self.height())

    def _fit_legend(self) -> None:
        # from the widget's width: the plot's own layout only catches up with a resize later
        self.legend.fit(self.width() - self.getPlotItem().getAxis("left").width() - 20)

    def _show_legend_if_useful(self) -> None:
        # One entry repeats the title, none would leave an empty row, and a legend that leaves the curves less
        # than half the chart squeezes them to a strip (the panel's coloured task boxes still name the colours).
        self._fit_legend()
        rows = math.ceil(len(self.legend.items) / self.legend.columns)
        useful = len(self.legend.items) > 1 and rows * LEGEND_ROW <= self.height() / 2 - TITLE_AND_AXIS
        if useful != self.legend.isVisible():
            self.legend.setVisible(useful)
            self.legend.setMaximumHeight(1e6 if useful else 0)

    @property
    def log_y(self) -> bool:
        return self.getPlotItem().ctrl.logYCheck.isChecked()

    def set_log_y(self, on: bool) -> None:
        self.getPlotItem().setLogMode(y=on)

    def _on_log_y_toggled(self, on: bool) -> None:
        self._dirty.update(self.series)               # which points can be drawn depends on the scale
        self.flush()
        self.getPlotItem().enableAutoRange(y=True)    # a range in the other scale means nothing in this one
        self.log_y_changed.emit(on)

    def add_series(self, name: str, color, *, width: float = 1, dashed: bool = False, symbol: str | None = None,
                   legend: bool = True, alpha: int = 255, mark_sparse: bool = True) -> None:
        """A curve. `symbol` marks every point; otherwise, with `mark_sparse`, points are marked while few are in
        view, so that a run's first minutes and short runs show something."""
        if name in self.series:
            return
        color = pg.mkColor(color)
        color.setAlpha(alpha)
        pen = pg.mkPen(color, width=width, style=Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)
        self._unbuilt[name] = {"pen": pen, "brush": color, "symbol": symbol, "legend": legend, "visible": True}
        self.series[name] = Series()
        if symbol is None and mark_sparse:
            self._auto_symbols[name] = False

    def add_legend_entry(self, name: str, color) -> None:
        """A legend entry of its own (a line in `color`), made with the curves."""
        self._legend_later.append((name, color))

    def _build(self, most: int | None = None) -> None:
        """Make the curves and legend entries added since the last flush: `most` curves, and the legend entries
        once every curve is made."""
        if not (self._unbuilt or self._legend_later):
            return
        names = list(self._unbuilt)[:most]
        for name in names:
            how = self._unbuilt.pop(name)
            curve = self.getPlotItem().plot(name=name if how["legend"] else None, pen=how["pen"],
                                            symbol=how["symbol"], symbolSize=6, symbolBrush=how["brush"],
                                            symbolPen=None)
            # pyqtgraph's auto downsampling keeps 5 points a pixel by default (10 vertices with "peak"): a min and
            # a max every half pixel draw the same band at less than half the painting cost; 1 leaves gaps
            curve.opts["autoDownsampleFactor"] = AUTO_DOWNSAMPLE
            curve.setVisible(how["visible"])
            self._curves[name] = curve
        if self._unbuilt:
            return
        entries, self._legend_later = self._legend_later, []
        for name, color in entries:
            self.legend.addItem(pg.PlotDataItem(pen=pg.mkPen(color, width=2)), name)
        self._show_legend_if_useful()

    @property
    def curves(self) -> dict[str, pg.PlotDataItem]:
        """Each series' curve, made now if it was not yet."""
        self._build()
        return self._curves

    def set_pen(self, name: str, color, *, width: float = 1, alpha: int = 255) -> None:
        color = pg.mkColor(color)
        color.setAlpha(alpha)
        if name in self._unbuilt:
            self._unbuilt[name].update(pen=pg.mkPen(color, width=width), brush=color)
            return
        self._curves[name].setPen(pg.mkPen(color, width=width))
        self._curves[name].setSymbolBrush(color)

    def append(self, name: str, x: float, y: float) -> None:
        if name not in self.series:
            self.add_series(name, color_of(len(self.series)))
        self.series[name].append(x, y)
        self._dirty.add(name)

    def set_data(self, name: str, xs, ys) -> None:
        if name not in self.series:
            self.add_series(name, color_of(len(self.series)))
        self.series[name].set(xs, ys)
        self._envelopes.pop(name, None)
        self._dirty.add(name)

    def set_visible(self, name: str, visible: bool) -> None:
        if name in self._unbuilt:
            self._unbuilt[name]["visible"] = visible
        elif name in self._curves:
            self._curves[name].setVisible(visible)

    def drawable(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The points the axis can show: finite ones, and in log mode only values above 0 (pyqtgraph warns on a
        curve whose points are all gone, and a gap tells no more than the points left out)."""
        good = self._good(ys)
        return (xs, ys) if good.all() else (xs[good], ys[good])

    def _good(self, ys: np.ndarray) -> np.ndarray:
        return ys > 0 if self.log_y else np.isfinite(ys)

    def _in_view(self, s: Series) -> tuple[int, int] | None:
        """The raw points of a long series inside a zoomed-in x range, if few enough to draw as they are."""
        view = self.getPlotItem().getViewBox()
        if view.autoRangeEnabled()[0]:
            return None
        low, high = view.viewRange()[0]
        first, last = np.searchsorted(s.x, low), np.searchsorted(s.x, high, side="right")
        return (int(first), int(last)) if last - first <= DETAIL else None

    def _points(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        s = self.series[name]
        if s.size <= LONG:
            self._envelopes.pop(name, None)
            self._fed.pop(name, None)
            return self.drawable(s.x, s.y)
        shown = self._in_view(s)
        if shown is not None:
            # a view's width of points either side: panning redraws only once it leaves them
            first, last = shown
            first, last = max(0, 2 * first - last - 1), min(s.size, 2 * last - first + 1)
            self._fed[name] = (first, last)
            return self.drawable(s.x[first:last], s.y[first:last])
        self._fed[name] = None
        envelope = self._envelopes.get(name)
        if envelope is None or envelope.log_y != self.log_y:
            envelope = self._envelopes[name] = Envelope(self.log_y)
        envelope.update(s, self._good)
        tail_x, tail_y = self.drawable(s.x[envelope.done:], s.y[envelope.done:])
        return np.concatenate([envelope.points.x, tail_x]), np.concatenate([envelope.points.y, tail_y])

    def flush(self, most_new: int | None = None) -> None:
        """Draw the points that came in; with `most_new`, make at most that many new curves (about 1 ms each), and
        leave the rest, and their points, for the next flush."""
        self._build(most_new)
        dirty = {name for name in self._dirty if name in self._curves}
        self._dirty -= dirty
        self._flushing = True
        try:
            for name in dirty:
                self._curves[name].setData(*self._points(name))
        finally:
            self._flushing = False
        if dirty:
            self._update_symbols(dirty)
            self._show_if_empty()
        settle_range(self.getPlotItem().getViewBox())

    @property
    def pending(self) -> bool:
        """Whether points or curves came in since the last flush."""
        return bool(self._dirty or self._unbuilt or self._legend_later)

    def visible_points(self, name: str) -> int:
        """Points of the series inside the x range shown (all of them while the x axis follows the data)."""
        s = self.series[name]
        view = self.getPlotItem().getViewBox()
        if view.autoRangeEnabled()[0]:
            return s.size
        low, high = view.viewRange()[0]
        return int(np.count_nonzero((s.x >= low) & (s.x <= high)))

    def _update_symbols(self, names) -> None:
        for name in names:
            if name not in self._auto_symbols or name not in self._curves:
                continue            # a curve not made yet is marked once it is, at its first flush
            sparse = self.visible_points(name) < SPARSE
            if sparse != self._auto_symbols[name]:
                self._auto_symbols[name] = sparse
                self._curves[name].setSymbol("o" if sparse else None)
                self._curves[name].setSymbolSize(5)

    def _on_view_x_range_changed(self, *_) -> None:
        self._update_symbols(list(self._auto_symbols))
        if self._flushing:
            return
        # a long series drawn from a slice or its envelope may need the other, or another slice, for the new range
        stale = set()
        for name, fed in self._fed.items():
            shown = self._in_view(self.series[name])
            if (shown is None) != (fed is None) or shown and fed and not fed[0] <= shown[0] <= shown[1] <= fed[1]:
                stale.add(name)
        if stale:
            self._dirty |= stale
            self.flush()

    def add_marker(self, step: float, color, label: str) -> pg.InfiniteLine:
        """A dashed vertical line at `step` with a label at its top, in `color` (e.g. where a task stopped)."""
        color = pg.mkColor(color)
        line = pg.InfiniteLine(pos=step, angle=90, movable=False,
                               pen=pg.mkPen(color, width=1.5, style=Qt.PenStyle.DashLine), label=label,
                               # on the side of the line where the view has room (pyqtgraph picks one of the
                               # anchors by where the view's centre is), each marker's label lower than the one
                               # before, so that tasks stopping together stay readable
                               labelOpts={"position": 0.92 - 0.09 * (len(self.markers) % 8), "color": color,
                                          "anchors": [(0, 0), (1, 0)]})
        line.setZValue(-5)                          # under the curves
        self.getPlotItem().addItem(line, ignoreBounds=True)
        self.markers.append(line)
        return line

    def marked(self, name: str) -> bool:
        return self.curves[name].opts["symbol"] is not None

    def clear_all(self) -> None:
        self._unbuilt.clear()
        self._legend_later.clear()
        for curve in self._curves.values():
            self.getPlotItem().removeItem(curve)
        for line in self.markers:
            self.getPlotItem().removeItem(line)
        self.markers.clear()
        self.legend.clear()
        self.series.clear()
        self._curves.clear()
        self._auto_symbols.clear()
        self._dirty.clear()
        self._envelopes.clear()
        self._fed.clear()
        self._show_legend_if_useful()
        self._show_if_empty()

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


def smooth(values: np.ndarray, weight: float, state: tuple[float, int] = (0.0, 0)) -> tuple[np.ndarray, tuple]:
    """TensorBoard's debiased exponential moving average: without the debiasing the average starts at 0 (or at
    the first value) and takes many steps to forget it. Non-finite values pass through and are not averaged.
    `state` carries (biased average, count) from earlier values, so appending needs no recomputation."""
    values = np.asarray(values, dtype=float)
    last, count = state
    out = values.copy()
    finite = np.isfinite(values)
    x = values[finite]
    if not len(x):
        return out, (last, count)
    if weight <= 0:
        out[finite] = x
        return out, (float(x[-1]), count + len(x))
    biased = np.empty(len(x))
    # Blocks short enough that weight ** -len stays far from overflowing: inside one, the recurrence
    # a[t] = w a[t-1] + (1 - w) x[t] is a cumulative sum of x[i] w^-i scaled back by w^t.
    block = 4096 if weight >= 1 else max(1, min(4096, int(200 / -math.log10(weight))))
    for start in range(0, len(x), block):
        chunk = x[start:start + block]
        powers = weight ** np.arange(len(chunk))
        biased[start:start + len(chunk)] = (weight * powers * last
                                            + (1 - weight) * powers * np.cumsum(chunk / powers))
        last = float(biased[start + len(chunk) - 1])
    n = count + np.arange(1, len(x) + 1)
    out[finite] = biased / (1 - weight ** n) if weight < 1 else biased
    return out, (last, count + len(x))


class LossChart(LiveChart):
    """Per-task training loss: the raw values, and over them their smoothed curve (none with smoothing 0)."""

    def __init__(self, parent=None, smoothing: float = SMOOTHING) -> None:
        super().__init__("Training loss", "loss", parent=parent)
        self.smoothing = min(max(float(smoothing), 0.0), 0.99)
        self._ema: dict[str, tuple[float, int]] = {}
        self._visible: dict[str, bool] = {}
        self._colors: dict[str, pg.QtGui.QColor] = {}

    def _sample_type(self) -> type:
        return _Sample

    def add_task(self, task: str, index: int) -> None:
        if task in self.series:
            return
        color = self._colors[task] = color_of(index)
        self.add_series(f"{task} (raw)", color, legend=False)
        self.add_series(task, color, width=2, legend=False, mark_sparse=False)
        # the legend's line is the task's colour at full strength, whichever curve is drawn
        self.add_legend_entry(task, color)
        self._visible[task] = True
        self._style_task(task)

    def _style_task(self, task: str) -> None:
        smoothed = self.smoothing > 0
        visible = self._visible.get(task, True)
        self.set_pen(f"{task} (raw)", self._colors[task], alpha=RAW_ALPHA if smoothed else 255,
                     width=1 if smoothed else 2)
        self.set_visible(f"{task} (raw)", visible)
        self.set_visible(task, visible and smoothed)

    def append_loss(self, task: str, step: float, loss: float) -> None:
        if task not in self.series:
            self.add_task(task, len(self.series) // 2)
        self.append(f"{task} (raw)", step, loss)
        # smooth() for one value, in plain floats: a burst of thousands of events pays no numpy call per loss
        last, count = self._ema.get(task, (0.0, 0))
        value, w = loss, self.smoothing
        if math.isfinite(loss) and w > 0:
            last, count = w * last + (1 - w) * loss, count + 1
            value = last / (1 - w ** count) if w < 1 else last
        elif math.isfinite(loss):
            last, count = loss, count + 1
        self._ema[task] = (last, count)
        self.append(task, step, value)

    def set_smoothing(self, weight: float) -> None:
        """Smooth every task's loss again with the new weight (0: the raw losses alone)."""
        self.smoothing = min(max(float(weight), 0.0), 0.99)
        for task in self.tasks():
            raw = self.series[f"{task} (raw)"]
            values, self._ema[task] = smooth(raw.y, self.smoothing)
            self.set_data(task, raw.x, values)
            self._style_task(task)

    def set_task_visible(self, task: str, visible: bool) -> None:
        self._visible[task] = visible
        if task in self._colors:
            self._style_task(task)

    def tasks(self) -> list[str]:
        return [n for n in self.series if not n.endswith(" (raw)")]

    def clear_all(self) -> None:
        super().clear_all()
        self._ema.clear()
        self._colors.clear()
