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
from qarac_gui.core import paths
from qarac_gui.core.errors import UserError

EVENT_TYPES = {cls.__name__: cls for cls in (ev.Progress, ev.RunStarted, ev.StepLogged, ev.StepSkipped,
                                             ev.EvalDone, ev.CheckpointSaved, ev.ExportDone, ev.RunEnded,
                                             ev.TaskStopped, ev.ForgettingAlert)}


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
    runs = [summarize(p) for p in base.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "events.jsonl").is_file()]
    return sorted(runs, key=lambda r: r.started, reverse=True)


# The folders runs were written into (the app's, the user's chosen one, any --out of the command line), so the
# history finds every run wherever it went. A list in the app's data folder, newest first.
FOLDERS_FILE = "run_folders.json"
MAX_FOLDERS = 100


def remember_runs_folder(folder: Path) -> None:
    """Add `folder` (the parent of a run folder) to the list the history reads. Never raises: a run must not fail
    because the app's data folder cannot be written."""
    path = paths.data_dir() / FOLDERS_FILE
    try:
        folder = Path(folder).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=5):
            known = _read_folders(path)
            if known[:1] == [folder]:
                return
            known = [folder, *(f for f in known if f != folder)][:MAX_FOLDERS]
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps([str(f) for f in known], indent=1), encoding="utf-8")
            os.replace(tmp, path)
    except (OSError, RuntimeError, Timeout):         # RuntimeError: a symlink loop on the way
        pass


def _read_folders(path: Path) -> list[Path]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(f) for f in raw if isinstance(f, str) and f] if isinstance(raw, list) else []


def run_folders(first: Path | None = None) -> list[Path]:
    """The folders that hold runs: `first` (default: the app's runs folder), then every folder runs were written
    into, as far as they still exist; each once."""
    out, seen = [], set()
    for folder in [Path(first) if first else paths.runs_dir(), *_read_folders(paths.data_dir() / FOLDERS_FILE)]:
        try:
            key = os.path.normcase(str(folder.resolve()))
            usable = key not in seen and folder.is_dir()
        except (OSError, RuntimeError):         # unreachable, or a symlink loop: skipped like a missing folder
            continue
        if usable:
            seen.add(key)
            out.append(folder)
    return out


def list_all_runs(first: Path | None = None) -> list[RunSummary]:
    """The runs of every folder run_folders() gives, newest first."""
    runs = [r for folder in run_folders(first) for r in list_runs(folder)]
    return sorted(runs, key=lambda r: r.started, reverse=True)


def folder_size(folder: Path) -> int:
    """Bytes of the files under `folder` (what deleting it frees); files that vanish meanwhile count 0."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def human_size(n: int) -> str:
    """Bytes as a person reads them: 512 B, 3.4 kB, 1.2 GB (powers of 1000, as file managers count)."""
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 999.95 or unit == "TB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def delete_run(run_dir: Path) -> None:
    """Delete a run folder and all it holds; refused while a process trains it, and for a folder that is no run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} does not exist any more; nothing was deleted")
    if not ((run_dir / "events.jsonl").is_file() or (run_dir / "project.toml").is_file()):
        raise UserError(f"{run_dir} is not a run folder (it has no events.jsonl or project.toml); nothing was deleted")
    if lock_owner(run_dir) is not None:
        raise UserError(f"{run_dir} is being trained right now; stop the run first, then delete it")
    # Renamed first, so that a deletion that fails half-way leaves no half run that the history would list.
    doomed = run_dir.with_name(f".{run_dir.name}.deleting")
    try:
        if doomed.exists():         # left by an earlier deletion that failed
            shutil.rmtree(doomed)
        os.replace(run_dir, doomed)
        shutil.rmtree(doomed)
    except OSError as e:
        raise UserError(f"could not delete {run_dir}: {e.strerror or e}; what is left is in "
                        f"{doomed if doomed.exists() else run_dir}") from None


def exported_folders(run_dir: Path) -> dict[str, Path]:
    """What the run exported: task name (or "full") -> folder."""
    out = Path(run_dir) / "export"
    if not out.is_dir():
        return {}
    return {p.name: p for p in sorted(out.iterdir()) if p.is_dir()}


def write_export(run_dir: Path, destination: Path, names: list[str], fill) -> None:
    """Models of the run's export written into `destination` (new or empty) by fill(folder, the run's exported
    folders by name): into a temporary folder beside it, renamed at the end, so a failure leaves nothing half
    written."""
    available = exported_folders(run_dir)
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
        fill(tmp, available)
        from qarac_gui.core.results.export import share_modes
        share_modes(tmp)                # exports written before their modes were made plain
        if destination.exists():
            destination.rmdir()
        os.replace(tmp, destination)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise UserError(f"could not write to {destination}: {e.strerror or e}") from e
        raise


def copy_export(run_dir: Path, destination: Path, names: list[str], emit=None) -> list[Path]:
    """Copy the chosen exported folders into `destination` (new or empty), one folder per task.

    Writes into a temporary folder beside the destination first, so a failure leaves nothing half-copied.
    """
    names = list(dict.fromkeys(names))

    def fill(into: Path, available: dict[str, Path]) -> None:
        for i, name in enumerate(names):
            if emit:
                emit(ev.Progress("export", f"Copying {name}", i, len(names)))
            shutil.copytree(available[name], into / name)
    write_export(run_dir, destination, names, fill)
    if emit:
        emit(ev.Progress("export", "Export copied", len(names), len(names)))
    return [destination / n for n in names]
