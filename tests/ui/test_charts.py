"""The live charts tell the truth: real numbers on the axes, points that show, raw losses under the smoothed ones,
legends beside the data, both learning rates readable, and a reopened project's last run on screen."""

import math
import os
import random

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QStatusBar, QWidget

from qarac_gui.core.events import EvalDone, RunEnded, RunStarted, StepLogged, event_to_json
from qarac_gui.ui.chart_parts import log_tick_strings, tick_strings
from qarac_gui.ui.chart_series import BIN, DETAIL, LONG
from qarac_gui.ui.charts import SPARSE, LiveChart, LossChart
from qarac_gui.ui.panels.charts_panel import ChartsPanel
from qarac_gui.ui.panels.log_panel import LogPanel
from qarac_gui.ui.panels.run_panel import RunPanel
from qarac_gui.ui.run_view import RunView
from qarac_gui.ui.worker import RunController

TASKS = ("sentiment", "topic", "similarity")


def lr_at(step: int, peak: float, total: int, warmup: int) -> float:
    if step <= warmup:
        return peak * step / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def realistic_run(total: int = 300, warmup: int = 30, every: int = 30, seed: int = 0) -> list:
    """A run's events as a real one logs them: three tasks whose losses fall from about 2 to about 0.0005 with
    noise, metrics from 0.5 to 0.9, the encoder's lr 1e-5 and the heads' 2e-4, warm-up then cosine decay."""
    rng = random.Random(seed)
    steps = list(range(1, total + 1))
    events = [RunStarted(
        run_dir="", total_steps=total, start_step=0,
        tasks={t: {"kind": "classification"} for t in TASKS},
        lr_curve={"steps": steps, "encoder": [lr_at(s, 1e-5, total, warmup) for s in steps],
                  "heads": [lr_at(s, 2e-4, total, warmup) for s in steps]},
        device="cpu", precision="fp32", removed_heads={}, encoder_params=0, trainable_params=0)]
    for step in steps:
        losses = {}
        for i, task in enumerate(TASKS):
            trend = 2.0 * (0.0005 / 2.0) ** (step / total) * (1 + 0.3 * i)
            losses[task] = trend * math.exp(rng.gauss(0, 0.35))
        events.append(StepLogged(step=step, epoch=step / 100, task_losses=losses, lr=lr_at(step, 1e-5, total, warmup),
                                 head_lr=lr_at(step, 2e-4, total, warmup), samples_per_s=1400 + rng.gauss(0, 40),
                                 elapsed_s=step * 0.1))
        if step % every == 0:
            grown = 0.5 + 0.4 * (1 - math.exp(-3 * step / total))
            metrics = {t: {"accuracy": min(0.99, grown + rng.gauss(0, 0.01)),
                           "f1": min(0.99, grown - 0.05 + rng.gauss(0, 0.01)), "loss": 0.3} for t in TASKS}
            events.append(EvalDone(step=step, metrics=metrics, best_step=step, best_value=grown,
                                   monitored="sentiment/accuracy"))
    events.append(RunEnded(step=total, reason="completed"))
    return events


# ---------------------------------------------------------------- helpers


@pytest.fixture
def panel(charts_panel):
    return charts_panel


def fill(panel, events=None) -> None:
    for event in events if events is not None else realistic_run():
        panel.handle(event)
    panel.flush()
    settle(panel)


def settle(widget) -> None:
    """Let pyqtgraph lay out and auto-range: it does both when the scene is next drawn."""
    widget.grab()
    QApplication.processEvents()


def shown_ticks(chart: LiveChart) -> list[tuple[float, str]]:
    """(value, label) of the y axis's ticks over the range in view, as the axis would draw them."""
    axis = chart.getPlotItem().getAxis("left")
    low, high = chart.getPlotItem().getViewBox().viewRange()[1]
    out = []
    for spacing, values in axis.tickValues(low, high, axis.height() or 200):
        strings = axis.tickStrings(values, axis.autoSIPrefixScale, spacing)
        out += [(10 ** v if axis.logMode else v, s) for v, s in zip(values, strings) if s is not None]
    return out


def chart_with(qtbot, values, log_y=False) -> LiveChart:
    chart = LiveChart("Values", "value", log_y=log_y)
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    chart.show()
    for step, value in enumerate(values, 1):
        chart.append("v", step, value)
    chart.flush()
    settle(chart)
    return chart


def wheel(widget, up=True) -> None:
    event = QWheelEvent(QPointF(5, 5), QPointF(widget.mapToGlobal(QPoint(5, 5))), QPoint(0, 0),
                        QPoint(0, 120 if up else -120), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def debiased_ema(values, weight):
    """TensorBoard's smoothing, written out independently of the chart's."""
    out, last = [], 0.0
    for n, v in enumerate(values, 1):
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight ** n))
    return out


# ---------------------------------------------------------------- 1. axes write the real numbers

def test_tick_labels_are_the_numbers_themselves():
    assert tick_strings([0.0, 0.0005, 0.001], 0.0005) == ["0.0000", "0.0005", "0.0010"]
    assert tick_strings([0.5, 0.6, 0.7], 0.1) == ["0.5", "0.6", "0.7"]
    assert tick_strings([1e-5, 1.2e-5, 1.4e-5], 2e-6) == ["1e-05", "1.2e-05", "1.4e-05"]
    assert tick_strings([1300, 1400, 1500], 100) == ["1300", "1400", "1500"]
    assert tick_strings([2e6, 4e6], 2e6) == ["2e+06", "4e+06"]
    assert log_tick_strings([-5, -4, np.log10(2e-4), 0]) == ["1e-05", "0.0001", "0.0002", "1"]


@pytest.mark.parametrize("values", [
    [0.0007, 0.0003, 0.0001],            # pyqtgraph wrote these as "loss (x0.001)" with ticks 100-700
    [0.5, 0.7, 0.9],                     # and accuracy 0.5 as "500"
    [1e-5, 1.5e-5, 2e-5],                # a learning rate
    [1.2e6, 2.5e6, 3.1e6],               # large counts
])
def test_no_axis_scales_its_numbers(qtbot, values):
    chart = chart_with(qtbot, values)
    axis = chart.getPlotItem().getAxis("left")
    assert axis.autoSIPrefixScale == 1 and "(x" not in axis.labelString()
    ticks = shown_ticks(chart)
    assert len(ticks) >= 2
    for value, label in ticks:
        assert float(label) == pytest.approx(value, rel=1e-6, abs=1e-12), (value, label)


def test_log_axis_labels_are_values_not_exponents(qtbot):
    chart = chart_with(qtbot, [1e-5, 3e-5, 1e-4, 2e-4], log_y=True)
    labels = [label for _, label in shown_ticks(chart)]
    assert "1e-05" in labels and "0.0001" in labels
    assert "-5" not in labels and "-4" not in labels
    for value, label in shown_ticks(chart):
        assert float(label) == pytest.approx(value, rel=1e-2)


@pytest.mark.parametrize("height", [160, 300, 900])
def test_log_axis_labels_never_pile_up(qtbot, height):
    """Between decades a log axis labels 2..9 only where they stand apart, 2 and 5 where those do, else none."""
    from PySide6.QtGui import QFontMetricsF
    chart = chart_with(qtbot, [6e-6, 2e-5, 1e-4, 2e-4], log_y=True)
    chart.resize(400, height)
    settle(chart)
    axis = chart.getPlotItem().getAxis("left")
    low, high = chart.getPlotItem().getViewBox().viewRange()[1]
    px = axis.height() / (high - low)
    at = sorted(math.log10(value) * px for value, _ in shown_ticks(chart))
    assert min(b - a for a, b in zip(at, at[1:])) >= QFontMetricsF(axis.font()).height()
    labels = [label for _, label in shown_ticks(chart)]
    assert "1e-05" in labels and "0.0001" in labels
    assert ("2e-05" in labels) == (height >= 300) and ("7e-05" in labels) == (height >= 900)


def test_log_checkboxes_switch_the_loss_and_lr_axes_and_follow_the_charts_menu(panel):
    fill(panel)
    assert not panel.log_loss.isChecked() and not panel.loss.log_y
    panel.log_loss.setChecked(True)
    assert panel.loss.log_y and panel.loss.getPlotItem().getAxis("left").logMode
    assert panel.log_lr.isChecked() and panel.lr.log_y            # the lr is on a log axis from the start
    panel.lr.getPlotItem().ctrl.logYCheck.setChecked(False)      # the chart's own context menu
    assert not panel.log_lr.isChecked()


def test_a_log_axis_leaves_out_values_it_cannot_show(qtbot):
    chart = chart_with(qtbot, [1e-5, 0.0, 2e-5], log_y=True)    # an lr of 0 at the end of a decay
    x, y = chart.curves["v"].getOriginalDataset()
    assert list(x) == [1, 3] and list(y) == [1e-5, 2e-5]
    chart.set_log_y(False)
    assert list(chart.curves["v"].getOriginalDataset()[0]) == [1, 2, 3]


def test_the_step_axis_has_only_whole_steps(qtbot):
    chart = chart_with(qtbot, [1.0, 2.0, 1.5, 1.2])               # four steps: pyqtgraph ticked 1.5, 2.5, ...
    axis = chart.getPlotItem().getAxis("bottom")
    low, high = chart.getPlotItem().getViewBox().viewRange()[0]
    values = [v for _, level in axis.tickValues(low, high, axis.width()) for v in level]
    assert values and all(v == int(v) for v in values)


# ---------------------------------------------------------------- 2. few points are marked

def test_sparse_series_are_marked_and_dense_ones_are_not(qtbot):
    chart = chart_with(qtbot, [1.0])
    assert chart.marked("v")                               # a single point shows
    for step in range(2, 101):
        chart.append("v", step, 1 / step)
    chart.flush()
    assert not chart.marked("v")                          # a dense curve is drawn as a plain line, for speed
    chart.getPlotItem().setXRange(10, 10 + SPARSE // 2, padding=0)
    assert chart.visible_points("v") < SPARSE and chart.marked("v")      # zoomed in on a few points


def test_first_steps_of_a_run_show_points_on_every_chart(panel):
    events = realistic_run()
    fill(panel, events[:3])                                 # RunStarted and two logged steps
    for task in TASKS:
        assert panel.loss.marked(f"{task} (raw)")
    assert panel.lr.marked("applied encoder") and panel.throughput.marked("samples/s")
    assert not panel.lr.marked("planned encoder")         # the plan is known in full from the start


# ---------------------------------------------------------------- 3. smoothing shows, never hides

def test_smoothing_is_debiased_and_ends_with_the_raw_losses(qtbot):
    chart = LossChart(smoothing=0.6)
    qtbot.addWidget(chart)
    losses = [2.0, 1.0, 4.0, 0.5, 0.25]
    for step, loss in enumerate(losses, 1):
        chart.append_loss("sent", step, loss)
    chart.flush()
    x, y = chart.curves["sent"].getOriginalDataset()
    np.testing.assert_allclose(y, debiased_ema(losses, 0.6))
    assert y[0] == losses[0]                                 # not pulled toward 0 or held at the first value
    assert x[-1] == chart.series["sent (raw)"].x[-1]         # the smoothed line stops where the losses stop


def test_raw_losses_stay_visible_under_the_smoothed_curve(panel):
    fill(panel)
    raw = panel.loss.curves["sentiment (raw)"]
    assert raw.isVisible() and raw.opts["pen"].color().alpha() >= 128
    assert panel.smoothing.value() == pytest.approx(0.6)
    end = panel.loss.series["sentiment"].y[-1]
    trend_end = 0.0005                                       # where the run's sentiment loss really ends
    assert trend_end / 3 < end < trend_end * 3               # 0.9 without debiasing read hundreds of times more


def test_changing_the_smoothing_resmooths_what_is_drawn(panel):
    fill(panel)
    raw = panel.loss.series["topic (raw)"].y.copy()
    panel.smoothing.setValue(0.9)
    np.testing.assert_allclose(panel.loss.curves["topic"].getOriginalDataset()[1], debiased_ema(raw, 0.9))
    panel.handle(StepLogged(step=301, epoch=3, task_losses={"topic": 0.001}, lr=0.0, head_lr=0.0,
                            samples_per_s=1, elapsed_s=31))
    panel.flush()
    np.testing.assert_allclose(panel.loss.curves["topic"].getOriginalDataset()[1],
                               debiased_ema(list(raw) + [0.001], 0.9))
    panel.smoothing.setValue(0.0)
    assert not panel.loss.curves["topic"].isVisible()          # smoothing 0: the raw losses alone
    raw_curve = panel.loss.curves["topic (raw)"]
    assert raw_curve.isVisible() and raw_curve.opts["pen"].color().alpha() == 255
    panel.set_task_visible("topic", False)
    assert not raw_curve.isVisible() and not panel.loss.curves["topic"].isVisible()
    panel.set_task_visible("topic", True)
    panel.smoothing.setValue(0.5)
    assert panel.loss.curves["topic"].isVisible() and raw_curve.isVisible()


def test_the_smoothing_box_ignores_the_wheel_until_focused(panel, qtbot):
    box = panel.smoothing
    assert (box.minimum(), box.maximum()) == (0.0, 0.99)
    before = box.value()
    panel.activateWindow()
    panel.log_loss.setFocus()                                 # focus is elsewhere, as when scrolling past
    qtbot.waitUntil(panel.log_loss.hasFocus)
    wheel(box, up=False)
    assert box.value() == before
    for check in (panel.log_loss, panel.log_lr):
        state = check.isChecked()
        wheel(check)
        assert check.isChecked() == state
    box.setFocus()
    qtbot.waitUntil(box.hasFocus)
    wheel(box, up=False)
    assert box.value() < before


# ---------------------------------------------------------------- 4. legends beside the data

def test_legends_never_cover_the_plot_area(panel, qtbot):
    fill(panel)
    for size in ((1100, 700), (700, 480), (480, 400)):
        panel.resize(*size)
        settle(panel)
        for name, chart in panel.charts.items():
            legend, view = chart.legend, chart.getPlotItem().getViewBox()
            assert view.height() > chart.height() / 3, (name, size)     # the curves keep most of the room
            if name == "throughput":
                assert not legend.isVisible()              # one series: the title says it all
            if size == (1100, 700) and name != "throughput":
                assert legend.isVisible() and len(legend.items) >= 3, name
            if not legend.isVisible():
                continue
            legend_rect, plot_rect = legend.sceneBoundingRect(), view.sceneBoundingRect()
            assert legend_rect.height() > 0 and not legend_rect.intersects(plot_rect), (name, size)
            assert chart.rect().contains(chart.mapFromScene(legend_rect).boundingRect()), (name, size)
    panel.resize(1100, 700)
    panel.clear()                                          # a new run starts with the legends of its own series
    assert not panel.loss.legend.items and not panel.loss.legend.isVisible()
    fill(panel, realistic_run(total=40)[:3])
    assert [label.text for _, label in panel.loss.legend.items] == list(TASKS) and panel.loss.legend.isVisible()


# ---------------------------------------------------------------- 5. both learning rates readable

def span_fraction(chart: LiveChart, name: str) -> float:
    """How much of the plot's height the curve spans."""
    x, y = chart.curves[name].getData()                     # in view coordinates: log10 on a log axis
    low, high = chart.getPlotItem().getViewBox().viewRange()[1]
    return (np.nanmax(y) - np.nanmin(y)) / (high - low)


def test_encoder_and_head_lr_both_fill_the_lr_chart(panel):
    fill(panel)                                              # encoder 1e-5, heads 2e-4
    for name in ("applied encoder", "applied heads", "planned encoder", "planned heads"):
        assert span_fraction(panel.lr, name) > 0.3, name
    panel.log_lr.setChecked(False)
    settle(panel)
    assert span_fraction(panel.lr, "applied encoder") < 0.1  # what a linear axis did to the encoder's curve


def test_lr_marker_follows_the_log_axis(panel):
    fill(panel, [e for e in realistic_run() if getattr(e, "step", 0) <= 39])
    x, y = panel.marker.getData()
    assert list(x) == [39] and y[0] == pytest.approx(np.log10(lr_at(39, 1e-5, 300, 30)))


# ---------------------------------------------------------------- 6. a reopened project shows its last run

def write_run(folder, name, events, mtime):
    """A run folder as a run leaves it: its copy of the project and its event log."""
    folder.mkdir(parents=True)
    (folder / "project.toml").write_text(f'version = 2\nname = "{name}"\n', encoding="utf-8")
    (folder / "events.jsonl").write_text("".join(event_to_json(e) + "\n" for e in events), encoding="utf-8")
    os.utime(folder / "project.toml", (mtime, mtime))


def test_opening_a_project_shows_its_newest_runs_charts(qtbot, tmp_path):
    window = QWidget()
    qtbot.addWidget(window)
    charts = ChartsPanel(window)
    log = LogPanel(window)
    view = RunView(RunController(window), charts, RunPanel(window), log, QStatusBar(window), window)
    base = tmp_path / "runs"
    assert view.show_latest_run(base, "reviews") is None           # no runs folder yet: nothing to show
    old, new = realistic_run(total=60), realistic_run(total=90, seed=1)
    write_run(base / "reviews-1", "reviews", old, 1000)
    write_run(base / "reviews-2", "reviews", new, 2000)
    write_run(base / "other-3", "other", realistic_run(total=120), 3000)
    (base / "stray").mkdir()
    assert view.show_latest_run(base, "reviews") == base / "reviews-2"
    assert view.run_dir == base / "reviews-2"
    assert charts.loss.series["sentiment"].x[-1] == 90 and charts.loss_points("sentiment") == 90
    assert charts.lr.series["planned heads"].size == 90
    assert charts.metrics.series["topic/accuracy"].size == 3
    assert charts.loss.curves["sentiment"].getOriginalDataset()[0][-1] == 90       # drawn, not only buffered
    assert any("reviews-2" in line for line in log.lines())
    assert view.show_latest_run(base, "unknown") is None


def test_an_empty_chart_says_why_instead_of_showing_made_up_ticks(qtbot):
    from qarac_gui.ui.charts import LiveChart
    chart = LiveChart("Learning rate", "lr", log_y=True, empty_text="Shown once a run starts")
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    chart.show()
    axis = chart.getPlotItem().getAxis("left")
    assert chart.empty_label.isVisible() and chart.empty_label.text() == "Shown once a run starts"
    assert not axis.style["showValues"]
    chart.append("encoder", 1, 1e-5)
    chart.flush()
    assert not chart.empty_label.isVisible() and axis.style["showValues"]
    chart.clear_all()
    assert chart.empty_label.isVisible() and not axis.style["showValues"]


def test_the_metrics_key_says_which_marker_is_which_metric_of_which_task(qtbot):
    from qarac_gui.core.events import EvalDone
    from qarac_gui.ui.panels.charts_panel import ChartsPanel
    panel = ChartsPanel()
    qtbot.addWidget(panel)
    panel.handle(EvalDone(step=10, metrics={"sentiment": {"loss": 0.3, "accuracy": 0.9, "macro_f1": 0.88},
                                            "similarity": {"loss": 0.2, "spearman": 0.5}},
                          best_step=10, best_value=0.9, monitored="sentiment/accuracy"))
    key = panel.metrics_key.text()
    assert "sentiment: ● accuracy ▼ macro_f1" in key and "similarity: ● spearman" in key and "loss" not in key
    assert panel.metrics.curves["sentiment/macro_f1"].opts["symbol"] == "t"
    panel.clear()
    assert panel.metrics_key.text() == ""


def test_the_metrics_key_never_covers_its_chart_when_a_third_row_of_charts_shows(qtbot):
    from qarac_gui.core.events import EvalDone
    from qarac_gui.ui.panels.charts_panel import ChartsPanel
    panel = ChartsPanel()
    qtbot.addWidget(panel)
    panel.resize(870, 500)                  # about the charts' part of a 1360 x 860 window
    panel.show()
    panel.handle(EvalDone(step=10, metrics={"sentiment": {"accuracy": 0.9, "macro_f1": 0.88},
                                            "similarity": {"spearman": 0.5, "pearson": 0.4}},
                          best_step=10, best_value=0.9, monitored="sentiment/accuracy"))
    panel._show_forgetting(True)            # a run with keep tasks and learnt task weights: three rows
    panel._show_balance(True)
    qtbot.waitUntil(lambda: panel.metrics_key.isVisible())
    from PySide6.QtWidgets import QApplication
    for _ in range(3):                      # the layouts settle in posted events, each a pass deeper
        QApplication.processEvents()
    chart, key = panel.metrics.geometry(), panel.metrics_key.geometry()
    assert chart.bottom() < key.top(), (chart, key)


# Long series (over LONG points) are drawn from an envelope of BIN-point bins; zoomed in, point by point.
def _long_chart(qtbot, n=4 * LONG):
    chart = LiveChart("Loss", "loss")
    qtbot.addWidget(chart)
    chart.resize(600, 400)
    chart.show()
    xs = np.arange(1, n + 1, dtype=float)
    ys = 1.0 + np.sin(xs / 50.0)
    ys[1234] = 9.0                      # a spike the drawing must keep
    ys[5000:5010] = np.nan              # gaps are left out, not drawn as 0
    chart.set_data("v", xs, ys)
    chart.flush()
    return chart, xs, ys


def test_a_long_series_is_drawn_from_its_envelope_with_every_peak(qtbot):
    chart, xs, ys = _long_chart(qtbot)
    x, y = chart.curves["v"].getOriginalDataset()
    assert len(x) < len(xs) / 10                             # far fewer points than the series
    assert np.nanmax(y) == 9.0 and np.nanmin(y) == np.nanmin(ys)
    assert np.all(np.isfinite(y)) and np.all(np.diff(x) >= 0)


def test_points_appended_to_a_long_series_are_drawn_at_once(qtbot):
    chart, xs, ys = _long_chart(qtbot)
    for i in range(BIN + 3):                                 # a whole bin and then some
        chart.append("v", len(xs) + 1 + i, -5.0 if i == BIN + 2 else 0.5)
    chart.flush()
    x, y = chart.curves["v"].getOriginalDataset()
    assert x[-1] == len(xs) + BIN + 3 and y[-1] == -5.0 and np.nanmax(y) == 9.0


def test_zoomed_in_a_long_series_shows_every_raw_point(qtbot):
    chart, xs, ys = _long_chart(qtbot)
    chart.getPlotItem().setXRange(1200, 1300, padding=0)
    x, y = chart.curves["v"].getOriginalDataset()
    inside = (xs >= 1200) & (xs <= 1300)
    shown = (x >= 1200) & (x <= 1300)
    np.testing.assert_array_equal(x[shown], xs[inside])
    np.testing.assert_array_equal(y[shown], ys[inside])
    chart.getPlotItem().enableAutoRange(x=True)              # following the data again: the envelope
    chart.getPlotItem().getViewBox().updateAutoRange()
    assert len(chart.curves["v"].getOriginalDataset()[0]) < len(xs) / 10
    chart.getPlotItem().setXRange(1, 4 * DETAIL, padding=0)  # too many points in view: still the envelope
    assert len(chart.curves["v"].getOriginalDataset()[0]) < len(xs) / 10


def test_a_long_series_in_log_mode_leaves_out_values_at_or_below_zero(qtbot):
    chart, xs, ys = _long_chart(qtbot)
    chart.append("v", len(xs) + 1, -1.0)
    chart.set_log_y(True)
    x, y = chart.curves["v"].getOriginalDataset()
    assert np.all(y > 0) and np.nanmax(y) == 9.0


def test_a_series_replaced_by_a_short_one_is_drawn_point_by_point(qtbot):
    chart, xs, ys = _long_chart(qtbot)
    chart.set_data("v", [1, 2, 3], [0.5, 0.4, 0.3])
    chart.flush()
    assert list(chart.curves["v"].getOriginalDataset()[1]) == [0.5, 0.4, 0.3]


def test_each_tasks_box_says_how_much_of_its_batches_is_padding(qtbot):
    panel = ChartsPanel()
    qtbot.addWidget(panel)
    started = realistic_run(total=10)[0]
    tasks = dict(started.tasks)
    tasks[TASKS[0]] = {"kind": "classification", "grouped_by_length": True,
                       "padding": {"grouped": 0.086, "random": 0.30}}
    tasks[TASKS[1]] = {"kind": "classification", "grouped_by_length": False,
                       "padding": {"grouped": 0.05, "random": 0.42}}
    panel.handle(RunStarted(**{**started.__dict__, "tasks": tasks}))
    assert panel.task_boxes[TASKS[0]].toolTip() == f"{TASKS[0]}: 8.6 % padding in batches (30 % if random)"
    assert panel.task_boxes[TASKS[1]].toolTip() == (f"{TASKS[1]}: 42 % padding in batches "
                                                    "(5.0 % with train.group_by_length)")
    assert panel.task_boxes[TASKS[2]].toolTip() == ""          # a log from before padding was measured


# ---------------------------------------------------------------- task balancing


def balanced_run(weights: bool, cosine: bool) -> list:
    """realistic_run with each StepLogged carrying task weights (and the gradient cosine) as balancing logs them."""
    out = []
    for e in realistic_run(total=60, every=30):
        if isinstance(e, StepLogged) and weights:
            e = StepLogged(e.step, e.epoch, e.task_losses, e.lr, e.head_lr, e.samples_per_s, e.elapsed_s,
                           {t: 1.0 + 0.01 * i * e.step for i, t in enumerate(TASKS)},
                           -0.05 + 0.001 * e.step if cosine else None)
        out.append(e)
    return out


@pytest.mark.parametrize("cosine", [False, True])
def test_balanced_runs_chart_one_weight_curve_per_task_with_plain_axis_labels(panel, cosine, tmp_path):
    assert panel.balance.isHidden()
    fill(panel, balanced_run(weights=True, cosine=cosine))
    chart = panel.balance
    assert chart.isVisible() and chart.height() >= 160
    tasks = [n for n in chart.series if n != "gradient cosine"]
    assert tasks == list(TASKS) and all(chart.visible_points(t) == 60 for t in tasks)
    assert ("gradient cosine" in chart.series) == cosine
    assert [chart.curves[t].opts["pen"].color().name() for t in TASKS] == \
        [panel.loss.curves[t].opts["pen"].color().name() for t in TASKS]     # each task in its loss colour
    labels = [label for _, label in shown_ticks(chart)]
    assert labels and not any("x" in label or "e" in label for label in labels), labels
    panel.task_boxes["topic"].setChecked(False)
    assert not chart.curves["topic"].isVisible()
    assert any(path.endswith("charts-balance.png") for path in panel.save_all(str(tmp_path / "charts.png")))
    panel.clear()
    assert chart.isHidden()


def test_fixed_weights_show_no_weights_chart(panel, tmp_path):
    fill(panel, balanced_run(weights=False, cosine=False))
    assert panel.balance.isHidden() and not panel.balance.series
    written = panel.save_all(str(tmp_path / "charts.png"))
    assert not any("balance" in path for path in written) and len(written) == 4
