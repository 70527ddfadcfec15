"""What the window shows of a run: its events become chart points, progress and log lines; its end a status."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QStatusBar, QWidget

from qarac_gui.core.events import Progress, RunEnded, RunStarted, StepLogged, StepSkipped, describe
from qarac_gui.ui.dialogs.error_dialog import show_error
from qarac_gui.ui.panels.charts_panel import ChartsPanel
from qarac_gui.ui.panels.log_panel import LogPanel
from qarac_gui.ui.panels.run_panel import RunPanel
from qarac_gui.ui.run_control import ProbeResult
from qarac_gui.ui.worker import Failure, RunController

ENDINGS = {"completed": "Finished", "early_stopped": "Stopped early (no more improvement)",
           "diverged": "Stopped: the loss was no longer finite",
           "stopped": "Stopped; a checkpoint was saved (Run > Continue a stopped run)"}


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
        last_step = None
        for event in events:
            self.charts.handle(event)
            if isinstance(event, StepLogged):
                last_step = event
                self._steps_done_here = event.step - self._first_step
            elif isinstance(event, RunStarted):
                self._first_step = event.start_step
                self.run_panel.start_run(event.total_steps, event.start_step)
                self.log.add(describe(event))
            elif isinstance(event, Progress):
                self.run_panel.set_status(event.message)
                self.log.add(event.message)
            elif text := describe(event):
                failed = isinstance(event, StepSkipped) or isinstance(event, RunEnded) and event.reason == "failed"
                self.log.add(text, "error" if failed else "info")
        # one status line per batch: the newest step, unless a pause has put its own words there
        if last_step is not None and not self.controller.paused:
            e = last_step
            self.run_panel.show_step(e.step, e.epoch, e.samples_per_s, e.elapsed_s, self._steps_done_here)

    @Slot(bool)
    def _on_controller_paused_changed(self, paused: bool) -> None:
        if paused:
            self.run_panel.set_status("Pausing after the current step…")

    @Slot(object)
    def _on_controller_finished(self, result: RunEnded | ProbeResult | Failure) -> None:
        self.charts.flush()
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
