"""The forgetting chart: each keep task's main metric as its change since step 0, in percent, with a zero line and
the alert's threshold (eval.forgetting_alert) drawn where it lies for that metric's direction."""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import Qt

from qarac_gui.ui.charts import LiveChart

ALERT_COLOR = "#dc2626"


def percent_change(baseline: float, value: float) -> float:
    """(value - baseline) / |baseline| in percent; nan where a zero or non-finite baseline gives no scale."""
    if not math.isfinite(baseline) or baseline == 0:
        return math.nan
    return 100 * (value - baseline) / abs(baseline)


class ForgettingChart(LiveChart):
    """Fed by the panel: add_task from RunStarted (tasks marked keep), add_values from each EvalDone."""

    def __init__(self, parent=None) -> None:
        super().__init__("Forgetting (keep tasks)", "change since step 0 (%)", parent=parent,
                         empty_text="Shown for tasks marked keep")
        self.setToolTip("Each keep task's main metric, as its change since step 0 (before any training) in "
                        "percent: up is a higher perplexity or loss, down a lower accuracy. The red line is the "
                        "alert (eval.forgetting_alert).")
        self.zero = pg.InfiniteLine(pos=0, angle=0, pen=pg.mkPen("#6b7280", width=1))
        self.getPlotItem().addItem(self.zero)
        self.tasks: dict[str, dict] = {}           # task -> what RunStarted said of it (metric, direction, alert)
        self.baselines: dict[str, float] = {}
        self.lines: dict[float, pg.InfiniteLine] = {}    # threshold (signed percent) -> its line

    def add_task(self, task: str, info: dict, color) -> None:
        self.tasks[task] = info
        name = f"{task}/{info['metric']}"
        if name not in self.series:
            self.add_series(name, color, width=2, symbol="o")
        alert = float(info.get("forgetting_alert") or 0)
        if alert > 0:
            self._threshold(-100 * alert if info.get("higher_is_better") else 100 * alert)

    def _threshold(self, at: float) -> None:
        if at in self.lines:
            return
        # The label on the side of the line towards zero: the line often bounds the view, and a label on its far
        # side would be cut off
        anchor = (0, 0) if at > 0 else (0, 1)
        line = pg.InfiniteLine(pos=at, angle=0, pen=pg.mkPen(ALERT_COLOR, width=1, style=Qt.PenStyle.DashLine),
                               label=f"alert {at:+g} %", labelOpts={"position": 0.08, "color": ALERT_COLOR,
                                                                      "anchors": [anchor, anchor]})
        self.getPlotItem().addItem(line)
        self.lines[at] = line

    def add_values(self, task: str, step: int, metrics: dict[str, float]) -> None:
        """A keep task's evaluation: the first one (step 0) is the baseline the others are drawn against."""
        metric = self.tasks[task]["metric"]
        if metric not in metrics:
            return
        value = metrics[metric]
        baseline = self.baselines.setdefault(task, value)
        self.append(f"{task}/{metric}", step, percent_change(baseline, value))

    def latest(self, task: str) -> float | None:
        """The newest percent change drawn for a task (None before its first)."""
        s = self.series.get(f"{task}/{self.tasks[task]['metric']}") if task in self.tasks else None
        return float(s.y[-1]) if s is not None and s.size else None

    def clear_all(self) -> None:
        super().clear_all()
        for line in self.lines.values():
            self.getPlotItem().removeItem(line)
        self.lines.clear()
        self.tasks.clear()
        self.baselines.clear()
