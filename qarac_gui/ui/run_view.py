"""What the window shows of a run: its events become chart points, progress and log lines; its end a status."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from qarac_gui.core.events import (
    ForgettingAlert,
    Progress,
    RunEnded,
    RunStarted,
    StepDone,
    StepLogged,
    StepSkipped,
    describe,
)
from qarac_gui.ui.dialogs.error_dialog import show_error
from qarac_gui.ui.panels.charts_panel import ChartsPanel
from qarac_gui.ui.panels.log_panel import LogPanel
from qarac_gui.ui.panels.run_panel import RunPanel
from qarac_gui.ui.run_control import ProbeResult
from qarac_gui.ui.worker import Failure, RunController

ENDINGS = {"completed": "Finished", "early_stopped": "Stopped early (no more improvement)",
           "diverged": "Stopped: the loss was no longer finite",
           "stopped": "Stopped; a checkpoint was saved (Run > Continue a stopped run)"}


def latest_run(runs_base: Path, project_name: str) -> Path | None:
    """The newest run folder under `runs_base` made from a project of this name (its copy of the project says)."""
    import tomllib
    found = []
    for folder in runs_base.iterdir() if runs_base.is_dir() else ():
        events, project = folder / "events.jsonl", folder / "project.toml"
        if not (events.is_file() and project.is_file()):
            continue
        try:
            with open(project, "rb") as f:
                name = tomllib.load(f).get("name")
        except (OSError, tomllib.TOMLDecodeError):
            continue                        # not a run this app can show
        if name == project_name:
            found.append((project.stat().st_mtime, folder.name, folder))     # the history's order: newest start
    return max(found)[2] if found else None


class RunView(QObject):
    """Dispatches the run controller's events and results to the charts, the run panel, the log and the status bar."""

    def __init__(self, controller: RunController, charts: ChartsPanel, run_panel: RunPanel, log: LogPanel,
                 status_bar: QStatusBar, window: QWidget) -> None:
        super().__init__(window)
        self.controller, self.charts, self.run_panel, self.log = controller, charts, run_panel, log
        self._status_bar, self._window = status_bar, window
        self.run_dir: Path | None = None          # the run the charts show; the export dialog starts from it
        self._first_step = 0
        self._steps_done_here = 0
        controller.events_received.connect(self._on_controller_events_received)
        controller.paused_changed.connect(self._on_controller_paused_changed)
        controller.finished.connect(self._on_controller_finished)
        self.device_meter = DeviceMeter(self)
        status_bar.addPermanentWidget(self.device_meter.label)

    def show_start(self, run_dir: Path, resume: bool) -> None:
        self.charts.clear()
        if resume:                                # the charts continue from what the run logged before it stopped
            self._replay(run_dir)
        self.run_dir = run_dir
        self._steps_done_here = 0
        self.run_panel.show_busy("Loading the model and reading the data…")
        self.log.add(f"{'Continuing' if resume else 'Starting'} run in {run_dir}")

    def show_probe_start(self) -> None:
        self.run_panel.show_busy("Finding the largest batch sizes…")

    def show_stopping(self) -> None:
        self.run_panel.set_status("Stopping after this step, then saving a checkpoint…")

    def show_past_run(self, path: str) -> None:
        self.charts.clear()
        self._replay(Path(path))
        self.charts.flush()
        self.run_dir = Path(path)
        self.log.add(f"Showing the charts of {path}")

    def show_latest_run(self, runs_base: Path, project_name: str) -> Path | None:
        """On opening a project: its newest run's charts, so that what it has learnt so far is on screen."""
        if self.controller.running:             # the charts belong to the run in progress
            return None
        latest = latest_run(Path(runs_base), project_name)
        if latest is not None:
            self.show_past_run(str(latest))
        return latest

    def overlay_past_run(self, path: str) -> None:
        self._replay(Path(path), prefix=f"{Path(path).name[-15:]}: ")
        self.charts.overlay_label.setText(f"overlaid: {Path(path).name}")
        self.charts.flush()

    def _replay(self, run_dir: Path, prefix: str = "") -> None:
        from qarac_gui.core.results.history import read_events
        for event in read_events(run_dir):
            self.charts.handle(event, prefix=prefix)

    @Slot(list)
    def _on_controller_events_received(self, events: list) -> None:
        step = None                 # the newest step not yet shown: drawn once per batch, not once per step
        for event in events:
            self.charts.handle(event)
            if isinstance(event, (StepDone, StepLogged)):
                step = event
                if isinstance(event, StepLogged):
                    self.run_panel.show_speed(event.samples_per_s)
            elif isinstance(event, RunStarted):
                self._first_step = event.start_step
                if self.controller.running:     # this process trains: its device's memory is the run's
                    self.device_meter.start(event.device, event.precision)
                self.run_panel.start_run(event.total_steps, event.start_step)
                self.log.add(describe(event))
            elif isinstance(event, Progress):
                self._show_step(step)   # first, so that "Paused after step N" finds the bar at N
                step = None
                self.run_panel.set_status(event.message)
                self.log.add(event.message)
            elif isinstance(event, ForgettingAlert):
                self._show_forgetting(event)
            elif text := describe(event):
                failed = isinstance(event, StepSkipped) or isinstance(event, RunEnded) and event.reason == "failed"
                self.log.add(text, "error" if failed else "info")
        self._show_step(step)

    def _show_forgetting(self, e: ForgettingAlert) -> None:
        text = describe(e)
        self.log.add(text, "warning")
        # kept until the next message: the alert matters more than the progress that follows it
        how = f"{100 * e.change:.1f} % worse than" if math.isfinite(e.change) else "no longer finite, unlike"
        self._status_bar.showMessage(f"Forgetting: {e.task} {e.metric} {how} at step 0 (at step {e.step})"
                                     + ("; paused" if e.paused else ""))
        if e.paused:
            self.controller.paused_by_run()

    def _show_step(self, e: StepDone | StepLogged | None) -> None:
        if e is None:
            return
        self._steps_done_here = e.step - self._first_step
        # while pausing, the bar moves but the status keeps the pause's words
        self.run_panel.show_step(e.step, e.epoch, e.elapsed_s, self._steps_done_here,
                                 status=not self.controller.paused)

    @Slot(bool)
    def _on_controller_paused_changed(self, paused: bool) -> None:
        if paused:
            self.run_panel.set_status("Pausing after the current step…")

    @Slot(object)
    def _on_controller_finished(self, result: RunEnded | ProbeResult | Failure) -> None:
        self.charts.flush()
        self.device_meter.stop()
        match result:
            case Failure():
                details = "" if result.user_error else result.details
                self.run_panel.set_status(f"Failed: {result.message}")
                self.log.add(result.message, "error", details)
                show_error(self._window, "The run failed", result.shown, details)
            case ProbeResult():
                self.run_panel.set_status("Batch sizes measured")
            case RunEnded(reason=reason, step=step, run_dir=run_dir, message=message):
                text = ENDINGS.get(reason, reason)
                where = f" — models in {Path(run_dir) / 'export'}" if reason in ("completed", "early_stopped") else ""
                self.run_panel.set_status(f"{text} at step {step}{where}. {message}".strip())
                self._status_bar.showMessage(text, 8000)


class DeviceMeter(QObject):
    """The status bar's device facts while a run trains here: the device, the precision used, and its memory in
    use of the total, from torch's own statistics (the process's resident memory on a CPU), once a second."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.label = QLabel("")
        self.label.setObjectName("device_memory")
        self.label.setToolTip("The run's device and precision, and the memory it holds: reserved by torch's "
                              "allocator on a GPU, the app's resident memory on a CPU")
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self.update)
        self._device, self._precision = "", ""

    def start(self, device: str, precision: str) -> None:
        self._device, self._precision = device, precision
        self.update()
        self._timer.start()

    def stop(self) -> None:
        if self._timer.isActive():
            self._timer.stop()
            self.update()

    @Slot()
    def update(self) -> None:
        from qarac_gui.core.model.devices import memory_use
        from qarac_gui.core.results.history import human_size
        use = memory_use(self._device)
        text = f"{self._device} · {self._precision}"
        if use is not None:
            of = f" of {human_size(use.total)}" if use.total else ""
            text += f" · {human_size(use.used)} in use{of} (peak {human_size(use.peak)})"
        self.label.setText(text)
