"""Attention pooling: vector = sum_i cos(L v_i, G sum_j v_j) v_i over the real tokens only."""

from __future__ import annotations

import torch

from qarac_gui.core.kinds.layers import AttentionPooler


def test_attention_pooling_is_the_formula_over_the_real_tokens():
    torch.manual_seed(0)
    pooler = AttentionPooler(8, rank=3)
    states = torch.randn(1, 4, 8)
    mask = torch.ones(1, 4, dtype=torch.long)
    v = states[0]
    g = pooler.overall(v.sum(0))
    expected = sum(torch.nn.functional.cosine_similarity(pooler.local(v[i]), g, dim=0) * v[i] for i in range(4))
    assert torch.allclose(pooler(states, mask)[0], expected, atol=1e-6)
    assert pooler.local.out_features == 3 and pooler.overall.out_features == 3


def test_padding_changes_nothing_whatever_its_vectors_hold():
    torch.manual_seed(1)
    pooler = AttentionPooler(8)
    states = torch.randn(1, 3, 8)
    alone = pooler(states, torch.ones(1, 3, dtype=torch.long))
    padded = torch.cat([states, 100 * torch.randn(1, 5, 8)], 1)         # padding positions hold large junk
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0]])
    assert torch.allclose(pooler(padded, mask), alone, atol=1e-5)
