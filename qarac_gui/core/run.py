"""One training run from a project: load, tokenise, train, export. The GUI worker and the CLI both call run()."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from qarac_gui.core import paths
from qarac_gui.core.config import Project, dumps_project
from qarac_gui.core.errors import UserError
from qarac_gui.core.events import CallbackList, Emit, ExportDone, Progress, RunEnded, event_to_json


class RunStopped(Exception):
    """The user stopped the run before training began."""


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


def portable_copy(project: Project) -> Project:
    """The project with its local paths made absolute, so the copy kept in the run folder replays anywhere."""
    p = copy.deepcopy(project)
    for bb in p.backbones.values():
        if not bb.model.startswith("package:") and project.resolve(bb.model).exists():
            bb.model = str(project.resolve(bb.model).resolve())
    for t in p.tasks:
        for key in ("train", "validation"):
            if getattr(t.data, key):
                setattr(t.data, key, str(project.resolve(getattr(t.data, key)).resolve()))
    return p


class _EventLog:
    """Appends every event to events.jsonl in the run folder (the run history reads it back)."""

    def __init__(self, path: Path) -> None:
        torn = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
        self._file = open(path, "a", encoding="utf-8")
        if torn:                # a crash cut the last line short: start the resumed run's events on a new line
            self._file.write("\n")

    def __call__(self, event: Any) -> None:
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
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(project)
    if not resume and run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} is not empty (it may hold another run); choose a new folder, or continue "
                        "a stopped run there with --resume")
    if lr_scale <= 0 or not resume and lr_scale != 1.0:
        raise UserError("a learning-rate scale needs --resume (it applies from a checkpoint on) and must be above 0")
    if resume and not run_dir.is_dir():
        raise UserError(f"{run_dir} does not exist: there is no run to resume there")
    if resume and (run_dir / "export").exists():
        raise UserError(f"{run_dir} holds a finished run (its export exists): there is nothing to resume")
    if resume:
        from qarac_gui.core.checkpoint import latest_checkpoint
        if latest_checkpoint(run_dir / "checkpoints")[0] is None:     # checked before anything is written there
            raise UserError(f"{run_dir} has no complete checkpoint to resume from; start a new run instead")
    from qarac_gui.core.runs import lock_owner, lock_run, unlock_run
    if lock_owner(run_dir) not in (None, os.getpid()):
        raise UserError(f"{run_dir} is being trained by another process right now; wait for it or stop it first")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_run(run_dir)
    try:
        return _run_locked(project, emit, stop, run_dir, resume, min_log_interval, pause, lr_scale)
    finally:
        unlock_run(run_dir)


def _run_locked(project: Project, emit: Emit, stop: threading.Event, run_dir: Path, resume: bool,
                min_log_interval: float, pause: threading.Event | None, lr_scale: float) -> RunEnded:
    log = _EventLog(run_dir / "events.jsonl")
    emit = CallbackList(log, emit)
    state = None                        # the trainer's counters, once built: a failure reports the step it hit

    def ending(reason: str, message: str) -> RunEnded:
        return RunEnded(state.step if state else 0, reason, message, str(run_dir))
    try:
        (run_dir / "project.toml").write_text(dumps_project(portable_copy(project)), encoding="utf-8")
        from qarac_gui.core.engine import build_run
        trainee, state, started = build_run(project, run_dir, emit, stop, resume, lr_scale)
        emit(started)
        from qarac_gui.core.trainer import fit
        reason = fit(trainee, state, emit, stop, min_log_interval, pause)
        message = ""
        if reason in ("completed", "early_stopped"):
            message = _export(project, trainee, state, run_dir, emit)
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
    from qarac_gui.core.checkpoint import latest_checkpoint
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
    from qarac_gui.core.export import check_destination
    out, work = run_dir / "export", run_dir / ".export-partial"
    check_destination(out)
    shutil.rmtree(work, ignore_errors=True)
    try:
        folders, skipped, last = _export_into(work, project, trainee, state, emit)
        os.replace(work, out)
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        raise UserError(f"could not write the exported models into {run_dir}: {e.strerror or e}; free some space "
                        "there and continue the run: it resumes from its final checkpoint and exports again") from e
    folders = {name: str(out / Path(folder).relative_to(work)) for name, folder in folders.items()}
    (run_dir / "metrics.json").write_text(json.dumps(
        {"step": state.step, "best_step": state.best_step, "best_value": state.best_value, "final": last},
        indent=2), encoding="utf-8")
    emit(ExportDone(str(out), folders))
    return "; ".join(f"not exported: {s}" for s in skipped)


def _export_into(work: Path, project: Project, trainee: Any, state: Any, emit: Emit):
    from qarac_gui.core.checkpoint import best_weights_path
    from qarac_gui.core.export import export_full, export_problem, export_task
    portable = portable_copy(project)
    wanted = project.export.tasks or [t.name for t in project.tasks]
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
        data = trainee.tasks[name]
        encoder = trainee.model.backbones[task.backbone]
        emit(Progress("export", f"Exporting {name}", i, len(wanted)))
        problem = export_problem(task, encoder.config.model_type, encoder.config.hidden_size)
        if problem:
            skipped.append(f"{name}: {problem}")
            continue
        folder = export_task(work / name, portable, task, trainee.model, trainee.tokenizers[task.backbone],
                             trainee.sources[task.backbone], data.labels, last.get(name, {}))
        folders[name] = str(folder)
    if project.export.full_model:
        emit(Progress("export", "Exporting the multi-task model", len(wanted), len(wanted)))
        labels = {n: d.labels for n, d in trainee.tasks.items()}
        folders["full"] = str(export_full(work / "full", portable, trainee.model, trainee.tokenizers, labels,
                                          state.step))
    return folders, skipped, last
