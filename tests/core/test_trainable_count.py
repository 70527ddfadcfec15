"""What the window says a run trains of a backbone (model/info.py backbone_parameters) is what the run's optimiser
holds: full fine-tuning, frozen layers and embeddings, LoRA shared or per task; and counting leaves the loaded
model as it was."""

from __future__ import annotations

import pytest
import tiny
import torch

pytest.importorskip("peft")

from qarac_gui.core.model.adapters import apply_adapters  # noqa: E402
from qarac_gui.core.model.backbone import load_backbone  # noqa: E402
from qarac_gui.core.model.info import backbone_parameters  # noqa: E402
from qarac_gui.core.model.multitask import MultiTaskModel, apply_freezing  # noqa: E402
from qarac_gui.core.project.config import parse_project  # noqa: E402
from qarac_gui.core.training.setup import make_optimizer  # noqa: E402

KINDS = ["classification", "token_classification"]
LABELS = {"classification": ["neg", "pos"], "token-classification": ["B-LOC", "B-PER", "O"]}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny.make_model_folder(tmp_path_factory.mktemp("count-model") / "bert", "bert")


@pytest.mark.parametrize("settings", [
    {},
    {"freeze_layers": 1, "freeze_embeddings": True},
    {"adapter": "lora", "lora_rank": 4},
    {"adapter": "lora", "adapter_scope": "per_task", "lora_rank": 2},
    {"adapter": "lora", "freeze_layers": 1, "lora_targets": ["query", "key", "dense"]},
], ids=["full", "frozen", "lora", "lora-per-task", "lora-frozen-targets"])
def test_the_count_is_what_the_optimiser_holds(tmp_path, tiny_model, settings):
    raw = tiny.project_dict(tiny_model, tmp_path / "data", KINDS)
    raw["backbones"]["encoder"] |= settings
    project = parse_project(raw, tmp_path)
    loaded = load_backbone(project.backbones["encoder"], project.root)
    before = {n: (p.detach().clone(), p.requires_grad) for n, p in loaded.model.named_parameters()}

    count = backbone_parameters(project, "encoder", loaded.model)

    # the loaded model the window keeps is untouched: same weights and flags, no adapter layers
    assert {n: p for n, p in loaded.model.named_parameters()}.keys() == before.keys()
    assert all(torch.equal(p, before[n][0]) and p.requires_grad == before[n][1]
               for n, p in loaded.model.named_parameters())
    model = MultiTaskModel(project, {"encoder": loaded.model}, {n: len(v) for n, v in LABELS.items()})
    apply_freezing(project, model)
    apply_adapters(project, model)
    held = sum(p.numel() for g in make_optimizer(project, model, torch.device("cpu")).param_groups
               for p in g["params"])
    heads = sum(p.numel() for p in {id(p): p for p in model.heads.parameters()}.values())
    assert count.trainable == held - heads
    assert count.total == sum(p.numel() for p in model.backbones.parameters())
    assert (count.adapters > 0) == (settings.get("adapter") == "lora")
    if settings.get("adapter") == "lora":
        assert count.trainable <= count.adapters < count.total / 5
