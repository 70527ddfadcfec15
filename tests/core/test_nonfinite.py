"""NaN and inf: a step with a non-finite loss or gradient changes nothing and moves the schedule on by nothing;
too many in a row stop the run, and a roll-back continues from the last checkpoint at a lower learning rate."""

import threading

import pytest
import torch
from faults import poison
from tiny import project_dict

from qarac_gui.core.events import CheckpointSaved, RunStarted, StepLogged, StepSkipped
from qarac_gui.core.model.multitask import MultiTaskModel
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.run import run
from qarac_gui.core.training.plan import lr_curve

pytestmark = pytest.mark.usefixtures("torch_threads")


def _run(tmp_path, model, name="run", resume=False, lr_scale=1.0, stop=None, emit=None, **sections):
    raw = project_dict(model, tmp_path / "data", ["classification", "regression"], **sections)
    project = parse_project(raw, tmp_path)
    events = []
    sink = events.append if emit is None else (lambda e: (events.append(e), emit(e)))
    ended = run(project, sink, stop or threading.Event(), run_dir=tmp_path / name, resume=resume,
                min_log_interval=0.0, lr_scale=lr_scale)
    return project, events, ended


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def _weights(path):
    from safetensors.torch import load_file
    return load_file(path / "model.safetensors")


@pytest.mark.parametrize("how", ["nan_loss", "inf_gradients"])
def test_a_non_finite_step_is_skipped_and_the_schedule_does_not_move(tmp_path, tiny_bert, monkeypatch, how):
    healthy = MultiTaskModel.forward
    poison(monkeypatch, "regression", {3, 4}, how)
    sections = dict(train={"max_steps": 8, "log_every": 1}, checkpoint={"every": 1, "keep": 10},
                    optim={"lr": 1e-3, "warmup_steps": 2, "scheduler": "linear"})
    stop = threading.Event()
    # Stop once step 4 is reported skipped: the stop writes a checkpoint of step 4.
    project, first, ended = _run(tmp_path, tiny_bert, stop=stop,
                                 emit=lambda e: isinstance(e, StepSkipped) and e.step == 4 and stop.set(), **sections)
    assert ended.reason == "stopped" and ended.step == 4
    expected_tasks = ["regression"] if how == "nan_loss" else []
    assert [(e.step, e.tasks, e.in_a_row) for e in _of(first, StepSkipped)] == [(3, expected_tasks, 1),
                                                                               (4, expected_tasks, 2)]
    # Periodic checkpoints wait for a good step; the weights of the two skipped steps are those of step 2.
    assert [e.step for e in _of(first, CheckpointSaved)] == [1, 2, 4]
    ckpts = tmp_path / "run" / "checkpoints"
    w2, w4 = _weights(ckpts / "step-00000002"), _weights(ckpts / "step-00000004")
    assert all(torch.equal(w2[k], w4[k]) for k in w2)
    moments = torch.load(ckpts / "step-00000004" / "optimizer.pt", weights_only=True)["optimizer"]["state"]
    assert {float(v["step"]) for v in moments.values()} == {2.0}

    monkeypatch.setattr(MultiTaskModel, "forward", healthy)
    _, second, ended = _run(tmp_path, tiny_bert, resume=True, **sections)
    assert ended.reason == "completed" and not _of(second, StepSkipped)
    w5 = _weights(ckpts / "step-00000005")
    assert any(not torch.equal(w4[k], w5[k]) for k in w4)
    # The schedule counts good steps: steps 3, 4 and 5 all apply the lr planned for the third good step.
    planned = lr_curve(project, 8)["encoder"]
    applied = {e.step: e.lr for e in _of(first + second, StepLogged)}
    assert [applied[s] for s in range(1, 9)] == pytest.approx(planned[:3] + [planned[2]] * 2 + planned[3:6],
                                                              rel=1e-12)
    # The logged loss leaves out what was not finite instead of turning NaN.
    logged = {e.step: e.task_losses for e in _of(first, StepLogged)}
    if how == "nan_loss":
        assert "regression" not in logged[3] and "classification" in logged[3]
    assert all(v == v for losses in logged.values() for v in losses.values())


@pytest.mark.slow
def test_too_many_skips_in_a_row_stop_the_run_and_a_roll_back_at_a_lower_lr_finishes_it(
        tmp_path, tiny_bert, monkeypatch):
    healthy = MultiTaskModel.forward
    poison(monkeypatch, "classification", set(range(5, 9)))
    sections = dict(train={"max_steps": 10, "log_every": 1, "skip_limit": 3}, checkpoint={"every": 2, "keep": 2},
                    optim={"lr": 1e-3, "warmup_steps": 0, "scheduler": "constant"})
    project, events, ended = _run(tmp_path, tiny_bert, **sections)
    assert ended.reason == "diverged" and ended.step == 7
    assert [e.step for e in _of(events, StepSkipped)] == [5, 6, 7]
    assert "3 steps in a row (steps 5-7)" in ended.message
    assert "checkpoint of step 4" in ended.message and "--lr-scale 0.5" in ended.message
    assert [e.step for e in _of(events, CheckpointSaved)] == [2, 4]      # nothing saved after the trouble began
    assert not (tmp_path / "run" / "export").exists()

    monkeypatch.setattr(MultiTaskModel, "forward", healthy)
    _, again, ended = _run(tmp_path, tiny_bert, resume=True, lr_scale=0.5, **sections)
    assert ended.reason == "completed" and ended.step == 10
    started = _of(again, RunStarted)[0]
    assert started.start_step == 4
    assert started.lr_curve["encoder"][3] == pytest.approx(1e-3) and started.lr_curve["encoder"][4] == 5e-4
    assert {e.step: e.lr for e in _of(again, StepLogged)} == {s: pytest.approx(5e-4) for s in range(5, 11)}
    assert (tmp_path / "run" / "export").is_dir()


def test_skip_limit_zero_never_stops_and_a_scale_without_resume_is_refused(tmp_path, tiny_bert, monkeypatch):
    poison(monkeypatch, "classification", set(range(2, 7)))
    _, events, ended = _run(tmp_path, tiny_bert, train={"max_steps": 6, "skip_limit": 0})
    assert ended.reason == "completed" and len(_of(events, StepSkipped)) == 5
    from qarac_gui.core.errors import UserError
    with pytest.raises(UserError, match="needs --resume"):
        _run(tmp_path, tiny_bert, name="other", lr_scale=0.5)
