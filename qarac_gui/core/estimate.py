"""Before Start: how much memory the run will need on its device and how long an epoch will take, from the model
as the run builds it and one measured forward and backward pass of each task's widest batch.

Memory = the weights, their gradients and the optimiser's state (counted from the parameters) + the activations
of the task that keeps the most for its backward pass (measured: every tensor autograd saves, once per storage,
weights left out). The tasks' graphs are freed one after the other within a step, so only the largest counts.
Time per epoch = the measured step (each task's pass on a batch of its own rows, in the proportion the mixing
draws them, plus the optimiser step) times the steps an epoch of the epoch task takes.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qarac_gui.core.errors import UserError
from qarac_gui.core.events import Emit, Progress
from qarac_gui.core.project.config import Project
from qarac_gui.core.project.keep import trained_tasks
from qarac_gui.core.training.setup import build_run

TIMED_PASSES = 3
FITS = 0.9                      # the share of a device's memory a run may plan to use (the rest: workspace, others)


@dataclass(frozen=True)
class TaskCost:
    task: str
    rows: int                   # the task's batch
    tokens: int                 # tokens of its widest row (every input of it), the batch measured
    activations: int            # bytes saved for the backward pass
    seconds: float              # one forward and backward pass of that batch


@dataclass(frozen=True)
class RunEstimate:
    device: str
    weights: int
    gradients: int
    optimizer: int
    tasks: list[TaskCost]
    available: int              # the device's memory (the machine's on a CPU); 0 unknown
    step_seconds: float
    steps_per_epoch: float
    warnings: list[str] = field(default_factory=list)
    balancing: int = 0          # an aggregator's copy of each task's shared gradients (train.balancing)

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.balancing + \
            max((c.activations for c in self.tasks), default=0)

    @property
    def epoch_seconds(self) -> float:
        return self.step_seconds * self.steps_per_epoch


def estimate_run(project: Project, emit: Emit, stop: threading.Event) -> RunEstimate:
    t, _, _ = build_run(project, Path(tempfile.gettempdir()) / "qarac-gui-estimate", emit, stop, resume=False)
    params = {id(p): p for p in t.model.parameters()}.values()
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = [p for group in t.optimizer.param_groups for p in group["params"]]     # what gets gradients
    gradients = sum(p.numel() * p.element_size() for p in trainable)
    # AdamW and NAdam keep two float32 moments per trainable weight (the step counts are a few bytes)
    optimizer = sum(2 * p.numel() * 4 for p in trainable)
    rng = torch.get_rng_state()
    t.model.train()
    try:
        costs = []
        for task in trained_tasks(project):     # keep tasks cost no training step
            if stop.is_set():
                raise UserError("the estimate was stopped before it finished")
            emit(Progress("estimate", f"{task.name}: measuring a batch of its widest rows"))
            costs.append(_task_cost(t, task.name, task.batch_size))
        step = _step_seconds(t, costs)
    finally:
        t.optimizer.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
    jacobian = getattr(t.balancer, "jacobian", None)     # upgrad, pcgrad, mgda: allocated when the run is built
    balancing = jacobian.numel() * jacobian.element_size() if jacobian is not None else 0
    estimate = RunEstimate(str(t.device), weights, gradients, optimizer, costs, _available(t.device), step,
                           _steps_per_epoch(t), balancing=balancing)
    return RunEstimate(**{**estimate.__dict__, "warnings": _warnings(estimate)})


def _task_cost(t: Any, name: str, batch_size: int) -> TaskCost:
    data = t.tasks[name]
    columns = [c for c in data.train.column_names if c.endswith("input_ids")]
    lengths = [sum(len(ids) for ids in row) for row in zip(*(data.train[c] for c in columns))]
    rows = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:batch_size]
    batch = {k: v.to(t.device) for k, v in data.collate(data.train[rows]).items()}
    weights = {p.untyped_storage().data_ptr() for p in t.model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = max(saved.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor
    _pass(t, name, batch)                       # the first pass of a shape pays one-off costs: not timed
    t.optimizer.zero_grad(set_to_none=True)
    times = []
    for _ in range(TIMED_PASSES):               # the fastest: other work on the machine only ever slows a pass
        began = time.perf_counter()
        _pass(t, name, batch)
        _synchronize(t.device)
        times.append(time.perf_counter() - began)
        t.optimizer.zero_grad(set_to_none=True)
    seconds = min(times)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):     # slower: counted, not timed
        _pass(t, name, batch)
    t.optimizer.zero_grad(set_to_none=True)
    return TaskCost(name, len(rows), lengths[rows[0]] if rows else 0, sum(saved.values()), seconds)


def _pass(t: Any, name: str, batch: dict) -> None:
    with t.autocast():
        loss = t.model(name, batch).loss
    if loss.requires_grad:
        loss.backward()


def _shares(t: Any) -> dict[str, float]:
    """How many of each task's batches a micro-batch draw holds: one of each (all_tasks), or the chance of it."""
    if t.project.train.mixing == "all_tasks":
        return dict.fromkeys(t.tasks, 1.0)
    from qarac_gui.core.training.plan import task_probabilities
    return task_probabilities(t.project, {n: len(d.train) for n, d in t.tasks.items()})


def _step_seconds(t: Any, costs: list[TaskCost]) -> float:
    """Each task's pass in the share of draws it takes, times the draws of a step, plus the optimiser's step
    (timed on zero gradients: the same work)."""
    shares = _shares(t)
    passes = sum(c.seconds * shares[c.task] for c in costs)
    for p in (q for group in t.optimizer.param_groups for q in group["params"]):
        p.grad = torch.zeros_like(p)
    t.optimizer.step()                          # once to build its state, once timed
    began = time.perf_counter()
    t.optimizer.step()
    _synchronize(t.device)
    return passes * t.project.optim.grad_accum + time.perf_counter() - began


def _steps_per_epoch(t: Any) -> float:
    """Optimiser steps until the epoch task has seen all its rows once."""
    task = t.plan.epoch_task
    share = _shares(t)[task] * t.project.optim.grad_accum
    return t.plan.batches_per_epoch[task] / max(share, 1e-9)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _available(device: torch.device) -> int:
    from qarac_gui.core.model.devices import memory_use
    use = memory_use(str(device))
    return use.total if use is not None else 0


def _warnings(e: RunEstimate) -> list[str]:
    if not e.available or e.total <= FITS * e.available:
        return []
    from qarac_gui.core.results.history import human_size
    widest = max(e.tasks, key=lambda c: c.activations)
    return [f"the run needs about {human_size(e.total)} of {e.device} memory and the device has "
            f"{human_size(e.available)}: task {widest.task} keeps the most for its backward pass "
            f"({human_size(widest.activations)} for {widest.rows} rows of {widest.tokens} tokens); lower "
            f"tasks.{widest.task}.batch_size or max_length, use train.precision = \"bf16\", or freeze encoder layers"
            + (f"; train.balancing keeps a copy of every task's encoder gradients ({human_size(e.balancing)}): "
               "\"weights\" or \"uncertainty\" need none" if e.balancing else "")]
