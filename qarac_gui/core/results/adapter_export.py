"""A finished run's LoRA backbones on export: how the run wrote them (merged into plain weights, or the adapter alone
in peft's format), and its task folders copied the other way, written again from its full multi-task model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from qarac_gui.core.errors import UserError
from qarac_gui.core.project.config import ADAPTER_EXPORTS, Project, load_project
from qarac_gui.core.results.history import copy_export, write_export

WORDS = {"merged": "merged weights (plain transformers)", "separate": "the adapter alone (peft)"}


def run_project(run_dir: Path) -> Project | None:
    """The project a run trained, as it saved it; None when it has none that reads."""
    for path in (Path(run_dir) / "export" / "full" / "project.toml", Path(run_dir) / "project.toml"):
        if path.is_file():
            try:
                return load_project(path, check=False)
            except (OSError, ValueError):
                continue
    return None


def lora_backbones(project: Project | None) -> list[str]:
    return [name for name, cfg in project.backbones.items() if cfg.adapter == "lora"] if project else []


def rewrite_problem(run_dir: Path) -> str:
    """Why the run's task folders cannot be written the other way ("" when they can)."""
    if not (Path(run_dir) / "export" / "full" / "manifest.json").is_file():
        return "this run did not keep its whole model (export.full_model = false), so only what it wrote can be copied"
    return ""


def copy_export_as(run_dir: Path, destination: Path, names: list[str], adapter: str) -> list[Path]:
    """copy_export, with each chosen task on a LoRA backbone written as `adapter` says (merged | separate). When
    the run wrote them that way already they are copied; otherwise they are exported again from export/full, into
    a temporary folder renamed at the end, so that a failure leaves nothing half written."""
    if adapter not in ADAPTER_EXPORTS:
        raise UserError(f"export.adapter: {adapter!r} is not one of {', '.join(ADAPTER_EXPORTS)}")
    run_dir, destination = Path(run_dir), Path(destination)
    project = run_project(run_dir)
    lora = set(lora_backbones(project))
    tasks = {t.name: t for t in project.tasks} if project else {}
    again = [n for n in dict.fromkeys(names) if n in tasks and tasks[n].main_backbone in lora]
    if not again or project.export.adapter == adapter:
        return copy_export(run_dir, destination, names)
    problem = rewrite_problem(run_dir)
    if problem:
        raise UserError(f"cannot write {', '.join(again)} as {WORDS[adapter]}: {problem}")
    names = list(dict.fromkeys(names))

    def fill(into: Path, available: dict[str, Path]) -> None:
        _write_again(run_dir, into, again, adapter)
        for name in names:
            if name not in again:
                shutil.copytree(available[name], into / name)
    write_export(run_dir, destination, names, fill)
    return [destination / name for name in dict.fromkeys(names)]


def _write_again(run_dir: Path, into: Path, names: list[str], adapter: str) -> None:
    from qarac_gui.core.model.backbone import resolve_source
    from qarac_gui.core.results.export import export_task, load_full_model
    project, model, tokenizers, labels = load_full_model(run_dir / "export" / "full")
    project.export.adapter = adapter
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("final", {})
    except (OSError, ValueError):
        metrics = {}
    for name in names:
        task = project.task(name)
        source, _ = resolve_source(project.backbones[task.main_backbone].model, project.root)
        # The backbone was read from export/full; the adapter is for the model the run started from
        model.backbones[task.main_backbone].config.name_or_path = source
        export_task(into / name, project, task, model, tokenizers[task.main_backbone], source, labels.get(name, []),
                    metrics.get(name, {}))
