"""Two runs side by side: which settings of their projects differ, and where each ended (final metrics, steps)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qarac_gui.core import events as ev
from qarac_gui.core.errors import UserError
from qarac_gui.core.project.config import Project, load_project
from qarac_gui.core.project.convert import ConfigError, to_dict
from qarac_gui.core.results.history import read_events, summarize

MISSING = "—"          # a key one of the two projects does not have (a task only one of them trains)


def flatten(project: Project) -> dict[str, Any]:
    """The project file's keys as dotted paths, tasks by name (tasks.sentiment.batch_size), so that two projects
    whose tasks come in another order still compare key by key."""
    raw = to_dict(project)
    out: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        else:
            out[key] = value
    tasks = raw.pop("tasks", [])
    walk(raw, "")
    for i, task in enumerate(tasks):
        name = task.pop("name", "") or f"[{i}]"
        walk(task, f"tasks.{name}")
    return out


def settings_diff(a: Project, b: Project) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every key whose value differs, in the order of a's file then b's."""
    fa, fb = flatten(a), flatten(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    return [(k, fa.get(k, MISSING), fb.get(k, MISSING)) for k in keys if fa.get(k, MISSING) != fb.get(k, MISSING)]


def final_metrics(run_dir: Path) -> dict[str, float]:
    """The last validation's metrics of a run as "task/metric" -> value; empty when it never validated."""
    evals = [e for e in read_events(run_dir) if isinstance(e, ev.EvalDone)]
    if not evals:
        return {}
    return {f"{task}/{name}": value for task, values in evals[-1].metrics.items() for name, value in values.items()}


@dataclass(frozen=True)
class Comparison:
    runs: tuple[Path, Path]
    settings: dict[str, tuple[Any, Any]]           # every key of either project: (a, b)
    differing: list[str]                           # the keys whose values differ
    metrics: dict[str, tuple[float | None, float | None]]
    steps: tuple[str, str]                         # "56 / 56 (completed)"


def _project_of(run_dir: Path) -> Project:
    path = Path(run_dir) / "project.toml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (it has no project.toml); give the folder of a run, "
                        "as the run history lists them")
    try:
        return load_project(path, check=False)
    except ConfigError as e:
        raise UserError(f"the project of the run {run_dir} cannot be read: {e}") from None


def compare_runs(a_dir: Path, b_dir: Path) -> Comparison:
    a, b = _project_of(a_dir), _project_of(b_dir)
    fa, fb = flatten(a), flatten(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    ma, mb = final_metrics(a_dir), final_metrics(b_dir)
    names = list(ma) + [k for k in mb if k not in ma]

    def steps(run_dir: Path) -> str:
        s = summarize(run_dir)
        return f"{s.step} / {s.total_steps} ({s.status})"
    return Comparison((Path(a_dir), Path(b_dir)), {k: (fa.get(k, MISSING), fb.get(k, MISSING)) for k in keys},
                      [k for k, _, _ in settings_diff(a, b)], {n: (ma.get(n), mb.get(n)) for n in names},
                      (steps(a_dir), steps(b_dir)))


def comparison_text(c: Comparison) -> str:
    """What `qarac-train --compare` prints: the two runs, their final metrics, then only the differing settings."""
    a, b = (p.name for p in c.runs)
    width = max([len("steps"), *map(len, c.metrics), *map(len, c.differing)])
    lines = [f"{'':{width}}  A: {a}", f"{'':{width}}  B: {b}", "", f"{'steps':{width}}  A {c.steps[0]}",
             f"{'':{width}}  B {c.steps[1]}", ""]
    if c.metrics:
        lines.append("final metrics (the last validation of each run):")
        for name, (x, y) in c.metrics.items():
            shown = [MISSING if v is None else f"{v:.4g}" for v in (x, y)]
            delta = f"  ({y - x:+.4g})" if x is not None and y is not None else ""
            lines.append(f"  {name:{width}}  A {shown[0]:>10}  B {shown[1]:>10}{delta}")
    else:
        lines.append("final metrics: neither run has validated yet")
    lines.append("")
    if c.differing:
        lines.append(f"{len(c.differing)} setting{'s' * (len(c.differing) != 1)} differ:")
        for key in c.differing:
            x, y = c.settings[key]
            lines.append(f"  {key:{width}}  A {x!s}  B {y!s}")
    else:
        lines.append("the two projects have the same settings")
    return "\n".join(lines)
