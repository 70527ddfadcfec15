"""Training one model with several processes (torchrun, DDP on gloo here): the same model as one process, one
gradient all-reduce per step, decisions taken together, rank 0 alone writing, resume on another number of ranks;
and the stop and pause request files every run honours."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tiny import project_dict

torch = pytest.importorskip("torch")

from qarac_gui.core.errors import UserError  # noqa: E402
from qarac_gui.core.events import CheckpointSaved, EvalDone, Progress, StepLogged  # noqa: E402
from qarac_gui.core.project.config import dumps_project, parse_project  # noqa: E402
from qarac_gui.core.run import run  # noqa: E402
from qarac_gui.core.training import distributed  # noqa: E402
from qarac_gui.core.training.distributed import World, slice_of  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_threads")
TESTS = Path(__file__).resolve().parents[1]
KINDS = ["classification", "similarity", "masked_lm"]
# 36 training rows a task: batches of 7 and 5 end each epoch with one row, which leaves rank 1 without rows
SIZES = {"classification": 7, "similarity": 5, "masked-lm": 8}
# Two ranks add the same gradients in another order (and pad a slice as wide as its whole batch), so their
# gradients differ from one process's by float rounding. Adam divides each gradient by its own running size, which
# magnifies that rounding where a gradient is near zero: after the 8 steps at lr 1e-3, one process and two differed
# by 4e-7 to 4e-6 here, and by 1.4e-5 (uncertainty weighting) on another CPU. A real difference is a hundred times
# larger: the same project with a 5 % larger lr differs by 1.3e-3, with a 5 % larger balancing_lr by 1.9e-3.
TOLERANCE = 1e-4


# ------------------------------------------------------------------------------------------------- no processes
def test_the_world_comes_from_torchruns_variables():
    assert distributed.from_env({}) == distributed.SINGLE
    assert distributed.from_env({"WORLD_SIZE": "1", "RANK": "0"}) == distributed.SINGLE
    assert distributed.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    with pytest.raises(UserError, match="torchrun"):
        distributed.from_env({"WORLD_SIZE": "2", "RANK": "two"})
    with pytest.raises(UserError, match="not below WORLD_SIZE"):
        distributed.from_env({"WORLD_SIZE": "2", "RANK": "2"})


def _masked_batch(rows: int, width: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.where(torch.rand(rows, width, generator=g) < 0.3, torch.randint(5, 50, (rows, width), generator=g),
                         torch.full((rows, width), -100))
    labels[0, 0] = 7                                    # row 0 has a masked token whatever the draw
    return {"input_ids": torch.randint(5, 50, (rows, width), generator=g),
            "attention_mask": torch.ones(rows, width, dtype=torch.long), "labels": labels,
            "masked_positions": (labels.flatten() != -100).nonzero().squeeze(1)}


def test_slices_cover_the_batch_and_weigh_its_loss_units():
    batch = _masked_batch(5)
    units = int((batch["labels"] != -100).sum())
    parts = [slice_of(batch, 5, World(r, 2)) for r in range(2)]
    assert [p.rows for p in parts] == [3, 2]
    for rank, part in enumerate(parts):
        assert torch.equal(part.batch["input_ids"], batch["input_ids"][rank::2])
        # the masked positions are found again for the slice's own rows
        assert torch.equal(part.batch["masked_positions"], (part.batch["labels"].flatten() != -100).nonzero()[:, 0])
        mine = int((part.batch["labels"] != -100).sum())
        assert part.scale == pytest.approx(2 * mine / units)
    assert sum(p.scale for p in parts) == pytest.approx(2)
    classes = {"input_ids": torch.zeros(3, 4, dtype=torch.long), "labels": torch.tensor([0, 1, 1])}
    assert [slice_of(classes, 3, World(r, 2)).scale for r in range(2)] == pytest.approx([4 / 3, 2 / 3])


def test_a_rank_without_rows_trains_a_stand_in_row_weighted_zero():
    batch = _masked_batch(1)
    alone, without = slice_of(batch, 1, World(0, 2)), slice_of(batch, 1, World(1, 2))
    assert (alone.rows, alone.scale) == (1, 2.0)
    assert (without.rows, without.scale) == (0, 0.0)
    assert without.batch["input_ids"].shape[0] == 1 and len(without.batch["masked_positions"]) > 0
    with pytest.raises(ValueError, match="cannot be sliced"):
        slice_of({"input_ids": torch.zeros(3, 2), "odd": torch.zeros(2)}, 3, World(0, 2))


def _project(tmp_path, model, **sections):
    raw = project_dict(model, tmp_path / "data", KINDS, **sections)
    for task in raw["tasks"]:
        task["batch_size"] = SIZES[task["name"]]
        task["head"]["dropout"] = 0.0
    return raw


def test_stop_and_pause_request_files_are_honoured_in_one_process(tmp_path, tiny_bert, monkeypatch):
    monkeypatch.setattr(distributed, "POLL_S", 0.0)         # every step looks: the test does not race the clock
    raw = _project(tmp_path, tiny_bert, train={"max_steps": 8, "log_every": 1, "seed": 7})
    project, run_dir = parse_project(raw, tmp_path), tmp_path / "run"
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, StepLogged) and event.step == 2:
            (run_dir / distributed.PAUSE_REQUEST).touch()
        if isinstance(event, Progress) and event.phase == "paused":
            (run_dir / distributed.PAUSE_REQUEST).unlink()
        if isinstance(event, Progress) and event.phase == "resumed":
            (run_dir / distributed.STOP_REQUEST).touch()
    ended = run(project, emit, threading.Event(), run_dir=run_dir, min_log_interval=0)
    phases = [e.phase for e in events if isinstance(e, Progress) and e.phase in ("paused", "resumed")]
    assert phases == ["paused", "resumed"]
    assert ended.reason == "stopped" and ended.step == 2      # the stop came while paused after step 2
    assert [e.step for e in events if isinstance(e, CheckpointSaved)] == [ended.step]
    assert not (run_dir / distributed.STOP_REQUEST).exists()       # a resumed run does not stop again at once
    again = run(project, lambda e: None, threading.Event(), run_dir=run_dir, resume=True, min_log_interval=0)
    assert again.reason == "completed" and again.step == 8


# ------------------------------------------------------------------------------------------- DDP on its own
def _reduce_work(rank: int, port: int, variant: str, out: dict) -> None:
    """Two tasks on a shared layer, the first backward under no_sync, on two ranks of different data."""
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbones = torch.nn.Linear(3, 3)
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 1), "b": torch.nn.Linear(3, 1)})

        def forward(self, name, batch):
            class Out:
                loss = self.heads[name](self.backbones(batch["x"])).pow(2).mean()
            return Out()
    model = Model()
    if variant == "frozen when built":
        model.backbones.requires_grad_(False)
    if variant in ("right", "frozen when built"):
        ddp = distributed.wrap(model, torch.device("cpu"))
    else:
        ddp = torch.nn.parallel.DistributedDataParallel(distributed._Forward(model), static_graph=True)
    model.backbones.requires_grad_(True)        # a head-only warm-up ends
    try:
        for _ in range(2):
            x = torch.full((2, 3), float(rank + 1))
            with ddp.no_sync():
                ddp("a", {"x": x}).backward()
            ddp("b", {"x": x}).backward()
            grads = [p.grad.clone() for p in model.parameters()]
            model.zero_grad(set_to_none=True)
        out[rank] = [g.tolist() for g in grads]
    except RuntimeError as e:
        out[rank] = str(e)[:200]
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["right", "static graph", "frozen when built"])
def test_ddp_as_built_reduces_every_task_and_the_wrong_builds_do_not(variant):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    try:
        mp.start_processes(_reduce_work, args=(port, variant, out), nprocs=2, start_method="spawn")
    except mp.ProcessExitedException:       # a wrong build may also leave DDP's reducer to abort the process
        pass
    same = len(out) == 2 and out[0] == out[1] and not isinstance(out[0], str)
    assert same == (variant == "right"), (variant, dict(out))


# --------------------------------------------------------------------------------------------- under torchrun
def _torchrun(tmp_path: Path, project_file: Path, run_dir: Path, name: str, *extra: str) -> dict[int, dict]:
    out = tmp_path / name
    out.mkdir()
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(TESTS / "ddp_child.py"), str(project_file), str(run_dir), str(out), *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {r: json.loads((out / f"rank-{r}.json").read_text()) | {"weights": out / f"rank-{r}.safetensors"}
            for r in range(2)}


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(path)


def _full_export(run_dir: Path) -> dict:
    out = {}
    for f in sorted((run_dir / "export" / "full").rglob("*.safetensors")):
        out |= {f"{f.relative_to(run_dir)}:{k}": v for k, v in _weights(f).items()}
    return out


def _differ(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


SECTIONS = dict(train={"max_steps": 8, "log_every": 1, "seed": 7},
                optim={"lr": 1e-3, "warmup_steps": 2, "head_warmup_steps": 2, "head_lr": 3e-3},
                eval={"every": 4, "batch_size": 16}, checkpoint={"every": 0, "minutes": 0})


def _write_project(tmp_path: Path, model: Path, steps: int = 8, eval_batch: int = 16) -> tuple[Path, object]:
    sections = SECTIONS | {"train": SECTIONS["train"] | {"max_steps": steps},
                           "eval": SECTIONS["eval"] | {"batch_size": eval_batch}}
    project = parse_project(_project(tmp_path, model, **sections), tmp_path)
    path = tmp_path / "project.toml"
    path.write_text(dumps_project(project.with_absolute_paths()), encoding="utf-8")
    return path, project


@pytest.mark.slow
def test_two_ranks_train_the_model_one_process_trains(tmp_path, quiet_bert):
    # validation batches of 5: of a task's 12 rows, rank 0 evaluates 7 (two batches) and rank 1 five (one)
    project_file, project = _write_project(tmp_path, quiet_bert, eval_batch=5)
    events = []
    one = run(project, events.append, threading.Event(), run_dir=tmp_path / "one", min_log_interval=0)
    assert one.reason == "completed"
    ranks = _torchrun(tmp_path, project_file, tmp_path / "two", "out")
    assert [r["reason"] for r in ranks.values()] == ["completed", "completed"]
    # one gradient all-reduce a step (the tiny model's gradients fit one bucket), whatever the number of tasks
    assert ranks[0]["buckets"] == 1
    assert ranks[0]["per_step"] == {str(s): 1 for s in range(1, 9)}
    assert ranks[1]["per_step"] == {"total": 8}
    # the ranks hold the same weights, and they are one process's (warm-up included: the encoder was reduced)
    zero, first = _weights(ranks[0]["weights"]), _weights(ranks[1]["weights"])
    assert all(torch.equal(zero[k], first[k]) for k in zero)
    assert _differ(_full_export(tmp_path / "one"), _full_export(tmp_path / "two")) < TOLERANCE
    initial = _weights(quiet_bert / "model.safetensors")
    encoder = {k.removeprefix("backbones.encoder."): v for k, v in zero.items() if k.startswith("backbones.encoder.")}
    assert any(not torch.equal(initial[k], encoder[k]) for k in initial if k in encoder and "layer.1." in k)
    logged = {e.step: e.task_losses for e in events if isinstance(e, StepLogged)}
    for step, losses in ranks[0]["logged"].items():
        assert losses.keys() == logged[int(step)].keys()
        assert all(abs(v - logged[int(step)][k]) < 1e-4 for k, v in losses.items()), (step, losses, logged)
    # each rank evaluated its own rows; the metrics gathered from them are one process's (on weights within 3e-7)
    evals = {e.step: e.metrics for e in events if isinstance(e, EvalDone)}
    assert sorted(int(s) for s in ranks[0]["evals"]) == sorted(evals) == [4, 8]
    for step, metrics in ranks[0]["evals"].items():
        for task, values in metrics.items():
            assert values == pytest.approx(evals[int(step)][task], rel=1e-4, abs=1e-5), (step, task)
    assert {task: (ranks[0]["evaluated"][task], ranks[1]["evaluated"][task]) for task in SIZES} == {
        task: (2 * 7, 2 * 5) for task in SIZES}
    # rank 0 alone wrote: the run folder holds what one process's holds, once
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(list((tmp_path / "two").rglob("events.jsonl"))) == 1
    lines = (tmp_path / "two" / "events.jsonl").read_text().splitlines()
    assert sum('"RunEnded"' in line for line in lines) == 1
    manifest = json.loads(next((tmp_path / "two" / "checkpoints").glob("step-*/manifest.json")).read_text())
    assert manifest["world_size"] == 2


@pytest.mark.slow
def test_two_ranks_share_the_evaluation_of_a_keep_task_from_step_0(tmp_path, quiet_bert):
    raw = project_dict(quiet_bert, tmp_path / "data", ["classification", "masked_lm"], **SECTIONS)
    raw["tasks"][1]["keep"] = True          # evaluated on all its 48 rows, at step 0 too, never trained
    raw["eval"]["batch_size"] = 5
    for task in raw["tasks"]:
        task["head"]["dropout"] = 0.0
    project = parse_project(raw, tmp_path)
    project_file = tmp_path / "project.toml"
    project_file.write_text(dumps_project(project.with_absolute_paths()), encoding="utf-8")
    events = []
    assert run(project, events.append, threading.Event(), run_dir=tmp_path / "one", min_log_interval=0).reason \
        == "completed"
    ranks = _torchrun(tmp_path, project_file, tmp_path / "two", "out")
    assert [r["reason"] for r in ranks.values()] == ["completed", "completed"]
    evals = {e.step: e.metrics for e in events if isinstance(e, EvalDone)}
    assert sorted(int(s) for s in ranks[0]["evals"]) == sorted(evals) == [0, 4, 8]
    assert set(ranks[0]["evals"]["0"]) == {"masked-lm"}
    for step, metrics in ranks[0]["evals"].items():
        assert metrics.keys() == evals[int(step)].keys()
        for task, values in metrics.items():
            assert values == pytest.approx(evals[int(step)][task], rel=1e-4, abs=1e-5), (step, task)
    # batches of 5: the keep task's 10 batches go 5 to each rank (25 and 23 rows), three evaluations
    assert ranks[0]["evaluated"] == {"masked-lm": 3 * 25, "classification": 2 * 7}
    assert ranks[1]["evaluated"] == {"masked-lm": 3 * 23, "classification": 2 * 5}


@pytest.mark.slow
def test_pause_and_stop_requests_reach_every_rank_and_the_run_resumes_on_one_or_two(tmp_path, quiet_bert):
    project_file, project = _write_project(tmp_path, quiet_bert, steps=16)    # room for the stop to come
    straight = run(project, lambda e: None, threading.Event(), run_dir=tmp_path / "one", min_log_interval=0)
    assert straight.reason == "completed"
    ranks = _torchrun(tmp_path, project_file, tmp_path / "two", "stop", "--pause-file-at", "2",
                      "--stop-file-at", "4")
    assert {r["reason"] for r in ranks.values()} == {"stopped"}
    assert ranks[0]["phases"] == ["paused", "resumed"]       # every rank waited: none went on into a collective
    assert ranks[0]["step"] == ranks[1]["step"] and 4 < ranks[0]["step"] < 16
    checkpoints = [p.name for p in (tmp_path / "two" / "checkpoints").glob("step-*")]
    assert checkpoints == [f"step-{ranks[0]['step']:08d}"]
    assert not (tmp_path / "two" / distributed.STOP_REQUEST).exists()
    shutil.copytree(tmp_path / "two", tmp_path / "two-again")
    ended = run(project, lambda e: None, threading.Event(), run_dir=tmp_path / "two", resume=True,
                min_log_interval=0)
    assert ended.reason == "completed" and ended.step == 16
    assert _differ(_full_export(tmp_path / "one"), _full_export(tmp_path / "two")) < TOLERANCE
    again = _torchrun(tmp_path, project_file, tmp_path / "two-again", "resume", "--resume")
    assert {r["reason"] for r in again.values()} == {"completed"}
    ended_events = [json.loads(line) for line in (tmp_path / "two-again" / "events.jsonl").read_text().splitlines()
                    if '"RunEnded"' in line]
    assert [e["reason"] for e in ended_events] == ["stopped", "completed"]
    assert _differ(_full_export(tmp_path / "one"), _full_export(tmp_path / "two-again")) < TOLERANCE


def test_out_of_memory_is_refused_under_several_processes(monkeypatch):
    from types import SimpleNamespace

    from qarac_gui.core.training import loop

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(loop, "_accumulate", out_of_memory)
    t = SimpleNamespace(project=SimpleNamespace(optim=SimpleNamespace(grad_accum=1), tasks=[]),
                        stream=SimpleNamespace(draw=lambda: []), world=World(1, 2), device=torch.device("cuda"))
    with pytest.raises(UserError, match="with 2 processes.*one process only"):
        loop._backward(t, SimpleNamespace(micro_split=1), 5, SimpleNamespace(begin=lambda: None), None, None,
                       SimpleNamespace(take=lambda *args: []))


@pytest.mark.slow
def test_the_command_line_under_torchrun_checks_once_trains_and_exports_once(tmp_path, quiet_bert):
    project_file, _ = _write_project(tmp_path, quiet_bert, steps=4)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "qarac_gui.cli", str(project_file), "--out", str(tmp_path / "run"), "--jsonl"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [e["reason"] for e in events if e["event"] == "RunEnded"] == ["completed"]    # one process speaks
    assert [e["event"] for e in events].count("ExportDone") == 1
    assert (tmp_path / "run" / "export" / "full").is_dir() and (tmp_path / "run" / "metrics.json").is_file()
    # the folder check ran on rank 0 alone: rank 1 did not find rank 0's files and refuse the folder
    assert "is not empty" not in done.stderr


def test_a_collective_broken_by_another_process_is_told_apart_from_a_bug():
    from qarac_gui.core.training.distributed import peer_left
    gloo = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
                        "[127.0.0.1]:62343")
    assert peer_left(gloo)
    assert not peer_left(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not peer_left(ValueError("Connection closed by peer"))
