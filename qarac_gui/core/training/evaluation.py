"""Per-task validation metrics; under several processes each evaluates its share of the batches."""

from __future__ import annotations

from typing import Any

import torch

from qarac_gui.core.data.tokenize import TaskData
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.training.distributed import SINGLE, World, from_rank_0, to_rank_0

EVAL_MASK_SEED = 1234            # masked-LM validation masks stay the same across evaluations, so they compare


def default_monitor(tasks: list[TaskData]) -> str:
    """The main metric of the first trained task that has validation data ("" when none has)."""
    for data in tasks:
        if data.valid is not None and len(data.valid) and not data.task.keep:
            return f"{data.name}/{kind_of(data.task.head).main(data.task.head)}"
    return ""


def batch_starts(rows: int, batch_size: int, world: World = SINGLE) -> list[int]:
    """The first rows of the validation batches this rank evaluates: batches b, b + N, b + 2N... of the batches one
    process would evaluate, so that each batch (its padding, its masked-LM masks) is the one-process batch."""
    return list(range(0, rows, batch_size))[world.rank::world.size]


@torch.no_grad()
def evaluate_task(model: Any, data: TaskData, device: torch.device, batch_size: int, autocast: Any,
                  world: World = SINGLE) -> dict:
    """A task's validation loss and metrics. Under several processes (`world`) each evaluates its share of the
    batches (batch_starts); rank 0 gathers them, computes the metrics from all in one process's order, and every
    rank returns its numbers. Every rank must call this for the same tasks in the same order."""
    ds = data.valid
    kind = kind_of(data.task.head)
    losses, weights, outputs, extras = [], [], [], []
    for start in batch_starts(len(ds), batch_size, world):
        rows = ds[start:start + batch_size]
        batch = {k: v.to(device, non_blocking=True) for k, v in data.collate(rows, EVAL_MASK_SEED + start).items()}
        with autocast():
            out = model(data.name, batch)
        losses.append(out.loss.float())
        weights.append(len(next(iter(rows.values()))))
        outputs.append(_to_cpu(out.kept))
        extras.append(kind.host_labels(batch, rows))
    per_batch = torch.stack(losses).tolist() if losses else []      # one read of the device, not one a batch
    if not world.on:
        return _scores(data, per_batch, weights, outputs, extras)
    parts = to_rank_0(world, (per_batch, weights, outputs, extras))
    return from_rank_0(world, _scores(data, *_in_batch_order(parts)) if world.writer else None)


def _in_batch_order(parts: list[tuple[list, ...]]) -> tuple[list, ...]:
    """The ranks' per-batch lists merged back into one process's order: rank r's i-th batch is batch i * N + r."""
    merged: tuple[list, ...] = tuple([] for _ in parts[0])
    for i in range(max(len(part[0]) for part in parts)):
        for part in parts:
            if i < len(part[0]):
                for into, values in zip(merged, part):
                    into.append(values[i])
    return merged


def _scores(data: TaskData, per_batch: list[float], weights: list[int], outputs: list, extras: list) -> dict:
    n = sum(weights)
    mean_loss = float(sum(loss * w for loss, w in zip(per_batch, weights)) / max(1, n))
    result = {"loss": mean_loss}
    result.update(kind_of(data.task.head).scores(data, outputs, extras, mean_loss))
    return result


def _to_cpu(logits: Any) -> Any:
    if isinstance(logits, tuple):
        return tuple(t.float().cpu() for t in logits)
    return logits.float().cpu()
