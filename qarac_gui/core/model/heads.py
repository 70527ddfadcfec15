"""Replacement heads: each task's kind builds the small module that turns encoder states into a loss."""

from __future__ import annotations

from torch import nn

from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.layers import HeadOutput, split_mlm_model
from qarac_gui.core.project.config import HeadConfig

__all__ = ["HeadOutput", "build_head", "own_parameters", "split_mlm_model"]


def build_head(spec: HeadConfig, encoder: nn.Module, num_labels: int, pretrained_lm: nn.Module | None = None
               ) -> nn.Module:
    """A fresh head; a kind that continues the model's own LM head starts from `pretrained_lm` when given."""
    return kind_of(spec).build(spec, encoder, num_labels, pretrained_lm)


def own_parameters(head: nn.Module, encoder: nn.Module) -> int:
    """Parameters a head adds (a tied decoder shares the encoder's embeddings, so it does not count)."""
    shared = {id(p) for p in encoder.parameters()}
    return sum(p.numel() for p in head.parameters() if id(p) not in shared)
