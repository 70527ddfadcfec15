"""Stopping tasks one by one (eval.task_patience): at every evaluation each task with validation rows is judged on
its own metric; one that has not improved for task_patience evaluations is frozen (its head, its own adapter, and
a backbone or pooler that only stopped tasks read) and drawn no more, while the others train on. Each task's best
weights are kept for its export."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterator

from qarac_gui.core.errors import UserError
from qarac_gui.core.events import Emit, TaskStopped
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.metrics import is_better
from qarac_gui.core.project.config import Project


def task_metrics(project: Project, tasks: dict[str, Any]) -> dict[str, str]:
    """Task -> the metric it is judged on, for the tasks with validation rows: the one eval.metric names for its
    task, else the kind's main metric (the one the run monitors by default). Keep tasks never train, so they
    never stop: the forgetting monitor watches them instead."""
    named, _, chosen = project.eval.metric.partition("/")
    out = {}
    for name, data in tasks.items():
        if not data.task.keep and data.valid is not None and len(data.valid):
            out[name] = chosen if name == named and chosen else kind_of(data.task.head).main(data.task.head)
    return out


def check_task_patience(project: Project, tasks: dict[str, Any]) -> None:
    if project.eval.task_patience and not task_metrics(project, tasks):
        raise UserError("eval.task_patience: stopping tasks one by one needs validation data, and no task has any; "
                        "give a task validation data or a validation_fraction above 0, or set task_patience to 0")


def best_path(checkpoint_dir: Path, task: str) -> Path:
    """Where a task's best weights are kept, beside the checkpoints (prune leaves them alone)."""
    return checkpoint_dir / f"best-{task}.safetensors"


def _readers(project: Project) -> dict[str, set[str]]:
    """Backbone -> the tasks that read it."""
    out: dict[str, set[str]] = {}
    for task in project.tasks:
        for backbone in kind_of(task.head).backbones(task):
            out.setdefault(backbone, set()).add(task.name)
    return out


def export_keys(model: Any, project: Project, task: str) -> list[str]:
    """The model's state keys a task's export reads: the backbones it reads, their poolers, and its head."""
    backbones = kind_of(project.task(task).head).backbones(project.task(task))
    prefixes = tuple(f"backbones.{b}." for b in backbones) + tuple(f"poolers.{b}." for b in backbones)
    return [k for k in model.state_dict() if k.startswith(prefixes + (f"heads.{task}.",))]


def _adapter_of(name: str, adapter: str) -> bool:
    """Whether a backbone parameter belongs to the LoRA adapter `adapter` (peft names them lora_A.<adapter>...)."""
    parts = name.split(".")
    return any(part.startswith("lora_") and parts[i + 1] == adapter for i, part in enumerate(parts[:-1]))


def freeze_stopped(model: Any, project: Project, stopped: set[str]) -> list[Any]:
    """requires_grad False on everything only stopped tasks use: their heads' own weights (not a tied decoder's,
    which is the backbone's embedding), their per-task adapters, and backbones and poolers that only stopped
    tasks read. Without a gradient the optimiser leaves them as they are, weight decay included. Returns the
    backbone parameters frozen (the loop keeps them frozen when the head-only warm-up ends)."""
    if not stopped:
        return []
    from qarac_gui.core.model.adapters import adapter_names
    shared = {id(p) for p in model.backbones.parameters()} | {id(p) for p in model.poolers.parameters()}
    for name, head in model.heads.items():
        if name not in stopped:
            shared |= {id(p) for p in head.parameters()}
    for name in stopped:
        for p in model.heads[name].parameters():
            if id(p) not in shared:
                p.requires_grad_(False)
    frozen = []
    for backbone, readers in _readers(project).items():
        if backbone not in model.backbones:
            continue
        encoder = model.backbones[backbone]
        if readers <= stopped:
            frozen += list(encoder.parameters())
            if backbone in model.poolers:
                model.poolers[backbone].requires_grad_(False)
            continue
        if project.backbones[backbone].adapter != "lora" or project.backbones[backbone].adapter_scope != "per_task":
            continue
        own = {adapter_names(project, backbone)[task] for task in readers & stopped}
        frozen += [p for n, p in encoder.named_parameters() if any(_adapter_of(n, a) for a in own)]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def stopped_tasks(state: Any) -> set[str]:
    return {name for name, progress in state.task_progress.items() if progress["stopped_at"]}


def judge_tasks(t: Any, state: Any, results: dict[str, dict], emit: Emit) -> bool:
    """After an evaluation: each task's best and patience counted, its best weights kept when it improved, and the
    tasks that ran out of patience stopped. Every rank takes the same decisions (`results` are the same on every
    rank). Returns whether every task has stopped (a task without validation rows never does)."""
    patience = t.project.eval.task_patience
    if not patience:
        return False
    newly = []
    for name, metric in task_metrics(t.project, t.tasks).items():
        progress = state.task_progress.setdefault(name, {"metric": metric, "best_value": None, "best_step": 0,
                                                         "evals_without_improvement": 0, "stopped_at": 0})
        if progress["stopped_at"]:
            continue
        value = results.get(name, {}).get(metric)
        if value is not None and math.isfinite(value) and is_better(metric, value, progress["best_value"]):
            progress.update(best_value=value, best_step=state.step, evals_without_improvement=0)
            if t.world.writer:
                save_best(t.model, t.project, name, best_path(t.checkpoint_dir, name), state.step)
            continue
        progress["evals_without_improvement"] += 1
        if progress["evals_without_improvement"] >= patience:
            progress["stopped_at"] = state.step
            newly.append(name)
    for name in newly:
        t.stream.stop_task(name)
    if newly:
        freeze_stopped(t.model, t.project, stopped_tasks(state))
    for name in newly:
        progress = state.task_progress[name]
        emit(TaskStopped(state.step, name, progress["metric"], progress["best_step"], progress["best_value"]))
    return not t.stream.active()


def save_best(model: Any, project: Project, task: str, path: Path, step: int) -> None:
    """The weights a task's export reads, as they are now, replaced atomically."""
    from safetensors.torch import save_file

    from qarac_gui.core.training.checkpoint import replace_file
    state = model.state_dict()
    # Copies: a tied decoder shares its tensor with the embedding, which safetensors refuses to write twice
    tensors = {k: state[k].detach().to("cpu", copy=True).contiguous() for k in export_keys(model, project, task)}
    replace_file(path, lambda tmp: save_file(tensors, str(tmp), metadata={"task": task, "step": str(step)}),
                 f"the best weights of task {task}")


@contextlib.contextmanager
def best_weights(model: Any, project: Project, task: str, checkpoint_dir: Path, state: Any,
                 metrics: dict) -> Iterator[dict]:
    """With eval.task_patience: the task's best weights in the model while its export is written, and the
    metrics of its best evaluation; the model's own weights are put back afterwards. Without (or before its
    first evaluation), the model and `metrics` as they are."""
    path = best_path(checkpoint_dir, task)
    progress = state.task_progress.get(task)
    if not project.eval.task_patience or progress is None or not path.is_file():
        yield metrics
        return
    import torch
    from safetensors.torch import load_file
    best = load_file(str(path))
    current = model.state_dict()
    kept = {k: current[k].detach().clone() for k in best}
    with torch.no_grad():
        model.load_state_dict(best, strict=False)
    try:
        yield next((h["metrics"].get(task, {}) for h in state.eval_history if h["step"] == progress["best_step"]),
                   metrics)
    finally:
        with torch.no_grad():
            model.load_state_dict(kept, strict=False)


def stop_note(t: Any, state: Any) -> str:
    """The run's end in words when every task stopped ("" otherwise)."""
    if not t.project.eval.task_patience or t.stream.active():
        return ""
    tasks = ", ".join(f"{name} at step {p['stopped_at']}" for name, p in state.task_progress.items())
    return f"every task stopped improving ({tasks}); each is exported from its best evaluation"
