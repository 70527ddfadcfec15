"""Experiment trackers a run also reports to (train.report_to), each through its own library's writer. The run
folder's events.jsonl stays the record; a tracker is a copy in the form other tools read."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from qarac_gui.core import events as ev
from qarac_gui.core.project.config import Project

# What trackers write inside a run folder (trackio keeps its projects in its own folder, outside runs).
TRACKER_FOLDERS = ("tensorboard", "mlflow")
# How long the end of a run waits for MLflow to write what is queued (a slow server must not hold the run forever).
MLFLOW_DRAIN_S = 60.0


def _settings(project: Project) -> dict[str, Any]:
    """The project's settings as flat hyperparameters: numbers, booleans and strings (lists as text)."""
    from qarac_gui.core.results.compare import flatten
    out = {}
    for key, value in flatten(project).items():
        out[key] = value if isinstance(value, (int, float, bool, str)) else str(value)
    return out


def _step_scalars(event: ev.StepLogged) -> dict[str, float]:
    scalars = {f"loss/{task}": loss for task, loss in event.task_losses.items()}
    scalars.update({"lr/encoder": event.lr, "lr/heads": event.head_lr,
                    "throughput/samples_per_s": event.samples_per_s})
    scalars.update({f"balancing/weight/{task}": w for task, w in (event.task_weights or {}).items()})
    if event.grad_cosine is not None:
        scalars["balancing/gradient_cosine"] = event.grad_cosine
    return scalars


def _eval_scalars(event: ev.EvalDone) -> dict[str, float]:
    return {f"validation/{task}/{metric}": value for task, values in event.metrics.items()
            for metric, value in values.items()}


def _stop_scalars(event: ev.TaskStopped) -> dict[str, float]:
    """A task's stop as one point: where it lies says when the task stopped, its value the step of its best
    evaluation (whose metric is on the task's validation curve at that step)."""
    return {f"stopped/{event.task}": float(event.best_step)}


def _stop_text(event: ev.TaskStopped) -> str:
    return f"stopped at step {event.step}: {ev.task_stop_words(event)}"


class TensorBoardTracker:
    """Per-task losses, both learning rates, samples/s and every validation metric as TensorBoard scalars under
    run_dir/tensorboard; a task's stop (eval.task_patience) as a scalar and a text, a forgetting alert as a text;
    the settings and the final metrics as its hyperparameters when the run ends."""

    label = "TensorBoard"

    def __init__(self, project: Project, run_dir: Path) -> None:
        self.project, self.folder = project, Path(run_dir) / "tensorboard"
        self.writer: Any = None
        self.last_metrics: dict[str, float] = {}

    def __call__(self, event: Any) -> None:
        if isinstance(event, ev.RunStarted):
            from torch.utils.tensorboard import SummaryWriter
            # a resumed run drops what the crashed one logged after its checkpoint: the steps are trained again
            self.writer = SummaryWriter(str(self.folder), purge_step=event.start_step + 1 if event.start_step else None)
        elif self.writer is None:
            return
        elif isinstance(event, ev.StepLogged):
            for key, value in _step_scalars(event).items():
                self.writer.add_scalar(key, value, event.step)
        elif isinstance(event, ev.EvalDone):
            for key, value in _eval_scalars(event).items():
                self.writer.add_scalar(key, value, event.step)
                self.last_metrics["final/" + key.removeprefix("validation/")] = value
        elif isinstance(event, ev.TaskStopped):
            for key, value in _stop_scalars(event).items():
                self.writer.add_scalar(key, value, event.step)
            self.writer.add_text(f"stopped/{event.task}", _stop_text(event), event.step)
        elif isinstance(event, ev.ForgettingAlert):
            self.writer.add_text(f"forgetting/{event.task}", ev.forgetting_words(event), event.step)
        elif isinstance(event, ev.RunEnded):
            self.writer.add_hparams(_settings(self.project), self.last_metrics or {"final/step": event.step},
                                    run_name="settings")
            self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


_MLFLOW_STATUS = {"completed": "FINISHED", "early_stopped": "FINISHED", "stopped": "KILLED", "aborted": "KILLED"}


def _mlflow_key(key: str) -> str:
    return re.sub(r"[^\w\-. /:]", "_", key)      # the characters MLflow allows in a key


class MLflowTracker:
    """The same scalars as MLflow metrics (with their step) and the settings as the run's params, in the local
    store run_dir/mlflow/mlflow.db unless MLFLOW_TRACKING_URI names another; the MLflow run's id is kept in
    run_dir/mlflow/run.json so that a resumed run continues the same MLflow run. A task's stop is a metric too, and a
    tag that says it in words.

    A thread of its own does the writing: a slow or unreachable server delays the copy, never a training step."""

    label = "MLflow"

    def __init__(self, project: Project, run_dir: Path) -> None:
        self.project, self.run_dir = project, Path(run_dir)
        self.folder = self.run_dir / "mlflow"
        self.queue: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def __call__(self, event: Any) -> None:
        if self.error is not None:
            raise self.error
        if isinstance(event, ev.RunStarted):
            self.thread = threading.Thread(target=self._write, args=(event.start_step,), name="mlflow", daemon=True)
            self.thread.start()
        elif self.thread is None:
            return
        elif isinstance(event, ev.StepLogged):
            self._put(_step_scalars(event), event.step)
        elif isinstance(event, ev.EvalDone):
            self._put(_eval_scalars(event), event.step)
        elif isinstance(event, ev.TaskStopped):
            self._put(_stop_scalars(event), event.step)
            self.queue.put({_mlflow_key(f"qarac.stopped.{event.task}"): _stop_text(event)})
        elif isinstance(event, ev.ForgettingAlert):          # the latest crossing: a tag holds one value
            self.queue.put({_mlflow_key(f"qarac.forgetting.{event.task}"): ev.forgetting_words(event)})
        elif isinstance(event, ev.RunEnded):
            self.queue.put(_MLFLOW_STATUS.get(event.reason, "FAILED"))
            self.close(5.0 if event.reason == "aborted" else MLFLOW_DRAIN_S)      # Ctrl-C twice: not a long wait

    def _put(self, scalars: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.queue.put([(_mlflow_key(k), float(v), now, step) for k, v in scalars.items()])

    def close(self, timeout: float = MLFLOW_DRAIN_S) -> None:
        thread, self.thread = self.thread, None
        if thread is None:
            return
        self.queue.put(None)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"it had not written everything after {timeout:.0f} s")
        if self.error is not None:
            raise self.error

    def _write(self, start_step: int) -> None:
        try:
            from mlflow.entities import Metric, RunTag
            client, run_id = self._open(start_step)
            while (item := self.queue.get()) is not None:
                if isinstance(item, str):
                    client.set_terminated(run_id, item)
                elif isinstance(item, dict):
                    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in item.items()])
                else:
                    client.log_batch(run_id, metrics=[Metric(*m) for m in item])
        except Exception as e:     # said by the training thread at its next event
            self.error = e

    def _open(self, start_step: int) -> tuple[Any, str]:
        from mlflow import MlflowClient
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
        self.folder.mkdir(exist_ok=True)
        remote = os.environ.get("MLFLOW_TRACKING_URI")
        # the local store is named by its place in the run folder, which stays right when the folder moves
        store = remote or "run folder"
        uri = remote or "sqlite:///" + (self.folder / "mlflow.db").resolve().as_posix()
        client = MlflowClient(tracking_uri=uri)
        params = {_mlflow_key(k): str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in _settings(self.project).items()}
        stored_path = self.folder / "run.json"
        stored = json.loads(stored_path.read_text(encoding="utf-8")) if stored_path.is_file() else {}
        if stored.get("store") == store and start_step > 0:
            try:
                run = client.get_run(stored["run_id"])
            except MlflowException:
                run = None          # deleted on the server since: a new MLflow run takes over
            if run is not None:
                # MLflow params cannot change: the first start's stay, a setting changed since becomes a tag
                old = run.data.params
                client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items() if k not in old],
                                 tags=[RunTag("qarac.resumed_from_step", str(start_step))]
                                 + [RunTag(f"resumed_at_{start_step}.{k}", v) for k, v in params.items()
                                    if k in old and old[k] != v])
                client.update_run(run.info.run_id, status="RUNNING")
                return client, run.info.run_id
        if stored.get("store") == store and start_step == 0:
            # the run starts again from step 0: what the earlier start logged belongs to steps no checkpoint kept
            with contextlib.suppress(MlflowException):
                client.delete_run(stored["run_id"])
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or self.project.name
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            local = None if remote else (self.folder / "artifacts").resolve().as_uri()
            experiment_id = client.create_experiment(name, artifact_location=local)
        run = client.create_run(experiment_id, run_name=self.run_dir.name,
                                tags={"qarac.run_dir": str(self.run_dir.resolve())})
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
        partial = stored_path.with_suffix(".tmp")       # a crash mid-write must not leave a torn run.json
        partial.write_text(json.dumps({"store": store, "tracking_uri": uri, "experiment_id": experiment_id,
                                       "run_id": run.info.run_id}, indent=2), encoding="utf-8")
        partial.replace(stored_path)
        return client, run.info.run_id


class TrackioTracker:
    """The same scalars logged to trackio with their step, the settings as the run's config, in trackio's own
    store (its project named after the qarac project, the run after the run folder)."""

    label = "trackio"

    def __init__(self, project: Project, run_dir: Path) -> None:
        self.project, self.run_dir = project, Path(run_dir)
        self.run: Any = None

    def __call__(self, event: Any) -> None:
        if isinstance(event, ev.RunStarted):
            import trackio
            # trackio prints where it logs: stdout carries the CLI's JSON lines, so its words go to stderr
            with contextlib.redirect_stdout(sys.stderr):
                self.run = trackio.init(project=self.project.name, name=self.run_dir.name,
                                        config=_settings(self.project),
                                        resume="allow" if event.start_step else "never")
        elif self.run is None:
            return
        elif isinstance(event, ev.StepLogged):
            self.run.log(_step_scalars(event), step=event.step)
        elif isinstance(event, ev.EvalDone):
            self.run.log(_eval_scalars(event), step=event.step)
        elif isinstance(event, ev.TaskStopped):
            self.run.log(_stop_scalars(event), step=event.step)
        elif isinstance(event, ev.RunEnded):
            self.close()

    def close(self) -> None:
        run, self.run = self.run, None
        if run is not None:
            import trackio
            with contextlib.redirect_stdout(sys.stderr):
                run.finish()
            if trackio.context_vars.current_run.get() is run:
                trackio.context_vars.current_run.set(None)


TRACKERS: dict[str, Callable[[Project, Path], Any]] = {
    "tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "trackio": TrackioTracker}


def _reason(error: Exception) -> str:
    if isinstance(error, OSError):
        from qarac_gui.core.training.disk import describe
        return describe(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def _say_on_stderr(event: ev.Progress) -> None:
    sys.stderr.write(event.message + "\n")


class _Guarded:
    """A tracker whose failure (a full disk, a server gone) ends its copy, never the run: said once, in words."""

    def __init__(self, tracker: Any, say: ev.Emit) -> None:
        self.tracker, self.say = tracker, say
        self.step, self.failed = 0, False

    def __call__(self, event: Any) -> None:
        if self.failed:
            return
        self.step = getattr(event, "step", self.step)
        try:
            self.tracker(event)
        except Exception as e:
            self.failed = True
            with contextlib.suppress(Exception):
                self.tracker.close()
            goes_on = "" if isinstance(event, ev.RunEnded) else "training goes on, and "
            self.say(ev.Progress("tracker", f"{self.tracker.label} stopped recording at step {self.step}: "
                                            f"{_reason(e)}; {goes_on}the run's events.jsonl keeps everything"))


def open_trackers(project: Project, run_dir: Path, say: ev.Emit | None = None) -> list[Any]:
    """One callback per tracker the project reports to (none by default). A tracker that fails is said once
    through `say` (a Progress event of phase "tracker"; on stderr without one) and writes no more."""
    return [_Guarded(TRACKERS[name](project, run_dir), say or _say_on_stderr)
            for name in dict.fromkeys(project.train.report_to) if name in TRACKERS]
