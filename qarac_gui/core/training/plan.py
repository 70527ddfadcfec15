"""Learning-rate schedule and run length as pure functions of the project, so the GUI can draw them before
any model is loaded and the trainer applies exactly the same numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qarac_gui.core.project.config import OptimConfig, Project
from qarac_gui.core.project.convert import ConfigError
from qarac_gui.core.project.keep import trained_tasks
from qarac_gui.core.project.limits import MAX_STEPS


def warmup_steps(optim: OptimConfig, total_steps: int) -> int:
    if optim.warmup_steps > 0:
        return optim.warmup_steps
    return math.ceil(optim.warmup_ratio * total_steps)


def lr_factor(optim: OptimConfig, done: int, total_steps: int) -> float:
    """Multiplier of the peak lr after `done` optimiser steps (the formulas of transformers' get_scheduler)."""
    warm = warmup_steps(optim, total_steps)
    kind = optim.scheduler
    if kind == "constant":
        return 1.0
    if done < warm:
        return done / max(1, warm)
    if kind == "constant_with_warmup":
        return 1.0
    if kind == "inverse_sqrt":
        timescale = warm or 10_000
        return 1.0 / math.sqrt((done + timescale - warm) / timescale)
    if kind == "exponential":
        return optim.gamma ** (done - warm)
    progress = (done - warm) / max(1, total_steps - warm)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    if kind == "cosine":
        cycles = optim.num_cycles or 0.5
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress)))
    if kind == "cosine_with_restarts":
        if progress >= 1.0:
            return 0.0
        cycles = optim.num_cycles or 1.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0))))
    if kind == "polynomial":
        end = optim.lr_end_ratio
        if done > total_steps:
            return end
        return (1.0 - end) * (1.0 - progress) ** optim.power + end
    raise ValueError(f"unknown scheduler {kind!r}")


def group_factor(optim: OptimConfig, total_steps: int, is_head: bool):
    """The LambdaLR function of one parameter group: encoder groups stay at 0 during the head-only phase."""
    hold = 0 if is_head else optim.head_warmup_steps

    def factor(done: int) -> float:
        return 0.0 if done < hold else lr_factor(optim, done, total_steps)
    return factor


def head_lr(optim: OptimConfig) -> float:
    return optim.head_lr or optim.lr


# Points of a drawn lr plan: a chart is a few hundred pixels wide, and RunStarted carries the plan as the first
# line of events.jsonl, which a 10^6-step run would otherwise make 36 MB long.
CURVE_POINTS = 2000


def curve_steps(total_steps: int, points: int = CURVE_POINTS, keep: tuple[int, ...] = ()) -> list[int]:
    """The optimiser steps (1-based) a drawn plan is sampled at: every step of a short run; `points` evenly spread
    steps of a long one, plus each step in `keep` and the one after it, where the curve jumps."""
    if total_steps <= points:
        return list(range(1, total_steps + 1))
    stride = (total_steps - 1) / (points - 1)
    steps = {1 + round(i * stride) for i in range(points)}
    steps.update(s for k in keep for s in (k, k + 1) if 1 <= s <= total_steps)
    return sorted(steps)


def lr_curve(project: Project, total_steps: int, points: int = CURVE_POINTS,
             keep: tuple[int, ...] = ()) -> dict[str, list]:
    """The lr applied at optimiser steps `steps` (all of 1..total_steps, or a sample of a long run's): for the
    encoder's top layer and for the heads. Its size is bounded whatever the run's length."""
    o = project.optim
    enc = group_factor(o, total_steps, is_head=False)
    heads = group_factor(o, total_steps, is_head=True)
    warm = warmup_steps(o, total_steps)
    steps = curve_steps(total_steps, points, (warm, o.head_warmup_steps, *keep))
    return {
        "steps": steps,
        "encoder": [o.lr * enc(step - 1) for step in steps],
        "heads": [head_lr(o) * heads(step - 1) for step in steps],
    }


@dataclass(frozen=True)
class RunPlan:
    total_steps: int
    batches_per_epoch: dict[str, int]      # per task
    epoch_task: str
    draws_per_step: int                    # micro-batches per optimiser step (one per task for all_tasks)


def task_probabilities(project: Project, sizes: dict[str, int]) -> dict[str, float]:
    """Chance that a draw picks each task, for the strategies that draw one task per micro-batch (keep tasks are
    never drawn)."""
    names = [t.name for t in trained_tasks(project)]
    mixing = project.train.mixing
    if mixing in ("all_tasks", "uniform", "round_robin"):
        return {n: 1.0 / len(names) for n in names}
    exponent = 1.0 if mixing == "proportional" else 1.0 / project.train.temperature
    raw = {n: max(1, sizes[n]) ** exponent for n in names}
    total = sum(raw.values())
    return {n: raw[n] / total for n in names}


def plan_run(project: Project, sizes: dict[str, int]) -> RunPlan:
    """Total optimiser steps from max_steps, or from epochs of one task and the training-set sizes."""
    batches = {t.name: max(1, math.ceil(sizes[t.name] / t.batch_size)) for t in trained_tasks(project)}
    tr = project.train
    epoch_task = tr.epoch_task or max(batches, key=lambda n: sizes[n])
    accum = project.optim.grad_accum
    all_tasks = tr.mixing == "all_tasks"
    if tr.max_steps:
        total = tr.max_steps
    else:
        # Each optimiser step consumes `accum` micro-batches of every task (all_tasks), or `accum` draws of one
        # task each; an epoch of the chosen task therefore takes batches / (accum * its share of draws).
        share = 1.0 if all_tasks else task_probabilities(project, sizes)[epoch_task]
        total = max(1, math.ceil(tr.epochs * batches[epoch_task] / (accum * share)), tr.min_steps)
        if total > MAX_STEPS:
            raise ConfigError(f"train.epochs: {tr.epochs:g} epochs of {epoch_task} ({total / tr.epochs:.3g} steps "
                              f"each) are {total} optimiser steps, more than the {MAX_STEPS} this app plans; "
                              f"lower train.epochs to {MAX_STEPS * tr.epochs / total:.3g} or less")
    return RunPlan(total, batches, epoch_task, accum * (len(batches) if all_tasks else 1))


# Below this many optimiser steps a new head has barely moved from its random start: 60 rows in batches of 16 for
# one epoch is 4 steps, and its classifier stayed at chance on new sentences.
FEW_STEPS = 50


def plan_warnings(project: Project, plan: RunPlan) -> list[str]:
    """What makes a plan too short to learn, naming the setting to change; empty when it looks fine."""
    total, tr = plan.total_steps, project.train
    if total >= FEW_STEPS:
        return []
    if tr.max_steps:
        return [f"train.max_steps: {total} optimiser steps are too few for the heads to learn; raise it to "
                f"{FEW_STEPS * 4} or more"]
    per_epoch = total / max(tr.epochs, 1e-9)
    epochs = math.ceil(FEW_STEPS * 4 / max(per_epoch, 1e-9))
    return [f"train.epochs: {tr.epochs:g} epoch(s) of {plan.epoch_task} are {total} optimiser steps, too few for the "
            f"heads to learn; raise train.epochs to {epochs} (about {FEW_STEPS * 4} steps) or set train.min_steps"]


@dataclass(frozen=True)
class TaskShare:
    """What a plan gives one task: its share of the micro-batches, how many it gets, the rows they hold and the
    passes over its training data those rows make (expected values for the strategies that draw at random)."""
    share: float
    batches: float
    examples: float
    passes: float


def mixing_preview(project: Project, sizes: dict[str, int], plan: RunPlan) -> dict[str, TaskShare]:
    """Per task, what the sampler will draw over the whole plan: a pure function, drawn before Start."""
    draws = plan.total_steps * project.optim.grad_accum       # micro-batch draws: a batch of each task, or of one
    mixing, names = project.train.mixing, [t.name for t in trained_tasks(project)]
    if mixing == "all_tasks":
        batches = dict.fromkeys(names, float(draws))
    elif mixing == "round_robin":                             # in turn: the first tasks get the remainder
        batches = {n: float(draws // len(names) + (i < draws % len(names))) for i, n in enumerate(names)}
    else:
        chance = task_probabilities(project, sizes)
        batches = {n: draws * chance[n] for n in names}
    total = sum(batches.values())
    out = {}
    for name in names:
        rows = max(1, sizes[name])
        # a batch holds batch_size rows, but the last of an epoch only what is left: count in whole epochs
        examples = batches[name] / plan.batches_per_epoch[name] * rows
        out[name] = TaskShare(batches[name] / total, batches[name], examples, examples / rows)
    return out
