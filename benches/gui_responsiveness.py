"""How fast the window appears, and how responsive it stays while the demo project trains.

    python benches/gui_responsiveness.py            # offscreen; or DISPLAY=:99 QT_QPA_PLATFORM=xcb for a real X

1. Start time: wall time from launching `python -m qarac_gui --probe-startup` until the shown window reports back
   (median of 5 launches; the probe also lists which of torch/transformers/datasets were already imported).
2. Event-loop latency: a 10 ms QTimer in the GUI thread records how late each tick fires while the window loads
   the demo's model and data and trains it; lateness beyond the 10 ms interval is what a user feels as lag.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TICK_MS = 10


def start_times(n: int = 5) -> tuple[list[float], list[str]]:
    env = {**os.environ, "QARAC_GUI_DATA": tempfile.mkdtemp(prefix="qarac-bench-")}
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


def latency_while_training() -> dict:
    os.environ.setdefault("QARAC_GUI_DATA", tempfile.mkdtemp(prefix="qarac-bench-"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from qarac_gui.core import paths
    from qarac_gui.ui.main_window import MainWindow
    app = QApplication(sys.argv)
    window = MainWindow()
    window.open_project(paths.resource_path("demo", "project.toml"), ask=False)
    window.show()
    clock = QElapsedTimer()
    clock.start()
    phases: dict[str, list[float]] = {"loading and checks": [], "training": []}
    last = [clock.elapsed()]

    def tick() -> None:
        now = clock.elapsed()
        phase = "training" if window.controller.running else "loading and checks"
        phases[phase].append(max(0.0, now - last[0] - TICK_MS))
        last[0] = now

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    timer.start()

    def wait(condition, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not condition():
            app.processEvents()
            time.sleep(0.001)

    wait(lambda: window.checks.info is not None and not window.jobs.busy and not window.checks.problems, 300)
    began = time.monotonic()
    window.start_run()
    wait(lambda: not window.controller.running, 900)
    wall = time.monotonic() - began
    timer.stop()
    window.document.reset()
    window.close()
    out = {"run_wall_s": round(wall, 1)}
    for phase, late in phases.items():
        if late:
            out[phase] = {"ticks": len(late), "p50_ms": percentile(late, 0.5), "p95_ms": percentile(late, 0.95),
                          "max_ms": max(late)}
    return out


def main() -> None:
    times, heavy = start_times()
    print(f"window start: median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}) "
          f"over {len(times)} launches; heavy modules imported before the window showed: {heavy or 'none'}")
    result = latency_while_training()
    print(f"demo run: {result.pop('run_wall_s')} s wall")
    for phase, stats in result.items():
        print(f"event-loop lateness beyond the {TICK_MS} ms tick, {phase}: p50 {stats['p50_ms']:.0f} ms, "
              f"p95 {stats['p95_ms']:.0f} ms, max {stats['max_ms']:.0f} ms ({stats['ticks']} ticks)")


if __name__ == "__main__":
    main()
