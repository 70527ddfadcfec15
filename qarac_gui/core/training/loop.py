"""The training loop: every optimiser step trains all tasks (or one drawn task) on the shared encoder."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from qarac_gui.core.data.tokenize import TaskData
from qarac_gui.core.events import CheckpointSaved, Emit, EvalDone, Progress, StepLogged, StepSkipped
from qarac_gui.core.project.config import Project
from qarac_gui.core.training.checkpoint import TrainState, best_weights_path, save_checkpoint, save_weights
from qarac_gui.core.training.evaluation import evaluate_task
from qarac_gui.core.training.guard import StepGuard
from qarac_gui.core.training.memory import split_after_oom
from qarac_gui.core.training.metrics import is_better
from qarac_gui.core.training.plan import RunPlan
from qarac_gui.core.training.sampling import TaskStream


@dataclass
class Trainee:
    """Everything fit() works on, built by run.py (or by a test)."""
    project: Project
    model: Any
    tasks: dict[str, TaskData]
    stream: TaskStream
    optimizer: Any
    scheduler: Any
    scaler: Any                     # torch.amp.GradScaler for fp16, else None
    device: torch.device
    autocast: Callable[[], Any]     # a context-manager factory
    plan: RunPlan
    monitor: str                    # "task/metric" for best-step tracking and early stopping
    checkpoint_dir: Path
    tokenizers: dict[str, Any]      # per backbone
    sources: dict[str, str]         # per backbone: the folder or Hub id it was loaded from
    precision: str


def micro_seed(seed: int, step: int, micro: int) -> int:
    # Masked-LM masks come from (seed, step, micro-batch), so a resumed run masks exactly as the straight one.
    return (seed * 1_000_003 + step * 131 + micro) % (2**63)


def _set_backbones_trainable(t: Trainee, trainable: bool, keep_frozen: set[int]) -> None:
    for p in t.model.backbones.parameters():
        if id(p) not in keep_frozen:    # layers the project froze stay frozen
            p.requires_grad_(trainable)


def fit(t: Trainee, state: TrainState, emit: Emit, stop: threading.Event, min_log_interval: float = 0.25,
        pause: threading.Event | None = None) -> str:
    """Train from state.step to the planned end; returns why it ended: completed, stopped, early_stopped, or
    diverged (train.skip_limit steps in a row had a non-finite loss or gradient; nothing saved after them).

    While `pause` is set the loop waits between two optimiser steps (the model stays on the device).
    """
    p, o = t.project, t.project.optim
    weights = {task.name: task.weight for task in p.tasks}
    params = [q for group in t.optimizer.param_groups for q in group["params"]]
    encoder_groups = [g for g in t.optimizer.param_groups if not g["is_head"]]
    head_groups = [g for g in t.optimizer.param_groups if g["is_head"]]
    frozen = {id(q) for q in t.model.backbones.parameters() if not q.requires_grad}
    sums = {name: torch.zeros((), device=t.device) for name in t.tasks}
    finite = {name: torch.zeros((), device=t.device) for name in t.tasks}     # finite losses summed, per task
    counts = dict.fromkeys(t.tasks, 0)
    guard = StepGuard(list(t.tasks), t.optimizer, t.scheduler, t.scaler, t.device)
    samples, last_log, started = 0, time.monotonic(), time.monotonic()
    saved_at, saved_step = started, state.step
    in_head_phase = state.step < o.head_warmup_steps
    if in_head_phase:                   # no encoder gradients at all: the heads warm up on a fixed encoder
        _set_backbones_trainable(t, False, frozen)
    t.model.train()

    def settle() -> bool:
        """Take in the last step's flags; True when too many steps in a row were skipped."""
        if not guard.pending:
            return False
        skipped = guard.resolve()
        if skipped is None:
            if state.skipped_in_a_row:
                state.skipped_in_a_row = 0
            return False
        state.skipped_in_a_row += 1
        state.skipped_total += 1
        emit(StepSkipped(skipped.step, skipped.tasks, state.skipped_in_a_row))
        return bool(p.train.skip_limit) and state.skipped_in_a_row >= p.train.skip_limit

    try:
        for step in range(state.step + 1, t.plan.total_steps + 1):
            if pause is not None and pause.is_set():
                waited = _wait_while_paused(pause, stop, state.step, emit)
                started += waited       # paused time counts neither in elapsed time nor in samples/s
                last_log += waited
            if stop.is_set():           # cooperative cancel, checked once per optimiser step
                settle()
                _checkpoint(t, state, emit)
                return "stopped"
            if in_head_phase and step > o.head_warmup_steps:
                _set_backbones_trainable(t, True, frozen)
                in_head_phase = False
            guard.begin()
            draws = [t.stream.draw() for _ in range(o.grad_accum)]
            while True:
                out_of_memory = False
                try:
                    done = _accumulate(t, draws, step, weights, guard, state.micro_split)
                except torch.OutOfMemoryError:
                    out_of_memory = True    # handled outside the except block, so its traceback frees its tensors
                if not out_of_memory:
                    break
                split_after_oom(t, state, step, draws, emit)
                guard.begin()
            for name, kept, ok, rows in done:
                sums[name] += kept              # stays on the device: no sync per step
                finite[name] += ok
                counts[name] += 1
                samples += rows
            if t.scaler:
                t.scaler.unscale_(t.optimizer)
            if o.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip, foreach=True)
            else:
                grads = [q.grad for q in params if q.grad is not None]
                norm = torch.nn.utils.get_total_norm(grads, foreach=True) if grads else None
            guard.check_gradients(norm)
            if settle():                # the previous step's verdict, read while this step's work is queued
                return "diverged"
            applied_lr = max((g["lr"] for g in encoder_groups), default=0.0)
            applied_head_lr = max((g["lr"] for g in head_groups), default=0.0)
            guard.optimizer_step()
            t.scheduler.step()
            guard.record(step)
            t.optimizer.zero_grad(set_to_none=True)     # frees gradient memory until the next backward
            state.step = step
            now = time.monotonic()
            last = step == t.plan.total_steps
            if (step % p.train.log_every == 0 and now - last_log >= min_log_interval) or last:
                if settle():
                    return "diverged"
                # The only host-device sync of the loop, once per log interval.
                names = [n for n in sums if counts[n]]
                if names:
                    means = (torch.stack([sums[n] for n in names]) / torch.stack([finite[n] for n in names])).tolist()
                    losses = {n: m for n, m in zip(names, means) if math.isfinite(m)}
                else:
                    losses = {}
                emit(StepLogged(step, t.stream.epochs_done(t.plan.epoch_task), losses, applied_lr,
                                applied_head_lr, samples / max(now - last_log, 1e-9), now - started))
                for n in sums:
                    sums[n].zero_()
                    finite[n].zero_()
                    counts[n] = 0
                samples, last_log = 0, now
            if last or (p.eval.every and step % p.eval.every == 0):
                if settle():
                    return "diverged"
                if _evaluate(t, state, emit) and not last:
                    _checkpoint(t, state, emit)
                    return "early_stopped"
            due = p.checkpoint.every and step % p.checkpoint.every == 0
            if due or (p.checkpoint.minutes and now - saved_at >= 60 * p.checkpoint.minutes):
                if settle():
                    return "diverged"
                if not state.skipped_in_a_row:     # a roll-back should land before the trouble, not in it
                    _checkpoint(t, state, emit)
                    saved_at, saved_step = time.monotonic(), step
        if settle():
            return "diverged"
        if saved_step != state.step:    # the end is a checkpoint too: a crash while exporting loses no training
            _checkpoint(t, state, emit)
        return "completed"
    finally:
        _set_backbones_trainable(t, True, frozen)


def _accumulate(t: Trainee, draws: list, step: int, weights: dict[str, float], guard: StepGuard,
                split: int) -> list[tuple[str, Any, Any, int]]:
    """Forward and backward every drawn batch, each cut into `split` micro-batches (more after an out-of-memory
    error), scaled so that the gradients are those of the whole batch."""
    p = t.project
    done = []
    for micro, draw in enumerate(draws):
        for name, rows_idx in draw:
            data = t.tasks[name]
            size = -(-len(rows_idx) // split)
            for j in range(0, len(rows_idx), size):
                chunk = rows_idx[j:j + size]
                batch = data.collate(data.train[chunk], micro_seed(p.train.seed, step, micro * split + j // size))
                batch = {k: v.to(t.device, non_blocking=True) for k, v in batch.items()}
                with t.autocast():
                    loss = t.model(name, batch).loss
                factor = weights[name] / p.optim.grad_accum
                if split > 1:
                    factor *= len(chunk) / len(rows_idx)
                scaled = loss * factor
                # One backward per task: gradients add up to those of the summed loss, but each task's
                # graph is freed before the next task runs, so peak memory is one task's, not all of them.
                (t.scaler.scale(scaled) if t.scaler else scaled).backward()
                kept, ok = guard.check_loss(name, loss.detach())
                done.append((name, kept, ok, len(chunk)))
    return done


def _wait_while_paused(pause: threading.Event, stop: threading.Event, step: int, emit: Emit) -> float:
    began = time.monotonic()
    emit(Progress("paused", f"Paused after step {step}"))
    while pause.is_set() and not stop.is_set():
        stop.wait(0.05)
    if not stop.is_set():
        emit(Progress("resumed", f"Resumed at step {step + 1}"))
    return time.monotonic() - began


def _evaluate(t: Trainee, state: TrainState, emit: Emit) -> bool:
    """Validate every task; returns True when early stopping says to stop."""
    t.model.eval()
    results = {}
    for name, data in t.tasks.items():
        if data.valid is not None and len(data.valid):
            results[name] = evaluate_task(t.model, data, t.device, t.project.eval.batch_size, t.autocast)
    t.model.train()
    task, _, metric = t.monitor.partition("/")
    value = results.get(task, {}).get(metric)
    if value is not None and math.isfinite(value) and is_better(metric, value, state.best_value):
        state.best_value, state.best_step = value, state.step
        state.evals_without_improvement = 0
        if t.project.eval.keep_best:
            save_weights(t.model, best_weights_path(t.checkpoint_dir))
    else:
        state.evals_without_improvement += 1
    state.eval_history.append({"step": state.step, "metrics": results})
    emit(EvalDone(state.step, results, state.best_step, state.best_value, t.monitor))
    patience = t.project.eval.patience
    return bool(patience) and state.evals_without_improvement >= patience


def _checkpoint(t: Trainee, state: TrainState, emit: Emit) -> None:
    path = save_checkpoint(t.checkpoint_dir, model=t.model, optimizer=t.optimizer, scheduler=t.scheduler,
                           scaler=t.scaler, stream=t.stream, state=state, keep=t.project.checkpoint.keep)
    emit(CheckpointSaved(state.step, str(path)))


def autocast_factory(device: torch.device, precision: str) -> tuple[Callable[[], Any], str]:
    """(context factory, the precision actually used). Mixed precision only on CUDA; CPU runs fp32."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext, "fp32"
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), precision
