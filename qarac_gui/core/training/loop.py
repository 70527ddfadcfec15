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
from qarac_gui.core.errors import UserError
from qarac_gui.core.events import CheckpointSaved, Emit, EvalDone, Progress, StepDone, StepLogged
from qarac_gui.core.kinds.metrics import is_better
from qarac_gui.core.project.config import Project
from qarac_gui.core.training.checkpoint import TrainState, best_weights_path, save_checkpoint, save_weights
from qarac_gui.core.training.compiling import GraphReport
from qarac_gui.core.training.distributed import SINGLE, Requests, World, agree, share_sum
from qarac_gui.core.training.evaluation import evaluate_task
from qarac_gui.core.training.forgetting import ForgettingMonitor
from qarac_gui.core.training.guard import Asked, StepGuard
from qarac_gui.core.training.memory import split_after_oom
from qarac_gui.core.training.plan import RunPlan
from qarac_gui.core.training.prefetch import Piece, Prefetcher
from qarac_gui.core.training.sampling import TaskStream
from qarac_gui.core.training.task_stopping import freeze_stopped, judge_tasks, stopped_tasks


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
    world: World = SINGLE           # the processes training this model (torchrun); one by default
    ddp: Any = None                 # the DistributedDataParallel wrapper under several processes, else None
    balancer: Any = None            # train.balancing other than weights (balancing.py), else None


def _set_backbones_trainable(t: Trainee, trainable: bool, keep_frozen: set[int]) -> None:
    for p in t.model.backbones.parameters():
        if id(p) not in keep_frozen:    # layers the project froze stay frozen
            p.requires_grad_(trainable)


def fit(t: Trainee, state: TrainState, emit: Emit, stop: threading.Event, min_log_interval: float = 0.25,
        pause: threading.Event | None = None) -> str:
    """Train from state.step to the planned end; returns why it ended: completed, stopped, early_stopped, or
    diverged (train.skip_limit steps in a row had a non-finite loss or gradient; nothing saved after them).

    Each step is three named pieces: the step itself (_backward, then _apply), logging (_LossLog), and
    evaluate-or-checkpoint. Whether a step was skipped for a non-finite loss or gradient is read one step late
    (guard.settle), so no step waits for the device to answer.
    While `pause` is set the loop waits between two optimiser steps (the model stays on the device). The files
    stop-request and pause-request in the run folder ask the same (distributed.Requests).

    Under several processes (t.world) every rank runs this loop on its slice of each batch; stop, pause, the log
    and skipped steps are decided from the guard's shared flags, so all ranks do the same at the same step.
    """
    p, o, world = t.project, t.project.optim, t.world
    guard = StepGuard(list(t.tasks), t.optimizer, t.scheduler, t.scaler, t.device, world)
    requests = Requests(t.checkpoint_dir.parent, stop, pause, poll=world.writer)
    log = _LossLog(t, min_log_interval)
    if world.on:                        # before the first verdict: what every rank's clock would say alike
        guard.asked = Asked(log=min_log_interval <= 0)
    saves = _Saves(time.monotonic(), state.step)
    frozen = {id(q) for q in t.model.backbones.parameters() if not q.requires_grad}
    freeze_stopped(t.model, p, stopped_tasks(state))    # a resumed run's stopped tasks stay frozen

    def diverged() -> bool:
        return guard.settle(state, emit, p.train.skip_limit)

    in_head_phase = state.step < o.head_warmup_steps
    if in_head_phase:                   # no encoder gradients at all: the heads warm up on a fixed encoder
        _set_backbones_trainable(t, False, frozen)
    t.model.train()
    graphs = GraphReport(p.train.compile)
    # Under several processes each rank's slice is small already: batches are never cut further
    def prefetch() -> Prefetcher:
        return Prefetcher(t.tasks, t.stream, o.grad_accum, p.train.seed, state.step + 1, t.plan.total_steps,
                          1 if world.on else state.micro_split, pin=t.device.type == "cuda", world=world)
    batches = prefetch()
    halted = False                      # a stop agreed while paused
    resumed = -1                        # the step before which the ranks last waited: the verdict read during
                                        # the next step still carries the pause that began it

    def poll() -> tuple[bool, bool]:
        asked = [requests.pause(), requests.stop()]
        return tuple(agree(world, asked, t.device)) if world.on else tuple(asked)
    forgetting = ForgettingMonitor(t, state, emit, pause, requests)
    try:
        forgetting.start()              # the keep tasks' step-0 numbers, before any optimiser update
        for step in range(state.step + 1, t.plan.total_steps + 1):
            if (guard.asked.pause and step > resumed + 1) if world.on else requests.pause():
                waited, halted = _wait_while_paused(poll, state.step, emit, 0.1 if world.on else 0.05)
                log.leave_out(waited)
                resumed = step
            if halted or (guard.asked.stop if world.on else requests.stop()):   # checked once per optimiser step
                diverged()
                _checkpoint(t, state, emit)
                return "stopped"
            if in_head_phase and step > o.head_warmup_steps:
                _set_backbones_trainable(t, True, frozen)
                freeze_stopped(t.model, p, stopped_tasks(state))    # what stopped tasks alone used stays frozen
                in_head_phase = False
            asks = Asked(requests.stop(), requests.pause(), log.time_passed(), saves.time_passed(p)) \
                if world.on else None
            _backward(t, state, step, guard, log, emit, batches, asks)
            if diverged():              # the previous step's verdict, read while this step's work is queued
                return "diverged"
            lrs = _apply(t, guard, step)
            state.step = step
            # Progress every step from host counters alone: the losses wait on the device for the log interval
            emit(StepDone(step, t.stream.epochs_done(t.plan.epoch_task), log.elapsed()))
            last = step == t.plan.total_steps
            if log.due(step, last, guard.asked.log if world.on else None):
                if diverged():          # the log reads the device anyway: take the verdict in first
                    return "diverged"
                emit(log.flush(step, t.stream.epochs_done(t.plan.epoch_task), *lrs))
                graphs(emit)
            stopped = len(t.stream.stopped)
            reason = _evaluate_or_checkpoint(t, state, emit, step, last, saves, diverged,
                                             guard.asked.save if world.on else None, forgetting.check)
            if reason:
                return reason
            if len(t.stream.stopped) != stopped:    # the prefetch drew ahead from a stream with the task in it
                batches.close()
                batches = prefetch()
        if diverged():
            return "diverged"
        if saves.step != state.step:    # the end is a checkpoint too: a crash while exporting loses no training
            _checkpoint(t, state, emit)
        graphs(emit)
        return "completed"
    finally:
        batches.close()
        _set_backbones_trainable(t, True, frozen)


def _backward(t: Trainee, state: TrainState, step: int, guard: StepGuard, log: _LossLog, emit: Emit,
              batches: Prefetcher, asks: Asked | None = None) -> None:
    """Forward and backward of every batch this step draws, then the gradient clip: all queued on the device."""
    o = t.project.optim
    guard.begin()
    draws = [t.stream.draw() for _ in range(o.grad_accum)]
    weights = {task.name: task.weight for task in t.project.tasks}
    while True:
        out_of_memory = False
        try:
            done = _accumulate(t, batches.take(step, draws, state.micro_split), weights, guard)
        except torch.OutOfMemoryError:
            out_of_memory = True        # handled outside the except block, so its traceback frees its tensors
        if not out_of_memory:
            break
        if t.world.on:
            raise UserError(f"out of {t.device.type.upper()} memory at step {step} with {t.world.size} processes; "
                            "cutting batches after running out of memory works in one process only: lower the "
                            "tasks' batch_size or max_length, use mixed precision (train.precision), or start more "
                            "processes, each of which takes a smaller slice of every batch")
        split_after_oom(t, state, step, draws, emit)
        guard.begin()
    if t.balancer is not None:
        t.balancer.combine()
    log.add(done)
    if asks is not None:
        guard.ask(asks)
    params = [q for group in t.optimizer.param_groups for q in group["params"]]
    if t.scaler:
        t.scaler.unscale_(t.optimizer)
    if o.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip, foreach=True)
    else:
        grads = [q.grad for q in params if q.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads, foreach=True) if grads else None
    guard.check_gradients(norm)


def _apply(t: Trainee, guard: StepGuard, step: int) -> tuple[float, float]:
    """The optimiser step (skipped on the device if the step was not finite) and the scheduler's; returns the
    encoder's and the heads' lr it used."""
    groups = t.optimizer.param_groups
    lrs = (max((g["lr"] for g in groups if not g["is_head"]), default=0.0),
           max((g["lr"] for g in groups if g["is_head"] and not g.get("balancing")), default=0.0))
    guard.optimizer_step()
    t.scheduler.step()
    guard.record(step)
    t.optimizer.zero_grad(set_to_none=True)     # frees gradient memory until the next backward
    return lrs


@dataclass
class _Saves:
    at: float                       # monotonic time of the last checkpoint (or of the start)
    step: int

    def time_passed(self, p: Project) -> bool:
        return bool(p.checkpoint.minutes) and time.monotonic() - self.at >= 60 * p.checkpoint.minutes


def _evaluate_or_checkpoint(t: Trainee, state: TrainState, emit: Emit, step: int, last: bool, saves: _Saves,
                            diverged: Callable[[], bool], time_passed: bool | None = None,
                            judged: Callable[[], None] = lambda: None) -> str | None:
    """Validation when due (early stopping may end the run) and checkpoints when due; the reason to end, if any.
    Under several processes `time_passed` is the ranks' shared answer to checkpoint.minutes: every rank takes the
    same branches, so every rank reads the verdict at the same steps. `judged` looks at a new evaluation (the
    forgetting alert) before any checkpoint, so the checkpoint holds what it decided."""
    p = t.project
    if last or (p.eval.every and step % p.eval.every == 0):
        if diverged():
            return "diverged"
        ends = _evaluate(t, state, emit)
        judged()
        if ends and not last:
            _checkpoint(t, state, emit)
            return "early_stopped"
    due = p.checkpoint.every and step % p.checkpoint.every == 0
    if due or (saves.time_passed(p) if time_passed is None else time_passed):
        if diverged():
            return "diverged"
        if not state.skipped_in_a_row:     # a roll-back should land before the trouble, not in it
            _checkpoint(t, state, emit)
            saves.at, saves.step = time.monotonic(), step
    return None


class _LossLog:
    """Each task's losses summed on the device and read once per log interval: the loop's only host sync."""

    def __init__(self, t: Trainee, min_interval: float) -> None:
        self.every, self.min_interval, self.world = t.project.train.log_every, min_interval, t.world
        self.balancer = t.balancer
        self.sums = {name: torch.zeros((), device=t.device) for name in t.tasks}
        self.finite = {name: torch.zeros((), device=t.device) for name in t.tasks}    # finite losses, counted
        self.counts = dict.fromkeys(t.tasks, 0)
        self.samples, self.last, self.started = 0, time.monotonic(), time.monotonic()

    def add(self, done: list[tuple[str, Any, Any, int]]) -> None:
        for name, kept, ok, rows in done:
            self.sums[name] += kept             # stays on the device: no sync per step
            self.finite[name] += ok
            self.counts[name] += 1
            self.samples += rows

    def leave_out(self, seconds: float) -> None:
        """Paused time counts neither in elapsed time nor in samples/s."""
        self.started += seconds
        self.last += seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def time_passed(self) -> bool:
        return time.monotonic() - self.last >= self.min_interval

    def due(self, step: int, last: bool, time_passed: bool | None = None) -> bool:
        """Every log_every steps once min_interval has passed; under several processes, as rank 0's clock said
        (time_passed, shared one step late), so all ranks flush at the same step."""
        if time_passed is None:
            time_passed = self.time_passed()
        return last or (step % self.every == 0 and time_passed)

    def flush(self, step: int, epoch: float, lr: float, head_lr: float) -> StepLogged:
        now = time.monotonic()
        names = [n for n in self.sums if self.counts[n]]
        losses = {}
        if names:
            sums, finite = torch.stack([self.sums[n] for n in names]), torch.stack([self.finite[n] for n in names])
            if self.world.on:           # each rank holds its slices' shares of the losses: add them up
                both = share_sum(torch.cat([sums, finite]))
                sums, finite = both[:len(names)], both[len(names):] / self.world.size
            means = sums / finite
            losses = {n: m for n, m in zip(names, means.tolist()) if math.isfinite(m)}
        weights, cosine = self.balancer.flush() if self.balancer is not None else (None, None)
        logged = StepLogged(step, epoch, losses, lr, head_lr, self.samples / max(now - self.last, 1e-9),
                            now - self.started, weights, cosine)
        for n in self.sums:
            self.sums[n].zero_()
            self.finite[n].zero_()
            self.counts[n] = 0
        self.samples, self.last = 0, now
        return logged


def _accumulate(t: Trainee, pieces: list[Piece], weights: dict[str, float],
                guard: StepGuard) -> list[tuple[str, Any, Any, int]]:
    """Forward and backward every micro-batch of the step (a batch may be cut in several after an out-of-memory
    error), scaled so that the gradients are those of the whole batch.

    Where the task losses are combined: there is no line that sums them. Each task's weighted loss gets a
    backward of its own and the gradients add up in the parameters' .grad, which is exactly the gradient of the
    weighted sum, but each task's graph is freed before the next task runs, so peak memory is one task's.
    """
    if t.ddp is not None:
        return _accumulate_slices(t, pieces, weights, guard)
    done, balancer = [], t.balancer
    if balancer is not None:
        balancer.begin()
    for piece in pieces:
        batch = {k: v.to(t.device, non_blocking=True) for k, v in piece.batch.items()}
        with t.autocast():
            loss = t.model(piece.name, batch).loss
        factor = weights[piece.name] / t.project.optim.grad_accum
        if piece.rows != piece.of:
            factor *= piece.rows / piece.of
        scaled = (loss if balancer is None else balancer.loss(piece.name, loss)) * factor
        if scaled.requires_grad:   # not during the heads-only warm-up for a head without weights
            (t.scaler.scale(scaled) if t.scaler else scaled).backward()
            if balancer is not None:
                balancer.collect(piece.name)
        kept, ok = guard.check_loss(piece.name, loss.detach())
        done.append((piece.name, kept, ok, piece.rows))
    return done


def _accumulate_slices(t: Trainee, pieces: list[Piece], weights: dict[str, float],
                       guard: StepGuard) -> list[tuple[str, Any, Any, int]]:
    """_accumulate under several processes: this rank's slice of each batch, every backward but the step's last
    that trains under no_sync, so the gradients of all tasks are all-reduced once, together, by the last.

    A slice's loss is weighted by its share of the batch's loss (times the number of ranks, as DDP averages); a
    rank without rows in a batch runs a stand-in row weighted 0 (piece.rows == 0), so that it still joins."""
    world, done, balancer = t.world, [], t.balancer
    synced = max((i for i, piece in enumerate(pieces) if _trains(t, piece.name)), default=-1)
    if getattr(balancer, "reduces_itself", False):
        synced = -1                 # the tasks' gradients stay apart: the balancer averages them over the ranks
    if balancer is not None:
        balancer.begin()
    for i, piece in enumerate(pieces):
        batch = {k: v.to(t.device, non_blocking=True) for k, v in piece.batch.items()}
        with contextlib.nullcontext() if i == synced else t.ddp.no_sync():
            with t.autocast():
                loss = trained = t.ddp(piece.name, batch)
            if isinstance(loss, tuple):     # train.balancing = "uncertainty": the loss, and the balanced loss
                loss, trained = loss
            if not piece.rows:      # a stand-in: its loss counts for nothing, even were it not finite
                loss = torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss))
                trained = torch.where(torch.isfinite(trained), trained, torch.zeros_like(trained))
            scaled = trained * (weights[piece.name] / t.project.optim.grad_accum * piece.scale)
            if scaled.requires_grad:
                (t.scaler.scale(scaled) if t.scaler else scaled).backward()
                if balancer is not None:
                    balancer.collect(piece.name)
            elif i == synced:
                raise RuntimeError(f"task {piece.name} trains nothing at this step, yet its backward was to "
                                   "all-reduce the step's gradients")
        if piece.rows:
            kept, ok = guard.check_loss(piece.name, loss.detach())
            kept = kept * (piece.scale / world.size)        # this slice's part of the whole batch's loss
        else:
            kept, ok = torch.zeros((), device=t.device), torch.ones((), dtype=torch.bool, device=t.device)
        done.append((piece.name, kept, ok, piece.of))       # samples/s counts the whole batch, all ranks'
    return done


def _trains(t: Trainee, name: str) -> bool:
    """Whether a task's loss reaches a parameter that trains now (not so for a head without weights while the
    head-only warm-up holds the encoder)."""
    model = t.model
    return any(q.requires_grad for part in (model.heads[name], model.backbones, getattr(model, "poolers", ()))
               for q in (part.parameters() if isinstance(part, torch.nn.Module) else ()))


def _wait_while_paused(poll: Callable[[], tuple[bool, bool]], step: int, emit: Emit,
                       every: float) -> tuple[float, bool]:
    """Wait while poll() says (paused, not stopping); returns the time paused and whether a stop came."""
    began = time.monotonic()
    emit(Progress("paused", f"Paused after step {step}"))
    while True:
        paused, stopping = poll()
        if not paused or stopping:
            break
        time.sleep(every)
    if not stopping:
        emit(Progress("resumed", f"Resumed at step {step + 1}"))
    return time.monotonic() - began, stopping


def _evaluate(t: Trainee, state: TrainState, emit: Emit) -> bool:
    """Validate every task; returns True when early stopping says to stop, or every task has stopped
    (eval.task_patience)."""
    t.model.eval()
    results = {}
    for name, data in t.tasks.items():
        if data.valid is not None and len(data.valid):
            # each rank its share of the rows; every rank gets the same numbers, so all decide alike
            results[name] = evaluate_task(t.model, data, t.device, t.project.eval.batch_size, t.autocast,
                                          world=t.world)
    t.model.train()
    task, _, metric = t.monitor.partition("/")
    value = results.get(task, {}).get(metric)
    if value is not None and math.isfinite(value) and is_better(metric, value, state.best_value):
        state.best_value, state.best_step = value, state.step
        state.evals_without_improvement = 0
        if t.project.eval.keep_best and t.world.writer:
            save_weights(t.model, best_weights_path(t.checkpoint_dir))
    else:
        state.evals_without_improvement += 1
    state.eval_history.append({"step": state.step, "metrics": results})
    emit(EvalDone(state.step, results, state.best_step, state.best_value, t.monitor))
    patience = t.project.eval.patience
    every_task_stopped = judge_tasks(t, state, results, emit)
    return every_task_stopped or bool(patience) and state.evals_without_improvement >= patience


def _checkpoint(t: Trainee, state: TrainState, emit: Emit) -> None:
    if not t.world.writer:          # every rank holds the same weights and optimiser state: rank 0 saves them
        return
    path = save_checkpoint(t.checkpoint_dir, model=t.model, optimizer=t.optimizer, scheduler=t.scheduler,
                           scaler=t.scaler, stream=t.stream, state=state, keep=t.project.checkpoint.keep,
                           world_size=t.world.size)
    emit(CheckpointSaved(state.step, str(path)))


def autocast_factory(device: torch.device, precision: str) -> tuple[Callable[[], Any], str]:
    """(context factory, the precision actually used). Mixed precision only on CUDA; CPU runs fp32."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext, "fp32"
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), precision
