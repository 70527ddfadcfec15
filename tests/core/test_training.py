import threading

import pytest
import torch
from tiny import TASK_COLUMNS, make_model_folder, project_dict

from qarac_gui.core.events import CheckpointSaved, EvalDone, Progress, RunEnded, RunStarted, StepLogged
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.run import run
from qarac_gui.core.training.plan import lr_curve

pytestmark = pytest.mark.usefixtures("torch_threads")


def _run(tmp_path, model, kinds, name="run", stop=None, resume=False, min_log_interval=0.0, emit=None, pause=None,
         **sections):
    raw = project_dict(model, tmp_path / "data", kinds, **sections)
    project = parse_project(raw, tmp_path)
    events = []
    sink = events.append if emit is None else (lambda e: (events.append(e), emit(e)))
    ended = run(project, sink, stop or threading.Event(), run_dir=tmp_path / name, resume=resume,
                min_log_interval=min_log_interval, pause=pause)
    return project, events, ended


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


@pytest.mark.slow
def test_every_head_kind_trains_together_and_reports_its_metrics(tmp_path, tiny_bert):
    _, events, ended = _run(tmp_path, tiny_bert, list(TASK_COLUMNS))
    assert ended.reason == "completed" and ended.step == 6
    started = _of(events, RunStarted)[0]
    assert set(started.tasks) == {k.replace("_", "-") for k in TASK_COLUMNS}
    assert started.tasks["classification"]["labels"] == ["neg", "pos"]
    assert started.tasks["token-classification"]["labels"] == ["O", "B-LOC", "B-PER"]
    # the head of a tied masked-LM decoder adds only its transform, not a second vocabulary matrix
    assert 0 < started.tasks["masked-lm"]["head_params"] < started.encoder_params
    steps = _of(events, StepLogged)
    assert [e.step for e in steps] == list(range(1, 7))
    assert all(set(e.task_losses) == set(started.tasks) for e in steps)   # all_tasks: every task, every step
    final = _of(events, EvalDone)[-1].metrics
    expected = {"classification": "accuracy", "multilabel": "micro_f1", "regression": "spearman",
                "similarity": "spearman", "masked-lm": "perplexity", "token-classification": "entity_f1",
                "span-qa": "exact_match"}
    for task, metric in expected.items():
        assert metric in final[task] and "loss" in final[task]


@pytest.mark.slow
def test_a_classification_head_learns(tmp_path, tiny_bert):
    _, events, _ = _run(tmp_path, tiny_bert, ["classification"], optim={"lr": 3e-3, "warmup_steps": 0},
                        train={"max_steps": 60, "log_every": 10})
    losses = [e.task_losses["classification"] for e in _of(events, StepLogged)]
    assert losses[-1] < losses[0] * 0.5
    assert _of(events, EvalDone)[-1].metrics["classification"]["accuracy"] >= 0.9


def test_applied_lr_equals_the_planned_curve_at_every_step(tmp_path, tiny_bert):
    project, events, _ = _run(tmp_path, tiny_bert, ["classification", "regression"],
                              optim={"lr": 2e-4, "head_lr": 1e-3, "scheduler": "cosine", "warmup_steps": 3,
                                     "layer_decay": 0.8, "head_warmup_steps": 2},
                              train={"max_steps": 12})
    started = _of(events, RunStarted)[0]
    assert started.lr_curve == lr_curve(project, 12)          # the preview, from the project file alone
    steps = _of(events, StepLogged)
    assert [e.lr for e in steps] == started.lr_curve["encoder"]
    assert [e.head_lr for e in steps] == started.lr_curve["heads"]
    assert started.lr_curve["encoder"][:2] == [0.0, 0.0] and max(started.lr_curve["encoder"]) > 0


def test_layer_wise_decay_and_head_lr_groups(tiny_bert, tmp_path):
    from qarac_gui.core.model.backbone import load_backbone
    from qarac_gui.core.model.multitask import MultiTaskModel, param_groups
    raw = project_dict(tiny_bert, tmp_path, ["classification"], optim={"lr": 1e-4, "layer_decay": 0.5,
                                                                       "head_lr": 5e-3})
    project = parse_project(raw, tmp_path)
    loaded = load_backbone(project.backbones["encoder"], tmp_path)
    model = MultiTaskModel(project, {"encoder": loaded.model}, {"classification": 2})
    groups = param_groups(project, model)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    enc = model.backbones["encoder"]
    assert lr_of[id(enc.encoder.layer[1].attention.self.query.weight)] == pytest.approx(1e-4)     # top layer
    assert lr_of[id(enc.encoder.layer[0].attention.self.query.weight)] == pytest.approx(5e-5)
    assert lr_of[id(enc.embeddings.word_embeddings.weight)] == pytest.approx(2.5e-5)
    assert {lr_of[id(p)] for p in model.heads.parameters()} == {5e-3}
    assert id(enc.pooler.dense.weight) not in lr_of                       # the unused pooler is not trained
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(enc.embeddings.LayerNorm.weight)] == 0.0 and decay[id(enc.embeddings.word_embeddings.weight)] > 0


@pytest.mark.parametrize("mixing,pattern", [
    ("round_robin", [["a"], ["b"], ["a"], ["b"]]),
    ("all_tasks", [["a", "b"]] * 4),
])
def test_mixing_decides_which_tasks_train_each_step(tmp_path, tiny_bert, mixing, pattern):
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "regression"], train={"max_steps": 4,
                                                                                             "mixing": mixing})
    raw["tasks"][0]["name"], raw["tasks"][1]["name"] = "a", "b"
    events = []
    run(parse_project(raw, tmp_path), events.append, threading.Event(), run_dir=tmp_path / "r", min_log_interval=0)
    assert [sorted(e.task_losses) for e in _of(events, StepLogged)] == pattern


@pytest.mark.parametrize("mixing", ["proportional", "temperature", "uniform"])
def test_drawing_strategies_train_one_task_per_step(tmp_path, tiny_bert, mixing):
    _, events, ended = _run(tmp_path, tiny_bert, ["classification", "regression"],
                            train={"max_steps": 8, "mixing": mixing})
    steps = _of(events, StepLogged)
    assert ended.reason == "completed" and all(len(e.task_losses) == 1 for e in steps)


def _params(folder):
    from safetensors.torch import load_file
    out = {}
    for f in sorted(folder.rglob("*.safetensors")):
        out.update({f"{f.relative_to(folder)}:{k}": v for k, v in load_file(f).items()})
    return out


# Every mixing, in process; one (temperature) is also killed and resumed in a new process (test_kill.py), and
# the command line's Ctrl-C and --resume are in test_cli.py.
@pytest.mark.parametrize("mixing, optimizer", [
    ("all_tasks", "adamw"), ("all_tasks", "nadam"), pytest.param("proportional", "adamw", marks=pytest.mark.slow),
    pytest.param("temperature", "adamw", marks=pytest.mark.slow),
    pytest.param("uniform", "adamw", marks=pytest.mark.slow),
    pytest.param("round_robin", "adamw", marks=pytest.mark.slow)])
def test_stop_then_resume_continues_exactly(tmp_path, tiny_bert, mixing, optimizer):
    kinds = ["classification", "masked_lm", "similarity"]
    sections = dict(train={"max_steps": 9, "mixing": mixing},
                    optim={"lr": 1e-3, "grad_accum": 2, "optimizer": optimizer})
    _, straight, _ = _run(tmp_path, tiny_bert, kinds, "straight", **sections)

    stop = threading.Event()

    def stop_at_4(event):
        if isinstance(event, StepLogged) and event.step == 4:
            stop.set()
    _, first, ended = _run(tmp_path, tiny_bert, kinds, "resumed", stop=stop, emit=stop_at_4, **sections)
    assert ended.reason == "stopped" and ended.step == 4
    assert _of(first, CheckpointSaved)[-1].step == 4
    _, second, ended = _run(tmp_path, tiny_bert, kinds, "resumed", resume=True, **sections)
    assert ended.reason == "completed" and _of(second, RunStarted)[0].start_step == 4

    def losses(events, after):
        return [(e.step, e.task_losses) for e in _of(events, StepLogged) if e.step > after]
    assert losses(second, 4) == losses(straight, 4)
    a, b = _params(tmp_path / "straight" / "export" / "full"), _params(tmp_path / "resumed" / "export" / "full")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_freezing_keeps_frozen_weights_and_head_warmup_keeps_the_encoder(tmp_path):
    model = make_model_folder(tmp_path / "m", "bert")
    _, _, _ = _run(tmp_path, model, ["classification"], "frozen", backbones={"encoder": {
        "model": str(model), "freeze_embeddings": True, "freeze_layers": 1}}, optim={"lr": 1e-2})
    before = _params(model)
    after = _params(tmp_path / "frozen" / "export" / "full" / "backbones" / "encoder")
    for key, value in before.items():
        name = key.split(":", 1)[1]
        if name.startswith(("embeddings.", "encoder.layer.0.", "pooler.")):
            assert torch.equal(value, after[key]), name
        elif name.startswith("encoder.layer.1.") and name.endswith("weight"):
            assert not torch.equal(value, after[key]), name
    _run(tmp_path, model, ["classification"], "warm", optim={"lr": 1e-2, "head_warmup_steps": 6})
    warm = _params(tmp_path / "warm" / "export" / "full" / "backbones" / "encoder")
    assert all(torch.equal(before[k], warm[k]) for k in before)


def test_early_stopping_stops_when_the_metric_stops_improving(tmp_path, tiny_bert):
    _, events, ended = _run(tmp_path, tiny_bert, ["classification"], optim={"lr": 1e-12, "warmup_steps": 0},
                            train={"max_steps": 20}, eval={"every": 1, "patience": 2,
                                                           "metric": "classification/accuracy"})
    assert ended.reason == "early_stopped" and ended.step == 3
    last = _of(events, EvalDone)[-1]
    assert last.best_step == 1 and last.monitored == "classification/accuracy"
    assert _of(events, CheckpointSaved)[-1].step == 3


def test_logging_is_throttled_and_averages_over_the_interval(tmp_path, tiny_bert):
    _, events, _ = _run(tmp_path, tiny_bert, ["classification"], min_log_interval=60.0)
    steps = _of(events, StepLogged)
    assert [e.step for e in steps] == [6]                 # only the final step got through


def test_pause_holds_training_between_steps_and_resume_continues_the_same_run(tmp_path, tiny_bert):
    pause, seen_while_paused = threading.Event(), []

    def pause_at_3(event):
        if isinstance(event, StepLogged) and event.step == 3:
            pause.set()
            # the trainer now waits; release it from another thread after checking no step runs meanwhile
            threading.Timer(0.4, pause.clear).start()
        elif isinstance(event, Progress) and event.phase == "paused":
            seen_while_paused.append(event.message)
    _, events, ended = _run(tmp_path, tiny_bert, ["classification"], pause=pause, emit=pause_at_3,
                            train={"max_steps": 6})
    assert ended.reason == "completed" and ended.step == 6
    phases = [(type(e).__name__, getattr(e, "phase", getattr(e, "step", None))) for e in events
              if isinstance(e, (StepLogged, Progress)) and getattr(e, "phase", "x") in ("x", "paused", "resumed")]
    at = phases.index(("Progress", "paused"))
    assert phases[at - 1] == ("StepLogged", 3) and phases[at + 1] == ("Progress", "resumed")
    assert phases[at + 2] == ("StepLogged", 4)
    assert seen_while_paused == ["Paused after step 3"]


def test_stop_while_paused_writes_a_checkpoint(tmp_path, tiny_bert):
    pause, stop = threading.Event(), threading.Event()

    def pause_then_stop(event):
        if isinstance(event, StepLogged) and event.step == 2:
            pause.set()
        elif isinstance(event, Progress) and event.phase == "paused":
            stop.set()
    _, events, ended = _run(tmp_path, tiny_bert, ["classification"], pause=pause, stop=stop, emit=pause_then_stop)
    assert ended.reason == "stopped" and ended.step == 2
    assert _of(events, CheckpointSaved)[-1].step == 2
    assert not [e for e in events if isinstance(e, Progress) and e.phase == "resumed"]


def test_stop_before_training_ends_cleanly(tmp_path, tiny_bert):
    stop = threading.Event()
    stop.set()
    _, events, ended = _run(tmp_path, tiny_bert, ["classification"], stop=stop)
    assert ended.reason == "stopped" and ended.step == 0
    assert not _of(events, RunStarted) and isinstance(events[-1], RunEnded)


def test_head_removed_from_a_classification_checkpoint_is_reported(tmp_path):
    model = make_model_folder(tmp_path / "seqcls", "bert", head="seqcls")
    _, events, _ = _run(tmp_path, model, ["regression"])
    removed = _of(events, RunStarted)[0].removed_heads["encoder"]
    assert "BertForSequenceClassification" in removed and "classifier" in removed


def test_masked_lm_head_continues_from_the_checkpoints_lm_head(tmp_path):
    from transformers import AutoModelForMaskedLM

    from qarac_gui.core.model.backbone import load_backbone, load_pretrained_lm
    from qarac_gui.core.model.heads import build_head
    folder = make_model_folder(tmp_path / "mlm", "roberta", head="mlm", seed=3)
    raw = project_dict(folder, tmp_path, ["masked_lm"])
    project = parse_project(raw, tmp_path)
    loaded = load_backbone(project.backbones["encoder"], tmp_path)
    assert "RobertaForMaskedLM" in loaded.removed
    pretrained = load_pretrained_lm(project.backbones["encoder"], loaded)
    head = build_head(project.tasks[0].head, loaded.model, 0, pretrained)
    original = AutoModelForMaskedLM.from_pretrained(folder).lm_head
    assert torch.equal(head.lm_head.dense.weight, original.dense.weight)
    assert head.lm_head.decoder.weight is loaded.model.get_input_embeddings().weight


@pytest.mark.slow
def test_a_new_run_can_start_from_an_exported_multi_task_model(tmp_path, tiny_bert):
    _run(tmp_path, tiny_bert, ["classification", "regression"], "first", optim={"lr": 1e-2})
    full = tmp_path / "first" / "export" / "full"
    before = _params(full)
    _, events, _ = _run(tmp_path, tiny_bert, ["classification", "regression"], "second",
                        optim={"lr": 1e-12, "warmup_steps": 0}, train={"init_from": str(full)})
    notes = [e.message for e in events if type(e).__name__ == "Progress" and "Initialised" in e.message]
    assert notes and "head classification" in notes[0] and "backbone encoder" in notes[0]
    after = _params(tmp_path / "second" / "export" / "full")
    for key in before:                          # lr 1e-12: the second run ends where it started
        assert torch.allclose(before[key], after[key], atol=1e-6), key


def test_keep_best_exports_the_best_evaluation_not_the_last_step(tmp_path, tiny_bert, monkeypatch):
    # Scripted validation losses make step 2 the best one whatever the floating-point details of training; the
    # weights each evaluation saw are recorded so the export can be compared with them.
    from qarac_gui.core.training import loop as trainer
    scripted = iter([0.5, 0.2, 0.9, 1.0, 1.1, 1.2])
    seen = {}

    def fake_evaluate(model, data, device, batch_size, autocast, world=None):
        step = len(seen) + 1
        seen[step] = {k: v.detach().clone() for k, v in model.heads.state_dict().items()}
        loss = next(scripted)
        return {"loss": loss, "mse": loss, "pearson": 0.0, "spearman": 0.0}
    monkeypatch.setattr(trainer, "evaluate_task", fake_evaluate)
    _, events, _ = _run(tmp_path, tiny_bert, ["regression"], "best", optim={"lr": 1e-2, "warmup_steps": 0},
                        train={"max_steps": 6}, eval={"every": 1, "metric": "regression/loss", "keep_best": True})
    evals = _of(events, EvalDone)
    assert [e.step for e in evals] == [1, 2, 3, 4, 5, 6] and evals[-1].best_step == 2
    exported = {k.split(":", 1)[1]: v for k, v in _params(tmp_path / "best" / "export" / "full").items()
                if k.startswith("heads.safetensors:")}
    heads = {k.removeprefix("regression."): v for k, v in exported.items()}
    step2, step6 = ({k.removeprefix("regression."): v for k, v in seen[s].items()} for s in (2, 6))
    assert heads.keys() == step2.keys()
    assert all(torch.equal(heads[k], step2[k]) for k in heads)
    assert not all(torch.equal(heads[k], step6[k]) for k in heads)     # training moved on after step 2
    card = (tmp_path / "best" / "export" / "regression" / "README.md").read_text()
    assert "loss: 0.2000" in card
    import json
    assert json.loads((tmp_path / "best" / "metrics.json").read_text())["best_step"] == 2


@pytest.mark.parametrize("metric,message", [
    ("classification/spearman", "reports loss, accuracy, macro_f1, not 'spearman'"),
])
def test_a_metric_the_task_does_not_report_is_refused_before_training(tmp_path, tiny_bert, metric, message):
    from qarac_gui.core.errors import UserError
    with pytest.raises(UserError, match=message):
        _run(tmp_path, tiny_bert, ["classification"], eval={"metric": metric})


def test_a_used_run_folder_is_refused_and_a_finished_run_cannot_be_resumed(tmp_path, tiny_bert):
    from qarac_gui.core.errors import UserError
    _run(tmp_path, tiny_bert, ["classification"], "once")
    with pytest.raises(UserError, match="is not empty"):
        _run(tmp_path, tiny_bert, ["classification"], "once")
    with pytest.raises(UserError, match="finished run"):
        _run(tmp_path, tiny_bert, ["classification"], "once", resume=True)
