"""A training process for the kill tests: runs a project into a run folder, one JSON event per line on stdout.

Usage: python train_child.py PROJECT.toml RUN_DIR [--resume] [--stop-at STEP]
Every step is logged (no time-based throttling), so two runs' logged losses can be compared step by step.
"""

import sys
import threading
from pathlib import Path

from qarac_gui.core.events import StepLogged, event_to_json
from qarac_gui.core.project.config import load_project
from qarac_gui.core.run import run


def main() -> int:
    project = load_project(Path(sys.argv[1]))
    stop_at = int(sys.argv[sys.argv.index("--stop-at") + 1]) if "--stop-at" in sys.argv else 0
    stop = threading.Event()

    def emit(event) -> None:
        sys.stdout.write(event_to_json(event) + "\n")
        sys.stdout.flush()
        if stop_at and isinstance(event, StepLogged) and event.step == stop_at:
            stop.set()      # as the window's Stop: the run ends after this step with a checkpoint
    ended = run(project, emit, stop, run_dir=Path(sys.argv[2]), resume="--resume" in sys.argv,
                min_log_interval=0.0)
    return 0 if ended.reason in ("completed", "stopped") else 3


if __name__ == "__main__":
    sys.exit(main())
