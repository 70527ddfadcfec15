"""The live charts of a run: loss per task, validation metrics, applied vs planned lr, throughput."""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from qarac_gui.core.events import EvalDone, RunStarted, StepLogged, TaskStopped, describe, padding_line
from qarac_gui.ui.charts import SMOOTHING, LiveChart, LossChart, color_of
from qarac_gui.ui.forgetting_chart import ForgettingChart
from qarac_gui.ui.form import DoubleSpinBox

NEW_CURVES_A_TURN = 4          # a run's start makes a dozen curves at about 1 ms each: a few each turn
MARK_GLYPHS = {"o": "●", "t": "▼", "s": "■", "d": "◆", "+": "+"}     # pyqtgraph's symbols as text


class ChartsPanel(QWidget):
    """Four charts fed by run events (a fifth, the task weights, for balancing other than fixed weights); `prefix` lets
    a second run be overlaid with its own names."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show:"))
        self.task_boxes_layout = QHBoxLayout()
        bar.addLayout(self.task_boxes_layout)
        bar.addStretch(1)
        bar.addWidget(QLabel("Smoothing"))
        self.smoothing = DoubleSpinBox()
        self.smoothing.setObjectName("smoothing")
        self.smoothing.setRange(0.0, 0.99)
        self.smoothing.setSingleStep(0.05)
        self.smoothing.setDecimals(2)
        self.smoothing.setValue(SMOOTHING)
        self.smoothing.setToolTip("How much the bold loss curves average over past steps (0: the raw losses "
                                  "alone). The thin lines under them are the raw losses.")
        bar.addWidget(self.smoothing)
        self.log_loss = QCheckBox("Log loss")
        self.log_loss.setObjectName("log_loss")
        self.log_loss.setToolTip("A logarithmic loss axis: small losses late in a run stay readable")
        bar.addWidget(self.log_loss)
        self.log_lr = QCheckBox("Log lr")
        self.log_lr.setObjectName("log_lr")
        self.log_lr.setToolTip("A logarithmic learning-rate axis: the encoder's and the heads' rates stay "
                               "readable even when one is many times the other")
        bar.addWidget(self.log_lr)
        self.overlay_label = QLabel("")
        self.overlay_label.setObjectName("overlay_label")
        bar.addWidget(self.overlay_label)
        save = QPushButton("Save charts…")
        save.setToolTip("Save every chart as PNG or SVG (right-click a chart for more export options)")
        save.clicked.connect(self._on_save_clicked)
        bar.addWidget(save)
        layout.addLayout(bar)
        grid = QGridLayout()
        layout.addLayout(grid, 1)
        self.loss = LossChart()
        self.metrics = LiveChart("Validation metrics", "value", empty_text="Shown after the first validation")
        self.lr = LiveChart("Learning rate", "lr", log_y=True)
        self.throughput = LiveChart("Throughput", "samples/s")
        # Which marker is which metric, in one line under the chart: its legend of task/metric names is hidden
        # once it would squeeze the plot, and the task colours alone do not tell accuracy from f1.
        self.metrics_key = QLabel("")
        self.metrics_key.setObjectName("metrics_key")
        # one line (a wrapping label's height-for-width would unbalance the grid's rows); all of it in the tooltip
        self.metrics_key.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.metrics_key.setTextFormat(Qt.TextFormat.RichText)
        metrics_cell = QWidget()
        cell = QVBoxLayout(metrics_cell)
        cell.setContentsMargins(0, 0, 0, 0)
        cell.setSpacing(0)
        cell.addWidget(self.metrics, 1)
        cell.addWidget(self.metrics_key)
        for i, chart in enumerate((self.loss, self.metrics, self.lr, self.throughput)):
            # the key's two lines come out of the metrics chart's 160: drawn over its axis otherwise in a short row
            chart.setMinimumSize(240, 124 if chart is self.metrics else 160)
            placed = metrics_cell if chart is self.metrics else chart
            # equal rows whatever the legends ask for: the key under the metrics takes its room from that chart
            placed.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
            grid.addWidget(placed, i // 2, i % 2)
        grid.setRowStretch(0, 1)
        grid.setRowStretch(1, 1)
        self.grid = grid
        # Row 2, once a run has them: the keep tasks' change since step 0 and the task weights (train.balancing
        # other than weights); side by side when both show, else the one that shows takes the whole width
        self.forgetting = ForgettingChart()
        self.balance = LiveChart("Task weights", "weight")
        self.balance.setToolTip("Each task's factor on top of its fixed weight: exp(-s) of its learnt log-variance "
                                "(uncertainty), or the weight the aggregator gave its gradient (upgrad, pcgrad, "
                                "mgda; 1 each is the plain sum). The dashed grey line is the mean cosine between "
                                "the tasks' gradients: below 0 they pull apart.")
        for chart in (self.forgetting, self.balance):
            chart.setMinimumSize(240, 160)
            chart.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
            chart.hide()
        self._place_row_2()
        self.metrics_key.hide()
        # a PlotDataItem, not a bare scatter: only these follow the axis into log mode
        self.marker = pg.PlotDataItem(pen=None, symbol="o", symbolSize=10, symbolBrush=pg.mkBrush("#ef4444"),
                                      symbolPen=None)
        self.lr.getPlotItem().addItem(self.marker)
        self.log_lr.setChecked(self.lr.log_y)
        self.smoothing.valueChanged.connect(self._on_smoothing_value_changed)
        self.log_loss.toggled.connect(self.loss.set_log_y)
        self.log_lr.toggled.connect(self.lr.set_log_y)
        self.loss.log_y_changed.connect(self.log_loss.setChecked)     # the charts' own menus switch too
        self.lr.log_y_changed.connect(self.log_lr.setChecked)
        self.task_boxes: dict[str, QCheckBox] = {}
        self._metric_marks: dict[str, list[tuple[str, str, str]]] = {}     # task -> (metric, symbol, colour)
        self._task_index: dict[str, int] = {}
        self.planned: dict[str, list[float]] = {}
        self.charts = {"loss": self.loss, "metrics": self.metrics, "lr": self.lr, "throughput": self.throughput}
        self._marker_at: tuple[float, float] | None = None      # where the lr marker goes at the next flush
        self._turns: list[LiveChart] = []      # charts still to flush in this round of flush_in_turns

    def clear(self) -> None:
        self._turns = []
        for chart in self.shown_charts().values():
            chart.clear_all()
        self.marker.setData([], [])
        self._marker_at = None
        for box in self.task_boxes.values():
            box.hide()                        # now: a deferred delete waits for the event loop's next turn
            self.task_boxes_layout.removeWidget(box)
            box.deleteLater()
        self.task_boxes.clear()
        self._task_index.clear()
        self.planned = {}
        self.overlay_label.setText("")
        self._metric_marks.clear()
        self.metrics_key.setText("")
        self.metrics_key.hide()
        self.forgetting.clear_all()
        self._show_forgetting(False)
        self._show_balance(False)

    def shown_charts(self) -> dict[str, LiveChart]:
        """The four charts, and the forgetting chart and task weights while the run shown has them."""
        return self.charts | ({"forgetting": self.forgetting} if self.forgetting.tasks else {}) \
            | ({} if self.balance.isHidden() else {"balance": self.balance})

    def _show_forgetting(self, shown: bool) -> None:
        self.forgetting.setVisible(shown)
        self._place_row_2()

    def _show_balance(self, shown: bool) -> None:
        self.balance.setVisible(shown)
        self._place_row_2()

    def _place_row_2(self) -> None:
        shown = [c for c in (self.forgetting, self.balance) if not c.isHidden()]
        for chart in (self.forgetting, self.balance):
            self.grid.removeWidget(chart)
        for i, chart in enumerate(shown):
            self.grid.addWidget(chart, 2, i, 1, 2 if len(shown) == 1 else 1)
        self.grid.setRowStretch(2, 1 if shown else 0)

    def _on_smoothing_value_changed(self, value: float) -> None:
        self.loss.set_smoothing(value)
        self.loss.flush()

    def _add_task(self, task: str) -> None:
        if task in self._task_index:
            return
        index = len(self._task_index)
        self._task_index[task] = index
        self.loss.add_task(task, index)
        box = QCheckBox(task)
        box.setObjectName(f"show_{task}")
        box.setChecked(True)
        box.setStyleSheet(f"color: {color_of(index).name()};")
        box.toggled.connect(lambda on, t=task: self.set_task_visible(t, on))
        self.task_boxes_layout.addWidget(box)
        self.task_boxes[task] = box

    def set_task_visible(self, task: str, visible: bool) -> None:
        self.loss.set_task_visible(task, visible)
        self.balance.set_visible(task, visible)
        for chart in (self.metrics, self.forgetting):
            for name in chart.series:
                if name.split("/")[0] == task:
                    chart.set_visible(name, visible)

    def handle(self, event, prefix: str = "") -> None:
        if isinstance(event, RunStarted):
            for task, info in event.tasks.items():
                self._add_task(prefix + task)
                if line := padding_line(task, info):
                    self.task_boxes[prefix + task].setToolTip(line)
                if info.get("keep"):
                    self.forgetting.add_task(prefix + task, info, color_of(self._task_index[prefix + task]))
                    self._show_forgetting(True)
            if not prefix:
                self.planned = event.lr_curve
            for name, style in (("encoder", "#3b82f6"), ("heads", "#f59e0b")):
                curve = event.lr_curve.get(name, [])
                # a long run's plan is a sample of its steps; older logs hold every step from 1 and no "steps"
                steps = event.lr_curve.get("steps") or range(1, len(curve) + 1)
                planned = f"{prefix}planned {name}"
                self.lr.add_series(planned, pg.mkColor(style), dashed=True, alpha=140, mark_sparse=False)
                self.lr.set_data(planned, steps, curve)
                self.lr.add_series(f"{prefix}applied {name}", pg.mkColor(style), width=2)
        elif isinstance(event, StepLogged):
            for task, loss in event.task_losses.items():
                self._add_task(prefix + task)
                self.loss.append_loss(prefix + task, event.step, loss)
            self.lr.append(f"{prefix}applied encoder", event.step, event.lr)
            self.lr.append(f"{prefix}applied heads", event.step, event.head_lr)
            if not prefix:      # drawn at the next flush: a burst of events moves it once, not once each
                self._marker_at = (event.step, event.lr)
            name = f"{prefix}samples/s"
            if name not in self.throughput.series:       # grey: it belongs to no task, and red is the first task's
                self.throughput.add_series(name, "#6b7280")
            self.throughput.append(name, event.step, event.samples_per_s)
            if event.task_weights is not None:
                self._add_weights(event, prefix)
        elif isinstance(event, EvalDone):
            for task, values in event.metrics.items():
                if prefix + task in self.forgetting.tasks:
                    self.forgetting.add_values(prefix + task, event.step, values)
                    continue
                for metric, value in values.items():
                    if metric != "loss":
                        self._add_metric(prefix + task, metric, event.step, value)
        elif isinstance(event, TaskStopped):
            self._mark_stop(prefix + event.task, event)

    def _mark_stop(self, task: str, event: TaskStopped) -> None:
        """A stopped task: a dashed line in its colour where it stopped, on the loss and the metrics charts, and
        its box says when (its tooltip, how good it was at its best)."""
        self._add_task(task)
        color = color_of(self._task_index[task])
        for chart in (self.loss, self.metrics):
            chart.add_marker(event.step, color, f"{task} stopped")
        box = self.task_boxes[task]
        # short: the boxes share one row, and a long text there would widen the whole panel; the rest is the tooltip's
        box.setText(f"{task}: stopped at {event.step}")
        box.setToolTip("\n".join(filter(None, [box.toolTip(), describe(event)])))     # after its padding line

    def _add_weights(self, event: StepLogged, prefix: str) -> None:
        if self.balance.isHidden():
            self._show_balance(True)
        for task, weight in event.task_weights.items():
            name = prefix + task
            if name not in self.balance.series:
                self.balance.add_series(name, color_of(self._task_index.get(name, len(self._task_index))), width=2)
            self.balance.append(name, event.step, weight)
        if event.grad_cosine is not None:
            name = f"{prefix}gradient cosine"
            if name not in self.balance.series:
                self.balance.add_series(name, "#6b7280", dashed=True)
            self.balance.append(name, event.step, event.grad_cosine)

    def _add_metric(self, task: str, metric: str, step: int, value: float) -> None:
        name = f"{task}/{metric}"
        if name not in self.metrics.series:
            index = self._task_index.get(task, len(self._task_index))
            symbols = ("o", "t", "s", "d", "+")
            symbol = symbols[sum(1 for n in self.metrics.series if n.startswith(task + "/")) % len(symbols)]
            self.metrics.add_series(name, color_of(index), width=1, symbol=symbol)
            self._metric_marks.setdefault(task, []).append((metric, symbol, color_of(index).name()))
            self._show_metrics_key()
        self.metrics.append(name, step, value)

    def _show_metrics_key(self) -> None:
        parts = []
        for task, marks in self._metric_marks.items():
            shown = " ".join(f"{MARK_GLYPHS[symbol]} {html.escape(metric)}" for metric, symbol, _ in marks)
            parts.append(f'<span style="color:{marks[0][2]}">{html.escape(task)}: {shown}</span>')
        self.metrics_key.setText("<br>".join(parts))                 # a task a line
        self.metrics_key.setToolTip("<br>".join(parts))
        self.metrics_key.setVisible(bool(parts))

    def flush(self) -> None:
        self._move_marker()
        for chart in self.shown_charts().values():
            chart.flush()

    def flush_in_turns(self) -> None:
        """flush, one chart per turn of the event loop: each chart's repaint (3-9 ms) then lands in a turn of its
        own, with timers and input between them, instead of all of them in one stall."""
        if self._turns:
            return                              # the last round is still going
        self._turns = [chart for chart in self.shown_charts().values() if chart.pending]
        if self._marker_at is not None and self.lr not in self._turns:
            self._turns.append(self.lr)
        self._next_turn()

    def _next_turn(self) -> None:
        if not self._turns:
            return
        chart = self._turns.pop(0)
        if chart is self.lr:                    # the marker moves in the same repaint
            self._move_marker()
        chart.flush(most_new=NEW_CURVES_A_TURN)
        if chart.pending:                       # a run's start: its other curves in a later turn
            self._turns.append(chart)
        if self._turns:
            QTimer.singleShot(1, self._next_turn)

    def _move_marker(self) -> None:
        if self._marker_at is not None:
            step, lr = self._marker_at
            self.marker.setData(*self.lr.drawable(np.array([step], float), np.array([lr], float)))
            self._marker_at = None

    def _on_save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the charts (one file per chart)", "charts.png",
                                              "PNG image (*.png);;SVG drawing (*.svg)")
        if path:
            self.save_all(path)

    def save_all(self, path: str) -> list[str]:
        """charts.png -> charts-loss.png, charts-metrics.png, ... (SVG when the name ends in .svg)."""
        from pathlib import Path
        base = Path(path)
        fmt = "svg" if base.suffix.lower() == ".svg" else "png"
        written = []
        for name, chart in self.shown_charts().items():
            target = base.with_name(f"{base.stem}-{name}.{fmt}")
            chart.export_image(target)
            written.append(str(target))
        return written

    def applied_lr(self) -> tuple[list[float], list[float]]:
        s = self.lr.series.get("applied encoder")
        return ([], []) if s is None else (list(s.x), list(s.y))

    def loss_points(self, task: str) -> int:
        s = self.loss.series.get(task)
        return 0 if s is None else s.size
