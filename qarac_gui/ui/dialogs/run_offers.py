"""Questions a run's outcome raises: roll back a diverged run, use the batch sizes the memory probe found,
continue a run that a crash cut short."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QMessageBox, QWidget

from qarac_gui.core.events import RunEnded

if TYPE_CHECKING:
    from qarac_gui.core.results.history import RunSummary


def offer_rollback(window: QWidget, ended: RunEnded, restart: Callable[..., object]) -> QMessageBox:
    """A run that stopped on NaN/inf: continue from its last checkpoint at half the learning rate, or not."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Training diverged", f"The run stopped: {ended.message}.",
                      QMessageBox.StandardButton.NoButton, window)
    box.setObjectName("rollback_box")
    if "roll back to the checkpoint" in ended.message:
        box.addButton("Roll back at half the learning rate", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Leave it stopped", QMessageBox.ButtonRole.RejectRole)
    run_dir = Path(ended.run_dir)
    box.accepted.connect(lambda: restart(run_dir, lr_scale=0.5))
    box.open()
    return box


def offer_batch_sizes(window: QWidget, document: Any, fits: Sequence[Any]) -> QMessageBox:
    """What the memory probe found per task, with a button that sets those batch sizes (one undoable edit)."""
    lines = [f"{f.task}: up to {f.largest} rows fit (longest row {f.tokens} tokens; now {f.configured})"
             if f.largest else f"{f.task}: not even one row of {f.tokens} tokens fits; lower its max length"
             for f in fits]
    box = QMessageBox(QMessageBox.Icon.Information, "Largest batch sizes",
                      "Forward and backward passes on each task's longest rows:\n\n" + "\n".join(lines),
                      QMessageBox.StandardButton.NoButton, window)
    box.setObjectName("batch_sizes_box")
    usable = {f.task: f.largest for f in fits if f.largest}
    if usable:
        box.addButton("Use these batch sizes", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Close", QMessageBox.ButtonRole.RejectRole)

    def apply(project) -> None:
        for task in project.tasks:
            task.batch_size = usable.get(task.name, task.batch_size)
    box.accepted.connect(lambda: document.edit(apply, "tasks", "batch sizes"))
    box.open()
    return box


def offer_continue(window: QWidget, run: RunSummary, start: Callable[[Path], object],
                   dismiss: Callable[[], object]) -> QMessageBox:
    """A run cut short by a crash of the app or the machine: continue it from its latest checkpoint, or not now."""
    saved = max(int(p.name.split("-")[-1]) for p in (run.path / "checkpoints").glob("step-*"))
    box = QMessageBox(QMessageBox.Icon.Question, "Continue an interrupted run?",
                      f"The run {run.name} ended unexpectedly at step {run.step} of {run.total_steps} (qarac_gui "
                      f"or the computer stopped). Continue it from its checkpoint of step {saved}?",
                      QMessageBox.StandardButton.NoButton, window)
    box.setObjectName("interrupted_box")
    box.addButton("Continue the run", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
    box.accepted.connect(lambda: start(run.path))
    box.rejected.connect(dismiss)
    box.open()
    return box
