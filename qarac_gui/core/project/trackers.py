"""Which experiment trackers train.report_to may name, and whether each can write on this machine."""

from __future__ import annotations

# Experiment trackers of train.report_to: the module each needs, and the pip command that installs it.
TRACKERS = {"tensorboard": ("tensorboard", "pip install tensorboard   (or: pip install 'qarac-gui[tensorboard]')")}


def tracker_problems(report_to: list[str]) -> list[str]:
    """train.report_to entries that cannot report: unknown names, or a library that is not installed."""
    import importlib.util
    problems = []
    for name in report_to:
        if name not in TRACKERS:
            problems.append(f"train.report_to: {name!r} is not a tracker this app writes to (it knows: "
                            f"{', '.join(TRACKERS)})")
        elif importlib.util.find_spec(TRACKERS[name][0]) is None:
            problems.append(f"train.report_to: {name!r} needs the {TRACKERS[name][0]} package, which is not "
                            f"installed; {TRACKERS[name][1]}")
    return problems
