"""Past runs: list them, read their events back, and copy what a run exported to where the user wants it."""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from qarac_gui.core import events as ev
from qarac_gui.core.errors import UserError

EVENT_TYPES = {cls.__name__: cls for cls in (ev.Progress, ev.RunStarted, ev.StepLogged, ev.StepSkipped,
                                             ev.EvalDone, ev.CheckpointSaved, ev.ExportDone, ev.RunEnded)}


@dataclass(frozen=True)
class RunSummary:
    path: Path
    name: str
    started: float                  # modification time of its project copy
    status: str                     # completed | stopped | early_stopped | diverged | failed | running | interrupted
    step: int
    total_steps: int
    tasks: tuple[str, ...]
    monitored: str
    best_value: float | None
    exported: bool
    resumable: bool                 # stopped with a checkpoint, no export yet


def read_events(run_dir: Path) -> list:
    """The run's events.jsonl as event objects; a torn last line (a crash mid-write) is skipped."""
    path = Path(run_dir) / "events.jsonl"
    out = []
    if not path.is_file():
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                raw = json.loads(line)
                cls = EVENT_TYPES[raw.pop("event")]
                out.append(cls(**raw))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return out


def summarize(run_dir: Path) -> RunSummary:
    events = read_events(run_dir)
    started = next((e for e in events if isinstance(e, ev.RunStarted)), None)
    # A resumed run appends to the same log: only an end after the last start says how it ended.
    last_start = max((i for i, e in enumerate(events) if isinstance(e, ev.RunStarted)), default=-1)
    ended = [e for e in events[last_start + 1:] if isinstance(e, ev.RunEnded)]
    steps = [e.step for e in events if isinstance(e, ev.StepLogged)]
    evals = [e for e in events if isinstance(e, ev.EvalDone)]
    exported = (Path(run_dir) / "export").is_dir()
    checkpoints = Path(run_dir) / "checkpoints"
    has_checkpoint = checkpoints.is_dir() and any(checkpoints.glob("step-*"))
    status = ended[-1].reason if ended else "running" if lock_owner(run_dir) else "interrupted"
    project = Path(run_dir) / "project.toml"
    return RunSummary(
        path=Path(run_dir), name=Path(run_dir).name,
        started=project.stat().st_mtime if project.exists() else 0.0, status=status,
        step=max([e.step for e in ended] + steps + [0]), total_steps=started.total_steps if started else 0,
        tasks=tuple(started.tasks) if started else (), monitored=evals[-1].monitored if evals else "",
        best_value=evals[-1].best_value if evals else None, exported=exported,
        resumable=has_checkpoint and not exported and status not in ("completed", "running"))


# Who trains the run (host, pid): information only, written at the start and removed at any end, so one left
# behind marks a run that a crash cut short.
LOCK = "running.lock"
# Held while a process trains the run. The OS lets go of it when the process dies, so a dead or reused PID can
# never pass for a live run, and taking it is atomic, so two processes cannot both start.
KERNEL_LOCK = ".running.flock"
_held: dict[str, FileLock] = {}


def _kernel_lock(run_dir: Path) -> FileLock:
    return FileLock(str(Path(run_dir) / KERNEL_LOCK), thread_local=False)   # the window unlocks from its thread


def lock_run(run_dir: Path) -> None:
    """Take the run for this process, or raise UserError when another process has it."""
    lock = _kernel_lock(run_dir)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{run_dir} is being trained by another process right now; wait for it or stop it "
                        "first") from None
    _held[str(Path(run_dir).resolve())] = lock
    (Path(run_dir) / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}),
                                      encoding="utf-8")


def unlock_run(run_dir: Path) -> None:
    (Path(run_dir) / LOCK).unlink(missing_ok=True)
    lock = _held.pop(str(Path(run_dir).resolve()), None)
    if lock is not None:
        lock.release()


def lock_owner(run_dir: Path) -> int | None:
    """The process training the run now, if one is (its PID as it wrote it; -1 if it wrote none)."""
    if str(Path(run_dir).resolve()) in _held:
        return os.getpid()
    if not (Path(run_dir) / KERNEL_LOCK).is_file():
        return None
    lock = _kernel_lock(run_dir)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            return int(json.loads((Path(run_dir) / LOCK).read_text(encoding="utf-8"))["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1
    except OSError:                     # a folder we may not write to: nobody can be training there
        return None
    lock.release()
    return None


def interrupted_runs(base: Path) -> list[RunSummary]:
    """Runs that ended without saying how (the app or the machine went down) and can be continued.

    Only folders that still hold a lock are read (a run that ends in any way removes its lock), so the check at
    start-up costs a directory listing, not every run's event log."""
    base = Path(base)
    if not base.is_dir():
        return []
    locked = [summarize(p) for p in base.iterdir() if (p / LOCK).is_file()]
    return sorted((r for r in locked if r.status == "interrupted" and r.resumable), key=lambda r: r.started,
                  reverse=True)


def list_runs(base: Path) -> list[RunSummary]:
    """Runs under `base`, newest first."""
    base = Path(base)
    if not base.is_dir():
        return []
    runs = [summarize(p) for p in base.iterdir() if p.is_dir() and (p / "events.jsonl").is_file()]
    return sorted(runs, key=lambda r: r.started, reverse=True)


def exported_folders(run_dir: Path) -> dict[str, Path]:
    """What the run exported: task name (or "full") -> folder."""
    out = Path(run_dir) / "export"
    if not out.is_dir():
        return {}
    return {p.name: p for p in sorted(out.iterdir()) if p.is_dir()}


def copy_export(run_dir: Path, destination: Path, names: list[str], emit=None) -> list[Path]:
    """Copy the chosen exported folders into `destination` (new or empty), one folder per task.

    Writes into a temporary folder beside the destination first, so a failure leaves nothing half-copied.
    """
    available = exported_folders(run_dir)
    names = list(dict.fromkeys(names))
    missing = [n for n in names if n not in available]
    if not names:
        raise UserError("choose at least one task to export")
    if missing:
        raise UserError(f"this run has no export of {', '.join(missing)} (it has: {', '.join(available) or 'none'})")
    destination = Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise UserError(f"{destination} is not an empty folder; choose an empty or new folder so nothing is "
                        "overwritten")
    tmp = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for i, name in enumerate(names):
            if emit:
                emit(ev.Progress("export", f"Copying {name}", i, len(names)))
            shutil.copytree(available[name], tmp / name)
        if destination.exists():
            destination.rmdir()
        os.replace(tmp, destination)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"could not write to {destination}: {e.strerror or e}") from e
    if emit:
        emit(ev.Progress("export", "Export copied", len(names), len(names)))
    return [destination / n for n in names]
