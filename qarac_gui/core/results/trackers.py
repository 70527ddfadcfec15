"""Experiment trackers a run also reports to (train.report_to), each through its own library's writer. The run
folder's events.jsonl stays the record; a tracker is a copy in the form other tools read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qarac_gui.core import events as ev
from qarac_gui.core.project.config import Project


def _settings(project: Project) -> dict[str, Any]:
    """The project's settings as flat hyperparameters: numbers, booleans and strings (lists as text)."""
    from qarac_gui.core.results.compare import flatten
    out = {}
    for key, value in flatten(project).items():
        out[key] = value if isinstance(value, (int, float, bool, str)) else str(value)
    return out


class TensorBoardTracker:
    """Per-task losses, both learning rates, samples/s and every validation metric as TensorBoard scalars under
    run_dir/tensorboard; the settings and the final metrics as its hyperparameters when the run ends."""

    def __init__(self, project: Project, run_dir: Path) -> None:
        self.project, self.folder = project, Path(run_dir) / "tensorboard"
        self.writer: Any = None
        self.last_metrics: dict[str, float] = {}

    def __call__(self, event: Any) -> None:
        if isinstance(event, ev.RunStarted):
            from torch.utils.tensorboard import SummaryWriter
            # a resumed run drops what the crashed one logged after its checkpoint: the steps are trained again
            self.writer = SummaryWriter(str(self.folder), purge_step=event.start_step + 1 if event.start_step else None)
        elif self.writer is None:
            return
        elif isinstance(event, ev.StepLogged):
            w, step = self.writer, event.step
            for task, loss in event.task_losses.items():
                w.add_scalar(f"loss/{task}", loss, step)
            w.add_scalar("lr/encoder", event.lr, step)
            w.add_scalar("lr/heads", event.head_lr, step)
            w.add_scalar("throughput/samples_per_s", event.samples_per_s, step)
        elif isinstance(event, ev.EvalDone):
            for task, values in event.metrics.items():
                for metric, value in values.items():
                    self.writer.add_scalar(f"validation/{task}/{metric}", value, event.step)
                    self.last_metrics[f"final/{task}/{metric}"] = value
        elif isinstance(event, ev.RunEnded):
            self.writer.add_hparams(_settings(self.project), self.last_metrics or {"final/step": event.step},
                                    run_name="settings")
            self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def open_trackers(project: Project, run_dir: Path) -> list[Any]:
    """One callback per tracker the project reports to (none by default)."""
    return [TensorBoardTracker(project, run_dir) for name in project.train.report_to if name == "tensorboard"]
