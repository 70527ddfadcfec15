"""How fast the window appears, and how responsive it stays while the demo trains, under a flood of run events and
while the loss chart redraws a very long run.

    python benches/gui_responsiveness.py            # offscreen; or DISPLAY=:99 QT_QPA_PLATFORM=xcb for a real X
    python benches/gui_responsiveness.py --smoke    # everything tiny: checks that it all runs, in seconds
    python benches/gui_responsiveness.py --only flood redraw

1. Start time: wall time from launching `python -m qarac_gui --probe-startup` until the shown window reports back
   (median of 5 launches; the probe also lists which of torch/transformers/datasets were already imported).
2. Event-loop lateness: a 10 ms precise QTimer in the GUI thread records how late each tick fires while the window
   loads the demo's model and data and trains it; lateness beyond the 10 ms interval is what a user feels as lag.
3. Flood: a stand-in run in the window's own RunController (the QThread and queue a real run uses) emits 20,000
   StepLogged events for 4 tasks at once; how long until every point is in the loss chart, and the lateness of the
   same timer meanwhile.
4. Follow: a run folder whose events.jsonl already holds 20,000 logged steps of 4 tasks (a run followed long after
   it began, File > Follow a run folder), read and shown by the window: how long, and the timer's lateness.
5. Redraw: the window's loss chart holding 1,000,000 points per series for 4 tasks (a raw and a smoothed curve
   each); the time of a live frame (one new point per task, flush, paint) and of a repaint with nothing new.

Prints a markdown table: measure | value | target | met?
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TICK_MS = 10
LATENESS_P99_MS = 20.0
LATENESS_MAX_MS = 100.0
FRAME_MS = 10.0
START_S = 1.5
FLOOD_TASKS = 4
PARTS = ("start", "training", "flood", "follow", "redraw")


def scratch(prefix: str) -> str:
    """A temporary folder removed when the benchmark ends: a demo run's checkpoints and export are 0.3-1 GB."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


def start_times(n: int = 5) -> tuple[list[float], list[str]]:
    env = {**os.environ, "QARAC_GUI_DATA": scratch("qarac-bench-")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    times, heavy = [], []
    for _ in range(n):
        began = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "qarac_gui", "--probe-startup"], capture_output=True,
                             text=True, env=env, timeout=120, check=True)
        times.append(time.perf_counter() - began)
        heavy = json.loads(out.stdout.strip().splitlines()[-1])["heavy_modules_loaded"]
    return times, heavy


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def lateness_stats(late: list[float]) -> dict[str, float]:
    return {"ticks": len(late), "p50": percentile(late, 0.5), "p95": percentile(late, 0.95),
            "p99": percentile(late, 0.99), "max": max(late)}


class TickClock:
    """A 10 ms timer in the GUI thread; each tick's lateness goes to the phase named at that moment."""

    def __init__(self) -> None:
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer
        self._phase = "idle"
        self.late: dict[str, list[float]] = {}
        self._clock = QElapsedTimer()
        self._clock.start()
        self._last = self._clock.nsecsElapsed()
        # precise: a coarse timer may fire up to 5 % late by design, which is not the event loop's fault
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, name: str) -> None:
        # a phase's first tick is counted from the phase's start, or it would carry what came before
        self._phase, self._last = name, self._clock.nsecsElapsed()

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed()
        self.late.setdefault(self.phase, []).append(max(0.0, (now - self._last) / 1e6 - TICK_MS))
        self._last = now

    def stop(self) -> None:
        self._timer.stop()


def wait_until(condition, seconds: float, what: str) -> None:
    """Run the application's event loop (not a processEvents polling loop) until `condition` holds."""
    from PySide6.QtCore import QEventLoop, QTimer
    if condition():
        return
    loop = QEventLoop()
    failed: list[BaseException] = []

    def check() -> None:
        try:
            if condition():
                loop.quit()
        except Exception as e:          # a slot's exception would only be printed, and the wait go on
            failed.append(e)
            loop.quit()

    poll = QTimer()
    poll.setInterval(20)
    poll.timeout.connect(check)
    poll.start()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    poll.stop()
    if failed:
        raise failed[0]
    if not condition():
        raise SystemExit(f"gave up after {seconds:.0f} s waiting for {what}")


def settle(seconds: float = 0.5) -> None:
    """The event loop run for a while, so that what was asked of the window (a layout, a paint) is done before a
    measure begins."""
    until = time.perf_counter() + seconds
    wait_until(lambda: time.perf_counter() > until, seconds + 5, "the window to settle")


def train_demo(window, clock: TickClock, max_steps: int) -> float:
    """The demo project, loaded and trained in the window; returns the run's wall time."""
    from qarac_gui.core import paths
    clock.phase = "loading and checks"
    window.open_project(paths.resource_path("demo", "project.toml"), ask=False)
    if max_steps:
        window.document.set_value("train.max_steps", max_steps)
    wait_until(lambda: window.checks.info is not None and not window.jobs.busy and not window.checks.problems, 300,
               "the demo's model and data to load")
    began = time.monotonic()
    clock.phase = "training"          # the whole run, as the user waits for it: the worker's loading included
    if not window.start_run():
        raise SystemExit("the demo run did not start: " + "; ".join(window.checks.problems))
    wait_until(lambda: not window.controller.running, 1800, "the demo run to end")
    clock.phase = "idle"
    return time.monotonic() - began


def flood(window, clock: TickClock, n_events: int) -> float:
    """n_events StepLogged events pushed through the run controller's queue at once; seconds until every point
    of every task is drawn in the loss chart.

    The run's start (RunStarted: the charts cleared, each task's curves and legend built, 40-60 ms once) is taken
    in first and left out of the measure, as a real run announces itself seconds before its first step, while its
    model loads. A short flood runs first, unmeasured, as a window that has shown a run before would have."""
    if n_events > 1000:
        one_flood(window, clock, flood_events(1000), measured=False)
    return one_flood(window, clock, flood_events(n_events), measured=True)


def flood_events(n_events: int) -> list:
    """A run's start and n_events steps of FLOOD_TASKS tasks. Built beforehand: a stand-in that made them in
    Python while the window drained them would hold the GIL against the GUI thread, which a run (its time is in
    torch, without the GIL) does not."""
    from qarac_gui.core.events import RunStarted, StepLogged
    tasks = [f"task{i}" for i in range(FLOOD_TASKS)]
    events = [RunStarted(run_dir="flood", total_steps=n_events, start_step=0, tasks={t: {} for t in tasks},
                         lr_curve={}, device="cpu", precision="fp32", removed_heads={}, encoder_params=1,
                         trainable_params=1)]
    return events + [StepLogged(step=step, epoch=step / n_events,
                                task_losses={t: 1.0 / (step + i) for i, t in enumerate(tasks)},
                                lr=1e-5, head_lr=1e-3, samples_per_s=500.0, elapsed_s=step * 0.01)
                     for step in range(1, n_events + 1)]


def one_flood(window, clock: TickClock, events: list, measured: bool) -> float:
    started, steps = events[0], events[1:]
    tasks = list(started.tasks)
    go, release = threading.Event(), threading.Event()

    def stand_in_run(emit, stop):
        emit(started)
        go.wait(600)
        for event in steps:
            emit(event)
        # the thread stays up, as a run's does, so the queue is drained on the controller's timer
        release.wait(600)

    def drawn(task: str) -> int:
        curve = window.charts.loss.curves.get(task)
        x = None if curve is None else curve.getOriginalDataset()[0]
        return 0 if x is None else len(x)

    def absorbed() -> bool:
        return all(drawn(t) == len(steps) for t in tasks)

    window.charts.clear()
    window.controller.start(stand_in_run)
    wait_until(lambda: all(t in window.charts.loss.curves for t in tasks), 60, "the run's start to be shown")
    settle()
    if measured:
        clock.phase = "flood"
    began = time.perf_counter()
    go.set()
    wait_until(absorbed, 600, f"the window to take in {len(steps)} events")
    took = time.perf_counter() - began
    if measured:
        clock.phase = "idle"
    release.set()
    wait_until(lambda: not window.controller.running, 60, "the stand-in run to end")
    return took


def follow_log(window, clock: TickClock, n_events: int) -> float:
    """A run followed long after it began (File > Follow a run folder): its events.jsonl already holds a run's
    start and n_events logged steps of FLOOD_TASKS tasks, and the window reads and shows it all; seconds until the
    run's end is shown. The run's start is measured too: it is in the same file."""
    from qarac_gui.core.events import RunEnded, event_to_json
    events = flood_events(n_events) + [RunEnded(n_events, "completed", "", "")]
    run_dir = scratch("qarac-bench-follow-")
    with open(os.path.join(run_dir, "events.jsonl"), "w", encoding="utf-8") as f:
        f.write("".join(event_to_json(e) + "\n" for e in events))
    del events                      # the window's own objects only: no 20,000 events held here for its GC to walk
    window.charts.clear()
    settle()
    clock.phase = "follow"
    began = time.perf_counter()
    window.controller.follow(Path(run_dir))
    wait_until(lambda: not window.controller.running, 600, f"the window to show {n_events} followed events")
    took = time.perf_counter() - began
    clock.phase = "idle"
    return took


def redraw(window, app, points: int, frames: int) -> dict[str, float]:
    """The window's loss chart with `points` per series for 4 tasks: median ms of a live frame and of a repaint."""
    import numpy as np
    window.charts.clear()
    loss = window.charts.loss
    steps = np.arange(1, points + 1, dtype=float)
    rng = np.random.default_rng(0)
    for i in range(FLOOD_TASKS):
        task = f"task{i}"
        loss.add_task(task, i)
        trend = 2.0 * np.exp(-3.0 * steps / points) + 0.1
        loss.set_data(f"{task} (raw)", steps, trend + rng.random(points) * 0.2)
        loss.set_data(task, steps, trend + 0.1)
    loss.flush()
    app.processEvents()
    live, flushes, repaint = [], [], []
    for k in range(frames + 1):
        began = time.perf_counter()
        for i in range(FLOOD_TASKS):
            loss.append_loss(f"task{i}", points + k + 1, 0.2 + 0.01 * i)
        loss.flush()
        flushed = time.perf_counter()
        app.processEvents()            # the paint the new data asked for
        mid = time.perf_counter()
        loss.viewport().repaint()      # and one with nothing new: what panning or a resize costs
        done = time.perf_counter()
        if k:                          # the first frame after loading pays one-off costs
            live.append((mid - began) * 1000)
            flushes.append((flushed - began) * 1000)
            repaint.append((done - mid) * 1000)
    size = loss.size()
    print(f"loss chart {size.width()}x{size.height()} px, {points:,} points per series: a live frame's median "
          f"{statistics.median(flushes):.1f} ms to append and flush, {statistics.median(live):.1f} ms with its "
          f"paint; repaint {statistics.median(repaint):.1f} ms")
    return {"live": statistics.median(live), "repaint": statistics.median(repaint)}


def window_checks(parts: set[str], smoke: bool, profile: bool = False) -> dict:
    if "QARAC_GUI_DATA" not in os.environ:
        os.environ["QARAC_GUI_DATA"] = scratch("qarac-bench-")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from qarac_gui.ui.main_window import MainWindow
    app = QApplication.instance() or QApplication(sys.argv)
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    import gc
    gc.freeze()                     # as qarac_gui.app does once its window shows
    clock = TickClock()
    out: dict = {}
    profiler = None
    if profile:
        import cProfile
        profiler = cProfile.Profile()       # the GUI thread only: the run's own thread is not profiled
        profiler.enable()
    if "training" in parts:
        out["run_wall_s"] = train_demo(window, clock, max_steps=3 if smoke else 0)
    if "flood" in parts:
        out["flood_s"] = flood(window, clock, 500 if smoke else 20_000)
    if "follow" in parts:
        out["follow_s"] = follow_log(window, clock, 500 if smoke else 20_000)
    if "redraw" in parts:
        out["frame_ms"] = redraw(window, app, 20_000 if smoke else 1_000_000, 3 if smoke else 20)
    clock.stop()
    if profiler is not None:
        import pstats
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(15)
    out["lateness"] = {phase: lateness_stats(late) for phase, late in clock.late.items() if phase != "idle"}
    window.document.reset()
    window.close()
    return out


def row(measure: str, value: float, unit: str, target: float | None = None) -> str:
    if target is None:
        return f"| {measure} | {value:.{3 if unit == 's' else 1}f} {unit} | — | — |"
    met = "met" if value <= target else "missed"
    return f"| {measure} | {value:.{3 if unit == 's' else 1}f} {unit} | <= {target:g} {unit} | {met} |"


def lateness_rows(label: str, stats: dict[str, float], targeted: bool) -> list[str]:
    return [row(f"{label}: timer lateness p50", stats["p50"], "ms"),
            row(f"{label}: timer lateness p95", stats["p95"], "ms"),
            row(f"{label}: timer lateness p99", stats["p99"], "ms", LATENESS_P99_MS if targeted else None),
            row(f"{label}: timer lateness max", stats["max"], "ms", LATENESS_MAX_MS if targeted else None)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="one launch, 3 demo steps, 500 events, 20,000 points: checks that it all runs")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile of the GUI thread over the window's parts, printed to stderr")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure only these")
    args = parser.parse_args(argv)
    parts = set(args.only)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
          f"{' (--smoke: figures mean nothing)' if args.smoke else ''}")
    rows = []
    if "start" in parts:
        times, heavy = start_times(1 if args.smoke else 5)
        print(f"window start over {len(times)} launches: min {min(times):.2f} s, max {max(times):.2f} s; heavy "
              f"modules imported before the window showed: {', '.join(heavy) or 'none'}")
        rows.append(row(f"window start (median of {len(times)})", statistics.median(times), "s", START_S))
    result = window_checks(parts - {"start"}, args.smoke, args.profile) if parts - {"start"} else {"lateness": {}}
    lateness = result["lateness"]
    if "training" in parts:
        print(f"demo run: {result['run_wall_s']:.1f} s wall; ticks while loading "
              f"{lateness.get('loading and checks', {}).get('ticks', 0)}, while training "
              f"{lateness.get('training', {}).get('ticks', 0)}")
        if "loading and checks" in lateness:
            rows += lateness_rows("demo loading and checks", lateness["loading and checks"], targeted=False)
        if "training" in lateness:
            rows += lateness_rows("demo training", lateness["training"], targeted=True)
        else:
            print("no tick fell inside the training phase: the run ended before its first logged loss")
    if "flood" in parts:
        events = 500 if args.smoke else 20_000
        print(f"flood: {events:,} events taken in {result['flood_s']:.2f} s; the 10 ms timer fired "
              f"{lateness['flood']['ticks']} times meanwhile")
        rows.append(row(f"flood of {events:,} events ({FLOOD_TASKS} tasks): time to absorb", result["flood_s"], "s"))
        rows += lateness_rows("flood", lateness["flood"], targeted=True)
    if "follow" in parts:
        events = 500 if args.smoke else 20_000
        print(f"follow: a log of {events:,} steps shown in {result['follow_s']:.2f} s; the 10 ms timer fired "
              f"{lateness['follow']['ticks']} times meanwhile")
        rows.append(row(f"a followed log of {events:,} steps ({FLOOD_TASKS} tasks): time to show", result["follow_s"],
                        "s"))
        rows += lateness_rows("followed log", lateness["follow"], targeted=True)
    if "redraw" in parts:
        points = "20,000" if args.smoke else "1,000,000"
        frame = result["frame_ms"]
        rows.append(row(f"loss chart, {FLOOD_TASKS} tasks x {points} points: live frame (median)", frame["live"],
                        "ms", FRAME_MS))
        rows.append(row(f"loss chart, {FLOOD_TASKS} tasks x {points} points: repaint (median)", frame["repaint"],
                        "ms", FRAME_MS))
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| measure | value | target | met? |\n|---|---|---|---|")
    print("\n".join(rows))
    if any(not math.isfinite(float(r.split("|")[2].split()[0])) for r in rows):
        raise SystemExit("a figure is not finite")


if __name__ == "__main__":
    main()
