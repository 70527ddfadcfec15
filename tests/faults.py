"""Faults injected into real training runs: non-finite losses and gradients, out-of-memory errors."""

import dataclasses

import torch

from qarac_gui.core.model.heads import HeadOutput
from qarac_gui.core.model.multitask import MultiTaskModel

_ORIGINAL_FORWARD = MultiTaskModel.forward


class _InfGrad(torch.autograd.Function):
    """Identity forwards, infinite gradients backwards: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def poison(monkeypatch, task: str, bad_steps: set[int], how: str = "nan_loss"):
    """Make training forwards of `task` non-finite at the given optimiser steps (one micro-batch per step)."""
    real = MultiTaskModel.forward
    calls = {"n": 0}

    def forward(self, name, batch):
        out = real(self, name, batch)
        if not self.training or name != task:
            return out
        calls["n"] += 1
        if calls["n"] not in bad_steps:
            return out
        loss = out.loss * float("nan") if how == "nan_loss" else _InfGrad.apply(out.loss)
        return dataclasses.replace(out, loss=loss) if dataclasses.is_dataclass(out) else HeadOutput(loss, out.logits)
    monkeypatch.setattr(MultiTaskModel, "forward", forward)


def out_of_memory_above(monkeypatch, rows: int) -> list[int]:
    """Training forwards of more than `rows` rows raise the error CUDA raises; returns the sizes that ran.
    Replaces (does not wrap) an earlier call's patch."""
    real = _ORIGINAL_FORWARD
    ran: list[int] = []

    def forward(self, name, batch):
        size = next(v for k, v in batch.items() if k.endswith("input_ids")).shape[0]
        if self.training and size > rows:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} rows (injected)")
        if self.training:
            ran.append(size)
        return real(self, name, batch)
    monkeypatch.setattr(MultiTaskModel, "forward", forward)
    return ran
