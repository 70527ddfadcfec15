"""Stopping tasks one by one (eval.task_patience): a task whose own metric stops improving is frozen to the last bit
and drawn no more while the others train on; it is exported from its best weights; a run whose tasks have all
stopped ends early; a run stopped and continued after a task stopped ends bit-identical to one never stopped.

Most runs here script the validation metrics by step (the real evaluation runs, then its main metric is replaced),
so when a task stops does not hang on floating-point details; one run judges the real metrics."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from tiny import project_dict

from qarac_gui.core.events import (
    CheckpointSaved,
    EvalDone,
    RunStarted,
    StepDone,
    StepLogged,
    TaskStopped,
    describe,
)
from qarac_gui.core.project.config import parse_project, validate
from qarac_gui.core.run import run
from qarac_gui.core.training.sampling import TaskStream

pytestmark = pytest.mark.usefixtures("torch_threads")

KINDS = ["classification", "regression"]
CLS, REG = "classification", "regression"


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def _load(path):
    from safetensors.torch import load_file
    return load_file(str(path))


class Script:
    """Validation metrics by step: each task's main metric replaced by a scripted value (the rest stays real), and
    the model's weights recorded at every evaluation."""

    def __init__(self, monkeypatch, values: dict[str, dict[int, float]]) -> None:
        from qarac_gui.core.training import loop
        real = loop.evaluate_task
        self.step, self.seen, self.trainable = 0, {}, {}

        def scripted(model, data, device, batch_size, autocast, **kw):
            result = dict(real(model, data, device, batch_size, autocast, **kw))
            main = {CLS: "accuracy", REG: "spearman"}[data.name]
            result[main] = values[data.name][self.step]
            self.seen.setdefault(self.step, {k: v.detach().clone() for k, v in model.state_dict().items()})
            self.trainable.setdefault(self.step, {k for k, p in model.named_parameters() if p.requires_grad})
            return result
        monkeypatch.setattr(loop, "evaluate_task", scripted)

    def __call__(self, event) -> None:
        if isinstance(event, StepDone):         # sent before the step's evaluation
            self.step = event.step


def _run(tmp_path, model, name, script=None, stop=None, resume=False, **sections):
    raw = project_dict(model, tmp_path / "data", KINDS, **sections)
    events = []

    def emit(event):
        events.append(event)
        if script is not None:
            script(event)
    ended = run(parse_project(raw, tmp_path), emit, stop or threading.Event(), run_dir=tmp_path / name,
                resume=resume, min_log_interval=0.0)
    return events, ended


# classification: best at step 2, then no better: stops at step 4 with patience 2; regression improves every time
FALLING = {CLS: {s: {1: 0.5, 2: 0.7}.get(s, 0.6) for s in range(1, 31)}, REG: {s: s / 100 for s in range(1, 31)}}
SECTIONS = dict(optim={"lr": 1e-2, "warmup_steps": 0, "weight_decay": 0.1},
                train={"max_steps": 10, "log_every": 1}, eval={"every": 1, "task_patience": 2})


def _heads(state, task):
    return {k: v for k, v in state.items() if k.startswith(f"heads.{task}.")}


def _encoder(state):
    return {k: v for k, v in state.items() if k.startswith("backbones.encoder.")}


def _params(folder):
    out = {}
    for f in sorted(folder.rglob("*.safetensors")):
        out.update({f"{f.relative_to(folder)}:{k}": v for k, v in _load(f).items()})
    return out


def _full(folder):
    """export/full's weights under the model's own state keys."""
    out = {f"heads.{k}": v for k, v in _load(folder / "heads.safetensors").items()}
    encoder = _load(folder / "backbones" / "encoder" / "model.safetensors")
    out |= {f"backbones.encoder.{k}": v for k, v in encoder.items()}
    return out


def test_a_stopped_task_is_frozen_drawn_no_more_and_exported_from_its_best(tmp_path, tiny_bert, monkeypatch):
    script = Script(monkeypatch, FALLING)
    events, ended = _run(tmp_path, tiny_bert, "r", script, **SECTIONS)
    assert ended.reason == "completed" and ended.step == 10
    assert _of(events, TaskStopped) == [TaskStopped(4, CLS, "accuracy", 2, 0.7)]
    # the event comes after the evaluation that decided it
    assert events.index(_of(events, TaskStopped)[0]) == events.index(_of(events, EvalDone)[3]) + 1

    # drawn no more: every step until the stop trains both tasks, every step after it the regression alone
    drawn = {e.step: sorted(e.task_losses) for e in _of(events, StepLogged)}
    assert all(drawn[s] == [CLS, REG] for s in range(1, 5))
    assert all(drawn[s] == [REG] for s in range(5, 11))

    # frozen: its head the same to the last bit after the stop, despite weight decay; the rest trains on
    final = _full(tmp_path / "r" / "export" / "full")
    at_stop = script.seen[4]
    frozen = _heads(at_stop, CLS)
    assert set(frozen) <= script.trainable[4] and not set(frozen) & script.trainable[5]     # no gradient
    assert set(_heads(at_stop, REG)) <= script.trainable[5]
    assert frozen and all(torch.equal(final[k], v.cpu()) for k, v in frozen.items())
    assert not all(torch.equal(final[k], v.cpu()) for k, v in _heads(at_stop, REG).items())
    assert not all(torch.equal(final[k], v.cpu()) for k, v in _encoder(at_stop).items())

    # its best weights: those of step 2's evaluation, kept beside the checkpoints and in its export
    best = _load(tmp_path / "r" / "checkpoints" / f"best-{CLS}.safetensors")
    step2 = script.seen[2]
    assert set(best) == set(_heads(step2, CLS)) | set(_encoder(step2))
    assert all(torch.equal(best[k], step2[k].cpu()) for k in best)
    exported = _load(tmp_path / "r" / "export" / CLS / "model.safetensors")
    for key, value in _encoder(step2).items():
        name = key.removeprefix("backbones.encoder.")
        if not name.startswith("pooler."):      # the exported class's own pooler is the head's layer
            assert torch.equal(exported[f"bert.{name}"], value.cpu()), name
    assert not all(torch.equal(exported[f"bert.{k.removeprefix('backbones.encoder.')}"], v.cpu())
                   for k, v in _encoder(at_stop).items() if ".pooler." not in k)
    card = (tmp_path / "r" / "export" / CLS / "README.md").read_text()
    assert "accuracy: 0.7000" in card
    # the task that never stopped: its best is its last evaluation
    reg_best = _load(tmp_path / "r" / "checkpoints" / f"best-{REG}.safetensors")
    assert all(torch.equal(reg_best[k], script.seen[10][k].cpu()) for k in reg_best)

    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["tasks"][CLS] == {"metric": "accuracy", "best_value": 0.7, "best_step": 2,
                                     "evals_without_improvement": 2, "stopped_at": 4}
    assert metrics["tasks"][REG]["stopped_at"] == 0


@pytest.mark.parametrize("balancing", ["mgda", "upgrad"])
def test_an_aggregator_goes_on_training_the_shared_encoder_after_a_task_stopped(tmp_path, tiny_bert, monkeypatch,
                                                                              balancing):
    # the stopped task's gradient row is empty from then on: it must weigh nothing, not pull MGDA to no update
    pytest.importorskip("torchjd")
    script = Script(monkeypatch, FALLING)
    sections = {**SECTIONS, "train": {**SECTIONS["train"], "balancing": balancing}}
    events, ended = _run(tmp_path, tiny_bert, "r", script, **sections)
    assert ended.reason == "completed" and _of(events, TaskStopped)[0].step == 4
    before, after = _encoder(script.seen[5]), _encoder(script.seen[10])
    assert not all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(v, script.seen[10][k]) for k, v in _heads(script.seen[4], CLS).items())
    weights = [e.task_weights for e in _of(events, StepLogged) if e.step > 5]
    assert weights and all(list(w) == [REG] and w[REG] > 0 for w in weights)


def test_the_run_ends_early_when_every_task_has_stopped(tmp_path, tiny_bert, monkeypatch):
    flat = {CLS: dict.fromkeys(range(1, 31), 0.5), REG: dict.fromkeys(range(1, 31), 0.1)}
    script = Script(monkeypatch, flat)
    events, ended = _run(tmp_path, tiny_bert, "r", script, **SECTIONS)
    assert ended.reason == "early_stopped" and ended.step == 3
    assert "every task stopped improving" in ended.message
    assert [(e.task, e.step, e.best_step) for e in _of(events, TaskStopped)] == [(CLS, 3, 1), (REG, 3, 1)]
    assert _of(events, CheckpointSaved)[-1].step == 3
    assert (tmp_path / "r" / "export" / CLS).is_dir()


def test_a_keep_task_is_never_judged_so_the_run_ends_when_the_trained_tasks_stop(tmp_path, tiny_bert, monkeypatch):
    flat = {CLS: dict.fromkeys(range(0, 31), 0.5), REG: dict.fromkeys(range(0, 31), 0.1)}
    script = Script(monkeypatch, flat)
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS, **SECTIONS)
    raw["tasks"][1]["keep"] = True          # the regression task only measures forgetting
    events = []

    def emit(event):
        events.append(event)
        script(event)
    ended = run(parse_project(raw, tmp_path), emit, threading.Event(), run_dir=tmp_path / "r", min_log_interval=0.0)
    assert ended.reason == "early_stopped" and ended.step == 3
    assert [e.task for e in _of(events, TaskStopped)] == [CLS]


def test_a_task_without_validation_rows_never_stops(tmp_path, tiny_bert, monkeypatch):
    flat = {CLS: dict.fromkeys(range(1, 31), 0.5), REG: dict.fromkeys(range(1, 31), 0.1)}
    script = Script(monkeypatch, flat)
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS, **SECTIONS)
    raw["tasks"][1]["data"]["validation_fraction"] = 0.0
    events = []
    ended = run(parse_project(raw, tmp_path), lambda e: (events.append(e), script(e)), threading.Event(),
                run_dir=tmp_path / "r", min_log_interval=0.0)
    assert ended.reason == "completed" and ended.step == 10
    assert [e.task for e in _of(events, TaskStopped)] == [CLS]
    assert all(sorted(e.task_losses) == [REG] for e in _of(events, StepLogged) if e.step > 3)


@pytest.mark.slow
@pytest.mark.parametrize("mixing", ["all_tasks", "uniform"])
def test_stop_then_resume_after_a_task_stopped_continues_exactly(tmp_path, tiny_bert, monkeypatch, mixing):
    sections = SECTIONS | {"train": {"max_steps": 10, "log_every": 1, "mixing": mixing},
                           "optim": SECTIONS["optim"] | {"grad_accum": 2}}
    script = Script(monkeypatch, FALLING)
    straight, _ = _run(tmp_path, tiny_bert, "straight", script, **sections)
    assert [e.step for e in _of(straight, TaskStopped)] == [4]

    stop = threading.Event()
    script = Script(monkeypatch, FALLING)

    def stop_at_6(event):
        script(event)
        if isinstance(event, StepLogged) and event.step == 6:
            stop.set()
    first, ended = _run(tmp_path, tiny_bert, "resumed", stop_at_6, stop=stop, **sections)
    assert ended.reason == "stopped" and ended.step == 6 and _of(first, TaskStopped)
    # the checkpoint holds the stop: the stream's stopped tasks and the task's counters
    saved = json.loads((tmp_path / "resumed" / "checkpoints" / "step-00000006" / "state.json").read_text())
    assert saved["stream"]["stopped"] == [CLS]
    assert saved["trainer"]["task_progress"][CLS]["stopped_at"] == 4
    script = Script(monkeypatch, FALLING)
    second, ended = _run(tmp_path, tiny_bert, "resumed", script, resume=True, **sections)
    assert ended.reason == "completed" and _of(second, RunStarted)[0].start_step == 6
    assert not _of(second, TaskStopped)                 # it stopped once, before

    def losses(events):
        return [(e.step, e.task_losses) for e in _of(events, StepLogged) if e.step > 6]
    assert losses(second) == losses(straight)
    for folder in ("export/full", "export/classification", "export/regression"):
        a, b = _params(tmp_path / "straight" / folder), _params(tmp_path / "resumed" / folder)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), folder
    for task in (CLS, REG):
        a = _load(tmp_path / "straight" / "checkpoints" / f"best-{task}.safetensors")
        b = _load(tmp_path / "resumed" / "checkpoints" / f"best-{task}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_real_metrics_that_stop_improving_stop_every_task(tmp_path, tiny_bert):
    # lr 1e-12: the weights barely move, so the real accuracy and Spearman never beat the first evaluation
    events, ended = _run(tmp_path, tiny_bert, "r", optim={"lr": 1e-12, "warmup_steps": 0},
                         train={"max_steps": 20}, eval={"every": 2, "task_patience": 2})
    assert ended.reason == "early_stopped" and ended.step == 6
    stops = _of(events, TaskStopped)
    assert [(e.task, e.metric, e.step, e.best_step) for e in stops] == [(CLS, "accuracy", 6, 2),
                                                                         (REG, "spearman", 6, 2)]
    first = _of(events, EvalDone)[0].metrics
    assert [e.best_value for e in stops] == [first[CLS]["accuracy"], first[REG]["spearman"]]
    assert describe(stops[0]).startswith(f"Task {CLS} stopped at step 6: no better accuracy since its best")


def test_the_task_named_by_eval_metric_is_judged_on_that_metric(tmp_path, tiny_bert):
    from qarac_gui.core.training.task_stopping import task_metrics

    class Data:
        def __init__(self, task, valid):
            self.task, self.valid = task, valid
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS, eval={"metric": "classification/macro_f1"})
    project = parse_project(raw, tmp_path)
    tasks = {t.name: Data(t, [1]) for t in project.tasks}
    assert task_metrics(project, tasks) == {CLS: "macro_f1", REG: "spearman"}
    tasks[REG].valid = []
    assert task_metrics(project, tasks) == {CLS: "macro_f1"}


def test_task_patience_without_validation_data_is_refused(tmp_path, tiny_bert):
    from qarac_gui.core.errors import UserError
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS, eval={"every": 1, "task_patience": 2})
    for task in raw["tasks"]:
        task["data"]["validation_fraction"] = 0.0
    with pytest.raises(UserError, match="eval.task_patience: stopping tasks one by one needs validation data"):
        run(parse_project(raw, tmp_path), lambda e: None, threading.Event(), run_dir=tmp_path / "r")


@pytest.mark.parametrize("section, problem", [
    ({"task_patience": -1}, "eval.task_patience: must be 0 (off) or more"),
    ({"task_patience": 3, "every": 0}, "eval.task_patience: tasks are judged at each evaluation"),
])
def test_bad_task_patience_is_named(tmp_path, tiny_bert, section, problem):
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS, eval=section)
    problems = validate(parse_project(raw, tmp_path, check=False))
    assert any(p.startswith(problem) for p in problems), problems


def test_task_patience_with_evaluations_is_valid(tmp_path, tiny_bert):
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS, eval={"every": 5, "task_patience": 3})
    assert validate(parse_project(raw, tmp_path, check=False)) == []


# ---------------------------------------------------------------- the stream

def _stream(mixing: str, seed: int = 3) -> TaskStream:
    sizes = {"a": 40, "b": 25, "c": 9}
    return TaskStream(sizes, dict.fromkeys(sizes, 4), mixing, {"a": 0.5, "b": 0.3, "c": 0.2}, seed)


@pytest.mark.parametrize("mixing", ["all_tasks", "round_robin", "proportional", "uniform"])
def test_the_stream_draws_a_stopped_task_no_more_and_resumes_drawing_the_same(mixing):
    stream = _stream(mixing)
    for _ in range(7):
        stream.draw()
    stream.stop_task("b")
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(300):
        for name, rows in stream.draw():
            counts[name] += 1
            assert len(rows) <= 4
    assert counts["b"] == 0 and counts["a"] > 50 and counts["c"] > 20

    straight, resumed = _stream(mixing), _stream(mixing)
    for _ in range(7):
        straight.draw()
    straight.stop_task("b")
    for _ in range(5):
        straight.draw()
    resumed.load_state_dict(json.loads(json.dumps(straight.state_dict())))
    assert resumed.stopped == {"b"}
    assert [straight.draw() for _ in range(50)] == [resumed.draw() for _ in range(50)]


def test_round_robin_keeps_the_turns_of_the_others_in_order():
    stream = _stream("round_robin")
    stream.draw()                       # a
    stream.stop_task("b")
    assert [stream.draw()[0][0] for _ in range(5)] == ["c", "a", "c", "a", "c"]


def test_a_stream_state_from_before_task_stopping_loads_with_no_task_stopped():
    stream = _stream("uniform")
    state = stream.state_dict()
    del state["stopped"]
    other = _stream("uniform")
    other.stop_task("a")
    other.load_state_dict(state)
    assert other.stopped == set()


def test_a_stream_whose_tasks_all_stopped_refuses_to_draw():
    stream = _stream("uniform")
    for name in "abc":
        stream.stop_task(name)
    assert stream.active() == []
    with pytest.raises(RuntimeError, match="every task has stopped"):
        stream.draw()


def test_a_checkpoint_from_before_task_stopping_loads(tmp_path):
    from dataclasses import asdict

    from qarac_gui.core.training.checkpoint import TrainState
    old = asdict(TrainState(step=5))
    del old["task_progress"]
    assert TrainState(**old).task_progress == {}


# ---------------------------------------------------------------- what is frozen

def test_freezing_a_stopped_task_leaves_shared_weights_and_the_others_training(tmp_path, tiny_bert):
    from qarac_gui.core.model.backbone import load_backbone
    from qarac_gui.core.model.multitask import MultiTaskModel
    from qarac_gui.core.training.task_stopping import freeze_stopped
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "regression", "masked_lm"])
    project = parse_project(raw, tmp_path)
    loaded = load_backbone(project.backbones["encoder"], tmp_path)
    from qarac_gui.core.model.backbone import load_pretrained_lm
    lm = load_pretrained_lm(project.backbones["encoder"], loaded)
    model = MultiTaskModel(project, {"encoder": loaded.model}, {CLS: 2, REG: 1, "masked-lm": 0},
                           {"encoder": lm} if lm is not None else None)
    training = [p for p in model.backbones.parameters() if p.requires_grad]   # all but the unused pooler
    frozen = freeze_stopped(model, project, {CLS, "masked-lm"})
    assert frozen == []                                 # the encoder is still read by the regression
    assert not any(p.requires_grad for p in model.heads[CLS].parameters())
    assert all(p.requires_grad for p in model.heads[REG].parameters())
    assert training and all(p.requires_grad for p in training)    # a tied decoder is the embedding: it trains
    own = [p for p in model.heads["masked-lm"].parameters()
           if all(p is not q for q in model.backbones.parameters())]
    assert own and not any(p.requires_grad for p in own)
    frozen = freeze_stopped(model, project, {CLS, REG, "masked-lm"})
    assert frozen and not any(p.requires_grad for p in model.backbones.parameters())


def test_a_per_task_adapter_is_told_apart_by_its_name():
    from qarac_gui.core.training.task_stopping import _adapter_of
    assert _adapter_of("encoder.layer.0.attention.self.query.lora_A.sentiment.weight", "sentiment")
    assert _adapter_of("encoder.layer.0.attention.self.query.lora_B.sentiment.weight", "sentiment")
    assert not _adapter_of("encoder.layer.0.attention.self.query.lora_A.topic.weight", "sentiment")
    assert not _adapter_of("encoder.layer.0.attention.self.query.base_layer.weight", "sentiment")
    assert not _adapter_of("sentiment.weight", "sentiment")



@pytest.mark.slow
def test_under_two_processes_a_task_stops_on_every_rank_at_once(tmp_path, tiny_bert):
    # lr 1e-12 leaves the real accuracy as it was: the classification stops at step 4; the regression has no
    # validation rows, so it trains on, with the stopped head's weights out of the gradient all-reduce
    from qarac_gui.core.project.config import dumps_project
    from tests.core.test_distributed import _torchrun, _weights
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS, optim={"lr": 1e-12, "warmup_steps": 0},
                       train={"max_steps": 8, "log_every": 1}, eval={"every": 2, "task_patience": 1},
                       checkpoint={"every": 0, "minutes": 0})
    raw["tasks"][1]["data"]["validation_fraction"] = 0.0
    path = tmp_path / "project.toml"
    path.write_text(dumps_project(parse_project(raw, tmp_path).with_absolute_paths()), encoding="utf-8")
    ranks = _torchrun(tmp_path, path, tmp_path / "two", "out")
    assert [(r["reason"], r["step"]) for r in ranks.values()] == [("completed", 8), ("completed", 8)]
    assert [sorted(ranks[0]["logged"][str(s)]) for s in range(1, 9)] == [[CLS, REG]] * 4 + [[REG]] * 4
    zero, first = _weights(ranks[0]["weights"]), _weights(ranks[1]["weights"])
    assert all(torch.equal(zero[k], first[k]) for k in zero)
    lines = [json.loads(line) for line in (tmp_path / "two" / "events.jsonl").read_text().splitlines()]
    assert [(e["task"], e["step"]) for e in lines if e["event"] == "TaskStopped"] == [(CLS, 4)]
    assert (tmp_path / "two" / "checkpoints" / f"best-{CLS}.safetensors").is_file()


def test_the_stop_is_a_line_on_the_command_line_and_reads_back_from_the_log():
    import io

    from qarac_gui.cli import TerminalPrinter
    from qarac_gui.core.events import event_to_json
    from qarac_gui.core.results.follow import parse_event
    event = TaskStopped(step=40, task=CLS, metric="accuracy", best_step=20, best_value=0.875)
    out = io.StringIO()
    TerminalPrinter(out)(event)
    assert out.getvalue() == (f"Task {CLS} stopped at step 40: no better accuracy since its best, 0.875 at step 20; "
                              "it trains no more\n")
    assert parse_event(event_to_json(event)) == event
    never = TaskStopped(step=4, task=CLS, metric="loss", best_step=0, best_value=None)
    assert describe(never) == f"Task {CLS} stopped at step 4: its loss was never a finite number; it trains no more"


def test_with_keep_best_the_full_model_is_the_monitored_best_and_each_task_its_own(tmp_path, tiny_bert,
                                                                                     monkeypatch):
    script = Script(monkeypatch, FALLING)
    sections = SECTIONS | {"eval": SECTIONS["eval"] | {"keep_best": True, "metric": f"{CLS}/accuracy"}}
    events, ended = _run(tmp_path, tiny_bert, "r", script, **sections)
    assert ended.reason == "completed" and _of(events, EvalDone)[-1].best_step == 2
    full = _full(tmp_path / "r" / "export" / "full")
    assert all(torch.equal(full[k], v.cpu()) for k, v in (_heads(script.seen[2], REG) | _encoder(script.seen[2])
                                                             ).items() if not k.endswith("position_ids"))
    exported = _load(tmp_path / "r" / "export" / REG / "model.safetensors")
    last = {k.removeprefix("backbones.encoder."): v for k, v in _encoder(script.seen[10]).items()}
    shared = [k for k in last if f"bert.{k}" in exported and not k.startswith("pooler.")]
    assert shared and all(torch.equal(exported[f"bert.{k}"], last[k].cpu()) for k in shared)
