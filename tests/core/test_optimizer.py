"""optim.optimizer: AdamW or NAdam over the same parameter groups, with weight decay meaning the same for both."""

import pytest
import torch
from tiny import project_dict
from torch import nn

from qarac_gui.core.project.config import parse_project
from qarac_gui.core.training.setup import make_optimizer


class _Model(nn.Module):
    """What make_optimizer reads of a multi-task model: its backbones, their poolers and its heads."""

    def __init__(self, folder):
        super().__init__()
        from transformers import AutoModel
        torch.manual_seed(0)
        self.backbones = nn.ModuleDict({"encoder": AutoModel.from_pretrained(folder)})
        self.heads = nn.ModuleDict({"t": nn.Sequential(nn.Linear(32, 32), nn.LayerNorm(32), nn.Linear(32, 2))})
        self.poolers = nn.ModuleDict()


def _optimizer(tmp_path, folder, **optim):
    raw = project_dict(folder, tmp_path, [], optim={"lr": 1e-2, "head_lr": 5e-2, "layer_decay": 0.5,
                                                    "weight_decay": 0.1, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                                                    **optim})
    raw["tasks"] = [{"name": "t", "data": {"train": "t.csv"}}]
    model = _Model(folder)
    return model, make_optimizer(parse_project(raw, tmp_path), model, torch.device("cpu"))


def _groups(optimizer):
    return [(g["lr"], g["weight_decay"], g["is_head"], g["betas"], g["eps"], [id(p) for p in g["params"]])
            for g in optimizer.param_groups]


def test_nadam_gets_the_groups_and_settings_adamw_gets(tmp_path, tiny_bert):
    adam_model, adamw = _optimizer(tmp_path, tiny_bert)
    nadam_model, nadam = _optimizer(tmp_path, tiny_bert, optimizer="nadam")
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["fused"]
    assert type(nadam) is torch.optim.NAdam
    assert nadam.defaults["decoupled_weight_decay"] and nadam.defaults["foreach"]
    assert not nadam.defaults["capturable"]                     # on CUDA only
    ids = {id(p): name for name, p in nadam_model.named_parameters()}
    ids_adam = {id(p): name for name, p in adam_model.named_parameters()}
    named = [(*settings, [ids[i] for i in params]) for *settings, params in _groups(nadam)]
    assert named == [(*settings, [ids_adam[i] for i in params]) for *settings, params in _groups(adamw)]
    assert {(g["betas"], g["eps"]) for g in nadam.param_groups} == {((0.8, 0.95), 1e-6)}
    assert len({(g["lr"], g["weight_decay"]) for g in nadam.param_groups}) > 3     # layer decay, head lr, no decay


@pytest.mark.parametrize("optimizer", ["adamw", "nadam"])
def test_weight_decay_is_decoupled_from_the_gradient_step(tmp_path, tiny_bert, optimizer):
    # With zero gradients the moments stay 0, so the only change is the decay itself: p * (1 - lr * weight_decay).
    # Coupled (L2) decay would instead go through the moments and move every decayed weight by about lr.
    model, opt = _optimizer(tmp_path, tiny_bert, optimizer=optimizer)
    before = {id(p): p.detach().clone() for g in opt.param_groups for p in g["params"]}
    for g in opt.param_groups:
        for p in g["params"]:
            p.grad = torch.zeros_like(p)
    opt.step()
    for g in opt.param_groups:
        for p in g["params"]:
            expected = before[id(p)] * (1 - g["lr"] * g["weight_decay"])
            assert torch.allclose(p.detach(), expected, rtol=0, atol=1e-7)
