"""The estimate before Start: memory of the weights, gradients, optimiser state and the largest task's
activations, and the time of an epoch, measured on the model as the run builds it."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import pytest
from tiny import project_dict

torch = pytest.importorskip("torch")

from qarac_gui.core import estimate as estimate_module  # noqa: E402
from qarac_gui.core.estimate import estimate_run  # noqa: E402
from qarac_gui.core.project.config import load_project, parse_project  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_threads")
ROOT = Path(__file__).resolve().parents[2]


def _estimate(tmp_path, tiny_bert, **sections):
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "masked_lm"], **sections)
    return estimate_run(parse_project(raw, tmp_path), lambda e: None, threading.Event())


def test_weights_gradients_and_optimizer_state_are_counted_from_the_parameters(tmp_path, tiny_bert):
    from transformers import AutoModel
    encoder = sum(p.numel() for p in AutoModel.from_pretrained(tiny_bert).parameters())
    e = _estimate(tmp_path, tiny_bert)
    assert e.weights > encoder * 4                      # float32 weights of the encoder, and the heads on top
    # Everything trains but the encoder's own pooler (heads pool for themselves): a 32 x 32 layer and its bias
    assert e.weights - e.gradients == (32 * 32 + 32) * 4
    assert e.optimizer == 2 * e.gradients               # two float32 moments per trainable weight
    frozen = _estimate(tmp_path, tiny_bert, backbones={"encoder": {"model": str(tiny_bert), "freeze_layers": 2,
                                                                   "freeze_embeddings": True}})
    assert frozen.weights == e.weights and frozen.gradients < e.gradients / 2
    assert frozen.optimizer == 2 * frozen.gradients


def test_activations_grow_with_the_batch_and_the_epoch_is_the_step_times_its_steps(tmp_path, tiny_bert):
    small = _estimate(tmp_path, tiny_bert)
    raw_tasks = {c.task: c for c in small.tasks}
    assert set(raw_tasks) == {"classification", "masked-lm"}
    assert all(c.rows == 8 and c.tokens > 0 and c.activations > 0 and c.seconds > 0 for c in small.tasks)
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "masked_lm"])
    for task in raw["tasks"]:
        task["batch_size"] = 16
    large = estimate_run(parse_project(raw, tmp_path), lambda e: None, threading.Event())
    for c in large.tasks:
        ratio = c.activations / raw_tasks[c.task].activations
        assert 1.5 < ratio < 2.5, (c.task, ratio)       # twice the rows of the same widest length: about twice
    # 36 training rows (48, a quarter held out) in batches of 8: 5 batches an epoch, one a step with all_tasks
    assert small.steps_per_epoch == 5
    assert small.epoch_seconds == pytest.approx(small.step_seconds * 5)
    assert small.total == small.weights + small.gradients + small.optimizer + max(c.activations
                                                                                  for c in small.tasks)


def test_a_run_that_will_not_fit_is_named_with_its_task_and_what_to_change(tmp_path, tiny_bert, monkeypatch):
    monkeypatch.setattr(estimate_module, "_available", lambda device: 100_000)      # a device of 100 kB
    e = _estimate(tmp_path, tiny_bert)
    widest = max(e.tasks, key=lambda c: c.activations).task
    assert len(e.warnings) == 1
    assert f"task {widest} keeps the most" in e.warnings[0]
    assert f"tasks.{widest}.batch_size" in e.warnings[0] and "100.0 kB" in e.warnings[0]


def test_an_aggregator_s_copy_of_each_task_s_shared_gradients_is_counted(tmp_path, tiny_bert, monkeypatch):
    pytest.importorskip("torchjd")
    plain = _estimate(tmp_path, tiny_bert)
    upgrad = _estimate(tmp_path, tiny_bert, train={"balancing": "upgrad"})
    assert plain.balancing == 0
    shared = plain.gradients - sum(c for c in _head_bytes(tmp_path, tiny_bert))     # the trainable non-head weights
    assert upgrad.balancing == 2 * shared               # a float32 row per task: two tasks
    assert upgrad.total - plain.total == pytest.approx(upgrad.balancing, rel=0.5, abs=upgrad.balancing)
    monkeypatch.setattr(estimate_module, "_available", lambda device: upgrad.total - upgrad.balancing // 2)
    said = _estimate(tmp_path, tiny_bert, train={"balancing": "upgrad"}).warnings
    assert said and "train.balancing keeps a copy of every task's encoder gradients" in said[0]


def _head_bytes(tmp_path, tiny_bert):
    from qarac_gui.core.training.setup import build_run
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "masked_lm"])
    t, _, _ = build_run(parse_project(raw, tmp_path), tmp_path / "heads", lambda e: None, threading.Event(), False)
    shared = {id(q) for q in t.model.backbones.parameters()}
    return [q.numel() * q.element_size() for head in t.model.heads.values() for q in head.parameters()
            if q.requires_grad and id(q) not in shared]


@pytest.mark.slow
def test_the_demos_estimate_is_within_a_quarter_of_the_peak_torch_measures(tmp_path, monkeypatch):
    """The peak of every tensor the run holds on the CPU, from torch's own profiler (its memory timeline) over a
    few real steps, against the estimate made before them."""
    from qarac_gui.core.training import loop
    from qarac_gui.core.training.setup import build_run
    project = load_project(ROOT / "resources" / "demo" / "project.toml")
    e = estimate_run(project, lambda ev: None, threading.Event())
    project.train.max_steps, project.train.epochs, project.train.log_every = 2, 0.0, 100
    project.checkpoint.minutes = project.checkpoint.every = 0
    stop = threading.Event()
    t, state, _ = build_run(project, tmp_path / "run", lambda ev: None, stop, resume=False)
    monkeypatch.setattr(loop, "_evaluate", lambda *args: False)        # training steps only
    monkeypatch.setattr(loop, "_checkpoint", lambda *args: None)
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True, record_shapes=True,
                                with_stack=True) as prof:
        loop.fit(t, state, lambda ev: None, stop, min_log_interval=0)
    with warnings.catch_warnings():     # deprecated for CUDA's own recorder, which has no CPU counterpart
        warnings.simplefilter("ignore", FutureWarning)
        prof.export_memory_timeline(str(tmp_path / "timeline.json"), device="cpu")
    _, sizes = json.loads((tmp_path / "timeline.json").read_text())
    peak = max(sum(row) for row in sizes)
    assert abs(e.total - peak) <= 0.25 * peak, (e.total, peak)
    assert e.steps_per_epoch == t.plan.batches_per_epoch[t.plan.epoch_task]
