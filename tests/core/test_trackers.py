"""train.report_to: a run also writes what it logs to TensorBoard, MLflow and trackio, read back here with each
library's own reader; a tracker that cannot write is named with the pip command that installs it, before the run
starts, and one that fails during the run is said once while training goes on."""

from __future__ import annotations

import atexit
import errno
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import threading

import pytest
from tiny import project_dict

from qarac_gui.core.events import EvalDone, ForgettingAlert, Progress, RunEnded, RunStarted, StepLogged, TaskStopped
from qarac_gui.core.project.config import parse_project, validate

# trackio reads its folder once, when imported: point it at a temp folder before any test imports it
os.environ["TRACKIO_DIR"] = tempfile.mkdtemp(prefix="qarac-trackio-")
atexit.register(shutil.rmtree, os.environ["TRACKIO_DIR"], True)
ALL = ["tensorboard", "mlflow", "trackio"]
# MLflow's database layer warns about SQLAlchemy's own deprecations as it loads; the warning is not this app's
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")


def _raw(tmp_path, tiny_bert, name="tiny", **train):
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "regression"],
                       train={"max_steps": 6, "log_every": 2, **train}, eval={"every": 3, "batch_size": 16})
    raw["name"] = name
    return raw


def _project(tmp_path, tiny_bert, **train):
    return parse_project(_raw(tmp_path, tiny_bert, **train), tmp_path)


def _train(project, run_dir, stop=None, emit=None, resume=False):
    from qarac_gui.core.run import run
    events = []

    def record(event):
        events.append(event)
        if emit:
            emit(event)
    ended = run(project, record, stop or threading.Event(), run_dir=run_dir, resume=resume, min_log_interval=0.0)
    return events, ended


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_bert):
    """One tiny run that reports to every tracker: (run folder, its events, the project)."""
    root = tmp_path_factory.mktemp("tracked")
    app = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QARAC_GUI_DATA", str(app / "app-data"))
        mp.setenv("QARAC_GUI_CACHE", str(app / "app-cache"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        said = []
        from qarac_gui.core.results import trackers
        mp.setattr(trackers, "_say_on_stderr", said.append)
        project = parse_project(_raw(root, tiny_bert, "tiny-tracked", report_to=ALL, balancing="uncertainty"), root)
        events, ended = _train(project, root / "run")
    assert ended.reason == "completed", ended.message
    assert not said + [e for e in events if isinstance(e, Progress) and e.phase == "tracker"]
    return root / "run", events, project


def test_a_tracker_that_cannot_write_is_named_with_what_to_install(tmp_path, tiny_bert, monkeypatch):
    project = _project(tmp_path, tiny_bert)
    project.train.report_to = ["tensorboard", "wandb"]
    assert [p for p in validate(project) if p.startswith("train.report_to")] == [
        "train.report_to: 'wandb' is not a tracker this app writes to (it knows: tensorboard, mlflow, trackio)"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    project.train.report_to = ["tensorboard"]
    assert [p for p in validate(project) if p.startswith("train.report_to")] == [
        "train.report_to: 'tensorboard' needs the tensorboard package, which is not installed; pip install "
        "tensorboard   (or: pip install 'qarac-gui[tensorboard]')"]


def test_mlflow_or_trackio_that_cannot_be_imported_is_named_when_the_project_loads(tmp_path, tiny_bert,
                                                                                    monkeypatch):
    from qarac_gui.core.errors import UserError
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "mlflow", None)        # `import mlflow` now fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "trackio", None)
    with pytest.raises(UserError) as refused:
        _project(tmp_path, tiny_bert, report_to=["mlflow", "trackio"])
    assert str(refused.value).splitlines() == [
        "train.report_to: 'mlflow' needs the mlflow package, which is not installed; pip install mlflow   (or: "
        "pip install 'qarac-gui[mlflow]')",
        "train.report_to: 'trackio' needs the trackio package, which is not installed; pip install trackio   (or: "
        "pip install 'qarac-gui[trackio]')"]
    # the local store is an SQLite database, which mlflow-skinny cannot write
    monkeypatch.delitem(sys.modules, "mlflow")
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    project = _project(tmp_path, tiny_bert)
    project.train.report_to = ["mlflow"]
    assert [p for p in validate(project) if p.startswith("train.report_to")] == [
        "train.report_to: 'mlflow' needs the sqlalchemy package, which is not installed; pip install mlflow   (or: "
        "pip install 'qarac-gui[mlflow]')"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")     # a server keeps the store
    assert not [p for p in validate(project) if p.startswith("train.report_to")]


def test_a_run_reports_its_losses_lrs_and_metrics_to_tensorboard(tracked):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run_dir, events, _ = tracked
    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    logged = [e for e in events if isinstance(e, StepLogged)]
    for task in ("classification", "regression"):
        points = board.Scalars(f"loss/{task}")
        assert [p.step for p in points] == [e.step for e in logged]
        assert [p.value for p in points] == pytest.approx([e.task_losses[task] for e in logged], rel=1e-6)
    assert [p.value for p in board.Scalars("lr/heads")] == pytest.approx([e.head_lr for e in logged], rel=1e-6)
    weights = board.Scalars("balancing/weight/regression")     # the learnt task weights, as charted in the app
    assert [p.value for p in weights] == pytest.approx([e.task_weights["regression"] for e in logged], rel=1e-6)
    assert weights[-1].value != 1.0
    evals = [e for e in events if isinstance(e, EvalDone)]
    accuracy = board.Scalars("validation/classification/accuracy")
    assert [p.step for p in accuracy] == [e.step for e in evals]
    assert [p.value for p in accuracy] == pytest.approx([e.metrics["classification"]["accuracy"] for e in evals])
    settings = run_dir / "tensorboard" / "settings"      # the hyperparameters, beside the final metrics
    assert settings.is_dir() and any(settings.iterdir())


def _mlflow_run(run_dir):
    import json

    from mlflow import MlflowClient
    stored = json.loads((run_dir / "mlflow" / "run.json").read_text(encoding="utf-8"))
    client = MlflowClient(tracking_uri=stored["tracking_uri"])
    return client, client.get_run(stored["run_id"])


def test_a_run_reports_to_mlflow_in_a_store_of_its_run_folder(tracked):
    pytest.importorskip("mlflow")
    run_dir, events, project = tracked
    client, run = _mlflow_run(run_dir)
    assert client.tracking_uri.startswith("sqlite:") and client.tracking_uri.endswith("/run/mlflow/mlflow.db")
    assert client.get_experiment(run.info.experiment_id).name == "tiny-tracked"
    assert (run.info.run_name, run.info.status) == ("run", "FINISHED")
    logged = [e for e in events if isinstance(e, StepLogged)]
    for task in ("classification", "regression"):
        history = client.get_metric_history(run.info.run_id, f"loss/{task}")
        assert [m.step for m in history] == [e.step for e in logged]
        assert [m.value for m in history] == pytest.approx([e.task_losses[task] for e in logged], rel=1e-6)
    for key, field in (("lr/encoder", "lr"), ("lr/heads", "head_lr"), ("throughput/samples_per_s", "samples_per_s")):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.value for m in history] == pytest.approx([getattr(e, field) for e in logged], rel=1e-6)
    evals = [e for e in events if isinstance(e, EvalDone)]
    for task, metric in (("classification", "accuracy"), ("regression", "loss")):
        history = client.get_metric_history(run.info.run_id, f"validation/{task}/{metric}")
        assert [m.step for m in history] == [e.step for e in evals]
        assert [m.value for m in history] == pytest.approx([e.metrics[task][metric] for e in evals])
    params = run.data.params
    assert params["optim.lr"] == str(project.optim.lr) and params["train.max_steps"] == "6"
    assert params["tasks.classification.batch_size"] == "8"
    assert params["train.report_to"] == str(ALL)
    assert run.data.tags["qarac.run_dir"] == str(run_dir.resolve())


def test_a_run_reports_to_trackio_in_a_project_named_after_it(tracked):
    pytest.importorskip("trackio")
    import trackio
    from trackio.sqlite_storage import SQLiteStorage
    run_dir, events, _ = tracked
    assert str(SQLiteStorage.get_project_db_path("tiny-tracked")).startswith(os.environ["TRACKIO_DIR"])
    runs = list(trackio.Api().runs("tiny-tracked"))
    assert [r.name for r in runs] == ["run"]
    assert runs[0].config["train.max_steps"] == 6 and runs[0].config["optim.lr"] == pytest.approx(1e-3)
    logs = SQLiteStorage.get_logs("tiny-tracked", "run")
    logged = [e for e in events if isinstance(e, StepLogged)]
    losses = [row for row in logs if "loss/regression" in row]
    assert [row["step"] for row in losses] == [e.step for e in logged]
    assert [row["loss/regression"] for row in losses] == pytest.approx([e.task_losses["regression"] for e in logged],
                                                                        rel=1e-6)
    assert [row["lr/heads"] for row in logs if "lr/heads" in row] == pytest.approx([e.head_lr for e in logged])
    evals = [e for e in events if isinstance(e, EvalDone)]
    accuracy = [row for row in logs if "validation/classification/accuracy" in row]
    assert [row["step"] for row in accuracy] == [e.step for e in evals]
    assert [row["validation/classification/accuracy"] for row in accuracy] == pytest.approx(
        [e.metrics["classification"]["accuracy"] for e in evals])


@pytest.mark.slow
def test_a_resumed_run_continues_the_same_mlflow_and_trackio_runs(tmp_path, tiny_bert, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    pytest.importorskip("trackio")
    from trackio.sqlite_storage import SQLiteStorage
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = parse_project(_raw(tmp_path, tiny_bert, "tiny-resumed", report_to=["mlflow", "trackio"]), tmp_path)
    stop = threading.Event()

    def stop_at_4(event):
        if isinstance(event, StepLogged) and event.step == 4:
            stop.set()
    _, ended = _train(project, tmp_path / "run", stop=stop, emit=stop_at_4)
    assert (ended.reason, ended.step) == ("stopped", 4)
    client, first = _mlflow_run(tmp_path / "run")
    assert first.info.status == "KILLED"
    events, ended = _train(project, tmp_path / "run", resume=True)
    assert ended.reason == "completed", ended.message
    assert [e.start_step for e in events if isinstance(e, RunStarted)] == [4]
    client, run = _mlflow_run(tmp_path / "run")
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["qarac.resumed_from_step"] == "4"
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss/classification")] == [2, 4, 6]
    assert SQLiteStorage.get_runs("tiny-resumed") == ["run"]
    steps = [row["step"] for row in SQLiteStorage.get_logs("tiny-resumed", "run") if "loss/classification" in row]
    assert steps == [2, 4, 6]
    assert capsys.readouterr().out == ""        # trackio's words went to stderr: stdout carries the CLI's JSON lines


def test_a_tracker_that_fails_during_the_run_is_said_once_and_training_goes_on(tmp_path, tiny_bert, monkeypatch,
                                                                              capsys):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    real = MlflowClient.log_batch
    calls = []

    def disk_full_after_the_params(self, run_id, metrics=(), **kw):
        calls.append(len(metrics))
        if metrics:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, run_id, metrics=metrics, **kw)
    monkeypatch.setattr(MlflowClient, "log_batch", disk_full_after_the_params)
    project = _project(tmp_path, tiny_bert, report_to=["mlflow", "tensorboard"])
    events, ended = _train(project, tmp_path / "run")
    assert ended.reason == "completed" and (tmp_path / "run" / "export").is_dir(), ended.message
    assert len([c for c in calls if c]) == 1                  # it stopped writing at its first failure
    said = [e.message for e in events if isinstance(e, Progress) and e.phase == "tracker"]
    said += [line for line in capsys.readouterr().err.splitlines() if "stopped recording" in line]
    # the writer works on its own thread: the failure may surface during training or at its end
    assert len(said) == 1 and re.fullmatch(rf"MLflow stopped recording at step \d+: {os.strerror(errno.ENOSPC)}; "
                                           r"(training goes on, and )?the run's events.jsonl keeps everything", said[0])
    assert (tmp_path / "run" / "tensorboard" / "settings").is_dir()       # the other tracker wrote on


def test_a_failing_tracker_is_said_through_the_given_sink(tmp_path, tiny_bert):
    from qarac_gui.core.results import trackers
    project = _project(tmp_path, tiny_bert, report_to=["tensorboard"])
    said = []
    guarded = trackers.open_trackers(project, tmp_path / "run", say=said.append)
    (tmp_path / "run").write_text("a file where the run folder should be")     # TensorBoard cannot make its folder
    started = RunStarted(str(tmp_path / "run"), 6, 0, {}, {}, "cpu", "fp32", {}, 0, 0)
    for event in (started, StepLogged(2, 0.1, {"a": 1.0}, 1e-3, 1e-3, 10.0, 1.0), RunEnded(6, "completed")):
        for callback in guarded:
            callback(event)
    assert len(said) == 1 and isinstance(said[0], Progress) and said[0].phase == "tracker"
    assert said[0].message.startswith("TensorBoard stopped recording at step 0: ")


def test_the_aggregators_weights_and_gradient_cosine_are_tracker_scalars():
    from qarac_gui.core.results.trackers import _step_scalars
    event = StepLogged(4, 0.5, {"a": 0.3, "b": 0.2}, 1e-5, 1e-3, 10.0, 2.0, task_weights={"a": 0.8, "b": 1.2},
                       grad_cosine=-0.25)
    scalars = _step_scalars(event)
    assert scalars["balancing/weight/a"] == 0.8 and scalars["balancing/weight/b"] == 1.2
    assert scalars["balancing/gradient_cosine"] == -0.25
    plain = _step_scalars(StepLogged(4, 0.5, {"a": 0.3}, 1e-5, 1e-3, 10.0, 2.0))
    assert not [k for k in plain if k.startswith("balancing/")]


ALERT = ForgettingAlert(6, "general", "perplexity", 20.0, 23.0, 0.15, 0.1)
ALERT_WORDS = ("Forgetting: general perplexity 23 at step 6, 15.0 % worse than at step 0 (20; the alert is at "
               "10 %)")


def _stops_fed_to(name: str, run_dir, project_name: str) -> list[TaskStopped]:
    """A run's events as eval.task_patience sends them (one task stopped, one never finite), and a keep task's
    forgetting alert, fed to one tracker."""
    from qarac_gui.core.results import trackers
    run_dir.mkdir()
    project = parse_project(_raw(run_dir.parent, run_dir.parent / "model", project_name), run_dir.parent, check=False)
    tracker = trackers.TRACKERS[name](project, run_dir)
    stops = [TaskStopped(9, "classification", "accuracy", 6, 0.75), TaskStopped(12, "regression", "spearman", 0, None)]
    events = [RunStarted(str(run_dir), 12, 0, {}, {}, "cpu", "fp32", {}, 0, 0),
              EvalDone(6, {"classification": {"accuracy": 0.75}}, 6, 0.75, "classification/accuracy"),
              ALERT, stops[0], stops[1], RunEnded(12, "early_stopped")]
    for event in events:
        tracker(event)
    return stops


def test_a_task_stop_reaches_tensorboard_as_a_point_and_a_text(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    stops = _stops_fed_to("tensorboard", tmp_path / "run", "tiny-stops")
    board = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"tensors": 0})
    board.Reload()
    said = {}
    for stop in stops:
        points = board.Scalars(f"stopped/{stop.task}")
        assert [(p.step, p.value) for p in points] == [(stop.step, stop.best_step)]
        texts = board.Tensors(f"stopped/{stop.task}/text_summary")
        assert [t.step for t in texts] == [stop.step]
        said[stop.task] = texts[0].tensor_proto.string_val[0].decode()
    assert said == {"classification": "stopped at step 9: no better accuracy since its best, 0.75 at step 6",
                    "regression": "stopped at step 12: its spearman was never a finite number"}
    alerts = board.Tensors("forgetting/general/text_summary")
    assert [(t.step, t.tensor_proto.string_val[0].decode()) for t in alerts] == [(6, ALERT_WORDS)]


def test_a_task_stop_reaches_mlflow_as_a_metric_and_a_tag(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    stops = _stops_fed_to("mlflow", tmp_path / "run", "tiny-stops")
    client, run = _mlflow_run(tmp_path / "run")
    for stop in stops:
        history = client.get_metric_history(run.info.run_id, f"stopped/{stop.task}")
        assert [(m.step, m.value) for m in history] == [(stop.step, stop.best_step)]
    assert run.data.tags["qarac.stopped.classification"] == (
        "stopped at step 9: no better accuracy since its best, 0.75 at step 6")
    assert run.data.tags["qarac.stopped.regression"] == "stopped at step 12: its spearman was never a finite number"
    assert run.data.tags["qarac.forgetting.general"] == ALERT_WORDS


def test_a_task_stop_reaches_trackio_as_a_point(tmp_path):
    pytest.importorskip("trackio")
    from trackio.sqlite_storage import SQLiteStorage
    stops = _stops_fed_to("trackio", tmp_path / "run", "tiny-trackio-stops")
    logs = SQLiteStorage.get_logs("tiny-trackio-stops", "run")
    for stop in stops:
        assert [(row["step"], row[f"stopped/{stop.task}"]) for row in logs if f"stopped/{stop.task}" in row] == [
            (stop.step, stop.best_step)]
