"""What the window does with runs: start, continue, pause and stop them, probe batch sizes, and quit after a run."""

from __future__ import annotations

import copy
import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMessageBox, QWidget

from qarac_gui.core.errors import RunStopped, UserError
from qarac_gui.core.events import Emit, RunEnded
from qarac_gui.core.project.config import ConfigError, Project
from qarac_gui.ui.dialogs import code_consent
from qarac_gui.ui.dialogs.error_dialog import show_error
from qarac_gui.ui.dialogs.run_offers import offer_batch_sizes, offer_rollback
from qarac_gui.ui.document import ProjectDocument
from qarac_gui.ui.project_checks import ProjectChecks
from qarac_gui.ui.worker import Failure

if TYPE_CHECKING:
    from qarac_gui.core.probe import BatchFit
    from qarac_gui.ui.run_follower import WindowRunController
    from qarac_gui.ui.run_view import RunView


@dataclass(frozen=True)
class ProbeResult:
    """What the batch-size probe found: one BatchFit per task."""

    fits: tuple[BatchFit, ...]


@dataclass(frozen=True)
class ProbeStopped:
    """The user stopped the batch-size probe: not a failure, and nothing to offer."""


NO_GPU = ("needs a CUDA GPU, and none was found: on the CPU, running out of memory raises no error to find "
          "(the system swaps instead)")


def probe_job(project: Project, emit: Emit, stop: threading.Event) -> ProbeResult | ProbeStopped:
    """The probe as a controller job; its own result types tell its end from a run's (RunEnded) or a Failure."""
    from qarac_gui.core.probe import probe_batches
    try:
        return ProbeResult(tuple(probe_batches(project, emit=emit, stop=stop)))
    except (UserError, RunStopped):
        if stop.is_set():
            return ProbeStopped()
        raise


class RunControl(QObject):
    """Starts, continues, pauses and stops the window's one run or batch-size probe."""

    def __init__(self, controller: WindowRunController, document: ProjectDocument, checks: ProjectChecks, view: RunView,
                 runs_base: Callable[[], Path], window: QWidget) -> None:
        super().__init__(window)
        self.controller, self.document, self.checks, self.view = controller, document, checks, view
        self._runs_base, self._window = runs_base, window
        self.close_after_run = False
        self.terminating = False
        self.gpu: bool | None = None            # None until the window's device list (a background job) says
        self.gpus = 0                           # CUDA devices this process sees (a background job counts them)
        self.processes = 0                      # processes a run trains in; 0: one per GPU (Run > Processes)
        self._probe_action: QAction | None = None
        self._probe_tip = self._probe_text = ""
        self._probing = False
        controller.finished.connect(self._on_controller_finished)
        controller.running_changed.connect(self.update_probe_action)
        checks.jobs.finished.connect(self._on_jobs_finished)

    def _name_untitled(self) -> None:
        """A project still called "untitled" is named after its first task's data before its first run, so the run
        folder says what it trained (the name field shows it, and undo takes it back)."""
        from qarac_gui.ui.document import UNTITLED
        project = self.document.project
        if project.name != UNTITLED or not project.tasks:
            return
        data = project.tasks[0].data
        source = data.train or data.hub or (data.union[0].train or data.union[0].hub if data.union else "")
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(source).stem if data.train else source.rsplit("/", 1)[-1])
        name = name.strip("_") or project.tasks[0].name
        self.document.set_value("name", name, "Project name")
        self.view.log.add(f"The project is named {name!r} after its data; rename it in Training → Project name")

    def start(self, resume_dir: str | Path | None = None, lr_scale: float = 1.0) -> bool:
        """Start a new run of the project, or continue the stopped run in resume_dir; False if it cannot start."""
        from qarac_gui.core.run import new_run_dir, run
        if self.controller.running:
            return False
        resume = isinstance(resume_dir, (str, Path))     # not a QAction's `checked` flag
        if not resume and self.checks.problems:
            self.view.log.add("Cannot start: " + "; ".join(self.checks.problems), "error")
            return False
        if resume:
            from qarac_gui.core.project.config import load_project
            run_dir = Path(resume_dir)
            try:
                project = load_project(run_dir / "project.toml")
            except ConfigError as e:
                show_error(self._window, "Cannot continue the run", str(e))
                return False
        else:
            self._name_untitled()
            project = copy.deepcopy(self.document.project)
            run_dir = new_run_dir(project, self._runs_base())
        code_consent.confirm(self._window, project)
        self.view.show_start(run_dir, resume)
        processes = self.process_count(project)
        if processes > 1:
            self._launch(project, run_dir, resume, lr_scale, processes)
            return True
        self.controller.start(functools.partial(run, project, run_dir=run_dir, resume=resume, min_log_interval=0.1,
                                                pause=self.controller.pause_flag, lr_scale=lr_scale))
        return True

    def process_count(self, project: Project) -> int:
        """How many processes Start trains in: the Run > Processes choice, or one per GPU when the project trains on
        a GPU and there are several."""
        if self.processes > 0:
            return self.processes
        return self.gpus if self.gpus > 1 and project.train.device in ("auto", "cuda") else 1

    def _launch(self, project: Project, run_dir: Path, resume: bool, lr_scale: float, processes: int) -> None:
        """Train in a child process group (torchrun) and show it through its run folder's log."""
        import shlex
        import tempfile

        from qarac_gui.core.project.config import dumps_project
        from qarac_gui.ui.run_follower import remove_later, train_command
        cleanup = None
        if resume:
            project_file = run_dir / "project.toml"
        else:               # the window's project may be unsaved: the child gets a copy that replays from anywhere
            scratch = Path(tempfile.mkdtemp(prefix="qarac-gui-launch-"))
            project_file = scratch / "project.toml"
            project_file.write_text(dumps_project(project.with_absolute_paths()), encoding="utf-8")
            cleanup = remove_later(scratch)
        command = train_command(processes, project_file, run_dir, resume, lr_scale, self._code_allowed(project))
        self.view.log.add(f"Training in {processes} processes: {shlex.join(command)}")
        self.controller.launch(command, run_dir, cleanup, continued=resume)

    @staticmethod
    def _code_allowed(project: Project) -> bool:
        """Whether every backbone that wants its repository's code was allowed it here, so the child may run it."""
        from qarac_gui.core.model import code_trust
        store = code_trust.policy()
        names = [n for n, b in project.backbones.items() if b.trust_remote_code and b.model.strip()]
        if not names or not isinstance(store, code_trust.StoredAnswers):
            return False
        sources = [code_consent.source_of(project, n) for n in names]
        return all(s is not None and store.answer(s) is True for s in sources)

    def follow(self, folder: str | Path) -> bool:
        """Show a run another process trains into `folder` (started by hand, on this machine or another that shares
        the folder) until it ends; False if it cannot be followed."""
        from qarac_gui.core.results.follow import follow_refusal
        if self.controller.running:
            self.view.log.add("Cannot follow a run folder while a run is in progress", "error")
            return False
        run_dir = Path(folder)
        if problem := follow_refusal(run_dir):
            show_error(self._window, "Cannot follow this folder", problem)
            return False
        self.view.charts.clear()
        self.view.run_dir = run_dir
        self.view.run_panel.show_busy("Waiting for the run to report…")
        self.view.log.add(f"Following the run in {run_dir}; Pause and Stop ask it through files in its folder")
        self.controller.follow(run_dir)
        return True

    def give_up_following(self) -> None:
        """Stop showing a run started elsewhere; the run goes on."""
        if self.controller.following_elsewhere:
            self.controller.give_up()
            self.view.run_panel.set_status("No longer following the run; it goes on")
            self.view.log.add("No longer following the run; it goes on")

    def bind_probe_action(self, action: QAction) -> None:
        """The menu entry of find_batch_sizes: enabled only with a GPU and no run, its tips saying why not."""
        self._probe_action, self._probe_tip = action, action.statusTip()
        self._probe_text = action.text()
        self.update_probe_action()

    @Slot()
    def update_probe_action(self) -> None:
        action = self._probe_action
        if action is None:
            return
        reason = ("Checking for a GPU…" if self.gpu is None else f"Finding the largest batch sizes {NO_GPU}"
                  if not self.gpu else "Not while a run is in progress" if self.controller.running else "")
        action.setEnabled(not reason)
        action.setText(self._probe_text + (" (needs a GPU)" if self.gpu is False else ""))
        action.setStatusTip(reason or self._probe_tip)
        action.setToolTip(reason or self._probe_tip)

    @Slot(str, object)
    def _on_jobs_finished(self, key: str, result: object) -> None:
        if key == "gpus" and isinstance(result, int):
            self.gpus = result
        # The window lists the devices in a background job at start (it imports torch); that list says whether
        # there is a GPU, so the probe's entry needs no torch import of its own on the GUI thread.
        if key == "devices":
            self.gpu = isinstance(result, list) and any(d.value == "cuda" and d.available for d in result)
            self.update_probe_action()

    def find_batch_sizes(self) -> None:
        """Run the engine's memory probe like a run (progress in the run panel, Stop works)."""
        if self.controller.running or self.checks.problems:
            self.view.log.add("Cannot probe batch sizes now: " + ("a run is in progress" if self.controller.running
                                                                   else "; ".join(self.checks.problems)), "error")
            return
        project = copy.deepcopy(self.document.project)
        code_consent.confirm(self._window, project)
        self.view.show_probe_start()
        self._probing = True
        self.controller.start(functools.partial(probe_job, project))

    def stop(self) -> None:
        if self.controller.running:
            self.controller.request_stop()
            if self.controller.problem:
                self.view.run_panel.set_status(f"Cannot stop: {self.controller.problem}")
                self.view.log.add(f"Cannot stop the run: {self.controller.problem}", "error")
            elif self._probing:
                self.view.run_panel.set_status("Stopping the batch-size probe…")
            else:
                self.view.show_stopping()

    def toggle_pause(self) -> None:
        self.set_paused(not self.controller.paused)

    def set_paused(self, paused: bool) -> None:
        self.controller.set_paused(paused)
        if self.controller.problem:
            self.view.log.add(f"Cannot {'pause' if paused else 'resume'} the run: {self.controller.problem}", "error")

    def terminate(self) -> None:
        """The system asked the app to end (SIGTERM): stop a run with a checkpoint and close without asking;
        unsaved edits stay in the autosave, which the next start offers to recover."""
        self.terminating = True
        self.close_after_run = True
        if self.controller.running and not self.controller.following_elsewhere:   # a run of its own, not one shown
            self.view.log.add("Asked to quit by the system: stopping the run after this step with a checkpoint")
            self.stop()
        else:
            self._window.close()

    def holds_close(self) -> bool:
        """Closing the window during a run: ask (unless the system asked), then stop it and close once it has
        ended. True while a run keeps the window open."""
        if not self.controller.running:
            return False
        if self.controller.following_elsewhere:      # not the window's run: it goes on without the window
            self.give_up_following()
            return False
        if not self.close_after_run:
            answer = QMessageBox.question(
                self._window, "A run is in progress",
                "Stop the run and quit? It stops after the current step and saves a checkpoint, so you can "
                "continue it later (Run > Continue a stopped run).",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return True
            self.close_after_run = True
            self.stop()
        return True

    def _end_busy(self) -> None:
        """A job that ended before its first step (a probe always does) leaves the indeterminate bar of its
        loading behind; nothing else replaces it."""
        self.view.run_panel.end_busy()

    @Slot(object)
    def _on_controller_finished(self, result: RunEnded | ProbeResult | ProbeStopped | Failure) -> None:
        self._end_busy()
        self._probing = False
        match result:
            case ProbeResult(fits=fits):
                offer_batch_sizes(self._window, self.document, fits)
            case ProbeStopped():
                self.view.run_panel.set_status("Stopped before the largest batch sizes were found")
                self.view.log.add("The batch-size probe was stopped")
            case RunEnded(reason="diverged"):
                offer_rollback(self._window, result, restart=self.start)
        if self.close_after_run:
            self._window.close()
