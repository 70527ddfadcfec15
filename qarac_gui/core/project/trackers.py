"""Which experiment trackers train.report_to may name, and whether each can write on this machine."""

from __future__ import annotations

import os

# Experiment trackers of train.report_to: the modules each needs, and the pip command that installs them.
TRACKERS = {
    "tensorboard": (("tensorboard",), "pip install tensorboard   (or: pip install 'qarac-gui[tensorboard]')"),
    # the local store in the run folder is an SQLite database: MLflow's full package (mlflow-skinny lacks it)
    "mlflow": (("mlflow", "sqlalchemy", "alembic"), "pip install mlflow   (or: pip install 'qarac-gui[mlflow]')"),
    "trackio": (("trackio",), "pip install trackio   (or: pip install 'qarac-gui[trackio]')"),
}


def _needed(name: str) -> tuple[str, ...]:
    modules = TRACKERS[name][0]
    if name == "mlflow" and os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
        return modules[:1]          # a tracking server keeps the store: the client alone writes to it
    return modules


def tracker_problems(report_to: list[str]) -> list[str]:
    """train.report_to entries that cannot report: unknown names, or a library that is not installed."""
    import importlib.util
    problems = []
    for name in report_to:
        if name not in TRACKERS:
            problems.append(f"train.report_to: {name!r} is not a tracker this app writes to (it knows: "
                            f"{', '.join(TRACKERS)})")
            continue
        missing = [m for m in _needed(name) if importlib.util.find_spec(m) is None]
        if missing:
            problems.append(f"train.report_to: {name!r} needs the {' and '.join(missing)} "
                            f"package{'s' if len(missing) > 1 else ''}, which {'are' if len(missing) > 1 else 'is'} "
                            f"not installed; {TRACKERS[name][1]}")
    return problems
