"""The checks before a new run starts, without loading the model's weights: the task reports the window shows,
the backbones' tokenizers and limits, and the length of the planned run. qarac-train runs them before it makes a
run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qarac_gui.core.data.preview import filter_summary, length_summary, preview_task, start_problems
from qarac_gui.core.errors import UserError
from qarac_gui.core.model.backbone import resolve_source
from qarac_gui.core.model.code_trust import remote_code_allowed
from qarac_gui.core.model.positions import config_dict, max_length_problems
from qarac_gui.core.project.config import BackboneConfig, Project
from qarac_gui.core.project.convert import ConfigError
from qarac_gui.core.training.plan import plan_run


def preflight(project: Project) -> tuple[list[str], list[str], list[str]]:
    """(errors, warnings, notes) of every task, read before a run starts: the checks the GUI shows in its report,
    and the notes: what each filter kept, and a summary of token lengths."""
    from datasets.utils.logging import disable_progress_bar
    disable_progress_bar()              # the caller reports; datasets' own bars would garble a terminal
    tokenizers: dict[str, Any] = {}
    model_problems: list[str] = []
    for name, cfg in project.backbones.items():
        tokenizers[name], problem = _tokenizer_of(name, cfg, project.root)
        if problem:
            model_problems.append(problem)
    previews = {t.name: preview_task(project, t, tokenizers.get(t.main_backbone)) for t in project.tasks}
    model_problems += _limit_problems(project, tokenizers, previews)     # max_length, run length
    warnings = [w for p in previews.values() for w in p.warnings]
    notes = [line for p in previews.values() for line in (filter_summary(p), length_summary(p)) if line]
    return model_problems + start_problems(project, previews), warnings, notes


def _tokenizer_of(name: str, cfg: BackboneConfig, root: Path) -> tuple[Any, str]:
    """(the backbone's tokenizer alone, no weights, for the truncation check; a problem that stops the run before
    anything is written). The tokenizer is None when it cannot be read here: the run then says why."""
    try:    # where the model is and whether its code may run: cheap, and refused before a run folder exists
        source, local = resolve_source(cfg.model, root)
        trusted = remote_code_allowed(name, cfg.trust_remote_code, source, local, cfg.revision)
    except UserError as e:
        return None, str(e)
    try:
        from transformers import AutoTokenizer
        if not local:
            from qarac_gui.core.model.hub import guard_hub_requests
            guard_hub_requests()        # transformers' own retries on a stalled Hub take minutes
        return AutoTokenizer.from_pretrained(source, revision=cfg.revision or None, trust_remote_code=trusted), ""
    except Exception:
        return None, ""


def _limit_problems(project: Project, tokenizers: dict[str, Any], previews: dict[str, Any]) -> list[str]:
    """The limits the CLI's pre-flight can check before a run folder exists: max_length against each backbone's
    config and tokenizer, and the length of the run planned from the previewed training rows."""
    # A backbone whose tokenizer could not be read (or may not be, not yet trusted) is left to the run's check.
    configs = {name: config_dict(cfg, project.root) for name, cfg in project.backbones.items()
               if tokenizers.get(name) is not None}
    problems = max_length_problems(project, configs, tokenizers)
    sizes = {t.name: getattr(previews.get(t.name), "train_rows", 0) for t in project.tasks}
    if all(sizes.values()):
        try:
            plan_run(project, sizes)
        except ConfigError as e:
            problems.append(str(e))
    return problems
