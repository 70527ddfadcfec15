"""The largest batch of each task's longest rows that fits in GPU memory (qarac-train --find-batch-size, the
window's Run menu): built like a run, then forward and backward passes of growing batches."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from qarac_gui.core.data.tokenize import TaskData
from qarac_gui.core.errors import UserError
from qarac_gui.core.events import Emit, Progress
from qarac_gui.core.project.config import Project, TaskConfig
from qarac_gui.core.project.keep import trained_tasks
from qarac_gui.core.training.loop import Trainee
from qarac_gui.core.training.memory import free_memory
from qarac_gui.core.training.setup import build_run

# Device types on which running out of memory raises an error that can be caught (the CPU swaps instead).
CATCHABLE = ("cuda",)
PROBE_CAP = 4096


@dataclass(frozen=True)
class BatchFit:
    task: str
    configured: int
    largest: int                # 0: not even one row fits
    tokens: int                 # the longest row's length, which every probe batch was made of


def probe_batches(project: Project, emit: Emit, stop: threading.Event) -> list[BatchFit]:
    """For every task, the largest batch of its longest training rows whose forward and backward pass fit.

    Batches double from the configured size until one fails (or halve until one fits); the model's weights and
    every random state are left as they were.
    """
    t, _, _ = build_run(project, Path(tempfile.gettempdir()) / "qarac-gui-probe", emit, stop, resume=False)
    if t.device.type not in CATCHABLE:
        raise UserError(f"finding the largest batch needs a GPU: on the {t.device.type.upper()} running out of "
                        "memory raises no error to find (the system swaps instead)")
    rng = torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    t.model.train()
    try:
        # a keep task is only evaluated, in batches of eval.batch_size: it has no training batch to probe
        return [_probe_task(t, task, emit, stop) for task in trained_tasks(project)]
    finally:
        free_memory(t)
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state_all(rng[1])


def _probe_task(t: Trainee, task: TaskConfig, emit: Emit, stop: threading.Event) -> BatchFit:
    data = t.tasks[task.name]
    # A row's tokens over all its tokenised inputs (the text and its pair, or each named input and a target).
    columns = [c for c in data.train.column_names if c.endswith("input_ids")]
    lengths = [sum(len(ids) for ids in row) for row in zip(*(data.train[c] for c in columns))]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    cap = min(len(order), PROBE_CAP)

    def fits(size: int) -> bool:
        if stop.is_set():
            raise UserError("the batch probe was stopped before it finished")
        emit(Progress("probe", f"{task.name}: trying {size} rows of {lengths[order[0]]} tokens"))
        ok = _try_batch(t, task.name, data, order[:size])
        free_memory(t)
        return ok
    size = min(task.batch_size, cap)
    if fits(size):
        while size < cap and fits(min(2 * size, cap)):
            size = min(2 * size, cap)
    else:
        while size > 1:
            size //= 2
            if fits(size):
                break
        else:
            size = 0
    return BatchFit(task.name, task.batch_size, size, lengths[order[0]] if order else 0)


def _try_batch(t: Trainee, name: str, data: TaskData, rows: list[int]) -> bool:
    try:
        batch = {k: v.to(t.device) for k, v in data.collate(data.train[rows]).items()}
        with t.autocast():
            loss = t.model(name, batch).loss
        (t.scaler.scale(loss) if t.scaler else loss).backward()
    except torch.OutOfMemoryError:
        return False
    return True
