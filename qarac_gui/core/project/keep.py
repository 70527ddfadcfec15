"""Tasks marked keep: evaluated at step 0 and at every evaluation, never trained (docs/forgetting.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qarac_gui.core.project.config import Project, TaskConfig


def trained_tasks(project: Project) -> list[TaskConfig]:
    """The tasks the optimiser trains: every task but the keep ones."""
    return [t for t in project.tasks if not t.keep]


def keep_names(project: Project) -> set[str]:
    return {t.name for t in project.tasks if t.keep}


def keep_problems(p: Project) -> list[str]:
    """What a keep task cannot be: the only kind of task, the task epochs count, the monitored or exported task."""
    keep = keep_names(p)
    problems = []
    if p.tasks and len(keep) == len(p.tasks):
        problems.append("tasks: every task has keep = true (evaluated only, never trained), so nothing would "
                        "train; set keep = false on at least one task")
    if p.train.epoch_task in keep:
        problems.append(f"train.epoch_task: task {p.train.epoch_task!r} has keep = true and is never trained, so "
                        "it has no epochs; name a task that trains, or leave it empty (the largest one)")
    task = p.eval.metric.partition("/")[0]
    if task in keep:
        problems.append(f"eval.metric: task {task!r} has keep = true; it only measures forgetting (see "
                        "eval.forgetting_alert); monitor a task that trains")
    for name in p.export.tasks:
        if name in keep:
            problems.append(f"export.tasks: task {name!r} has keep = true and is never trained, so there is nothing "
                            "of it to export; remove it from export.tasks")
    if not 0 <= p.eval.forgetting_alert < 100:
        problems.append("eval.forgetting_alert: must be 0 (off) or a relative change above 0, e.g. 0.1 for 10 % "
                        "worse than at step 0")
    return problems
