"""One training run from a project: load, tokenise, train, export. The GUI worker and the CLI both call run()."""

from __future__ import annotations

import copy
import json
import re
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
        resume: bool = False, min_log_interval: float = 0.25, pause: threading.Event | None = None) -> RunEnded:
    """Train the project; every outcome ends with a RunEnded event, which is also returned.

    Setting `pause` holds training between two steps until it is cleared; `stop` ends it with a checkpoint.

    Errors a user can fix (UserError) end the run as "failed" with their message and are re-raised.
    """
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(project)
    if not resume and run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} is not empty (it may hold another run); choose a new folder, or continue "
                        "a stopped run there with --resume")
    if resume and not run_dir.is_dir():
        raise UserError(f"{run_dir} does not exist: there is no run to resume there")
    if resume and (run_dir / "export").exists():
        raise UserError(f"{run_dir} holds a finished run (its export exists): there is nothing to resume")
    if resume:
        from qarac_gui.core.checkpoint import latest_checkpoint
        if latest_checkpoint(run_dir / "checkpoints")[0] is None:     # checked before anything is written there
            raise UserError(f"{run_dir} has no complete checkpoint to resume from; start a new run instead")
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _EventLog(run_dir / "events.jsonl")
    emit = CallbackList(log, emit)
    step = 0
    try:
        (run_dir / "project.toml").write_text(dumps_project(portable_copy(project)), encoding="utf-8")
        from qarac_gui.core.engine import build_run
        trainee, state, started = build_run(project, run_dir, emit, stop, resume)
        step = state.step
        emit(started)
        from qarac_gui.core.trainer import fit
        reason = fit(trainee, state, emit, stop, min_log_interval, pause)
        step = state.step
        message = ""
        if reason in ("completed", "early_stopped"):
            message = _export(project, trainee, state, run_dir, emit)
        ended = RunEnded(step, reason, message, str(run_dir))
    except RunStopped:
        ended = RunEnded(step, "stopped", "stopped before training began", str(run_dir))
    except UserError as e:
        emit(RunEnded(step, "failed", str(e), str(run_dir)))
        log.close()
        raise
    except KeyboardInterrupt:
        emit(RunEnded(step, "aborted", "aborted without a checkpoint", str(run_dir)))
        log.close()
        raise
    except BaseException as e:
        emit(RunEnded(step, "failed", f"{type(e).__name__}: {e}", str(run_dir)))
        log.close()
        raise
    emit(ended)
    log.close()
    return ended


def _export(project: Project, trainee: Any, state: Any, run_dir: Path, emit: Emit) -> str:
    from qarac_gui.core.checkpoint import best_weights_path
    from qarac_gui.core.export import check_destination, export_full, export_problem, export_task
    out = run_dir / "export"
    check_destination(out)
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
        folder = export_task(out / name, portable, task, trainee.model, trainee.tokenizers[task.backbone],
                             trainee.sources[task.backbone], data.labels, last.get(name, {}))
        folders[name] = str(folder)
    if project.export.full_model:
        emit(Progress("export", "Exporting the multi-task model", len(wanted), len(wanted)))
        labels = {n: d.labels for n, d in trainee.tasks.items()}
        folders["full"] = str(export_full(out / "full", portable, trainee.model, trainee.tokenizers, labels,
                                          state.step))
    (run_dir / "metrics.json").write_text(json.dumps(
        {"step": state.step, "best_step": state.best_step, "best_value": state.best_value, "final": last},
        indent=2), encoding="utf-8")
    emit(ExportDone(str(out), folders))
    return "; ".join(f"not exported: {s}" for s in skipped)
