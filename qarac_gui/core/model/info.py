"""What the window says about a base model and the heads on it: its facts, read from a loaded backbone, each head's
own parameter count, built exactly as a run builds them, and how many of the backbone's parameters a run trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.project.config import BackboneConfig, Project


@dataclass(frozen=True)
class ModelInfo:
    spec: str
    source: str
    architecture: str            # as saved, e.g. BertForSequenceClassification
    model_type: str
    parameters: int
    hidden_size: int
    layers: int
    vocab_size: int
    max_positions: int
    removed: str                 # the head that will be dropped, "" when there is none


def describe_model(cfg: BackboneConfig, root: Path, cache_dir: str | None = None) -> tuple[ModelInfo, Any]:
    """Load the base model once to report what it is; returns (facts, its tokenizer)."""
    from qarac_gui.core.model.backbone import load_backbone
    loaded = load_backbone(cfg, root, cache_dir)
    return model_info(cfg.model, loaded), loaded.tokenizer


def model_info(spec: str, loaded: Any) -> ModelInfo:
    """The facts of a LoadedBackbone."""
    from qarac_gui.core.model.backbone import encoder_layers
    config = loaded.model.config
    return ModelInfo(
        spec=spec, source=loaded.source, architecture=loaded.architecture, model_type=config.model_type,
        parameters=sum(p.numel() for p in loaded.model.parameters()),
        hidden_size=int(getattr(config, "hidden_size", 0) or 0),
        layers=len(encoder_layers(loaded.model)) or int(getattr(config, "num_hidden_layers", 0) or 0),
        vocab_size=int(getattr(config, "vocab_size", 0) or 0),
        max_positions=int(getattr(config, "max_position_embeddings", 0) or 0),
        removed=loaded.removed)


def head_parameters(project: Project, encoder: Any, labels: dict[str, list[str]]) -> dict[str, int]:
    """Parameters each task's head adds to the shared encoder, built exactly as a run builds them."""
    from qarac_gui.core.model.heads import build_head, own_parameters
    counts = {}
    for task in project.tasks:
        if task.head.kind not in HEAD_KINDS or HEAD_KINDS[task.head.kind].takes_inputs:
            continue                # a head over named inputs has no layers of its own: the backbones are its model
        n = len(labels.get(task.name) or task.head.labels) or 2
        counts[task.name] = own_parameters(build_head(task.head, encoder, n), encoder)
    return counts


@dataclass(frozen=True)
class TrainableCount:
    """What a run trains of one backbone (heads are counted apart)."""
    total: int          # its weights, with its LoRA adapters when it has them
    trainable: int      # what the optimiser holds of it
    adapters: int       # the LoRA weights added; 0 without adapters
    adapted: tuple[str, ...] = ()       # the names of the layers that carry adapters, e.g. ("query", "value")
    adapted_layers: int = 0             # how many layers carry adapters


def backbone_parameters(project: Project, name: str, encoder: Any) -> TrainableCount:
    """The backbone's weights and how many of them a run trains: freezing and adapters applied exactly as a run
    applies them, to a copy whose tensors live on the meta device, so that counting takes no memory and leaves the
    loaded model as it was."""
    import copy
    from types import SimpleNamespace

    import torch

    from qarac_gui.core.model.adapters import apply_adapters, lora_layers
    from qarac_gui.core.model.multitask import apply_freezing
    memo: dict[int, Any] = {id(p): torch.nn.Parameter(p.detach().to("meta"), requires_grad=p.requires_grad)
                            for p in encoder.parameters()}
    memo |= {id(b): b.detach().to("meta") for b in encoder.buffers()}
    skeleton = copy.deepcopy(encoder, memo)
    single = copy.copy(project)
    single.backbones = {name: project.backbones[name]}
    model = SimpleNamespace(backbones={name: skeleton})
    apply_freezing(single, model)
    apply_adapters(single, model, init_from=False)
    unique = {id(p): p for p in skeleton.parameters()}.values()        # tied weights count once, as in the optimiser
    layers = lora_layers(skeleton) if project.backbones[name].adapter == "lora" else {}
    adapters = sum(p.numel() for layer in layers.values() for n, p in layer.named_parameters() if "lora_" in n)
    return TrainableCount(total=sum(p.numel() for p in unique),
                          trainable=sum(p.numel() for p in unique if p.requires_grad), adapters=adapters,
                          adapted=tuple(sorted({n.rpartition(".")[2] for n in layers})), adapted_layers=len(layers))
