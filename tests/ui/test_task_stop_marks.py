"""A task that stopped on its own (eval.task_patience) is marked on the charts where it stopped, in its colour, its
box says when and how good it was at its best, the log says why, a reopened run shows the same, and the Training
tab edits task_patience."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QStatusBar, QWidget

from qarac_gui.core.events import TaskStopped, event_to_json
from qarac_gui.ui.charts import color_of
from qarac_gui.ui.panels.charts_panel import ChartsPanel
from qarac_gui.ui.panels.log_panel import LogPanel
from qarac_gui.ui.panels.run_panel import RunPanel
from qarac_gui.ui.run_view import RunView
from qarac_gui.ui.worker import RunController
from tests.ui.test_charts import fill, realistic_run, settle

STOP = TaskStopped(step=150, task="topic", metric="accuracy", best_step=90, best_value=0.8125)


def with_stop(total: int = 300) -> list:
    """A run whose second task stops at step 150: its losses end there."""
    events = []
    for event in realistic_run(total=total):
        if getattr(event, "task_losses", None) and event.step > STOP.step:
            event = type(event)(**{**event.__dict__, "task_losses": {k: v for k, v in event.task_losses.items()
                                                                    if k != "topic"}})
        events.append(event)
        if getattr(event, "step", None) == STOP.step and type(event).__name__ == "EvalDone":
            events.append(STOP)
    return events


@pytest.fixture
def panel(charts_panel):
    return charts_panel


def stop_lines(chart):
    return [(line.value(), line.label.toPlainText(), line.pen.color().name()) for line in chart.markers]


def test_a_stopped_task_is_marked_where_it_stopped_on_the_loss_and_metric_charts(panel):
    fill(panel, with_stop())
    colour = color_of(1).name()            # topic is the second task
    assert stop_lines(panel.loss) == [(150, "topic stopped", colour)]
    assert stop_lines(panel.metrics) == [(150, "topic stopped", colour)]
    assert all(line.scene() is chart.scene() for chart in (panel.loss, panel.metrics) for line in chart.markers)
    assert panel.task_boxes["topic"].text() == "topic: stopped at 150"
    assert "no better accuracy since its best, 0.8125 at step 90" in panel.task_boxes["topic"].toolTip()
    assert panel.task_boxes["sentiment"].text() == "sentiment"
    assert "no better accuracy since its best" in panel.task_boxes["topic"].toolTip()
    panel.clear()
    settle(panel)
    assert panel.loss.markers == [] and panel.metrics.markers == []
    assert not [item for item in panel.loss.getPlotItem().items if type(item).__name__ == "InfiniteLine"]


def test_a_reopened_run_shows_where_its_tasks_stopped_and_the_log_says_why(qtbot, tmp_path):
    window = QWidget()
    qtbot.addWidget(window)
    charts, log = ChartsPanel(window), LogPanel(window)
    controller = RunController(window)
    view = RunView(controller, charts, RunPanel(window), log, QStatusBar(window), window)
    folder = tmp_path / "runs" / "reviews-1"
    folder.mkdir(parents=True)
    (folder / "project.toml").write_text('version = 2\nname = "reviews"\n', encoding="utf-8")
    (folder / "events.jsonl").write_text("".join(event_to_json(e) + "\n" for e in with_stop()), encoding="utf-8")
    view.show_past_run(str(folder))
    assert stop_lines(charts.loss) == [(150, "topic stopped", color_of(1).name())]
    assert charts.task_boxes["topic"].text() == "topic: stopped at 150"

    # a run in progress: the same event reaches the log in words
    charts.clear()
    controller.events_received.emit([STOP])
    assert any(line.endswith("Task topic stopped at step 150: no better accuracy since its best, 0.8125 at step "
                             "90; it trains no more") for line in log.lines())
    assert len(charts.metrics.markers) == 1


def test_the_training_tab_sets_task_patience(window, qtbot):
    panel = window.training_panel
    window.tabs.setCurrentWidget(panel)
    box = {f.key: f.widget for f in panel.binder.fields}["eval.task_patience"]
    assert box.objectName() == "eval_task_patience" and box.specialValueText() == "off" and box.value() == 0
    assert "its head is frozen" in box.toolTip()
    box.setValue(3)
    assert window.document.project.eval.task_patience == 3
    window.document.undo()
    assert window.document.project.eval.task_patience == 0 and box.value() == 0
