"""One training run from a project: load, tokenise, train, export. The GUI worker and the CLI both call run()."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from qarac_gui.core import paths
from qarac_gui.core.errors import RunStopped, UserError
from qarac_gui.core.events import (
    CallbackList,
    Emit,
    ExportDone,
    Progress,
    RunEnded,
    RunStarted,
    StepDone,
    event_to_json,
)
from qarac_gui.core.project.config import Project, dumps_project
from qarac_gui.core.training.disk import describe, write_failure


def new_run_dir(project: Project, runs: Path | None = None) -> Path:
    """A fresh folder name under `runs` (default: the app's runs folder) from the project name and the time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", project.name).strip("_")[:48] or "project"
    base = (runs or paths.runs_dir()) / f"{safe}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class _NoLog:
    """The event log of a process that writes none (ranks other than 0 under several processes)."""

    def __call__(self, event: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _EventLog:
    """Appends every event to events.jsonl in the run folder (the run history reads it back)."""

    def __init__(self, path: Path) -> None:
        torn = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
        self._file = open(path, "a", encoding="utf-8")
        if torn:                # a crash cut the last line short: start the resumed run's events on a new line
            self._file.write("\n")

    def __call__(self, event: Any) -> None:
        if isinstance(event, StepDone):     # one a step would swell the log; StepLogged keeps what lasts
            return
        self._file.write(event_to_json(event) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def run(project: Project, emit: Emit, stop: threading.Event, *, run_dir: Path | None = None,
        resume: bool = False, min_log_interval: float = 0.25, pause: threading.Event | None = None,
        lr_scale: float = 1.0) -> RunEnded:
    """Train the project; every outcome ends with a RunEnded event, which is also returned.

    Setting `pause` holds training between two steps until it is cleared; `stop` ends it with a checkpoint.
    `lr_scale` (with resume) rolls back to the latest checkpoint and continues with the rest of the learning
    rate schedule multiplied by it: the way out of a "diverged" run.

    Errors a user can fix (UserError) end the run as "failed" with their message and are re-raised.
    """
    from qarac_gui.core.training.distributed import start
    world = start(project.train.device)
    if world.on:
        return _run_ranked(project, emit, stop, world, run_dir, resume, min_log_interval, pause, lr_scale)
    run_dir, resume, restart, made = _claim(project, run_dir, resume, lr_scale)
    return _run_claimed(project, emit, stop, run_dir, resume, restart, made, min_log_interval, pause, lr_scale)


def _claim(project: Project, run_dir: Path | None, resume: bool, lr_scale: float) -> tuple[Path, bool, bool, Any]:
    """Check the run folder and take it: made, locked, the project written. (run folder, resume, restart from
    step 0, the topmost folder made or None); a UserError says what is wrong before anything is written."""
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(project)
    _check_run_dir(run_dir)
    if not resume and run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} is not empty (it may hold another run); choose a new folder, or continue "
                        "a stopped run there with --resume")
    if not math.isfinite(lr_scale) or lr_scale <= 0:
        raise UserError(f"the learning-rate scale must be a number above 0, not {lr_scale!r} (e.g. --lr-scale 0.5)")
    if not resume and lr_scale != 1.0:
        raise UserError("a learning-rate scale needs --resume: it applies from a checkpoint on")
    if resume and not run_dir.is_dir():
        raise UserError(f"{run_dir} does not exist: there is no run to resume there")
    if resume and (run_dir / "export").exists():
        raise UserError(f"{run_dir} holds a finished run (its export exists): there is nothing to resume")
    restart = False
    if resume:
        from qarac_gui.core.training.checkpoint import latest_checkpoint
        if latest_checkpoint(run_dir / "checkpoints")[0] is None:     # checked before anything is written there
            if not started_without_checkpoint(run_dir):
                raise UserError(f"{run_dir} has no complete checkpoint to resume from; start a new run instead")
            if lr_scale != 1.0:
                raise UserError(f"{run_dir} stopped before its first checkpoint: there is nothing to roll back to; "
                                "continue it without a learning-rate scale, or lower optim.lr")
            resume, restart = False, True
        _check_same_project(project, run_dir)
    from qarac_gui.core.results.history import lock_owner, lock_run, remember_runs_folder, unlock_run
    if lock_owner(run_dir) not in (None, os.getpid()):
        raise UserError(f"{run_dir} is being trained by another process right now; wait for it or stop it first")
    made = _make_run_dir(run_dir)
    try:
        lock_run(run_dir)
        if restart:             # what it logged belongs to steps no checkpoint kept
            clear_unsaved_run(run_dir)
        (run_dir / "project.toml").write_text(dumps_project(project.with_absolute_paths()), encoding="utf-8")
    except OSError as e:
        if made:                    # nothing half-made is left where the user pointed
            shutil.rmtree(made, ignore_errors=True)
        else:
            unlock_run(run_dir)
        raise UserError(f"cannot write the run into {run_dir}: {describe(e)}; choose a folder on a disk with space "
                        "that you may write to") from None
    if resume:                  # a request left by a run that ended without reading it
        from qarac_gui.core.training.distributed import clear_stop_request
        clear_stop_request(run_dir)
    remember_runs_folder(run_dir.parent)        # the run history lists the runs of every folder runs went to
    return run_dir, resume, restart, made


def _run_claimed(project: Project, emit: Emit, stop: threading.Event, run_dir: Path, resume: bool, restart: bool,
                 made: Any, min_log_interval: float, pause: threading.Event | None, lr_scale: float,
                 world: Any = None) -> RunEnded:
    """The run in a folder this process has claimed (rank 0's under several processes)."""
    from qarac_gui.core.results.history import unlock_run
    started = threading.Event()

    def note_start(event: Any) -> None:
        if isinstance(event, RunStarted):
            started.set()
    try:
        return _run_locked(project, CallbackList(note_start, emit), stop, run_dir, resume, min_log_interval, pause,
                           lr_scale, restart, world)
    except UserError:
        if made and not started.is_set():      # refused while setting up (model, data, limits): leave no folder
            unlock_run(run_dir)
            shutil.rmtree(made, ignore_errors=True)
        raise
    finally:
        unlock_run(run_dir)


def _run_ranked(project: Project, emit: Emit, stop: threading.Event, world: Any, run_dir: Path | None,
                resume: bool, min_log_interval: float, pause: threading.Event | None, lr_scale: float) -> RunEnded:
    """One of several processes (torchrun): rank 0 checks and claims the run folder and writes every file of the
    run; the others learn the folder (and whether the run resumes) from it, train, and write nothing."""
    from qarac_gui.core.training.distributed import from_rank_0
    claimed, refusal = None, None
    if world.writer:
        try:
            claimed = _claim(project, run_dir, resume, lr_scale)
        except UserError as e:
            refusal = str(e)
    run_dir, resume, restart, refusal = from_rank_0(world, (claimed[0] if claimed else None,
                                                            claimed[1] if claimed else resume,
                                                            claimed[2] if claimed else False, refusal))
    if refusal is not None:
        raise UserError(refusal)
    if world.writer:
        return _run_claimed(project, emit, stop, run_dir, resume, restart, claimed[3], min_log_interval, pause,
                            lr_scale, world)
    return _run_locked(project, lambda event: None, stop, run_dir, resume, min_log_interval, pause, lr_scale,
                       restart, world)


# What a checkpoint's tensors and stream positions depend on; the rest (steps, evaluation, checkpoints, export)
# may change when a run is continued.
RESUME_KEYS = ("backbones", "tasks", "train.mixing", "train.temperature", "train.seed", "train.epoch_task",
               "optim.grad_accum", "optim.optimizer")


def _differences(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            out += _differences(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
        return out
    if isinstance(a, list) and isinstance(b, list) and all(isinstance(x, dict) and "name" in x for x in a + b):
        names = [x["name"] for x in a] + [x["name"] for x in b if x["name"] not in [y["name"] for y in a]]
        by_a, by_b = {x["name"]: x for x in a}, {x["name"]: x for x in b}
        return [d for n in names for d in _differences(by_a.get(n), by_b.get(n), f"{where}.{n}")]
    if a == b or where.endswith((".data.train", ".data.validation")):   # moved files: the rows are compared
        return []
    if a is None:
        return [f"{where} is not in the run but is here"]
    if b is None:
        return [f"{where} is in the run but not here"]
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return [f"{where} differs"]
    return [f"{where} is {a!r} in the run, {b!r} here"]


def _check_same_project(project: Project, run_dir: Path) -> None:
    """Continuing a run with another project would load its checkpoint into another model, or the same model onto
    other data: say what differs, in words, before anything is written."""
    from qarac_gui.core.project.config import load_project
    from qarac_gui.core.project.convert import ConfigError, to_dict
    stored_path = run_dir / "project.toml"
    if not stored_path.is_file():
        return
    try:
        stored = load_project(stored_path, check=False)
    except ConfigError as e:
        raise UserError(f"the run's own project file cannot be read ({e}); this folder cannot be continued, start a "
                        "new run") from None
    mine, theirs = to_dict(stored), to_dict(project.with_absolute_paths())
    diffs = []
    for key in RESUME_KEYS:
        section, _, field_name = key.partition(".")
        a, b = mine.get(section), theirs.get(section)
        if field_name:
            a, b = (a or {}).get(field_name), (b or {}).get(field_name)
        diffs += _differences(a, b, key)
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise UserError(f"{run_dir} was trained with another project ({shown}); continue it with its own project "
                        f"(qarac-train {stored_path} --resume --out {run_dir}) or start a new run")


def started_without_checkpoint(run_dir: Path) -> bool:
    """A run that stopped (a kill, a crash) before it wrote any checkpoint: its project and log, nothing else that
    is kept. Continuing it starts it again from step 0 in the same folder."""
    names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    from qarac_gui.core.results.history import KERNEL_LOCK, LOCK
    from qarac_gui.core.results.trackers import TRACKER_FOLDERS
    return {"project.toml", "events.jsonl"} <= names <= {"project.toml", "events.jsonl", "checkpoints", LOCK,
                                                         KERNEL_LOCK, *TRACKER_FOLDERS}


def clear_unsaved_run(run_dir: Path) -> None:
    (run_dir / "events.jsonl").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    # What TensorBoard wrote goes too; mlflow/ stays, the MLflow tracker retires its earlier run itself
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)


def _check_run_dir(run_dir: Path) -> None:
    """Say what is wrong with a run folder that cannot be one, before anything is written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a folder; choose a new folder for the run")
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{run_dir} cannot be made: {parent} is a file, not a folder; choose another place "
                                "for the run")
            break


def _make_run_dir(run_dir: Path) -> Path | None:
    """Create the folder and any missing parents; returns the topmost folder made (None: it existed)."""
    missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if missing:
            shutil.rmtree(missing[-1], ignore_errors=True)
        raise UserError(f"cannot create the run folder {run_dir}: {describe(e)}; choose a folder on a disk with "
                        "space that you may write to") from None
    return missing[-1] if missing else None


def _run_locked(project: Project, emit: Emit, stop: threading.Event, run_dir: Path, resume: bool,
                min_log_interval: float, pause: threading.Event | None, lr_scale: float,
                restart: bool = False, world: Any = None) -> RunEnded:
    from qarac_gui.core.training.distributed import SINGLE, clear_stop_request
    world = world or SINGLE
    log = _EventLog(run_dir / "events.jsonl") if world.writer else _NoLog()
    if world.writer:
        from qarac_gui.core.results.trackers import open_trackers
        # A tracker closes itself at RunEnded; one that fails says so once, to the log and the caller, not to the
        # other trackers
        emit = CallbackList(log, *open_trackers(project, run_dir, say=CallbackList(log, emit)), emit)
    if restart:
        emit(Progress("resume", "The run stopped before its first checkpoint; it starts again from step 0"))
    state = None                        # the trainer's counters, once built: a failure reports the step it hit

    def ending(reason: str, message: str) -> RunEnded:
        return RunEnded(state.step if state else 0, reason, message, str(run_dir))
    try:
        from qarac_gui.core.training.setup import build_run
        trainee, state, started = build_run(project, run_dir, emit, stop, resume, lr_scale, world)
        emit(started)
        # the first step is the slowest (the device warms up): say so rather than show a bar stuck at its start
        first = state.step + 1
        emit(Progress("train", "Running the first step" if first == 1 else f"Running step {first}, the first "
                      "since resuming"))
        from qarac_gui.core.training.loop import fit
        reason = fit(trainee, state, emit, stop, min_log_interval, pause)
        message = ""
        if world.writer:        # the stop it asked for is done; a later --resume must not stop again
            clear_stop_request(run_dir)
        if reason in ("completed", "early_stopped") and world.writer:
            from qarac_gui.core.training.task_stopping import stop_note
            message = "; ".join(filter(None, [stop_note(trainee, state), _export(project, trainee, state, run_dir,
                                                                                  emit)]))
        elif reason == "diverged":
            message = diverged_message(run_dir, state)
        ended = ending(reason, message)
    except RunStopped:
        ended = ending("stopped", "stopped before training began")
    except UserError as e:
        emit(ending("failed", str(e)))
        log.close()
        raise
    except KeyboardInterrupt:
        emit(ending("aborted", "aborted without a checkpoint"))
        log.close()
        raise
    except BaseException as e:
        emit(ending("failed", f"{type(e).__name__}: {e}"))
        log.close()
        raise
    emit(ended)
    log.close()
    return ended


def diverged_message(run_dir: Path, state: Any) -> str:
    from qarac_gui.core.training.checkpoint import latest_checkpoint
    n = state.skipped_in_a_row
    first = state.step - n + 1
    text = (f"the loss or the gradients were NaN or infinite for {n} steps in a row (steps {first}-{state.step}), "
            "so none of them changed the model; ")
    checkpoint = latest_checkpoint(run_dir / "checkpoints")[0]
    if checkpoint is None:
        return text + "there is no checkpoint to roll back to: start again with a lower learning rate (optim.lr)"
    step = int(checkpoint.name.split("-")[-1])
    return (text + f"roll back to the checkpoint of step {step} with a lower learning rate (in the app: "
            f"Roll back; on the command line: --resume --out {run_dir} --lr-scale 0.5)")


def _export(project: Project, trainee: Any, state: Any, run_dir: Path, emit: Emit) -> str:
    """Export into a temporary folder renamed to export/ at the end: a run with an export/ is a finished one, so a
    failure half-way (a full disk) must leave none, and the run can be continued to export again."""
    from qarac_gui.core.results.export import check_destination
    out, work = run_dir / "export", run_dir / ".export-partial"
    check_destination(out)
    shutil.rmtree(work, ignore_errors=True)
    try:
        folders, skipped, last = _export_into(work, project, trainee, state, emit)
        os.replace(work, out)
    except Exception as e:
        shutil.rmtree(work, ignore_errors=True)
        failure = write_failure(e, run_dir)
        if failure is None:
            raise
        raise UserError(f"could not write the exported models into {run_dir}: {describe(failure)}; free some space "
                        "there and continue the run: it resumes from its final checkpoint and exports again") from e
    folders = {name: str(out / Path(folder).relative_to(work)) for name, folder in folders.items()}
    (run_dir / "metrics.json").write_text(json.dumps(
        {"step": state.step, "best_step": state.best_step, "best_value": state.best_value, "final": last}
        | ({"tasks": state.task_progress} if state.task_progress else {}), indent=2), encoding="utf-8")
    emit(ExportDone(str(out), folders))
    return "; ".join(f"not exported: {s}" for s in skipped)


def _export_into(work: Path, project: Project, trainee: Any, state: Any, emit: Emit):
    from qarac_gui.core.kinds import kind_of
    from qarac_gui.core.project.keep import trained_tasks
    from qarac_gui.core.results.backbone_export import FOLDER, export_backbones, exported_backbones
    from qarac_gui.core.results.export import export_full, export_problem, export_task
    from qarac_gui.core.training.checkpoint import best_weights_path
    from qarac_gui.core.training.task_stopping import best_weights
    portable = project.with_absolute_paths()
    # keep tasks are never trained: nothing of theirs to export (the full model holds their heads as they were)
    wanted = project.export.tasks or [t.name for t in trained_tasks(project)]
    folders, skipped = {}, []
    last = state.eval_history[-1]["metrics"] if state.eval_history else {}
    best = best_weights_path(trainee.checkpoint_dir)
    if project.eval.keep_best and best.is_file():
        from safetensors.torch import load_model
        load_model(trainee.model, str(best), device=str(trainee.device))
        emit(Progress("export", f"Exporting the weights of step {state.best_step}, the best evaluation"))
        last = next(h["metrics"] for h in state.eval_history if h["step"] == state.best_step)
    trainee.model.eval()
    for i, name in enumerate(wanted):
        task = project.task(name)
        if kind_of(task.head).export_as == FOLDER:
            continue            # no head of its own: the backbones it reads are written below
        data = trainee.tasks[name]
        encoder = trainee.model.backbones[task.main_backbone]
        emit(Progress("export", f"Exporting {name}", i, len(wanted)))
        problem = export_problem(task, encoder.config.model_type, encoder.config.hidden_size)
        if problem:
            skipped.append(f"{name}: {problem}")
            continue
        # eval.task_patience: each task from its own best evaluation
        with best_weights(trainee.model, project, name, trainee.checkpoint_dir, state, last.get(name, {})) as seen:
            folder = export_task(work / name, portable, task, trainee.model, trainee.tokenizers[task.main_backbone],
                                 trainee.sources[task.main_backbone], data.labels, seen)
        folders[name] = str(folder)
    tasks = [portable.task(name) for name in wanted]
    if exported_backbones(tasks):
        emit(Progress("export", "Exporting the backbones of the tasks over named inputs", len(wanted), len(wanted)))
        export_backbones(work / FOLDER, portable, tasks, trainee.model, trainee.tokenizers, trainee.sources, last)
        folders[FOLDER] = str(work / FOLDER)
    if project.export.full_model:
        emit(Progress("export", "Exporting the multi-task model", len(wanted), len(wanted)))
        labels = {n: d.labels for n, d in trainee.tasks.items()}
        folders["full"] = str(export_full(work / "full", portable, trainee.model, trainee.tokenizers, labels,
                                          state.step))
    return folders, skipped, last
