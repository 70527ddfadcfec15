"""The run panel's bar and status follow every optimiser step, name each loading stage, and agree after a pause."""

import collections
import csv
import os
import threading
import time

import pytest
from PySide6.QtCore import Qt

from qarac_gui.core.events import Progress, StepDone, StepLogged
from qarac_gui.core.project.config import TaskConfig, save_project
from qarac_gui.ui.document import new_project

pytestmark = pytest.mark.usefixtures("torch_threads")

LONG = int(os.environ.get("QARAC_TEST_WAIT_MS", "120000"))


def project_file(tmp_path, model, steps, log_every):
    with open(tmp_path / "reviews.csv", "w", newline="", encoding="utf-8") as f:
        rows = csv.writer(f)
        rows.writerow(["review", "sentiment"])
        rows.writerows([f"the film was {w}", "pos" if w in ("good", "great") else "neg"]
                       for w in ["good", "bad", "great", "awful"] * 12)
    project = new_project()
    project.name = "progress"
    project.backbones["encoder"].model = str(model)
    task = TaskConfig(name="sentiment", batch_size=4, max_length=16)
    task.data.train, task.data.text, task.data.label = str(tmp_path / "reviews.csv"), "review", "sentiment"
    project.tasks.append(task)
    project.train.max_steps, project.train.log_every, project.train.epochs = steps, log_every, 0.0
    project.checkpoint.every = 0
    path = tmp_path / "progress.toml"
    save_project(project, path)
    return path


class Gate:
    """The engine waits after each Progress and StepDone it emits until the test has looked at the window, so
    every stage and every step can be seen however fast the machine is. open() lets the rest run freely."""

    def __init__(self, monkeypatch):
        from qarac_gui.core import run as run_module
        self._real = run_module.run
        self.held: collections.deque = collections.deque()
        self._go = threading.Semaphore(0)
        self._open = False
        monkeypatch.setattr(run_module, "run", self._run)

    def _run(self, project, emit, stop, **kwargs):
        def gated(event):
            emit(event)
            if self._open or not isinstance(event, (Progress, StepDone)):
                return
            self.held.append(event)
            deadline = time.monotonic() + LONG / 1000
            while not (self._open or stop.is_set() or self._go.acquire(timeout=0.01)):
                if time.monotonic() > deadline:
                    break
        return self._real(project, gated, stop, **kwargs)

    def next(self, qtbot):
        qtbot.waitUntil(lambda: bool(self.held), timeout=LONG)
        return self.held.popleft()

    def release(self):
        self._go.release()

    def open(self):
        self._open = True


@pytest.mark.slow
def test_the_bar_follows_every_step_before_any_log_and_a_pause_agrees_with_it(qtbot, window, tiny_bert, tmp_path,
                                                                              monkeypatch):
    w, panel, steps = window, window.run_panel, 20
    gate = Gate(monkeypatch)
    logged, results = [], []
    w.controller.events_received.connect(lambda batch: logged.extend(e for e in batch if isinstance(e, StepLogged)))
    w.controller.finished.connect(results.append)
    assert w.open_project(project_file(tmp_path, tiny_bert, steps, log_every=50))
    qtbot.waitUntil(lambda: not w.jobs.busy and not w.checks.pending and panel.start_button.isEnabled(), timeout=LONG)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    stages, bar, paused_at = [], [], []
    while True:
        event = gate.next(qtbot)
        if isinstance(event, StepDone):
            qtbot.waitUntil(lambda: panel.progress.value() == event.step, timeout=LONG)
            if not w.controller.paused:
                assert panel.status.text().startswith(f"Step {event.step} of {steps} · epoch ")
            bar.append(panel.progress.value())
            assert logged == []                         # log_every 50: nothing logged yet, the bar moved anyway
            if event.step == 7:
                qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
        else:
            qtbot.waitUntil(lambda: panel.status.text() == event.message, timeout=LONG)
            if not bar:
                stages.append((event.phase, event.message))
            if event.phase == "paused":
                paused_at.append((panel.status.text(), panel.progress.value()))
                qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)
        last = isinstance(event, StepDone) and event.step == steps
        if last:
            gate.open()                                 # validation and export at their own pace
        gate.release()
        if last:
            break
    qtbot.waitUntil(lambda: bool(results), timeout=LONG)
    assert results[0].reason == "completed"
    assert [e.step for e in logged] == [steps]
    assert bar == list(range(1, steps + 1))
    assert panel.progress.value() == steps
    assert paused_at == [("Paused after step 7", 7)]
    # each loading stage had its words in the status line, in order, before the first step
    phases = [phase for phase, _ in stages]
    assert phases.index("model") < phases.index("data") < phases.index("train") == len(phases) - 1
    assert ("data", "Loading and tokenising sentiment") in stages
    assert stages[-1] == ("train", "Running the first step")


def test_a_batch_of_steps_moves_the_bar_to_its_newest_and_a_pause_keeps_its_words(qtbot, window):
    w, panel = window, window.run_panel
    panel.start_run(56, 0)
    w.controller.events_received.emit([StepDone(n, n / 10, 2.0 * n) for n in range(1, 6)])
    assert panel.progress.value() == 5
    # 2 s a step so far, 51 steps to go; no speed until the first log
    assert panel.status.text() == "Step 5 of 56 · epoch 0.50 · elapsed 0:10 · ETA 1:42"
    w.controller.events_received.emit([StepDone(6, 0.6, 12.0), StepLogged(6, 0.6, {"t": 0.5}, 1e-4, 1e-3, 40.0, 12.0)])
    assert panel.status.text() == "Step 6 of 56 · epoch 0.60 · 40.0 samples/s · elapsed 0:12 · ETA 1:40"
    # Pause clicked: steps still arriving move the bar, the status keeps saying it is pausing
    w.controller.pause_flag.set()
    panel.set_status("Pausing after the current step…")
    w.controller.events_received.emit([StepDone(7, 0.7, 14.0)])
    assert panel.progress.value() == 7 and panel.status.text() == "Pausing after the current step…"
    # the pause and its last steps in one batch: the words and the bar name the same step
    w.controller.events_received.emit([StepDone(8, 0.8, 16.0), StepDone(9, 0.9, 18.0),
                                       Progress("paused", "Paused after step 9")])
    assert panel.progress.value() == 9 and panel.status.text() == "Paused after step 9"
    w.controller.pause_flag.clear()
