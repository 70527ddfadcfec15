"""The multi-task model: named backbones (usually one shared `encoder`) and one head per task."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.inputs import task_inputs
from qarac_gui.core.kinds.layers import AttentionPooler
from qarac_gui.core.model.backbone import embeddings_module, encoder_layers
from qarac_gui.core.model.heads import HeadOutput, build_head, own_parameters
from qarac_gui.core.project.config import Project


class MultiTaskModel(nn.Module):
    """Named backbones, each encoder with its pooler when it pools by attention, and one head per task. A head
    over named inputs is given the whole model (it reads several backbones); any other head its one encoder."""

    def __init__(self, project: Project, backbones: dict[str, nn.Module], num_labels: dict[str, int],
                 pretrained_lms: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.backbones = nn.ModuleDict(backbones)
        self.backbone_pooling = {name: cfg.pooling for name, cfg in project.backbones.items()}
        self.poolers = nn.ModuleDict({
            name: AttentionPooler(backbones[name].config.hidden_size, cfg.pooling_rank)
            for name, cfg in project.backbones.items() if cfg.pooling == "attention" and cfg.role == "encoder"})
        self.task_backbone = {t.name: t.main_backbone for t in project.tasks}
        self.whole_model = {t.name for t in project.tasks if kind_of(t.head).takes_inputs}
        pretrained_lms = pretrained_lms or {}
        _check_widths(project, backbones)
        self.heads = nn.ModuleDict({
            t.name: kind_of(t.head).build_graph(t, self) if t.name in self.whole_model else
            build_head(t.head, backbones[t.backbone], num_labels.get(t.name, 0), pretrained_lms.get(t.backbone))
            for t in project.tasks})
        # With one adapter per task (adapters.apply_adapters): makes the task's adapter the active one.
        self.task_adapters: Callable[[str], None] | None = None

    def forward(self, task: str, batch: dict) -> HeadOutput:
        if self.task_adapters is not None:
            self.task_adapters(task)
        if task in self.whole_model:
            return self.heads[task](self, batch)
        return self.heads[task](self.backbones[self.task_backbone[task]], batch)

    def head_parameters(self, task: str) -> int:
        return own_parameters(self.heads[task], self.backbones[self.task_backbone[task]])


def _check_widths(project: Project, backbones: dict[str, nn.Module]) -> None:
    """Vectors of different backbones are added and fed to decoders: they must have one width."""
    for task in project.tasks:
        if task.name and kind_of(task.head).takes_inputs:
            used = {b for b, _ in task_inputs(task).values()} | ({task.head.decoder} if task.head.decoder else set())
            widths = {b: backbones[b].config.hidden_size for b in sorted(used) if b in backbones}
            if len(set(widths.values())) > 1:
                raise UserError(f"task {task.name}: its backbones have different widths "
                                f"({', '.join(f'{b}: {w}' for b, w in widths.items())}); vectors of different "
                                "widths cannot be added or decoded, so use backbones of one size")


def apply_freezing(project: Project, model: MultiTaskModel) -> None:
    """Freeze embeddings and/or the bottom N layers for good (the head-only warm-up is handled by the trainer)."""
    for name, cfg in project.backbones.items():
        if name not in model.backbones:
            continue
        encoder = model.backbones[name]
        frozen: list[nn.Module] = []
        if cfg.freeze_embeddings:
            frozen.append(embeddings_module(encoder))
        layers = encoder_layers(encoder)
        if cfg.freeze_layers > len(layers):
            raise UserError(f"backbones.{name}.freeze_layers: the model has only {len(layers)} layers")
        frozen += layers[:cfg.freeze_layers]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)


def _layer_depths(encoder: nn.Module) -> dict[int, int]:
    """Parameter id -> depth below the top: top layer 0, ..., embeddings = number of layers."""
    layers = encoder_layers(encoder)
    depth = {id(p): len(layers) for p in embeddings_module(encoder).parameters()}
    for i, layer in enumerate(layers):
        for p in layer.parameters():
            depth[id(p)] = len(layers) - 1 - i
    return depth


def _no_decay(name: str) -> bool:
    # The usual rule: biases and normalisation weights are not decayed.
    return name.endswith("bias") or "norm" in name.lower()


def param_groups(project: Project, model: MultiTaskModel) -> list[dict]:
    """Optimiser groups (AdamW or NAdam) with per-layer lr (layer-wise decay), a head lr, and no weight decay on
    biases/norms.

    Each group carries `is_head` so the scheduler can hold encoder groups at 0 during the head-only phase.
    """
    o = project.optim
    groups: dict[tuple, dict] = {}

    def add(param: nn.Parameter, name: str, lr: float, is_head: bool) -> None:
        if not param.requires_grad:        # frozen for the whole run
            return
        wd = 0.0 if _no_decay(name) else o.weight_decay
        key = (lr, wd, is_head)
        groups.setdefault(key, {"params": [], "lr": lr, "weight_decay": wd, "is_head": is_head})
        groups[key]["params"].append(param)

    seen: set[int] = set()
    for encoder in model.backbones.values():
        depth = _layer_depths(encoder)
        for name, p in encoder.named_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                add(p, name, o.lr * o.layer_decay ** depth.get(id(p), 0), False)
    for name, p in [*model.heads.named_parameters(), *model.poolers.named_parameters()]:
        if id(p) not in seen:            # tied LM decoders are already in their encoder's group
            seen.add(id(p))
            add(p, name, o.head_lr or o.lr, True)
    return list(groups.values())


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device = \"cuda\" but no CUDA GPU is visible; use \"auto\" or \"cpu\"")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("train.device = \"mps\" but Apple's Metal backend is not available; use \"auto\"")
    return torch.device(name)
