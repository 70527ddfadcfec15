"""Runs in other processes: a run launched as a child (torchrun for several processes), or any run folder, followed
through its events.jsonl so that the same charts, progress and log show it as they show a run of the window's own."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QProcess, QTimer, Signal, Slot

from qarac_gui.core.events import RunEnded, RunStarted, StepDone, StepLogged
from qarac_gui.core.results import follow
from qarac_gui.ui.worker import DRAIN_LIMITS, Failure, RunController

POLL_MS = 150                   # the log is read this often: about as lively as the window's own runs
READ_MOST = 1 << 16             # bytes of the log read and parsed at once (about 200 events, 1-2 ms)
CATCH_UP_MS = 2                 # between the reads of a log that is behind (a long run just followed)
ALIVE_EVERY = 14                # polls between checks that a followed run's process still lives (about 2 s)
# torchrun kills its workers this long after it is signalled, even mid-checkpoint; a checkpoint of a large model
# on a slow disk takes minutes, so it gets ten.
SHUTDOWN_TIMEOUT_S = 600
STDERR_KEPT = 64_000            # bytes of the child's stderr kept for the message and details of a failure


def train_command(processes: int, project_file: Path, run_dir: Path, resume: bool = False,
                  lr_scale: float = 1.0, trust_remote_code: bool = False) -> list[str]:
    """The command that trains `project_file` into `run_dir` in `processes` processes on this machine: the program
    first, then its arguments. Several processes go through torchrun; one is a plain qarac-train."""
    cli = [str(project_file), "--out", str(run_dir)]
    if resume:
        cli += ["--resume"] + (["--lr-scale", repr(lr_scale)] if lr_scale != 1.0 else [])
    if trust_remote_code:
        cli.append("--trust-remote-code")
    frozen = getattr(sys, "frozen", False)
    # A bundled app has no python: its executable is the interpreter, and qarac-train, beside it, the program
    # (packaging/launch.py picks the program by the name it was started as).
    train = Path(sys.executable).with_name("qarac-train" + (".exe" if os.name == "nt" else ""))
    if processes <= 1:
        return [str(train), *cli] if frozen else [sys.executable, "-m", "qarac_gui.cli", *cli]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}"]
    if frozen:
        return [*torchrun, "--no-python", str(train), *cli]
    return [*torchrun, "-m", "qarac_gui.cli", *cli]


class ProcessFailure(Failure):
    """A run in another process that failed: the message it gave, and its stderr as the details."""

    def __init__(self, message: str, details: str = "") -> None:   # nothing for the bug log: the child's own failure
        self.message, self.details = message, details
        self.user_error = False         # the details are worth showing
        self.log = None

    @property
    def shown(self) -> str:
        return self.message


def failure_message(stderr: str, exit_code: int | None) -> str:
    """What a failed training process said: its first "error:" line (qarac-train's way), else its last line. Of
    several processes the first to fail names the cause; the others fail on losing it, "unexpectedly"."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [m.group(1) for line in lines if (m := re.search(r"(?:^|\]:\s*)error: (.*)", line))]
    said = [s for s in said if not s.startswith("unexpected ")] or said
    why = said[0] if said else lines[-1] if lines else "it said nothing on its error output"
    how = "crashed" if exit_code is None else f"ended with exit code {exit_code}"
    return f"The training process {how}: {why}"


class RunFollower(QObject):
    """Reads a run's events.jsonl on a timer and hands on what arrived, as the window's run thread does; with a
    child process, the run ends when the process does, otherwise at the run's end in the log."""

    events_received = Signal(list)
    restarted = Signal()            # the log was replaced: what was shown of the old one is gone
    ended = Signal(object)          # RunEnded, a ProcessFailure, or None when following was given up

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.run_dir: Path | None = None
        self.process: QProcess | None = None
        self._tail: follow.EventTail | None = None
        self._end: RunEnded | None = None
        self._last: StepLogged | None = None
        self._stderr = bytearray()
        self._cleanup: Callable[[], Any] | None = None
        self._polls = 0
        self._seen_alive = False
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.ready: Callable[[], bool] = lambda: True       # whether the receiver takes more events now
        self._catch_up = QTimer(self)
        self._catch_up.setSingleShot(True)
        self._catch_up.setInterval(CATCH_UP_MS)
        self._catch_up.timeout.connect(self._poll)

    @property
    def active(self) -> bool:
        return self.run_dir is not None

    @property
    def owns_process(self) -> bool:
        return self.process is not None

    def follow(self, run_dir: Path) -> None:
        """Show the run that writes into `run_dir` (started by hand, here or on another machine) until it ends."""
        self._begin(run_dir)

    def launch(self, command: list[str], run_dir: Path, cleanup: Callable[[], Any] | None = None,
               continued: bool = False) -> None:
        """Start `command` (program first) as a child that trains into `run_dir`, and follow it; `cleanup` runs once
        it has ended (removing the project copy it was given). `continued`: the run's past events are shown already,
        only the new ones are read."""
        self._begin(run_dir, continued)
        self._cleanup = cleanup
        process = self.process = QProcess(self)
        process.setStandardOutputFile(QProcess.nullDevice())     # the log file says all the window shows
        process.readyReadStandardError.connect(self._on_process_stderr)
        process.finished.connect(self._on_process_finished)
        process.errorOccurred.connect(self._on_process_error)
        process.start(command[0], command[1:])

    def _begin(self, run_dir: Path, continued: bool = False) -> None:
        if self.active:
            raise RuntimeError("a run is already being followed")
        self.run_dir = Path(run_dir)
        self._tail = follow.EventTail(self.run_dir / "events.jsonl", from_end=continued)
        self._end, self._last, self._polls, self._seen_alive = None, None, 0, False
        self._stop_asked = False
        self._stderr.clear()
        self._timer.start()

    def set_paused(self, paused: bool) -> str | None:
        """Ask the run to hold between steps, or to go on; the reason when the request cannot be written."""
        return self._request(lambda: follow.request_pause(self.run_dir, paused))

    def request_stop(self) -> str | None:
        """Ask the run to stop at the next step with a checkpoint, then wait for its end; the reason when the
        request cannot be written."""
        self._stop_asked = True
        if self.process is not None and not self.run_dir.exists():
            # still starting, before its folder exists: nothing to save, and a request file would make the folder
            # look taken; a child stops on SIGTERM like on Ctrl-C
            self.process.terminate()
            return None
        return self._request(lambda: follow.request_stop(self.run_dir))

    def _request(self, write: Callable[[], None]) -> str | None:
        if not self.active:
            return None
        try:
            write()
        except OSError as e:
            return f"cannot write into {self.run_dir} ({e.strerror or e}), so the run cannot be asked"
        return None

    def give_up(self) -> None:
        """Stop following a run started elsewhere; the run itself goes on."""
        if self.active and self.process is None:
            self._finish(None)

    def wait(self, ms: int) -> bool:
        """Block until a child ends (closing the window); True if it ended in time. A run not started here is
        simply no longer followed."""
        if self.process is None:
            self.give_up()
            return True
        return self.process.waitForFinished(ms) or self.process.state() == QProcess.ProcessState.NotRunning

    # --- reading ------------------------------------------------------------------------------------------------
    def _read(self, final: bool = False) -> None:
        restarts = self._tail.restarts
        events = self._tail.read(final, READ_MOST)
        if self._tail.restarts != restarts:
            self._end = None
            self.restarted.emit()
        shown = []
        for event in events:
            if isinstance(event, RunStarted):
                self._end = None            # a continued run appends to the log: only an end after it counts
            elif isinstance(event, StepLogged):
                self._last = event
            elif isinstance(event, RunEnded):
                self._end = event
                last = self._last
                if last is not None and event.step > last.step:
                    # The log keeps a step only every log interval, where a run of the window's own reports each
                    # one: the bar goes to the step the run ended at, as it would for a run of the window's own.
                    shown.append(StepDone(event.step, last.epoch, last.elapsed_s))
            shown.append(event)
        events = shown
        if events:
            self.events_received.emit(events)

    @Slot()
    def _poll(self) -> None:
        if not self.active:
            return
        if self._catch_up.isActive() or not self.ready():
            self._catch_up.start()          # the events read so far are still being shown: read on after them
            return
        self._read()
        if self._tail.behind:
            # a long log (a run followed well after it began) is read in turns, the event loop free between them;
            # its end, if it has one, is met in the last piece
            self._catch_up.start()
            return
        if self.process is not None:
            return
        if self._end is not None:
            self._finish(self._end)
            return
        self._polls += 1
        if self._polls % ALIVE_EVERY == 0:
            alive = follow.run_is_alive(self.run_dir)
            self._seen_alive = self._seen_alive or bool(alive)
            if alive is False and self._seen_alive:
                self._read(final=True)
                self._finish(self._end or ProcessFailure(
                    f"The run in {self.run_dir} ended without saying how (its process is gone); continue it from "
                    "its latest checkpoint with Run > Continue a stopped run"))

    # --- the child ----------------------------------------------------------------------------------------------
    @Slot()
    def _on_process_stderr(self) -> None:
        self._stderr += bytes(self.process.readAllStandardError())
        del self._stderr[:-STDERR_KEPT]

    @Slot(QProcess.ProcessError)
    def _on_process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.process is not None:
            program = self.process.program()
            self._finish(ProcessFailure(f"The training process could not be started ({program}: "
                                        f"{self.process.errorString()}); is PyTorch installed with this app?"))

    @Slot(int, QProcess.ExitStatus)
    def _on_process_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        if self.process is None:
            return
        self._on_process_stderr()
        self._read(final=True)
        crashed = status == QProcess.ExitStatus.CrashExit
        end = self._end
        if end is not None and end.reason != "failed":
            self._finish(end)
            return
        if end is None and self._stop_asked:
            # stopped while it loaded (the window ended it before it had a folder, or torchrun passed the signal
            # on): what a run of the window's own says then, and no failure
            self._finish(RunEnded(0, "stopped", "stopped before training began", str(self.run_dir)))
            return
        stderr = self._stderr.decode("utf-8", "replace")
        message = failure_message(stderr, None if crashed else code)
        if end is not None and end.message:
            message = f"The run failed at step {end.step}: {end.message}"
        elif not crashed and code == 0:
            message = "The training process ended without finishing the run (its log has no end)"
        self._finish(ProcessFailure(message, stderr))

    def _finish(self, result: RunEnded | ProcessFailure | None) -> None:
        self._timer.stop()
        self._catch_up.stop()
        process, cleanup = self.process, self._cleanup
        self.run_dir = self.process = self._tail = self._cleanup = None
        if process is not None:
            process.deleteLater()
        if cleanup is not None:
            cleanup()
        self.ended.emit(result)


class WindowRunController(RunController):
    """The window's run controller: its own runs in a thread (RunController), and runs in other processes, whose
    events arrive through the same signals."""

    restarted = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.follower = RunFollower(self)
        # a followed run's events join the queue of the window's own runs: a long log is handed on in chunks too
        self.follower.events_received.connect(self._on_follower_events)
        self.follower.ready = lambda: len(self._queue) < DRAIN_LIMITS[1]
        self.follower.restarted.connect(self._on_follower_restarted)
        self.follower.ended.connect(self._on_follower_ended)
        self.problem: str | None = None      # why the last pause or stop request could not be made
        self._ending: tuple | None = None     # (how a followed run ended,) until its last events are shown

    @property
    def running(self) -> bool:
        return super().running or self.follower.active or self._ending is not None

    @property
    def following(self) -> bool:
        """A run in another process is shown."""
        return self.follower.active

    @property
    def following_elsewhere(self) -> bool:
        """The run shown was started outside the window: it goes on when the window stops following it."""
        return self.follower.active and not self.follower.owns_process

    def start(self, fn: Callable[..., Any]) -> None:
        if self.follower.active:
            raise RuntimeError("a run is already in progress")
        super().start(fn)

    def launch(self, command: list[str], run_dir: Path, cleanup: Callable[[], Any] | None = None,
               continued: bool = False) -> None:
        if self.running:
            raise RuntimeError("a run is already in progress")
        if run_dir.is_dir():
            follow.clear_requests(run_dir)      # a continued run must not meet the stop that ended it
        self.pause_flag.clear()
        self.follower.launch(command, run_dir, cleanup, continued)
        self.running_changed.emit(True)

    def follow(self, run_dir: Path) -> None:
        if self.running:
            raise RuntimeError("a run is already in progress")
        self.pause_flag.clear()
        self.follower.follow(run_dir)
        self.running_changed.emit(True)

    def give_up(self) -> None:
        self.follower.give_up()

    def set_paused(self, paused: bool) -> None:
        self.problem = None
        if self.follower.active and paused != self.paused:
            self.problem = self.follower.set_paused(paused)
            if self.problem:
                return
        super().set_paused(paused)

    def request_stop(self) -> None:
        super().request_stop()
        self.problem = self.follower.request_stop() if self.follower.active else None

    def wait(self, ms: int) -> bool:
        if self.follower.active:
            return self.follower.wait(ms)
        if self._ending is not None:
            self._drain_all()
        return super().wait(ms)

    @Slot(list)
    def _on_follower_events(self, events: list) -> None:
        self._queue.extend(events)
        if not self._backlog.isActive():    # shown on the next turn: reading and showing take turns of their own
            self._backlog.start()

    @Slot()
    def _on_follower_restarted(self) -> None:
        self._queue.clear()                 # the old log's events not shown yet: the new log replaces them
        self.restarted.emit()

    @Slot(object)
    def _on_follower_ended(self, result: RunEnded | ProcessFailure | None) -> None:
        if self._queue:
            # a long log's end is met while thousands of its events wait: they are shown in chunks, like the rest
            # of it, and the end after the last of them (running_changed(False) comes after the run's last events)
            self._ending = (result,)
            if not self._backlog.isActive():
                self._backlog.start()
            return
        self._end_following(result)

    @Slot()
    def _drain(self) -> None:
        super()._drain()
        if self._ending is not None and not self._queue:
            (result,), self._ending = self._ending, None
            self._end_following(result)

    def _end_following(self, result: RunEnded | ProcessFailure | None) -> None:
        was_paused = self.paused
        self.pause_flag.clear()
        if was_paused:
            self.paused_changed.emit(False)
        self.running_changed.emit(False)
        self.finished.emit(result)


def remove_later(path: Path) -> Callable[[], None]:
    """A cleanup that removes a temporary folder, quietly."""
    return lambda: shutil.rmtree(path, ignore_errors=True)
