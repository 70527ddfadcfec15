"""Does the window's memory stay flat over a long run? A tiny BERT trains 20,000 steps in the real window.

    python benches/memory.py              # 20,000 steps, the RSS sampled every 1,000: a few minutes on 2 cores
    python benches/memory.py --steps 50000 --every 2500
    python benches/memory.py --smoke      # 300 steps: checks that it all runs, in seconds

The model and data are those of the tests (tests/tiny.py: a 2-layer, width-32 random BERT, a classification and a
similarity task of 48 rows each), so a step takes milliseconds and the run is long in steps, not in minutes: every
step's events cross the run controller's queue and every logged loss lands in the charts, as in a real run. The
process's resident set size is read in the GUI thread as the events of every `--every`-th step arrive. Growth is
measured from the end of the warm-up (the first tenth of the run: torch's allocator, the charts' first buffers)
to the last step, whose events reach the window as the final evaluation begins (so the table also shows the growth
to the sample before); the export after it is left out.

Prints a markdown table: measure | value | target | met?
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROWTH_PCT = 5.0


def rss_mb() -> float:
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2**20
    except ImportError:                 # Linux without psutil
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_project(folder: Path, steps: int) -> Path:
    import tomli_w
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import make_model_folder, project_dict
    model = make_model_folder(folder / "tiny-bert")
    raw = project_dict(model, folder / "data", ["classification", "similarity"],
                       train={"max_steps": steps, "log_every": 1, "num_threads": 1},
                       checkpoint={"minutes": 0.0}, export={"full_model": False})
    raw["name"] = "memory-bench"
    path = folder / "project.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def run_in_window(project: Path, steps: int, every: int) -> tuple[list[tuple[int, float]], float]:
    """Train the project in the window; (step, RSS in MB) every `every` steps, and the training's wall time."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from qarac_gui.core.events import StepDone, StepLogged
    from qarac_gui.ui.main_window import MainWindow
    sys.path.insert(0, str(ROOT / "benches"))
    from gui_responsiveness import wait_until
    app = QApplication.instance() or QApplication(sys.argv)
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    samples: list[tuple[int, float]] = []
    timing = {"first": 0.0, "last": 0.0, "step": 0}

    def on_events(events: list) -> None:
        for event in events:
            if isinstance(event, (StepDone, StepLogged)) and event.step >= (samples[-1][0] if samples else 0) + every:
                samples.append((event.step, rss_mb()))
            if isinstance(event, StepDone):
                timing["first"] = timing["first"] or time.monotonic()
                timing["last"] = time.monotonic()
                timing["step"] = event.step

    window.controller.events_received.connect(on_events)
    window.open_project(project, ask=False)
    wait_until(lambda: window.checks.info is not None and not window.jobs.busy and not window.checks.problems, 300,
               "the project's model and data to load")
    if not window.start_run():
        raise SystemExit("the run did not start: " + "; ".join(window.checks.problems))
    wait_until(lambda: not window.controller.running, 3600, "the run to end")
    points = window.charts.loss_points("classification")
    window.document.reset()
    window.close()
    app.processEvents()
    if timing["step"] != steps or not points:
        raise SystemExit(f"the run stopped at step {timing['step']} of {steps} with {points} losses charted")
    print(f"losses charted per task: {points} (the window logs at most 10 a second)")
    return samples, timing["last"] - timing["first"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=0, help="steps between RSS samples (default: steps / 20)")
    parser.add_argument("--smoke", action="store_true", help="300 steps: checks that it all runs")
    args = parser.parse_args(argv)
    steps = 300 if args.smoke else args.steps
    every = args.every or max(1, steps // 20)
    if steps < 2 * every:
        parser.error(f"--every {every} leaves fewer than two samples in {steps} steps")
    from gui_responsiveness import scratch
    if "QARAC_GUI_DATA" not in os.environ:
        os.environ["QARAC_GUI_DATA"] = scratch("qarac-bench-")
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
          f"{' (--smoke: figures mean nothing)' if args.smoke else ''}")
    with tempfile.TemporaryDirectory(prefix="qarac-memory-") as tmp:
        samples, train_s = run_in_window(write_project(Path(tmp), steps), steps, every)
    warm_step = steps // 10
    warm = next((s for s in samples if s[0] >= warm_step), samples[0])
    end = samples[-1]
    growth = (end[1] - warm[1]) / warm[1] * 100
    # the last step's events reach the window while the run's final evaluation has begun: the sample before
    # them is training alone
    before = samples[-2] if len(samples) > 2 else end
    growth_before = (before[1] - warm[1]) / warm[1] * 100
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("RSS (MB) by step: " + ", ".join(f"{step}: {mb:.0f}" for step, mb in samples) + "\n")
    rows = [f"| steps trained in the window | {end[0]} | — | — |",
            f"| training speed | {end[0] / train_s:.1f} steps/s | — | — |",
            f"| RSS after warm-up (step {warm[0]}) | {warm[1]:.1f} MB | — | — |",
            f"| RSS at the end (step {end[0]}) | {end[1]:.1f} MB | — | — |",
            f"| peak RSS sampled | {max(mb for _, mb in samples):.1f} MB | — | — |",
            f"| RSS growth after warm-up | {growth:.2f} % | < {GROWTH_PCT:g} % | "
            f"{'met' if growth < GROWTH_PCT else 'missed'} |",
            f"| RSS growth after warm-up to step {before[0]}, before the final evaluation | {growth_before:.2f} % "
            f"| — | — |"]
    print("| measure | value | target | met? |\n|---|---|---|---|")
    print("\n".join(rows))
    if not (math.isfinite(growth) and train_s > 0):
        raise SystemExit("a figure is not finite")


if __name__ == "__main__":
    main()
