"""Runs trained once for a whole test module (module-scoped fixtures), their events kept."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from qarac_gui.core.events import RunEnded, StepLogged
from qarac_gui.core.project.config import Project


@dataclass
class Trained:
    project: Project
    run_dir: Path
    events: list
    ended: RunEnded


def train_run(tmp_path_factory, project: Project, run_dir: Path, stop_at: int | None = None,
              resume: bool = False) -> Trained:
    """`project` trained into `run_dir`, stopped (as the window's Stop) after logging step `stop_at` if given."""
    from qarac_gui.core.run import run
    stop, events = threading.Event(), []

    def sink(event):
        events.append(event)
        if stop_at is not None and isinstance(event, StepLogged) and event.step == stop_at:
            stop.set()
    app = tmp_path_factory.getbasetemp()
    # The conftest's autouse app-dir fixture is function-scoped, so it is not active while a module fixture runs.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QARAC_GUI_DATA", str(app / "app-data"))
        mp.setenv("QARAC_GUI_CACHE", str(app / "app-cache"))
        ended = run(project, sink, stop, run_dir=run_dir, resume=resume, min_log_interval=0)
    return Trained(project, run_dir, events, ended)
