"""The forgetting monitor: keep tasks, evaluated at step 0 and at every evaluation after, never trained.

Their step-0 numbers are the baseline (kept in the checkpointed TrainState, so a resumed run compares with the
same ones); an evaluation that finds a keep task's main metric eval.forgetting_alert worse than at step 0 raises
ForgettingAlert once, and again only after the metric came back within the threshold.
"""

from __future__ import annotations

import copy
import math
import threading
from typing import Any

from qarac_gui.core.events import Emit, EvalDone, ForgettingAlert, Progress
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.metrics import HIGHER_IS_BETTER
from qarac_gui.core.project.config import Project, TaskConfig
from qarac_gui.core.training.checkpoint import TrainState
from qarac_gui.core.training.distributed import PAUSE_REQUEST
from qarac_gui.core.training.evaluation import evaluate_task


def evaluation_view(task: TaskConfig) -> TaskConfig:
    """The task as its rows are read: a keep task holds none out with validation_fraction (nothing trains on the
    rest), so without a validation file or split every one of its rows is evaluated."""
    if not task.keep:
        return task
    view = copy.deepcopy(task)
    view.data.validation_fraction = 0.0
    return view


def freeze_keep_heads(project: Project, model: Any) -> None:
    """A keep task's own head weights get no gradient and no optimiser state; weights it shares with a backbone (a
    masked-LM decoder tied to the input embeddings) train with the backbone, which is what the task measures."""
    shared = {id(q) for q in model.backbones.parameters()}
    for task in project.tasks:
        if task.keep:
            for q in model.heads[task.name].parameters():
                if id(q) not in shared:
                    q.requires_grad_(False)


def lm_head_notes(project: Project, pretrained_lms: dict, loaded: dict) -> list[str]:
    """A keep masked-LM task over a backbone saved without its LM head (a sentence-transformers encoder) reads a new,
    random one: its perplexity then says little about what the encoder forgets."""
    if project.train.init_from:
        return []           # the LM head may come from there
    return [f"Task {task.name} measures forgetting with a masked-LM head, but backbone {task.main_backbone!r} was "
            f"saved without one ({loaded[task.main_backbone].architecture}): it reads a new, random LM head, whose "
            "perplexity says little. Give it a trained one with train.init_from (see docs/forgetting.md)"
            for task in project.tasks if task.keep and kind_of(task.head).uses_lm_head
            and task.main_backbone not in pretrained_lms and task.main_backbone in loaded]


def worse_by(metric: str, baseline: float, value: float) -> float | None:
    """How much worse `value` is than `baseline`, relative to it (0.1: 10 % worse; negative: better); inf for a
    value that is no longer finite; None when there is nothing to compare (a zero or non-finite baseline)."""
    if not math.isfinite(baseline) or baseline == 0:
        return None
    if not math.isfinite(value):
        return math.inf
    change = (value - baseline) / abs(baseline)
    return -change if HIGHER_IS_BETTER.get(metric, False) else change


def main_metric(task: TaskConfig) -> str:
    return kind_of(task.head).main(task.head)


def keep_info(t: Any, name: str) -> dict:
    """What RunStarted says of a keep task, so that a chart draws it against step 0 with the alert's line."""
    task = t.tasks[name].task
    if not task.keep:
        return {}
    metric = main_metric(task)
    return {"keep": True, "metric": metric, "higher_is_better": HIGHER_IS_BETTER.get(metric, False),
            "forgetting_alert": t.project.eval.forgetting_alert}


class ForgettingMonitor:
    """Evaluates the keep tasks before the first optimiser step and reads every evaluation after it."""

    def __init__(self, t: Any, state: TrainState, emit: Emit, pause: threading.Event | None,
                 requests: Any = None) -> None:
        self.t, self.state, self.emit, self.pause, self.requests = t, state, emit, pause, requests
        self.keep = [task for task in t.project.tasks if task.keep and task.name in t.tasks]
        self.read = len(state.eval_history)       # evaluations already compared (a resumed run's earlier ones)

    def start(self) -> None:
        """The step-0 evaluation of a fresh run: the untouched model, before any update. A resumed run keeps the
        baseline its checkpoint holds."""
        if not self.keep or self.state.step or self.state.forgetting_baseline:
            return
        t = self.t
        t.model.eval()
        # each rank evaluates its share of the rows; every rank gets the same numbers to compare with
        results = {task.name: evaluate_task(t.model, t.tasks[task.name], t.device, t.project.eval.batch_size,
                                            t.autocast, world=t.world) for task in self.keep}
        t.model.train()
        self.state.forgetting_baseline = results
        self.emit(EvalDone(0, results, self.state.best_step, self.state.best_value, t.monitor))

    def check(self) -> None:
        """After the loop's evaluation (if there was one): compare the keep tasks with step 0. Every rank holds the
        same shared numbers, so every rank decides the same."""
        history = self.state.eval_history
        if not self.keep or len(history) == self.read:
            return
        self.read = len(history)
        threshold = self.t.project.eval.forgetting_alert
        latest = history[-1]
        for task in self.keep:
            metric = main_metric(task)
            baseline = self.state.forgetting_baseline.get(task.name, {}).get(metric)
            value = latest["metrics"].get(task.name, {}).get(metric)
            if baseline is None or value is None or not threshold:
                continue
            change = worse_by(metric, baseline, value)
            if change is None:
                continue
            alerted = task.name in self.state.forgetting_alerted
            if change >= threshold and not alerted:
                self.state.forgetting_alerted.append(task.name)
                paused = self._pause()
                self.emit(ForgettingAlert(latest["step"], task.name, metric, baseline, value, change, threshold,
                                          paused))
            elif change < threshold and alerted:
                self.state.forgetting_alerted.remove(task.name)
                self.emit(Progress("forgetting", f"{task.name}: {metric} {value:.4g} is back within "
                                                 f"{100 * threshold:g} % of step 0 ({baseline:.4g})"))

    def _pause(self) -> bool:
        """Pause through the loop's own requests: the caller's pause flag (the window's Resume clears it), or the
        pause-request file in the run folder (removing it resumes)."""
        if not self.t.project.eval.forgetting_pause or self.state.step >= self.t.plan.total_steps:
            return False
        if self.pause is not None:
            self.pause.set()
        elif self.t.world.writer:
            run_dir = self.t.checkpoint_dir.parent
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / PAUSE_REQUEST).touch()
            if self.requests is not None:
                self.requests.look_again()      # held before the next step, not a poll interval later
        return True
