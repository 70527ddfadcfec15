"""Progress every optimiser step, from host-side counters: the step itself reads nothing back from the device."""

import collections
import sys
import threading
from pathlib import Path

import pytest
import torch
from tiny import project_dict

from qarac_gui.core.events import Progress, RunStarted, StepDone, StepLogged, describe
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.results.history import read_events
from qarac_gui.core.run import run

pytestmark = pytest.mark.usefixtures("torch_threads")

# Every way a tensor's value reaches the host (each one waits for the device on a GPU).
READS = ("item", "tolist", "__float__", "__int__", "__bool__", "numpy", "cpu")


def _count_reads(monkeypatch) -> collections.Counter:
    """Counts host reads of tensors by (file, function) of the code that asked."""
    calls = collections.Counter()
    for name in READS:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            caller = sys._getframe(1).f_code
            calls[(Path(caller.co_filename).name, caller.co_name)] += 1
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def _train(tmp_path, model, emit=None, pause=None, **train):
    raw = project_dict(model, tmp_path / "data", ["classification"], train={"log_every": 10, **train})
    events = []

    def sink(event):
        events.append(event)
        if emit:
            emit(event)
    ended = run(parse_project(raw, tmp_path), sink, threading.Event(), run_dir=tmp_path / "run",
                min_log_interval=0.0, pause=pause)
    return events, ended


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


@pytest.mark.slow
def test_every_step_reports_progress_without_reading_the_device(tmp_path, tiny_bert, monkeypatch):
    reads = _count_reads(monkeypatch)
    events, ended = _train(tmp_path, tiny_bert, max_steps=25)
    monkeypatch.undo()
    assert ended.reason == "completed" and ended.step == 25
    done = _of(events, StepDone)
    assert [e.step for e in done] == list(range(1, 26))
    assert all(a.elapsed_s <= b.elapsed_s and a.epoch <= b.epoch for a, b in zip(done, done[1:]))
    assert done[-1].epoch > 1                       # 25 steps of 8 rows over 36 training rows
    # the losses are still read once per log interval, and each log comes after its step's progress
    logged = _of(events, StepLogged)
    assert [e.step for e in logged] == [10, 20, 25]
    for e in logged:
        assert events.index(done[e.step - 1]) < events.index(e)
    # the loop's only host reads are the log's; a per-step read anywhere in the loop would show here
    in_loop = {fn: n for (file, fn), n in reads.items() if file == "loop.py"}
    assert in_loop == {"flush": len(logged)}
    # per-step events are for the screen: the run's log keeps what the history needs, in the same order
    kept = read_events(tmp_path / "run")
    assert kept == [e for e in events if not isinstance(e, StepDone)]
    assert describe(done[0]) == ""                  # the CLI and the window's log print no line per step


def test_the_stages_before_the_first_step_say_what_runs(tmp_path, tiny_bert):
    events, _ = _train(tmp_path, tiny_bert, max_steps=2)
    first = events.index(_of(events, StepDone)[0])
    started = events.index(_of(events, RunStarted)[0])
    before = [e for e in events[:first] if isinstance(e, Progress)]
    phases = [e.phase for e in before]
    assert phases.index("model") < phases.index("data") < len(phases) - 1
    assert before[phases.index("model")].message.startswith("Loading ")
    assert "Loading and tokenising classification" in [e.message for e in before]
    # after RunStarted, the wait for the first step has words of its own
    assert events[started + 1] == Progress("train", "Running the first step")
    assert all(e.message for e in before)


def test_a_pause_names_the_step_the_progress_reached(tmp_path, tiny_bert):
    pause, steps, paused_at = threading.Event(), [], []

    def pause_after_7(event):
        if isinstance(event, StepDone):
            steps.append(event.step)
            if event.step == 7:
                pause.set()
        elif isinstance(event, Progress) and event.phase == "paused":
            paused_at.append((event.message, steps[-1]))
            pause.clear()           # the loop waits now: let it go on at once
    events, ended = _train(tmp_path, tiny_bert, emit=pause_after_7, pause=pause, max_steps=12, log_every=50)
    assert ended.reason == "completed"
    assert paused_at == [("Paused after step 7", 7)]
    assert steps == list(range(1, 13))
    assert [e.step for e in _of(events, StepLogged)] == [12]
