"""Keep tasks: evaluated at step 0 and at every evaluation, never trained; the forgetting alert and its pause."""

from __future__ import annotations

import hashlib
import json
import math
import threading

import pytest
import torch
from tiny import make_model_folder, project_dict

from qarac_gui.core.events import (
    EvalDone,
    ForgettingAlert,
    Progress,
    RunStarted,
    StepLogged,
    describe,
    event_to_json,
)
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.run import run

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def mlm_model(tmp_path_factory):
    """A tiny BERT saved with its masked-LM head, so a masked_lm task reads a pretrained LM head."""
    return make_model_folder(tmp_path_factory.mktemp("mlm") / "model", "bert", head="mlm", seed=5)


def _raw(tmp_path, model, **sections):
    raw = project_dict(model, tmp_path / "data", ["classification", "masked_lm"], **sections)
    raw["tasks"][1]["keep"] = True
    return raw


def _run(tmp_path, raw, name="run", pause=None, stop=None, resume=False, emit=None):
    events = []
    sink = events.append if emit is None else (lambda e: (events.append(e), emit(e)))
    ended = run(parse_project(raw, tmp_path), sink, stop or threading.Event(), run_dir=tmp_path / name,
                resume=resume, min_log_interval=0.0, pause=pause)
    return events, ended


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def _scripted(monkeypatch, perplexities):
    """Every evaluation of the keep task reports the next of `perplexities` (the first at step 0)."""
    from qarac_gui.core.training import evaluation, forgetting, loop
    real, values = evaluation.evaluate_task, iter(perplexities)

    def scripted(model, data, *args, **kw):
        result = real(model, data, *args, **kw)
        if data.task.keep:
            value = next(values)
            result = {"loss": math.log(value), "perplexity": value}
        return result
    monkeypatch.setattr(loop, "evaluate_task", scripted)
    monkeypatch.setattr(forgetting, "evaluate_task", scripted)


def test_step_0_evaluation_comes_before_any_optimiser_step_and_measures_the_untouched_model(
        tmp_path, mlm_model, monkeypatch):
    from qarac_gui.core.training.evaluation import evaluate_task
    from qarac_gui.core.training.guard import StepGuard
    from qarac_gui.core.training.setup import build_run
    order = []
    real_step = StepGuard.optimizer_step

    def recorded_step(self):
        order.append("optimiser step")
        real_step(self)
    monkeypatch.setattr(StepGuard, "optimizer_step", recorded_step)
    raw = _raw(tmp_path, mlm_model, train={"max_steps": 3})
    events, ended = _run(tmp_path, raw, emit=lambda e: order.append(e) if isinstance(e, EvalDone) else None)
    assert ended.reason == "completed"
    first = order[0]
    assert isinstance(first, EvalDone) and first.step == 0 and order[1] == "optimiser step"
    assert set(first.metrics) == {"masked-lm"}          # only the keep tasks: the others have nothing to compare
    # the same numbers as an evaluation of the freshly built model, which no step has touched
    t, _, _ = build_run(parse_project(raw, tmp_path), tmp_path / "fresh", lambda e: None, threading.Event(), False)
    fresh = evaluate_task(t.model, t.tasks["masked-lm"], t.device, 16, t.autocast)
    assert first.metrics["masked-lm"] == pytest.approx(fresh, rel=1e-6)
    # with no validation file, a keep task is evaluated on all its rows: none was held out, none trained on
    assert _of(events, RunStarted)[0].tasks["masked-lm"]["valid_rows"] == 48


def test_a_keep_task_gets_no_forward_in_training_steps_and_its_head_never_changes(tmp_path, mlm_model, monkeypatch):
    from qarac_gui.core.model.multitask import MultiTaskModel
    trained_forwards, evaluated = [], []
    models = []
    real_forward = MultiTaskModel.forward

    def recorded(self, name, batch, *args, **kwargs):
        (trained_forwards if self.training else evaluated).append(name)
        if not models:
            models.append((self, {k: v.clone() for k, v in self.heads.state_dict().items()}))
        return real_forward(self, name, batch, *args, **kwargs)
    monkeypatch.setattr(MultiTaskModel, "forward", recorded)
    events, ended = _run(tmp_path, _raw(tmp_path, mlm_model, optim={"lr": 1e-2}, train={"max_steps": 4}))
    assert ended.reason == "completed"
    assert "classification" in trained_forwards and "masked-lm" not in trained_forwards
    assert "masked-lm" in evaluated
    assert all(set(e.task_losses) == {"classification"} for e in _of(events, StepLogged))
    model, before = models[0]
    after = model.heads.state_dict()
    tied = model.backbones["encoder"].get_input_embeddings().weight    # the tied decoder trains with the encoder
    own = [k for k in before if k.startswith("masked-lm.") and after[k].data_ptr() != tied.data_ptr()]
    assert own and all(torch.equal(before[k], after[k]) for k in own)
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("classification."))
    # never trained, so never exported as a task of its own
    assert not (tmp_path / "run" / "export" / "masked-lm").exists()
    assert (tmp_path / "run" / "export" / "classification").is_dir()


def test_the_alert_fires_once_per_crossing(tmp_path, mlm_model, monkeypatch):
    # baseline 10; 20 % and 30 % worse (one alert), back to 2 % (re-armed), 25 % and 26 % worse (a second alert)
    _scripted(monkeypatch, [10.0, 12.0, 13.0, 10.2, 12.5, 12.6, 12.6])
    raw = _raw(tmp_path, mlm_model, train={"max_steps": 6}, eval={"every": 1, "forgetting_alert": 0.1})
    events, ended = _run(tmp_path, raw)
    assert ended.reason == "completed"
    alerts = _of(events, ForgettingAlert)
    assert [(a.step, a.task, a.metric, a.baseline, a.value) for a in alerts] == [
        (1, "masked-lm", "perplexity", 10.0, 12.0), (4, "masked-lm", "perplexity", 10.0, 12.5)]
    assert alerts[0].change == pytest.approx(0.2) and alerts[0].threshold == 0.1 and not alerts[0].paused
    back = [e for e in events if isinstance(e, Progress) and e.phase == "forgetting"]
    assert len(back) == 1 and "back within 10 % of step 0 (10)" in back[0].message
    assert "20.0 % worse than at step 0 (10;" in describe(alerts[0])
    # in the run's log, as the run history and a follower read it back
    from qarac_gui.core.results.follow import parse_event
    from qarac_gui.core.results.history import read_events
    assert _of(read_events(tmp_path / "run"), ForgettingAlert) == alerts
    assert parse_event(event_to_json(alerts[0])) == alerts[0]


def test_no_alert_when_it_is_off_or_the_metric_improves(tmp_path, mlm_model, monkeypatch):
    _scripted(monkeypatch, [10.0, 30.0, 9.0])
    raw = _raw(tmp_path, mlm_model, train={"max_steps": 2}, eval={"every": 1, "forgetting_alert": 0})
    events, _ = _run(tmp_path, raw, "off")
    assert not _of(events, ForgettingAlert) and len(_of(events, EvalDone)) == 3
    _scripted(monkeypatch, [10.0, 9.0, 8.0])
    raw = _raw(tmp_path, mlm_model, train={"max_steps": 2}, eval={"every": 1})
    events, _ = _run(tmp_path, raw, "better")
    assert not _of(events, ForgettingAlert)


def test_forgetting_pause_pauses_the_run_until_resumed(tmp_path, mlm_model, monkeypatch):
    _scripted(monkeypatch, [10.0, 10.0, 15.0, 15.0, 15.0])
    pause, paused_at = threading.Event(), []

    def resume_when_paused(event):
        if isinstance(event, Progress) and event.phase == "paused":
            paused_at.append(event.message)
            pause.clear()                   # the window's Resume
    raw = _raw(tmp_path, mlm_model, train={"max_steps": 4}, eval={"every": 1, "forgetting_pause": True})
    events, ended = _run(tmp_path, raw, pause=pause, emit=resume_when_paused)
    assert ended.reason == "completed" and ended.step == 4
    alert = _of(events, ForgettingAlert)[0]
    assert alert.step == 2 and alert.paused
    assert paused_at == ["Paused after step 2"]
    assert events.index(alert) < next(i for i, e in enumerate(events) if getattr(e, "phase", "") == "paused")
    assert "The run is paused" in describe(alert)


def test_forgetting_pause_without_a_pause_flag_writes_the_pause_request_file(tmp_path, mlm_model, monkeypatch):
    from qarac_gui.core.training.distributed import PAUSE_REQUEST
    _scripted(monkeypatch, [10.0, 15.0, 15.0, 15.0])
    request = tmp_path / "run" / PAUSE_REQUEST
    seen = []

    def remove_when_paused(event):
        if isinstance(event, Progress) and event.phase == "paused":
            seen.append(request.exists())
            request.unlink()                # how the CLI's user resumes
    raw = _raw(tmp_path, mlm_model, train={"max_steps": 3}, eval={"every": 1, "forgetting_pause": True})
    events, ended = _run(tmp_path, raw, emit=remove_when_paused)
    assert ended.reason == "completed" and seen == [True]


def test_a_resumed_run_keeps_the_step_0_baseline(tmp_path, mlm_model, monkeypatch):
    _scripted(monkeypatch, [10.0, 10.5, 10.5, 13.0, 13.0])
    stop = threading.Event()
    raw = _raw(tmp_path, mlm_model, train={"max_steps": 4}, eval={"every": 1})
    first, ended = _run(tmp_path, raw, stop=stop,
                        emit=lambda e: stop.set() if isinstance(e, EvalDone) and e.step == 2 else None)
    assert ended.reason == "stopped" and ended.step == 2
    second, ended = _run(tmp_path, raw, resume=True)
    assert ended.reason == "completed"
    assert not [e for e in second if isinstance(e, EvalDone) and e.step == 0]     # not evaluated at step 0 again
    alert = _of(second, ForgettingAlert)[0]
    assert (alert.step, alert.baseline, alert.value) == (3, 10.0, 13.0)


def test_a_checkpoint_written_before_the_monitor_existed_still_resumes(tmp_path, mlm_model):
    stop = threading.Event()
    raw = _raw(tmp_path, mlm_model, train={"max_steps": 3})
    _, ended = _run(tmp_path, raw, stop=stop,
                    emit=lambda e: stop.set() if isinstance(e, StepLogged) and e.step == 1 else None)
    assert ended.reason == "stopped"
    checkpoint = next((tmp_path / "run" / "checkpoints").glob("step-*"))
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["trainer"].pop("forgetting_baseline")["masked-lm"]["perplexity"] > 0
    state["trainer"].pop("forgetting_alerted")
    (checkpoint / "state.json").write_text(json.dumps(state))
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"]["state.json"] = hashlib.sha256((checkpoint / "state.json").read_bytes()).hexdigest()
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    events, ended = _run(tmp_path, raw, resume=True)
    assert ended.reason == "completed" and not _of(events, ForgettingAlert)


@pytest.mark.slow
def test_a_large_learning_rate_wrecks_the_masked_lm_and_raises_the_alert(tmp_path, mlm_model):
    raw = _raw(tmp_path, mlm_model, optim={"lr": 0.3, "warmup_steps": 0, "grad_clip": 0},
               train={"max_steps": 8}, eval={"every": 2})
    events, ended = _run(tmp_path, raw)
    assert ended.reason == "completed"
    evals = [(e.step, e.metrics["masked-lm"]["perplexity"]) for e in _of(events, EvalDone)]
    baseline = evals[0][1]
    assert evals[0][0] == 0 and evals[-1][1] > 2 * baseline          # the encoder forgot
    crossings, above = [], False
    for step, value in evals[1:]:
        if value >= 1.1 * baseline and not above:
            crossings.append(step)
        above = value >= 1.1 * baseline
    assert [a.step for a in _of(events, ForgettingAlert)] == crossings != []


def test_the_command_line_prints_the_alert_as_a_line():
    import io

    from qarac_gui.cli import TerminalPrinter
    out = io.StringIO()
    printer = TerminalPrinter(out)
    printer(ForgettingAlert(200, "general", "perplexity", 20.0, 25.0, 0.25, 0.1, paused=True))
    printer(ForgettingAlert(300, "general", "perplexity", 20.0, math.inf, math.inf, 0.1))
    assert out.getvalue().splitlines() == [
        "Forgetting: general perplexity 25 at step 200, 25.0 % worse than at step 0 (20; the alert is at 10 %). The "
        "run is paused (eval.forgetting_pause): resume it in the window, or remove the file pause-request from the "
        "run folder",
        "Forgetting: general perplexity inf at step 300, no longer finite, unlike at step 0 (20; the alert is at 10 %)"]


def test_a_checkpoint_written_at_the_alert_s_step_holds_the_alert(tmp_path, mlm_model, monkeypatch):
    # a run killed right after that checkpoint and continued must not alert a second time for the same crossing
    _scripted(monkeypatch, [10.0, 12.0, 12.5])
    raw = _raw(tmp_path, mlm_model, train={"max_steps": 2}, eval={"every": 1, "forgetting_alert": 0.1},
               checkpoint={"every": 1})
    alerted_in_checkpoint = {}

    def read(event):
        if type(event).__name__ == "CheckpointSaved":
            state = json.loads((tmp_path / "run" / event.path / "state.json").read_text(encoding="utf-8"))
            alerted_in_checkpoint[event.step] = state["trainer"]["forgetting_alerted"]
    events, ended = _run(tmp_path, raw, emit=read)
    assert ended.reason == "completed" and len(_of(events, ForgettingAlert)) == 1
    assert alerted_in_checkpoint[1] == ["masked-lm"]
