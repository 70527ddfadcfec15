"""Task balancing in the window: the Training tab's choice edits the project, and a balanced run's logged weights
become one curve per task in the charts."""

from __future__ import annotations

import threading

import pytest
from gui import choose

from qarac_gui.ui.form import ComboBox
from qarac_gui.ui.panels.charts_panel import ChartsPanel


def test_the_training_tab_chooses_the_balancing_and_says_when_each_helps(window):
    w = window
    fields = {f.key: f.widget for f in w.training_panel.binder.fields}
    combo, lr = fields["train.balancing"], fields["train.balancing_lr"]
    assert isinstance(combo, ComboBox)          # the form's combo: the mouse wheel changes it only when focused
    assert combo.currentText() == "Fixed weights" and not lr.isEnabled()
    for words in ("Uncertainty", "UPGrad", "PCGrad", "MGDA", "opposite directions", "different scales"):
        assert words in combo.toolTip()
    choose(combo, "Uncertainty (learnt weights)")
    assert w.document.project.train.balancing == "uncertainty" and lr.isEnabled()
    choose(combo, "UPGrad (torchjd)")
    assert w.document.project.train.balancing == "upgrad" and not lr.isEnabled()
    w.document.undo()
    assert combo.currentText() == "Uncertainty (learnt weights)"


@pytest.mark.slow
@pytest.mark.usefixtures("torch_threads")
def test_a_real_balanced_runs_log_draws_one_weight_curve_per_task(qtbot, tmp_path, tiny_bert):
    pytest.importorskip("torchjd")
    from tiny import project_dict

    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.results.history import read_events
    from qarac_gui.core.run import run
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "regression", "similarity"],
                       train={"max_steps": 5, "balancing": "pcgrad"})
    ended = run(parse_project(raw, tmp_path), lambda e: None, threading.Event(), run_dir=tmp_path / "run",
                min_log_interval=0)
    assert ended.reason == "completed", ended.message
    panel = ChartsPanel()
    qtbot.addWidget(panel)
    panel.resize(1000, 800)
    panel.show()
    for event in read_events(tmp_path / "run"):
        panel.handle(event)
    panel.flush()
    qtbot.waitUntil(lambda: panel.balance.isVisible())
    tasks = ["classification", "regression", "similarity"]
    assert sorted(panel.balance.series) == sorted(tasks + ["gradient cosine"])
    assert all(panel.balance.visible_points(t) == 5 for t in tasks)
