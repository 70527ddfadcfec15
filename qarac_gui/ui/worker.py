"""Background work: one training run in a QThread, and short jobs (loading a model, reading data) in a pool.

Results and events cross threads as plain Python objects. The training thread appends events to a queue and a
timer in the GUI thread drains it, so a fast run cannot flood the event loop.
"""

from __future__ import annotations

import collections
import gc
import threading
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, Qt, QThread, QThreadPool, QTimer, Signal, Slot

from qarac_gui.core.errors import UserError
from qarac_gui.core.model.threadsafe_import import import_transformers

DRAIN_MS = 66                     # ~15 Hz: smooth to watch, cheap for the GUI thread
DRAIN_CHUNK = 200                 # events in a backlog's first chunk; the next ones are sized to DRAIN_BUDGET_S
DRAIN_BUDGET_S = 0.004            # the window's time per chunk: timers and input wait no longer than this for one
DRAIN_LIMITS = (8, 2000)          # the fewest and most events in a chunk
BACKLOG_MS = 2                    # between the chunks of a backlog


_frozen = threading.Event()


def import_heavy() -> None:
    """transformers (and torch with it), resolved once for every thread (import_transformers); then, once, the
    objects those imports made are moved out of the garbage collector's sight (gc.freeze). They live as long as the
    process, and a full collection walked all of them, about 300,000: 70-90 ms with the GIL held, a pause of the
    window every few seconds of a run. A full collection now walks only what came after."""
    import_transformers()
    if not _frozen.is_set():
        _frozen.set()
        gc.freeze()


class Failure:
    """An exception from a worker, as data: a message for the user and the traceback for the details."""

    def __init__(self, error: BaseException) -> None:
        self.message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
        self.details = "".join(traceback.format_exception(error))
        self.user_error = isinstance(error, UserError)
        self.log = None
        if not self.user_error and not isinstance(error, KeyboardInterrupt):
            from qarac_gui.core.bug_report import record
            self.log = record(error, "the window's background work")

    @property
    def shown(self) -> str:
        """The words for a dialog: a user error as it is; a bug said to be one, with where its details are."""
        if self.user_error:
            return self.message
        where = f" (the details are also in {self.log})" if self.log else ""
        return f"{self.message}\n\nThis is a bug in qarac_gui{where}; please report it."


class _Worker(QObject):
    done = Signal(object)         # the run function's return value, or a Failure

    def __init__(self, fn: Callable[..., Any], queue: collections.deque, stop: threading.Event) -> None:
        super().__init__()
        self._fn, self._queue, self._stop = fn, queue, stop

    @Slot()
    def run(self) -> None:
        try:
            import_heavy()                      # before any other thread can be resolving its names too
            result = self._fn(emit=self._queue.append, stop=self._stop)
        except BaseException as e:            # the window must survive anything the engine raises
            result = Failure(e)
        self.done.emit(result)


class RunController(QObject):
    """Starts, pauses and stops the one training run; relays its events in batches."""

    events_received = Signal(list)
    running_changed = Signal(bool)
    paused_changed = Signal(bool)
    finished = Signal(object)     # the job's result (a run's RunEnded, the probe's ProbeResult) or a Failure

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queue: collections.deque = collections.deque()
        self._stop = threading.Event()
        self.pause_flag = threading.Event()
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self._result: Any = None
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_MS)
        self._timer.timeout.connect(self._drain)
        # A backlog drains on a timer of its own, not a chain of single shots: Qt fires the expired timers of a
        # turn in order of expiry, so other timers (a redraw, input's) keep their turn between chunks.
        self._backlog = QTimer(self)
        self._backlog.setTimerType(Qt.TimerType.PreciseTimer)
        self._backlog.setInterval(BACKLOG_MS)
        self._backlog.timeout.connect(self._drain)
        self.chunk = DRAIN_CHUNK
        self._event_cost = 0.0                  # the window's seconds per event, smoothed over the last chunks
        self.clock: Callable[[], float] = time.perf_counter

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def paused(self) -> bool:
        return self.pause_flag.is_set()

    def start(self, fn: Callable[..., Any]) -> None:
        """Run fn(emit=..., stop=...) in a new thread; fn may also read self.pause_flag."""
        if self.running:
            raise RuntimeError("a run is already in progress")
        self._stop.clear()
        self.pause_flag.clear()
        self._result = None
        thread, worker = QThread(), _Worker(fn, self._queue, self._stop)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.done.connect(self._on_worker_done)
        worker.done.connect(thread.quit)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._worker = thread, worker
        self._timer.start()
        thread.start()
        self.running_changed.emit(True)

    def set_paused(self, paused: bool) -> None:
        if not self.running or paused == self.paused:
            return
        if paused:
            self.pause_flag.set()
        else:
            self.pause_flag.clear()
        self.paused_changed.emit(paused)

    def paused_by_run(self) -> None:
        """The run paused itself (eval.forgetting_pause): the window shows it paused, and Resume lifts it."""
        if self.running:
            self.pause_flag.set()
            self.paused_changed.emit(True)

    def request_stop(self) -> None:
        # Called directly, not through a queued slot: the worker's thread is busy inside run().
        self._stop.set()
        if self.pause_flag.is_set():
            self.pause_flag.clear()
            self.paused_changed.emit(False)

    def wait(self, ms: int) -> bool:
        """Block until the thread ends (closing the window); True if it ended in time."""
        if self._thread is None:
            return True
        ended = self._thread.wait(ms)
        if ended:
            self._drain_all()
            self._on_thread_finished()
        return ended

    @Slot()
    def _drain(self) -> None:
        """Hand the queued events to the window in chunks: a burst (a run replayed, a flood of fast steps) then
        leaves the event loop free for input and timers between chunks instead of one long stall."""
        batch = []
        while self._queue and len(batch) < self.chunk:
            batch.append(self._queue.popleft())
        if not self._queue:
            self._backlog.stop()
        elif not self._backlog.isActive():
            self._backlog.start()
        if batch:
            began = self.clock()
            self.events_received.emit(batch)        # handled before emit returns: the receivers live here
            self._fit_chunk((self.clock() - began) / len(batch))

    def _fit_chunk(self, cost: float) -> None:
        """Size the next chunk to the time its events took here: a run's start (its charts built) or a slow
        machine shrinks it, plain steps on a fast one grow it."""
        self._event_cost = cost if not self._event_cost else (self._event_cost + cost) / 2
        fewest, most = DRAIN_LIMITS
        self.chunk = round(min(most, max(fewest, DRAIN_BUDGET_S / max(self._event_cost, 1e-9))))

    def _drain_all(self) -> None:
        while self._queue:
            self._drain()

    @Slot(object)
    def _on_worker_done(self, result: Any) -> None:
        self._result = result

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._thread is None:
            return
        self._timer.stop()
        self._drain_all()                           # the run's last events before running_changed(False)
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        thread.deleteLater()
        worker.deleteLater()
        was_paused = self.paused
        self.pause_flag.clear()
        if was_paused:
            self.paused_changed.emit(False)
        self.running_changed.emit(False)
        self.finished.emit(self._result)


class _JobSignals(QObject):
    done = Signal(str, int, object)          # key, generation, result or Failure


class _Job(QRunnable):
    def __init__(self, key: str, generation: int, fn: Callable[[], Any], signals: _JobSignals,
                 uses_transformers: bool) -> None:
        super().__init__()
        self._key, self._generation, self._fn, self._signals = key, generation, fn, signals
        self._uses_transformers = uses_transformers

    def run(self) -> None:
        try:
            if self._uses_transformers:
                import_heavy()
            result = self._fn()
        except BaseException as e:
            result = Failure(e)
        self._signals.done.emit(self._key, self._generation, result)


class JobRunner(QObject):
    """Short background jobs by key; a newer job for the same key makes the older one's result stale."""

    finished = Signal(str, object)           # key, result (a Failure when it raised)
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._signals = _JobSignals(self)
        self._signals.done.connect(self._on_done)
        self._generation: dict[str, int] = {}
        self._pending = 0

    def submit(self, key: str, fn: Callable[[], Any], uses_transformers: bool = False) -> None:
        generation = self._generation.get(key, 0) + 1
        self._generation[key] = generation
        self._pending += 1
        if self._pending == 1:
            self.busy_changed.emit(True)
        self._pool.start(_Job(key, generation, fn, self._signals, uses_transformers))

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def wait(self, ms: int = -1) -> bool:
        return self._pool.waitForDone(ms)

    @Slot(str, int, object)
    def _on_done(self, key: str, generation: int, result: Any) -> None:
        self._pending -= 1
        if self._pending == 0:
            self.busy_changed.emit(False)
        if self._generation.get(key) == generation:
            self.finished.emit(key, result)
