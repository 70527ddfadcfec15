"""train.balancing: learnt uncertainty weights and torchjd's aggregators train, log their weights, resume exactly,
keep UPGrad's promise on a real model, read the device no more than they say, and refuse what cannot work."""

from __future__ import annotations

import importlib.util
import json
import threading

import pytest
from tiny import project_dict

torch = pytest.importorskip("torch")
pytest.importorskip("torchjd")

from qarac_gui.core.events import StepLogged  # noqa: E402
from qarac_gui.core.project.config import ConfigError, parse_project  # noqa: E402
from qarac_gui.core.results.follow import EventTail  # noqa: E402
from qarac_gui.core.results.history import read_events  # noqa: E402
from qarac_gui.core.results.predict import load_trial_model  # noqa: E402
from qarac_gui.core.run import run  # noqa: E402
from qarac_gui.core.training import balancing, loop  # noqa: E402
from qarac_gui.core.training.setup import build_run  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_threads")
KINDS = ["classification", "regression", "similarity"]
TASKS = ["classification", "regression", "similarity"]


def _raw(tmp_path, model, mode, kinds=KINDS, **train):
    return project_dict(model, tmp_path / "data", kinds, train={"max_steps": 6, "balancing": mode, **train})


def _train(tmp_path, model, mode, name="run", grad_accum=1, **train):
    events = []
    raw = _raw(tmp_path, model, mode, **train)
    raw["optim"]["grad_accum"] = grad_accum
    ended = run(parse_project(raw, tmp_path), events.append, threading.Event(), run_dir=tmp_path / name,
                min_log_interval=0)
    assert ended.reason == "completed", ended.message
    return [e for e in events if isinstance(e, StepLogged)]


@pytest.mark.slow
def test_fixed_weights_log_no_weights(tmp_path, tiny_bert):
    logged = _train(tmp_path, tiny_bert, "weights", max_steps=2)
    assert all(e.task_weights is None and e.grad_cosine is None for e in logged)
    line = next(json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()
                if '"StepLogged"' in x)
    assert line["task_weights"] is None


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["uncertainty", "upgrad", "pcgrad", "mgda"])
def test_each_balancing_trains_three_tasks_and_logs_their_weights(tmp_path, tiny_bert, mode):
    # two micro-batches of each task a step: an aggregator adds both into the task's row
    logged = _train(tmp_path, tiny_bert, mode, grad_accum=2, balancing_lr=0.1)
    assert [e.step for e in logged] == list(range(1, 7))
    for e in logged:
        assert set(e.task_weights) == set(TASKS) and all(w >= 0 for w in e.task_weights.values()), e
        assert (e.grad_cosine is None) == (mode == "uncertainty")
        if e.grad_cosine is not None:
            assert -1 <= e.grad_cosine <= 1
    if mode == "uncertainty":           # the factors start at exp(0) and learn from there
        assert logged[0].task_weights == dict.fromkeys(TASKS, 1.0)
        assert logged[-1].task_weights != logged[0].task_weights
        # Try it on the run's checkpoint: the model it builds has the log-variances the checkpoint holds
        (tmp_path / "run" / "export").rename(tmp_path / "run" / "exported")
        trial = load_trial_model(tmp_path / "run")
        assert trial.from_checkpoint and set(trial.model.log_variances) == set(TASKS)
    # the run's log keeps them, and what reads it back (history, a window following the run) gets them
    back = [e for e in read_events(tmp_path / "run") if isinstance(e, StepLogged)]
    followed = [e for e in EventTail(tmp_path / "run" / "events.jsonl").read(final=True) if isinstance(e, StepLogged)]
    assert [e.task_weights for e in back] == [e.task_weights for e in followed] == [e.task_weights for e in logged]
    assert [e.grad_cosine for e in back] == [e.grad_cosine for e in logged]


def test_fixed_weights_add_nothing_to_the_model_the_optimiser_or_the_log(tmp_path, tiny_bert):
    # Bit-for-bit sameness with the code before balancing existed is what every other loop test checks; here:
    # the weights mode takes none of the new paths.
    t, _, _ = build_run(parse_project(_raw(tmp_path, tiny_bert, "weights"), tmp_path), tmp_path / "r",
                        lambda e: None, threading.Event(), resume=False)
    assert t.balancer is None and not hasattr(t.model, "log_variances")
    assert not any(g.get("balancing") for g in t.optimizer.param_groups)


def test_uncertainty_multiplies_each_loss_by_its_factor_and_adds_its_log_variance(tmp_path, tiny_bert):
    t, _, _ = build_run(parse_project(_raw(tmp_path, tiny_bert, "uncertainty"), tmp_path), tmp_path / "r",
                        lambda e: None, threading.Event(), resume=False)
    with torch.no_grad():
        t.model.log_variances["regression"].fill_(0.5)
    factor = float(torch.exp(torch.tensor(-0.5)))
    assert float(t.balancer.loss("regression", torch.tensor(2.0)).detach()) == pytest.approx(2.0 * factor + 0.5)
    group = next(g for g in t.optimizer.param_groups if g.get("balancing"))
    assert group["weight_decay"] == 0 and group["lr"] == pytest.approx(0.01 * 0.0)     # warm-up starts at 0
    assert {id(q) for q in group["params"]} == {id(q) for q in t.model.log_variances.values()}
    assert t.balancer.flush()[0]["regression"] == pytest.approx(factor)


@pytest.mark.slow
def test_uncertainty_log_variances_are_checkpointed_and_a_killed_run_resumes_bit_exact(tmp_path, tiny_bert):
    import signal

    from safetensors.torch import load_file

    from qarac_gui.core.training.checkpoint import latest_checkpoint
    from tests.core.test_kill import Child, _assert_same_weights, _project
    project = _project(tmp_path, tiny_bert, "p", train={"max_steps": 10, "balancing": "uncertainty",
                                                        "balancing_lr": 0.1},
                       optim={"lr": 1e-3, "grad_accum": 2}, checkpoint={"every": 3, "keep": 2})
    straight = Child(project, tmp_path / "straight", resume=False)
    killed = Child(project, tmp_path / "killed", resume=False)
    killed.wait_for(lambda: any(e["step"] == 6 for e in killed.of("CheckpointSaved")))
    killed.kill()
    straight.finish()
    assert killed.proc.returncode == -signal.SIGKILL
    intact, _ = latest_checkpoint(tmp_path / "killed" / "checkpoints")
    saved = load_file(intact / "model.safetensors")
    assert {k for k in saved if k.startswith("log_variances.")} == {f"log_variances.{n}" for n in
                                                                    ("classification", "masked-lm", "similarity")}
    assert any(float(v) != 0 for k, v in saved.items() if k.startswith("log_variances."))
    resumed = Child(project, tmp_path / "killed", resume=True)
    resumed.finish()
    start = resumed.of("RunStarted")[0]["start_step"]
    weights = {e["step"]: (e["task_losses"], e["task_weights"]) for e in straight.of("StepLogged")}
    after = {e["step"]: (e["task_losses"], e["task_weights"]) for e in resumed.of("StepLogged")}
    assert after == {s: v for s, v in weights.items() if s > start} and len(after) == 10 - start
    _assert_same_weights(tmp_path / "straight" / "export", tmp_path / "killed" / "export")


def test_upgrad_gives_a_shared_gradient_that_conflicts_with_no_task(tmp_path, tiny_bert, monkeypatch):
    # Two regressions on the same rows with the same starting head, one learning the score and one its negative
    # (weighted 3 times as much): their encoder gradients point apart, and the plain weighted sum goes against the
    # first task.
    raw = _raw(tmp_path, tiny_bert, "upgrad", kinds=["regression"])
    first = raw["tasks"][0]
    second = json.loads(json.dumps(first)) | {"name": "negated", "weight": 3.0}
    import csv
    with open(first["data"]["train"], encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    label = first["data"]["label"]
    negated = tmp_path / "negated.csv"
    with open(negated, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([r | {label: str(-float(r[label]))} for r in rows])
    second["data"]["train"] = str(negated)
    raw["tasks"].append(second)
    raw["train"].update(max_steps=1)
    raw["optim"].update(grad_clip=0)
    t, state, _ = build_run(parse_project(raw, tmp_path), tmp_path / "r", lambda e: None, threading.Event(),
                            resume=False)
    t.model.heads["negated"].load_state_dict(t.model.heads["regression"].state_dict())
    seen = {}
    real_combine = balancing.Aggregation.combine

    def combine(self):
        seen["rows"] = self.jacobian.clone()
        real_combine(self)
        seen["combined"] = torch.cat([q.grad.reshape(-1) for q in self.shared])
    monkeypatch.setattr(balancing.Aggregation, "combine", combine)
    assert loop.fit(t, state, lambda e: None, threading.Event(), min_log_interval=0) == "completed"
    rows, combined = seen["rows"].double(), seen["combined"].double()
    assert rows.shape[0] == 2 and rows.shape[1] == sum(q.numel() for q in t.model.backbones.parameters()
                                                            if q.requires_grad)
    assert float(rows[0] @ rows[1]) < 0                         # they conflict
    assert float(rows.sum(0) @ rows[0]) < 0                     # the plain sum would undo the first task
    for row in rows:
        assert float(combined @ row) >= -1e-6 * float(row @ row)


@pytest.mark.slow
def test_aggregating_reads_the_device_once_a_step(tmp_path, monkeypatch, tiny_bert):
    from tests.core.test_syncs import ALLOWED, NO_SAVES, _count_steady_steps
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS, train={"max_steps": 12, "log_every": 4, "seed": 3,
                                                                   "balancing": "upgrad"}, **NO_SAVES)
    reads, steps, flushes = _count_steady_steps(monkeypatch, parse_project(raw, tmp_path), tmp_path / "run", 4)
    # combine reads the m x m Gramian of the task gradients; _host_weights solves UPGrad's program on those host
    # numbers (a list of floats: nothing it reads is on the device)
    assert set(reads) <= ALLOWED | {"combine", "_host_weights"}, dict(reads)
    assert reads["combine"] == steps and reads["flush"] <= flushes, dict(reads)


@pytest.mark.slow
def test_uncertainty_reads_its_factors_only_at_the_log_flush(tmp_path, monkeypatch, tiny_bert):
    from tests.core.test_syncs import ALLOWED, NO_SAVES, _count_steady_steps
    raw = project_dict(tiny_bert, tmp_path / "data", KINDS, train={"max_steps": 12, "log_every": 4, "seed": 3,
                                                                   "balancing": "uncertainty"}, **NO_SAVES)
    reads, steps, flushes = _count_steady_steps(monkeypatch, parse_project(raw, tmp_path), tmp_path / "run", 4)
    assert set(reads) <= ALLOWED, dict(reads)
    assert reads["flush"] <= 2 * flushes, dict(reads)       # the losses and the factors


@pytest.mark.parametrize("mixing", ["proportional", "round_robin"])
def test_an_aggregator_with_one_task_per_step_is_refused(tmp_path, tiny_bert, mixing):
    with pytest.raises(ConfigError, match=r"train.balancing: 'pcgrad' combines the gradients of every task.*"
                                          r"train.mixing = \"all_tasks\""):
        parse_project(_raw(tmp_path, tiny_bert, "pcgrad", mixing=mixing), tmp_path)
    parse_project(_raw(tmp_path, tiny_bert, "uncertainty", mixing=mixing), tmp_path)   # draws learn it too


def test_a_missing_torchjd_is_named_with_its_install_command(tmp_path, tiny_bert, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torchjd", "quadprog")
                        else real(name, *a))
    with pytest.raises(ConfigError, match=r"'upgrad' needs the torchjd library with its quadprog solver \(missing: "
                                          r"torchjd, quadprog\); pip install 'torchjd\[quadprog-projector\]>=0.18'"):
        parse_project(_raw(tmp_path, tiny_bert, "upgrad"), tmp_path)
    with pytest.raises(ConfigError, match=r"'mgda' needs the torchjd library \(missing: torchjd\); pip install "
                                          r"'torchjd>=0.18'"):
        parse_project(_raw(tmp_path, tiny_bert, "mgda"), tmp_path)


def test_unknown_balancing_and_a_bad_lr_are_refused(tmp_path, tiny_bert):
    with pytest.raises(ConfigError, match=r"train.balancing: 'gradnorm' is not one of weights, uncertainty, "
                                          r"upgrad, pcgrad, mgda"):
        parse_project(_raw(tmp_path, tiny_bert, "gradnorm"), tmp_path)
    with pytest.raises(ConfigError, match="train.balancing_lr: must be above 0"):
        parse_project(_raw(tmp_path, tiny_bert, "uncertainty", balancing_lr=0.0), tmp_path)


def _one_and_two_processes(tmp_path, model, **train) -> tuple:
    """The project with `train` settings, run in one process (its events kept) and in two under torchrun."""
    from qarac_gui.core.project.config import dumps_project
    from tests.core.test_distributed import SECTIONS, _project, _torchrun
    project = parse_project(_project(tmp_path, model, **(SECTIONS | {"train": SECTIONS["train"] | train})),
                            tmp_path)
    project_file = tmp_path / "project.toml"
    project_file.write_text(dumps_project(project.with_absolute_paths()), encoding="utf-8")
    events = []
    one = run(project, events.append, threading.Event(), run_dir=tmp_path / "one", min_log_interval=0)
    assert one.reason == "completed", one.message
    ranks = _torchrun(tmp_path, project_file, tmp_path / "two", "out")
    assert [r["reason"] for r in ranks.values()] == ["completed", "completed"]
    return project, events, ranks


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["upgrad", "pcgrad"])
def test_an_aggregator_under_two_processes_trains_what_one_process_trains(tmp_path, quiet_bert, mode):
    """Each rank's backwards stay apart from DDP's all-reduce; the Jacobian and the heads' gradients are averaged
    over the ranks before the weighting, whose weights are rank 0's: the ranks take one process's steps."""
    pytest.importorskip("torchjd")
    from tests.core.test_distributed import TOLERANCE, _differ, _full_export, _weights
    project, events, ranks = _one_and_two_processes(tmp_path, quiet_bert, balancing=mode)
    assert ranks[0]["per_step"] == {str(s): 0 for s in range(1, 9)}        # DDP reduced nothing itself
    zero, first = _weights(ranks[0]["weights"]), _weights(ranks[1]["weights"])
    assert all(torch.equal(zero[k], first[k]) for k in zero)
    assert _differ(_full_export(tmp_path / "one"), _full_export(tmp_path / "two")) < TOLERANCE
    logged = {e.step: e.task_weights for e in events if isinstance(e, StepLogged) and e.task_weights}
    assert logged and all(set(w) == {t.name for t in project.tasks} for w in logged.values())
    assert ranks[0]["task_weights"].keys() == {str(step) for step in logged}
    if mode == "pcgrad":
        return          # it projects in a random order, drawn from other random states in one process and on rank 0
    for step, weights in ranks[0]["task_weights"].items():
        assert weights == pytest.approx(logged[int(step)], abs=1e-4), step


@pytest.mark.slow
def test_uncertainty_under_two_processes_trains_what_one_process_trains(tmp_path, quiet_bert):
    from tests.core.test_distributed import TOLERANCE, _differ, _full_export, _weights
    project, events, ranks = _one_and_two_processes(tmp_path, quiet_bert, balancing="uncertainty", balancing_lr=0.1)
    assert ranks[0]["per_step"] == {str(s): 1 for s in range(1, 9)}        # still one all-reduce a step
    zero, first = _weights(ranks[0]["weights"]), _weights(ranks[1]["weights"])
    learnt = {k for k in zero if k.startswith("log_variances.")}
    assert len(learnt) == 3 and all(torch.equal(zero[k], first[k]) for k in zero)
    alone = _weights(next((tmp_path / "one" / "checkpoints").glob("step-*")) / "model.safetensors")
    assert all(abs(float(zero[k]) - float(alone[k])) < TOLERANCE and float(alone[k]) != 0 for k in learnt)
    assert _differ(_full_export(tmp_path / "one"), _full_export(tmp_path / "two")) < TOLERANCE
    logged = [e.task_weights for e in events if isinstance(e, StepLogged)]
    assert logged[-1] != logged[0]
