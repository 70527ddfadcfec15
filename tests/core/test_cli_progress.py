"""qarac-train's progress bar moves every optimiser step on a terminal, at most ten times a second, and a log file
gets no line per step."""

from __future__ import annotations

import io

from qarac_gui.cli import TerminalPrinter
from qarac_gui.core.events import RunStarted, StepDone, StepLogged

TOTAL = 20


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _started(total: int = TOTAL, start_step: int = 0) -> RunStarted:
    return RunStarted("/runs/x", total, start_step, {}, {}, "cpu", "fp32", {}, 0, 0)


def _printer(stream, total: int = TOTAL, start_step: int = 0) -> tuple[TerminalPrinter, Clock]:
    clock = Clock()
    printer = TerminalPrinter(stream, clock=clock)
    printer(_started(total, start_step))
    stream.seek(0)
    stream.truncate()           # the run's first line is not what these tests look at
    return printer, clock


def _frames(out: str) -> list[str]:
    """What the terminal showed, one redraw each."""
    return [frame for frame in out.split("\r\033[K") if frame]


def _steps(out: str) -> list[int]:
    return [int(frame.split("step ")[1].split("/")[0]) for frame in _frames(out)]


def _run(printer: TerminalPrinter, clock: Clock, apart: float, steps=range(1, TOTAL + 1)) -> None:
    start = clock.now
    for i, step in enumerate(steps):
        clock.now = start + i * apart       # as a clock reads it: 0.7 s, not six rounded tenths added up
        printer(StepDone(step, step / 4, float(step)))       # one second of training a step
    clock.now = start + len(steps) * apart


def test_steps_a_tenth_of_a_second_apart_each_move_the_bar():
    out = FakeTerminal()
    printer, clock = _printer(out)
    _run(printer, clock, 0.1)
    assert _steps(out.getvalue()) == list(range(1, TOTAL + 1))
    frames = _frames(out.getvalue())
    assert frames[0] == "[#...................] step 1/20 | epoch 0.25 | ETA 0:19"
    assert frames[9] == "[##########..........] step 10/20 | epoch 2.50 | ETA 0:10"
    assert frames[-1] == "[####################] step 20/20 | epoch 5.00 | ETA 0:00"
    assert "\n" not in out.getvalue()                         # one line, redrawn in place


def test_faster_steps_are_drawn_at_most_ten_times_a_second_and_the_last_always():
    out = FakeTerminal()
    printer, clock = _printer(out)
    _run(printer, clock, 1 / 64)          # steps at 0, 0.016, 0.031, ... s: the bar moves at 0, 0.109, 0.219 s
    assert _steps(out.getvalue()) == [1, 8, 15, 20]


def test_the_bar_keeps_the_losses_of_the_latest_log():
    out = FakeTerminal()
    printer, clock = _printer(out)
    _run(printer, clock, 0.1, range(1, 5))
    printer(StepLogged(4, 1.0, {"sentiment": 0.5, "score": 1.25}, 1e-3, 2e-3, 12.5, 4.0))
    _run(printer, clock, 0.1, range(5, 7))
    frames = _frames(out.getvalue())
    assert frames[3].endswith("ETA 0:16")                                  # no log yet: no losses to show
    numbers = "loss sentiment 0.5000 score 1.2500 | lr 1.00e-03 | 12.5 samples/s"
    assert frames[4] == "[####................] step 4/20 | epoch 1.00 | ETA 0:16 | " + numbers
    assert frames[-1] == "[######..............] step 6/20 | epoch 1.50 | ETA 0:14 | " + numbers


def test_a_resumed_run_times_only_the_steps_it_ran():
    out = FakeTerminal()
    printer, _ = _printer(out, total=200, start_step=100)
    printer(StepDone(110, 2.0, 20.0))                 # 10 steps in 20 s: 90 steps to go take 3 minutes
    assert _frames(out.getvalue()) == ["[###########.........] step 110/200 | epoch 2.00 | ETA 3:00"]


def test_redirected_output_gets_no_line_per_step():
    out = io.StringIO()
    printer, clock = _printer(out)
    _run(printer, clock, 20.0, range(1, 11))         # far apart: still nothing
    assert out.getvalue() == ""
    # the logs still come as plain lines, the first at once, the next after 10 s, and the last step's always
    logged = [StepLogged(step, step / 4, {"sentiment": 0.5}, 1e-3, 1e-3, 8.0, float(step)) for step in (10, 15, 20)]
    printer(logged[0])
    clock.now += 5
    printer(logged[1])
    printer(logged[2])
    assert out.getvalue().splitlines() == [
        "step 10/20 | epoch 2.50 | ETA 0:10 | loss sentiment 0.5000 | lr 1.00e-03 | 8.0 samples/s",
        "step 20/20 | epoch 5.00 | ETA 0:00 | loss sentiment 0.5000 | lr 1.00e-03 | 8.0 samples/s",
    ]
