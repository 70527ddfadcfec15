"""The private parts of torch the step relies on, behind one door: a test (tests/core/test_torch_internals.py)
fails loudly if a torch release changes them, instead of training going quietly wrong.

- A fused optimiser (AdamW(fused=True)) marks `_step_supports_amp_scaling` and reads `grad_scale` and `found_inf`
  attributes set on it before step(): with found_inf = 1 it leaves the parameters and moments as they were. This
  is how torch.amp.GradScaler skips a step on the device; the guard uses it to skip a non-finite step with no
  host sync.
- LambdaLR keeps the lrs get_last_lr() returns in `_last_lr`; after moving the scheduler by hand (the skipped-step
  rewind, a roll-back at a lower lr) it must agree with the optimiser's groups."""

from __future__ import annotations

from typing import Any

import torch


def skips_on_device(optimizer: Any) -> bool:
    """Whether the optimiser can take found_inf and skip its step without the host looking."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


def step_unless(optimizer: Any, found_inf: torch.Tensor) -> None:
    """optimizer.step(), which changes nothing where found_inf (a 0-d float tensor on the device) is 1."""
    optimizer.grad_scale, optimizer.found_inf = None, found_inf
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale, optimizer.found_inf


def set_last_lr(scheduler: Any, lrs: list[float]) -> None:
    """What scheduler.get_last_lr() reports, after the groups' lrs were set by hand."""
    scheduler._last_lr = list(lrs)
