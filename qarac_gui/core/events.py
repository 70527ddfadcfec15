"""What a run reports, as frozen dataclasses of plain Python values (safe to hand to another thread)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable, Protocol, Union


@dataclass(frozen=True)
class Progress:
    """A slow preparation phase (loading the model, tokenising a task, exporting) moved on."""
    phase: str
    message: str
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class RunStarted:
    run_dir: str
    total_steps: int
    start_step: int                         # > 0 when resumed
    # name -> {"kind", "train_rows", "valid_rows", "labels", "head_params", "grouped_by_length" (whether the run
    # draws batches of similar length), "padding": {"grouped", "random"} (the share of padded tokens in this
    # epoch's batches either way)}; logs written before grouping existed have neither of the last two.
    tasks: dict[str, dict]
    # The planned lr: "steps" (1-based optimiser steps: every one of a short run, at most about 2000 of a long
    # one) and "encoder" (top layer) and "heads" at those steps. Logs written before "steps" existed have every
    # step from 1 and no "steps" key.
    lr_curve: dict[str, list]
    device: str
    precision: str
    removed_heads: dict[str, str]           # backbone -> what was dropped from its checkpoint
    encoder_params: int
    trainable_params: int


@dataclass(frozen=True)
class StepLogged:
    step: int
    epoch: float                            # epochs done of the run's epoch task
    task_losses: dict[str, float]           # mean per task since the last StepLogged
    lr: float                               # encoder top-layer lr applied at this step
    head_lr: float
    samples_per_s: float
    elapsed_s: float
    # train.balancing other than weights: each task's factor on top of its fixed weight (uncertainty: exp(-s_i) at
    # this step; an aggregator: the mean of its weights since the last StepLogged); None with fixed weights
    task_weights: dict[str, float] | None = None
    grad_cosine: float | None = None        # aggregators: mean cosine between the tasks' shared gradients


@dataclass(frozen=True)
class StepDone:
    """An optimiser step was applied. Sent every step for progress displays, from host-side counters only (no
    device sync); the run's log (events.jsonl) leaves it out, since StepLogged keeps what lasts."""
    step: int
    epoch: float                            # epochs done of the run's epoch task
    elapsed_s: float                        # training time so far, paused time left out


@dataclass(frozen=True)
class StepSkipped:
    """An optimiser step was not applied: a loss or the gradient norm was NaN or infinite."""
    step: int
    tasks: list[str]                        # tasks with a non-finite loss; empty: the gradients alone
    in_a_row: int


@dataclass(frozen=True)
class EvalDone:
    step: int
    metrics: dict[str, dict[str, float]]    # task -> metric -> value
    best_step: int
    best_value: float | None
    monitored: str                          # "task/metric"


@dataclass(frozen=True)
class TaskStopped:
    """A task stopped (eval.task_patience): its metric did not improve for that many evaluations; its head is frozen
    and it is drawn no more, while the other tasks train on."""
    step: int
    task: str
    metric: str
    best_step: int
    best_value: float | None


@dataclass(frozen=True)
class ForgettingAlert:
    """A keep task's main metric got eval.forgetting_alert worse than at step 0 (sent once per crossing)."""
    step: int
    task: str
    metric: str
    baseline: float                         # the value at step 0, before any optimiser update
    value: float
    change: float                           # how much worse, relative to the baseline: 0.1 is 10 % worse
    threshold: float                        # eval.forgetting_alert
    paused: bool = False                    # eval.forgetting_pause held the run


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: str


@dataclass(frozen=True)
class ExportDone:
    path: str
    folders: dict[str, str] = field(default_factory=dict)   # task (or "full", "backbones") -> folder


@dataclass(frozen=True)
class RunEnded:
    step: int
    reason: str                             # completed | stopped | early_stopped | diverged | failed
    message: str = ""
    run_dir: str = ""


TrainEvent = Union[Progress, RunStarted, StepDone, StepLogged, StepSkipped, EvalDone, CheckpointSaved, ExportDone,
                   RunEnded, TaskStopped, ForgettingAlert]
Emit = Callable[[TrainEvent], None]


class Callback(Protocol):
    def on_event(self, event: TrainEvent) -> None: ...


class CallbackList:
    """Fans one event out to several consumers; is itself an emit function."""

    def __init__(self, *callbacks: Callback | Emit) -> None:
        self._callbacks = [getattr(cb, "on_event", cb) for cb in callbacks]

    def __call__(self, event: TrainEvent) -> None:
        for cb in self._callbacks:
            cb(event)


def event_to_json(event: TrainEvent) -> str:
    return json.dumps({"event": type(event).__name__, **dataclasses.asdict(event)}, allow_nan=True)


def describe(event: TrainEvent) -> str:
    """An event in the words the CLI prints and the window's log shows; "" for per-step events, which each
    front end shows its own way (a progress bar, the charts)."""
    match event:
        case Progress(message=message):
            return message
        case RunStarted():
            text = (f"Training {len(event.tasks)} task(s) for {event.total_steps} steps on {event.device} "
                    f"({event.precision}); run folder {event.run_dir}")
            removed = "; ".join(f"{k}: removed {v}" for k, v in event.removed_heads.items())
            lines = [text] + [f"  {line}" for line in [removed] + _padding_lines(event.tasks) if line]
            return "\n".join(lines)
        case StepSkipped(step=step, tasks=tasks, in_a_row=n):
            cause = f"the loss of {', '.join(tasks)} was" if tasks else "the gradients were"
            return f"Step {step} skipped: {cause} NaN or infinite ({n} in a row)"
        case EvalDone(step=step, metrics=metrics):
            parts = [f"{task}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()) for task, m in metrics.items()]
            return f"Validation at step {step}: " + "; ".join(parts)
        case TaskStopped():
            return f"Task {event.task} stopped at step {event.step}: {task_stop_words(event)}; it trains no more"
        case CheckpointSaved(step=step, path=path):
            return f"Checkpoint at step {step}: {path}"
        case ForgettingAlert():
            return forgetting_words(event)
        case ExportDone(path=path, folders=folders):
            return f"Exported {', '.join(folders)} to {path}"
        case RunEnded(reason=reason, step=step, message=message):
            return f"Run {reason} at step {step}" + (f": {message}" if message else "")
    return ""


def task_stop_words(event: TaskStopped) -> str:
    if event.best_value is None:
        return f"its {event.metric} was never a finite number"
    return f"no better {event.metric} since its best, {event.best_value:.4g} at step {event.best_step}"


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %" if share < 0.1 else f"{100 * share:.0f} %"


def _padding_lines(tasks: dict[str, dict]) -> list[str]:
    return [line for name, info in tasks.items() if (line := padding_line(name, info))]


def padding_line(name: str, info: dict) -> str:
    """How much of a task's batches is padding, and what the other way of batching would leave ("" for logs
    written before it was measured)."""
    padding = info.get("padding")
    if not padding:
        return ""
    if info.get("grouped_by_length"):
        return f"{name}: {_percent(padding['grouped'])} padding in batches ({_percent(padding['random'])} if random)"
    return (f"{name}: {_percent(padding['random'])} padding in batches "
            f"({_percent(padding['grouped'])} with train.group_by_length)")


def forgetting_words(e: ForgettingAlert) -> str:
    how = "no longer finite, unlike" if e.change == float("inf") else f"{100 * e.change:.1f} % worse than"
    text = (f"Forgetting: {e.task} {e.metric} {e.value:.4g} at step {e.step}, {how} at step 0 "
            f"({e.baseline:.4g}; the alert is at {100 * e.threshold:g} %)")
    return text + (". The run is paused (eval.forgetting_pause): resume it in the window, or remove the file "
                   "pause-request from the run folder" if e.paused else "")
