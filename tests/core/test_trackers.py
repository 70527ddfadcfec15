"""train.report_to: a run also writes what it logs to TensorBoard, read back here with TensorBoard's own reader; a
tracker that cannot write is named with the pip command that installs it, before the run starts."""

from __future__ import annotations

import importlib.util
import threading

import pytest
from tiny import project_dict

from qarac_gui.core.events import EvalDone, StepLogged
from qarac_gui.core.project.config import parse_project, validate


def _project(tmp_path, tiny_bert, **train):
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "regression"],
                       train={"max_steps": 6, "log_every": 2, **train}, eval={"every": 3, "batch_size": 16})
    return parse_project(raw, tmp_path)


def test_a_tracker_that_cannot_write_is_named_with_what_to_install(tmp_path, tiny_bert, monkeypatch):
    project = _project(tmp_path, tiny_bert)
    project.train.report_to = ["tensorboard", "wandb"]
    assert [p for p in validate(project) if p.startswith("train.report_to")] == [
        "train.report_to: 'wandb' is not a tracker this app writes to (it knows: tensorboard)"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    project.train.report_to = ["tensorboard"]
    assert [p for p in validate(project) if p.startswith("train.report_to")] == [
        "train.report_to: 'tensorboard' needs the tensorboard package, which is not installed; pip install "
        "tensorboard   (or: pip install 'qarac-gui[tensorboard]')"]


def test_a_run_reports_its_losses_lrs_and_metrics_to_tensorboard(tmp_path, tiny_bert):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from qarac_gui.core.run import run
    project = _project(tmp_path, tiny_bert, report_to=["tensorboard"])
    events = []
    ended = run(project, events.append, threading.Event(), run_dir=tmp_path / "run", min_log_interval=0.0)
    assert ended.reason == "completed", ended.message
    board = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    board.Reload()
    logged = [e for e in events if isinstance(e, StepLogged)]
    for task in ("classification", "regression"):
        points = board.Scalars(f"loss/{task}")
        assert [p.step for p in points] == [e.step for e in logged]
        assert [p.value for p in points] == pytest.approx([e.task_losses[task] for e in logged], rel=1e-6)
    assert [p.value for p in board.Scalars("lr/heads")] == pytest.approx([e.head_lr for e in logged], rel=1e-6)
    evals = [e for e in events if isinstance(e, EvalDone)]
    accuracy = board.Scalars("validation/classification/accuracy")
    assert [p.step for p in accuracy] == [e.step for e in evals]
    assert [p.value for p in accuracy] == pytest.approx([e.metrics["classification"]["accuracy"] for e in evals])
    settings = tmp_path / "run" / "tensorboard" / "settings"      # the hyperparameters, beside the final metrics
    assert settings.is_dir() and any(settings.iterdir())
