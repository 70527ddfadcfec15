"""Per-task validation metrics."""

from __future__ import annotations

from typing import Any

import torch

from qarac_gui.core.data.tokenize import TaskData
from qarac_gui.core.kinds import kind_of

EVAL_MASK_SEED = 1234            # masked-LM validation masks stay the same across evaluations, so they compare


def default_monitor(tasks: list[TaskData]) -> str:
    """The main metric of the first trained task that has validation data ("" when none has)."""
    for data in tasks:
        if data.valid is not None and len(data.valid) and not data.task.keep:
            return f"{data.name}/{kind_of(data.task.head).main(data.task.head)}"
    return ""


@torch.no_grad()
def evaluate_task(model: Any, data: TaskData, device: torch.device, batch_size: int, autocast: Any) -> dict:
    ds = data.valid
    kind = kind_of(data.task.head)
    losses, weights, outputs, extras = [], [], [], []
    for start in range(0, len(ds), batch_size):
        rows = ds[start:start + batch_size]
        batch = {k: v.to(device, non_blocking=True) for k, v in data.collate(rows, EVAL_MASK_SEED + start).items()}
        with autocast():
            out = model(data.name, batch)
        losses.append(out.loss.float())
        weights.append(len(next(iter(rows.values()))))
        outputs.append(_to_cpu(out.kept))
        extras.append(kind.host_labels(batch, rows))
    n = sum(weights)
    per_batch = torch.stack(losses).tolist() if losses else []      # one read of the device, not one a batch
    mean_loss = float(sum(loss * w for loss, w in zip(per_batch, weights)) / max(1, n))
    result = {"loss": mean_loss}
    result.update(kind.scores(data, outputs, extras, mean_loss))
    return result


def _to_cpu(logits: Any) -> Any:
    if isinstance(logits, tuple):
        return tuple(t.float().cpu() for t in logits)
    return logits.float().cpu()
