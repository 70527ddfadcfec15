"""Trying a model on typed text: the multi-task model of an exported folder, or of a run (its export, or its latest
checkpoint while it trains), and each task's answer as its kind predicts it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.base import Prediction, TypedInput
from qarac_gui.core.project.config import Project

MANIFEST = "manifest.json"


@dataclass
class TrialModel:
    """A multi-task model loaded for predictions, on the CPU, in eval mode."""
    project: Project
    model: Any
    tokenizers: dict[str, Any]
    labels: dict[str, list[str]]
    origin: str                     # where it came from, in words
    step: int
    from_checkpoint: bool = False   # a run's checkpoint (a run that goes on writes newer ones), not an export

    @property
    def tasks(self) -> list[str]:
        return [t.name for t in self.project.tasks]

    def typed_inputs(self, task: str) -> list[TypedInput]:
        t = self.project.task(task)
        return kind_of(t.head).typed_inputs(t)

    def predict(self, task: str, inputs: dict[str, str]) -> Prediction:
        """The task's answer for typed texts, named as typed_inputs names them."""
        t = self.project.task(task)
        return kind_of(t.head).predict(self.model, t, self.tokenizers, inputs, self.labels.get(task, []))


def _full_folder(folder: Path) -> Path | None:
    """The export/full folder that `folder` is or holds (a run folder), if any."""
    for candidate in (folder, folder / "export" / "full"):
        if (candidate / MANIFEST).is_file() and (candidate / "heads.safetensors").is_file():
            return candidate
    return None


def has_model(folder: Path) -> bool:
    """Whether the folder holds a model to try (cheap: no checkpoint is verified)."""
    folder = Path(folder)
    checkpoints = folder / "checkpoints"
    return _full_folder(folder) is not None or (checkpoints.is_dir() and any(checkpoints.glob("step-*/" + MANIFEST)))


def runs_with_models(base: Path) -> list[Path]:
    """Run folders under `base` that hold a model to try, newest first."""
    base = Path(base)
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if p.is_dir() and has_model(p)]
    return sorted(found, key=lambda p: (p / "project.toml").stat().st_mtime if (p / "project.toml").exists() else 0,
                  reverse=True)


def load_trial_model(folder: Path) -> TrialModel:
    """The model of an export/full folder, or of a run folder: its export/full when it has one, else its latest
    checkpoint. UserError, in words, when there is none yet."""
    from qarac_gui.core.results.export import load_full_model
    folder = Path(folder)
    full = _full_folder(folder)
    if full is not None:
        project, model, tokenizers, labels = load_full_model(full)
        step = _manifest_step(full)
        where = "the exported model" if full != folder else "this exported model"
        return TrialModel(project, model, tokenizers, labels, f"{where} (step {step})", step)
    if not (folder / "project.toml").is_file():
        raise UserError(f"{folder} is neither a run folder nor an exported multi-task model (export/full); choose "
                        "a run, or a folder that holds manifest.json and heads.safetensors")
    return _from_checkpoint(folder)


def _manifest_step(folder: Path) -> int:
    try:
        return int(json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("step", 0))
    except (OSError, ValueError, TypeError):
        return 0


def _from_checkpoint(run_dir: Path, tries: int = 2) -> TrialModel:
    from safetensors.torch import load_model

    from qarac_gui.core.training.checkpoint import latest_checkpoint
    path, _ = latest_checkpoint(run_dir / "checkpoints")
    if path is None:
        raise UserError(f"{run_dir.name} has no model yet: a run writes its first checkpoint after "
                        "checkpoint.every steps or checkpoint.minutes minutes (and when it stops); try again then")
    project, labels = _run_project(run_dir)
    model, tokenizers = _build(project, labels)
    try:
        load_model(model, str(path / "model.safetensors"))
    except FileNotFoundError:
        # The run went on and pruned this checkpoint while it was read: take the newer one.
        if tries > 1:
            return _from_checkpoint(run_dir, tries - 1)
        raise UserError(f"the checkpoints of {run_dir.name} changed while they were read; try again") from None
    step = int(path.name.removeprefix("step-"))
    return TrialModel(project, model.eval(), tokenizers, labels, f"the checkpoint of step {step}", step, True)


def _run_project(run_dir: Path) -> tuple[Project, dict[str, list[str]]]:
    """The project the run trained and each task's labels (from the start of its latest session)."""
    from qarac_gui.core.events import RunStarted
    from qarac_gui.core.project.config import ConfigError, load_project
    from qarac_gui.core.results.history import read_events
    try:
        project = load_project(run_dir / "project.toml", check=False)
    except ConfigError as e:
        raise UserError(f"the run's project file cannot be read ({e})") from None
    started = [e for e in read_events(run_dir) if isinstance(e, RunStarted)]
    if not started:
        raise UserError(f"{run_dir.name}: its events.jsonl says nothing of the run's start (the labels are there)")
    labels = {name: list(info.get("labels", [])) for name, info in started[-1].tasks.items()}
    return project, labels


def _build(project: Project, labels: dict[str, list[str]]) -> tuple[Any, dict[str, Any]]:
    """The run's model with its backbones' base weights, ready for a checkpoint's tensors."""
    from qarac_gui.core.model.backbone import load_backbone
    from qarac_gui.core.model.multitask import MultiTaskModel
    loaded = {name: load_backbone(cfg, project.root, name=name) for name, cfg in project.backbones.items()}
    model = MultiTaskModel(project, {n: b.model for n, b in loaded.items()}, {n: len(v) for n, v in labels.items()})
    from qarac_gui.core.model.adapters import apply_adapters
    apply_adapters(project, model, init_from=False)         # a LoRA run's checkpoint holds adapter weights
    from qarac_gui.core.training.balancing import add_log_variances
    add_log_variances(project, model)                       # so do an uncertainty run's: its tasks' log-variances
    return model, {n: b.tokenizer for n, b in loaded.items()}
