"""Running out of GPU memory in the middle of a run: continue with smaller micro-batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from qarac_gui.core.errors import UserError
from qarac_gui.core.events import Emit, Progress

if TYPE_CHECKING:               # the loop imports this module: its types only, for the signatures
    from qarac_gui.core.training.checkpoint import TrainState
    from qarac_gui.core.training.loop import Trainee


def free_memory(t: Trainee) -> None:
    t.optimizer.zero_grad(set_to_none=True)
    if t.device.type == "cuda":
        torch.cuda.empty_cache()


def split_after_oom(t: Trainee, state: TrainState, step: int, draws: list, emit: Emit) -> None:
    """After an out-of-memory error: cut every batch into twice as many micro-batches and redo the step.

    The rows of the step stay the same and the gradients are scaled to the whole batch, so the effective batch
    and the learning-rate schedule do not change; only more, smaller forward passes run.
    """
    free_memory(t)
    largest = max(len(rows) for draw in draws for _, rows in draw)
    if state.micro_split >= largest:
        raise UserError(f"out of {t.device.type.upper()} memory at step {step} even with one row per micro-batch; "
                        "lower the tasks' max length, use mixed precision (train.precision), freeze encoder "
                        "layers, or pick a smaller model")
    state.micro_split *= 2
    rows = -(-largest // state.micro_split)
    emit(Progress("memory", f"Out of {t.device.type.upper()} memory at step {step}: continuing with micro-batches "
                            f"of at most {rows} rows (each batch in {state.micro_split} parts); the effective "
                            "batch and the learning-rate schedule stay the same"))
