"""Non-finite losses and gradients: the optimiser step is skipped on the device, and the host learns of it one
step later, so no step waits for the GPU to tell it whether the step was good."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch

from qarac_gui.core.events import Emit, StepSkipped
from qarac_gui.core.training.distributed import SINGLE, World, share_any
from qarac_gui.core.training.torch_internals import set_last_lr, skips_on_device, step_unless

if TYPE_CHECKING:                   # the run's counters; the guard updates the skip counts in them
    from qarac_gui.core.training.checkpoint import TrainState


@dataclass(frozen=True)
class Asked:
    """What the ranks of a run decide together besides skipping: read with the verdict, one step late."""
    stop: bool = False
    pause: bool = False
    log: bool = False           # a rank's clock says the log interval has passed
    save: bool = False          # a rank's clock says checkpoint.minutes have passed


@dataclass(frozen=True)
class Skipped:
    step: int
    tasks: list[str]            # tasks whose loss was not finite; empty: only the gradient norm was
    in_a_row: int


class StepGuard:
    """Per step: flags on the device (slot 0: skip the step; slot 1+i: task i's loss was not finite).

    The fused AdamW takes slot 0 as its `found_inf` and leaves parameters and moments untouched when it is set.
    The host reads the flags of step s while step s+1's backward is already queued, and then takes back the
    scheduler step of s, so the schedule counts good steps only.

    Under several processes four more slots carry what the ranks asked (see Asked), and the flags are
    all-reduced before the verdict is taken, so every rank skips, stops and logs at the same step.
    """

    def __init__(self, names: list[str], optimizer: Any, scheduler: Any, scaler: Any, device: torch.device,
                 world: World = SINGLE):
        self.index = {n: i + 1 for i, n in enumerate(names)}
        self.names = names
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.world = world
        self.asks = len(names) + 1          # the first of the asked slots
        size = len(names) + 1 + (len(fields(Asked)) if world.on else 0)
        self.flags = torch.zeros(size, dtype=torch.bool, device=device)
        self.cuda = device.type == "cuda"
        self._host = torch.zeros(size, dtype=torch.bool, pin_memory=self.cuda)
        self.asked = Asked()                # the ranks' answers, as of the last verdict read
        self._event = torch.cuda.Event() if self.cuda else None
        self._pending: int | None = None    # the step whose flags are in _host

    def begin(self) -> None:
        self.flags.zero_()

    def check_loss(self, name: str, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss, or 0 where it is not finite, for the logged mean; whether it was finite)."""
        finite = torch.isfinite(loss)
        self.flags[self.index[name]] |= ~finite
        return torch.where(finite, loss, torch.zeros_like(loss)), finite

    def ask(self, asked: Asked) -> None:
        """This rank's answers for the step being queued (several processes only)."""
        for i, value in enumerate(astuple(asked)):      # fills with a host scalar: no copy to wait for
            self.flags[self.asks + i].fill_(value)

    def check_gradients(self, grad_norm: torch.Tensor | None) -> None:
        if self.world.on:               # a loss that was not finite on one rank skips the step on all
            share_any(self.flags)
        bad = self.flags[1:self.asks].any()
        if grad_norm is not None and self.scaler is None:   # fp16 overflow is the grad scaler's own business
            bad = bad | ~torch.isfinite(grad_norm)
        self.flags[0] = bad

    def optimizer_step(self) -> None:
        o = self.optimizer
        if self.scaler is not None:
            self.scaler.step(o)         # skips on inf/NaN gradients by itself
            self.scaler.update()
        elif skips_on_device(o):
            step_unless(o, self.flags[0].float())
        elif not bool(self.flags[0]):   # optimisers without a device-side skip: one sync, unavoidable
            o.step()

    def record(self, step: int) -> None:
        self._host.copy_(self.flags, non_blocking=self.cuda)
        if self._event is not None:
            self._event.record()
        self._pending = step

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def settle(self, state: TrainState, emit: Emit, skip_limit: int) -> bool:
        """Take in the last recorded step's verdict: count a skipped step (and say so), reset the count after a
        good one. True when `skip_limit` steps in a row were skipped: the run has diverged."""
        if not self.pending:
            return False
        skipped = self.resolve()
        if skipped is None:
            state.skipped_in_a_row = 0
            return False
        state.skipped_in_a_row += 1
        state.skipped_total += 1
        emit(StepSkipped(skipped.step, skipped.tasks, state.skipped_in_a_row))
        return bool(skip_limit) and state.skipped_in_a_row >= skip_limit

    def resolve(self) -> Skipped | None:
        """What became of the last recorded step; a skipped one takes its scheduler step back."""
        if self._pending is None:
            return None
        step, self._pending = self._pending, None
        if self._event is not None:
            self._event.synchronize()
        flags = self._host.tolist()
        if self.world.on:
            self.asked = Asked(*flags[self.asks:])
        if not flags[0]:
            return None
        rewind_scheduler(self.scheduler, self.optimizer, 1)
        return Skipped(step, [n for n in self.names if flags[self.index[n]]], 0)


def rewind_scheduler(scheduler: Any, optimizer: Any, steps: int) -> None:
    scheduler.last_epoch -= steps
    set_lrs(scheduler, optimizer)


def set_lrs(scheduler: Any, optimizer: Any) -> None:
    """Each group's lr from the scheduler's base lrs and position (a LambdaLR's closed form)."""
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)
    set_last_lr(scheduler, [g["lr"] for g in optimizer.param_groups])


def scale_lr(scheduler: Any, optimizer: Any, factor: float) -> None:
    """Scale the whole remaining schedule (a roll-back at a lower lr); kept in the scheduler's saved state."""
    scheduler.base_lrs = [b * factor for b in scheduler.base_lrs]
    set_lrs(scheduler, optimizer)
