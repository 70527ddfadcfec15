"""What the window says about a base model and the heads on it: its facts, read from a loaded backbone, and each
head's own parameter count, built exactly as a run builds them."""

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
