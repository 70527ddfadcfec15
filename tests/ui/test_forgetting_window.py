"""The forgetting monitor in the window: marking a task keep, the two eval settings, the chart of a keep task's
change since step 0 with its alert line, and the alert in the log and the status bar."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QLineEdit

from qarac_gui.core.events import EvalDone, ForgettingAlert, RunStarted, StepLogged, event_to_json

pytestmark = pytest.mark.usefixtures("no_dialogs")

KEEP_INFO = {"kind": "masked_lm", "train_rows": 60, "valid_rows": 60, "labels": [], "head_params": 10,
             "keep": True, "metric": "perplexity", "higher_is_better": False, "forgetting_alert": 0.1}


def run_events() -> list:
    tasks = {"sentiment": {"kind": "classification", "train_rows": 40, "valid_rows": 8, "labels": ["neg", "pos"],
                           "head_params": 100}, "general": KEEP_INFO}
    return [RunStarted("/runs/r", 20, 0, tasks, {"steps": [1, 20], "encoder": [1e-4, 0.0], "heads": [1e-4, 0.0]},
                       "cpu", "fp32", {}, 1000, 1000),
            EvalDone(0, {"general": {"loss": 3.0, "perplexity": 20.0}}, 0, None, "sentiment/accuracy"),
            StepLogged(10, 0.5, {"sentiment": 0.6}, 1e-4, 1e-4, 30.0, 1.0),
            EvalDone(10, {"sentiment": {"loss": 0.5, "accuracy": 0.75},
                          "general": {"loss": 3.1, "perplexity": 21.0}}, 10, 0.75, "sentiment/accuracy"),
            StepLogged(20, 1.0, {"sentiment": 0.4}, 1e-5, 1e-5, 30.0, 2.0),
            EvalDone(20, {"sentiment": {"loss": 0.3, "accuracy": 0.875},
                          "general": {"loss": 3.2, "perplexity": 25.0}}, 20, 0.875, "sentiment/accuracy"),
            ForgettingAlert(20, "general", "perplexity", 20.0, 25.0, 0.25, 0.1)]


def _check_chart(w) -> None:
    chart = w.charts.forgetting
    assert chart.isVisible()
    series = chart.series["general/perplexity"]
    assert list(series.x) == [0, 10, 20] and list(series.y) == pytest.approx([0.0, 5.0, 25.0])
    assert list(chart.lines) == [10.0]                    # perplexity: worse is up, the alert 10 % above zero
    assert chart.zero.value() == 0
    assert chart.getPlotItem().getAxis("left").labelText == "change since step 0 (%)"
    # the new task's metric stays on the metrics chart; the keep task's perplexity is not drawn there
    assert "sentiment/accuracy" in w.charts.metrics.series and "general/perplexity" not in w.charts.metrics.series


def test_a_keep_task_is_charted_against_step_0_and_its_alert_reaches_the_status_bar(qtbot, window, tmp_path):
    w = window
    w.resize(1280, 800)
    w.controller.events_received.emit(run_events())
    w.charts.flush()
    qtbot.waitUntil(lambda: w.charts.forgetting.isVisible())
    _check_chart(w)
    assert w.statusBar().currentMessage() == "Forgetting: general perplexity 25.0 % worse than at step 0 (at step 20)"
    assert any("WARNING: Forgetting: general perplexity 25 at step 20, 25.0 % worse than at step 0" in line
               for line in w.log.lines())
    written = w.charts.save_all(str(tmp_path / "charts.png"))
    assert str(tmp_path / "charts-forgetting.png") in written and (tmp_path / "charts-forgetting.png").stat().st_size

    # the same run reopened from its folder: the history reader carries the alert and the step-0 evaluation
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.jsonl").write_text("".join(event_to_json(e) + "\n" for e in run_events()), encoding="utf-8")
    w.run_view.show_past_run(str(run))
    _check_chart(w)
    w.charts.clear()
    assert not w.charts.forgetting.isVisible() and not w.charts.forgetting.lines


def test_a_task_is_marked_keep_and_the_alert_is_set_in_the_window(qtbot, window):
    w = window
    w.tasks_panel.add_task()
    w.tabs.setCurrentWidget(w.tasks_panel)
    keep = w.tasks_panel.editor.findChild(QCheckBox, "keep")
    assert "never trained" in keep.toolTip()
    qtbot.mouseClick(keep, Qt.MouseButton.LeftButton, pos=QPoint(8, keep.height() // 2))   # on its box
    assert w.document.project.tasks[-1].keep
    weight = w.tasks_panel.editor.findChild(QLineEdit, "weight")
    assert not weight.isEnabled() and "never trained" in weight.toolTip()
    w.tabs.setCurrentWidget(w.training_panel)
    alert = w.training_panel.findChild(QDoubleSpinBox, "eval_forgetting_alert")
    pause = w.training_panel.findChild(QCheckBox, "eval_forgetting_pause")
    assert alert.value() == pytest.approx(0.1) and pause.isEnabled()
    alert.setValue(0.0)
    assert w.document.project.eval.forgetting_alert == 0 and alert.text() == "off"
    assert not pause.isEnabled()                      # nothing to pause for while the alert is off
    alert.setValue(0.25)
    pause.setChecked(True)
    assert (w.document.project.eval.forgetting_alert, w.document.project.eval.forgetting_pause) == (0.25, True)
