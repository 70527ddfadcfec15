"""Tests for qarac_gui.core.results.history: reading a run's history back, listing runs and copying what a run exported.

Two real tiny runs are shared by the module: one completed (and exported), one stopped early with a checkpoint.
Tests that change a run folder work on a copy of it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from module_runs import Trained, train_run
from tiny import project_dict

from qarac_gui.core import paths
from qarac_gui.core.errors import UserError
from qarac_gui.core.events import (
    CheckpointSaved,
    EvalDone,
    ExportDone,
    Progress,
    RunEnded,
    RunStarted,
    StepDone,
    StepLogged,
    event_to_json,
)
from qarac_gui.core.project.config import Project, parse_project
from qarac_gui.core.results import history as runs_mod
from qarac_gui.core.results.history import RunSummary, copy_export, exported_folders, list_runs, read_events, summarize
from qarac_gui.core.run import new_run_dir

TASK = "classification"
MAX_STEPS = 4
STOP_AT = 2


Run = Trained


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def _train(tmp_path_factory, base: Path, model: Path | None = None, stop_at: int | None = None,
           run_dir: Path | None = None, resume: bool = False, project: Project | None = None) -> Run:
    if project is None:
        raw = project_dict(model, base / "data", [TASK],
                           train={"max_steps": MAX_STEPS, "log_every": 1},
                           eval={"every": 2, "metric": f"{TASK}/accuracy"}, checkpoint={"every": 2})
        project = parse_project(raw, base)
    return train_run(tmp_path_factory, project, run_dir or base / "run", stop_at, resume)


@pytest.fixture(scope="module")
def completed(tmp_path_factory, torch_threads, tiny_bert) -> Run:
    trained = _train(tmp_path_factory, tmp_path_factory.mktemp("runs-completed"), tiny_bert)
    assert trained.ended.reason == "completed"
    return trained


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, torch_threads, tiny_bert) -> Run:
    trained = _train(tmp_path_factory, tmp_path_factory.mktemp("runs-stopped"), tiny_bert, stop_at=STOP_AT)
    assert trained.ended.reason == "stopped" and trained.ended.step == STOP_AT
    return trained


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _truncate_before_last(path: Path, cls: type) -> None:
    """Cut events.jsonl just before the last line holding an event of `cls` (a process killed there)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    marker = f'{{"event": "{cls.__name__}"'
    last = max(i for i, line in enumerate(lines) if line.startswith(marker))
    path.write_text("".join(lines[:last]), encoding="utf-8")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _partials(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.endswith(".partial")]


# ------------------------------------------------------------------------------------------ read_events


def _kept(events: list) -> list:
    """The events a run's log keeps: all but the per-step progress."""
    return [e for e in events if not isinstance(e, StepDone)]


def test_read_events_gives_back_exactly_what_the_run_emitted(completed):
    read = read_events(completed.run_dir)
    assert _of(completed.events, StepDone)         # emitted, and left out of the log
    assert [type(e) for e in read] == [type(e) for e in _kept(completed.events)]
    assert read == _kept(completed.events)
    # the run really went through every kind a history needs
    for cls in (Progress, RunStarted, StepLogged, EvalDone, CheckpointSaved, ExportDone, RunEnded):
        assert _of(read, cls), cls.__name__


def test_read_events_of_a_stopped_run_matches_its_emitted_events(stopped):
    assert read_events(stopped.run_dir) == _kept(stopped.events)


def test_read_events_of_a_folder_without_a_log_is_empty(tmp_path):
    assert read_events(tmp_path) == []
    assert read_events(tmp_path / "missing") == []


def test_a_torn_last_line_is_skipped(completed, tmp_path):
    run_dir = _copy_run(completed.run_dir, tmp_path / "torn")
    log = run_dir / "events.jsonl"
    full_line = event_to_json(StepLogged(99, 1.0, {TASK: 0.5}, 1e-3, 1e-3, 10.0, 1.0))
    with open(log, "a", encoding="utf-8") as f:
        f.write(full_line[: len(full_line) // 2])          # a crash mid-write: no closing brace, no newline
    assert read_events(run_dir) == _kept(completed.events)
    assert summarize(run_dir).step == MAX_STEPS


# -------------------------------------------------------------------------------------------- summarize


def test_summary_of_a_completed_run(completed):
    s = summarize(completed.run_dir)
    started = _of(completed.events, RunStarted)[0]
    last_eval = _of(completed.events, EvalDone)[-1]
    assert isinstance(s, RunSummary)
    assert s.path == completed.run_dir and s.name == completed.run_dir.name
    assert s.status == "completed"
    assert s.step == s.total_steps == started.total_steps == MAX_STEPS
    assert s.tasks == (TASK,) == tuple(started.tasks)
    assert s.monitored == last_eval.monitored == f"{TASK}/accuracy"
    assert s.best_value == last_eval.best_value is not None
    assert s.exported is True and s.resumable is False
    assert any((completed.run_dir / "checkpoints").glob("step-*"))     # not resumable despite its checkpoints
    assert s.started == (completed.run_dir / "project.toml").stat().st_mtime


def test_summary_of_a_stopped_run(stopped):
    s = summarize(stopped.run_dir)
    assert s.status == "stopped"
    assert s.step == STOP_AT and s.total_steps == MAX_STEPS
    assert s.tasks == (TASK,)
    assert s.resumable is True and s.exported is False
    evals = _of(stopped.events, EvalDone)
    assert s.monitored == (evals[-1].monitored if evals else "")
    assert s.best_value == (evals[-1].best_value if evals else None)


def test_a_run_without_run_ended_reads_as_interrupted(stopped, tmp_path):
    run_dir = _copy_run(stopped.run_dir, tmp_path / "killed")
    _truncate_before_last(run_dir / "events.jsonl", RunEnded)
    assert not _of(read_events(run_dir), RunEnded)
    s = summarize(run_dir)
    assert s.status == "interrupted"
    assert s.step == STOP_AT                       # from its StepLogged events
    assert s.resumable is True                      # its checkpoint is still there


def test_a_completed_run_killed_before_run_ended_is_interrupted_and_not_resumable(completed, tmp_path):
    run_dir = _copy_run(completed.run_dir, tmp_path / "killed")
    _truncate_before_last(run_dir / "events.jsonl", RunEnded)
    s = summarize(run_dir)
    assert s.status == "interrupted" and s.exported is True and s.resumable is False


def test_a_run_that_never_started_training(tmp_path):
    run_dir = tmp_path / "empty-run"
    run_dir.mkdir()
    (run_dir / "events.jsonl").write_text(event_to_json(Progress("model", "Loading", 0, 1)) + "\n",
                                          encoding="utf-8")
    s = summarize(run_dir)
    assert (s.status, s.step, s.total_steps, s.tasks, s.monitored, s.best_value) == ("interrupted", 0, 0, (), "",
                                                                                   None)
    assert s.started == 0.0 and not s.exported and not s.resumable


def test_a_resumed_run_killed_after_resuming_reads_as_interrupted(stopped, tmp_path_factory, tmp_path):
    run_dir = _copy_run(stopped.run_dir, tmp_path / "resumed")
    again = _train(tmp_path_factory, tmp_path, stop_at=STOP_AT + 1, run_dir=run_dir, resume=True,
                   project=stopped.project)
    assert again.ended.reason == "stopped" and again.ended.step == STOP_AT + 1
    _truncate_before_last(run_dir / "events.jsonl", RunEnded)      # killed after the step-3 checkpoint
    s = summarize(run_dir)
    assert s.step == STOP_AT + 1
    assert s.status == "interrupted"


def test_events_of_a_run_resumed_after_a_torn_line_are_all_read(stopped, tmp_path_factory, tmp_path):
    run_dir = _copy_run(stopped.run_dir, tmp_path / "crashed")
    log = run_dir / "events.jsonl"
    _truncate_before_last(log, RunEnded)
    torn = event_to_json(StepLogged(STOP_AT + 1, 1.0, {TASK: 0.5}, 1e-3, 1e-3, 10.0, 1.0))
    with open(log, "a", encoding="utf-8") as f:
        f.write(torn[:20])
    before = read_events(run_dir)
    again = _train(tmp_path_factory, tmp_path, run_dir=run_dir, resume=True, project=stopped.project)
    assert again.ended.reason == "completed"
    assert read_events(run_dir) == before + _kept(again.events)


# -------------------------------------------------------------------------------------------- list_runs


def test_list_runs_is_newest_first_and_ignores_folders_without_a_log(completed, tmp_path):
    base = tmp_path / "runs"
    base.mkdir()
    now = time.time()
    ages = {"old": 3000, "newest": 10, "middle": 1000}
    for name, age in ages.items():
        folder = base / name
        folder.mkdir()
        for f in ("events.jsonl", "project.toml"):
            shutil.copy2(completed.run_dir / f, folder / f)
        os.utime(folder / "project.toml", (now - age, now - age))
    (base / "no-log").mkdir()
    (base / "no-log" / "project.toml").write_text("x", encoding="utf-8")
    (base / "stray.txt").write_text("not a run", encoding="utf-8")
    listed = list_runs(base)
    assert [r.name for r in listed] == ["newest", "middle", "old"]
    assert [r.started for r in listed] == pytest.approx([now - 10, now - 1000, now - 3000])
    assert listed == [summarize(base / n) for n in ("newest", "middle", "old")]
    assert all(r.status == "completed" for r in listed)


def test_list_runs_of_a_missing_folder_is_empty(tmp_path):
    assert list_runs(tmp_path / "nowhere") == []
    assert list_runs(tmp_path) == []


def test_list_runs_reads_real_run_folders(completed, stopped, tmp_path):
    base = tmp_path / "runs"
    base.mkdir()
    a = _copy_run(completed.run_dir, base / "a")
    b = _copy_run(stopped.run_dir, base / "b")
    now = time.time()
    os.utime(a / "project.toml", (now - 100, now - 100))
    os.utime(b / "project.toml", (now, now))
    assert [(r.name, r.status, r.resumable) for r in list_runs(base)] == [("b", "stopped", True),
                                                                         ("a", "completed", False)]


# ------------------------------------------------------------------------------------------ new_run_dir


def test_new_run_dir_is_under_the_given_folder_and_unique_in_the_same_second(completed, tmp_path, monkeypatch):
    import qarac_gui.core.run as run_mod
    monkeypatch.setattr(run_mod.time, "strftime", lambda fmt, *a: "20240102-030405")
    runs = tmp_path / "my-runs"
    first = new_run_dir(completed.project, runs=runs)
    assert first.parent == runs and first.name == "tiny-20240102-030405"
    assert not first.exists()                         # it only names the folder
    first.mkdir(parents=True)
    second = new_run_dir(completed.project, runs=runs)
    assert second.parent == runs and second != first and not second.exists()
    second.mkdir()
    third = new_run_dir(completed.project, runs=runs)
    assert len({first, second, third}) == 3 and third.parent == runs


def test_new_run_dir_really_in_the_same_second(completed, tmp_path):
    runs = tmp_path / "r"
    first = new_run_dir(completed.project, runs=runs)
    first.mkdir(parents=True)
    second = new_run_dir(completed.project, runs=runs)
    assert second.parent == runs and second != first and not second.exists()


def test_new_run_dir_makes_a_safe_name_and_defaults_to_the_app_runs_folder(completed, tmp_path):
    import copy
    project = copy.deepcopy(completed.project)
    project.name = "../My run: ünï/x"
    path = new_run_dir(project, runs=tmp_path)
    assert path.parent == tmp_path
    assert "/" not in path.name and ".." not in path.name and path.name.startswith("My_run_")
    project.name = "日本語"
    assert new_run_dir(project, runs=tmp_path).name.startswith("project-")
    assert new_run_dir(completed.project).parent == paths.runs_dir()


# ------------------------------------------------------------------------------------------ copy_export


def test_exported_folders_lists_the_tasks_and_full(completed, stopped):
    export = completed.run_dir / "export"
    assert exported_folders(completed.run_dir) == {TASK: export / TASK, "full": export / "full"}
    assert exported_folders(stopped.run_dir) == {}


def test_copy_export_copies_the_chosen_folders_byte_for_byte(completed, tmp_path):
    dest = tmp_path / "out" / "models"
    got = copy_export(completed.run_dir, dest, [TASK, "full"])
    assert got == [dest / TASK, dest / "full"]
    assert sorted(p.name for p in dest.iterdir()) == sorted([TASK, "full"])
    for name in (TASK, "full"):
        original = _files(completed.run_dir / "export" / name)
        assert original and _files(dest / name) == original
    assert _partials(dest.parent) == []


def test_copy_export_of_one_task_copies_only_that_task(completed, tmp_path):
    dest = tmp_path / "only"
    dest.mkdir()                                      # an existing empty folder is fine
    assert copy_export(completed.run_dir, dest, [TASK]) == [dest / TASK]
    assert [p.name for p in dest.iterdir()] == [TASK]
    assert _partials(tmp_path) == []


def test_the_copied_task_folder_loads_and_predicts_like_the_original(completed, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    dest = tmp_path / "hf"
    copy_export(completed.run_dir, dest, [TASK])
    original = completed.run_dir / "export" / TASK
    tokenizer = AutoTokenizer.from_pretrained(dest / TASK)
    inputs = tokenizer(["the food was very good"], return_tensors="pt")
    with torch.no_grad():
        want = AutoModelForSequenceClassification.from_pretrained(original).eval()(**inputs).logits
        copied = AutoModelForSequenceClassification.from_pretrained(dest / TASK).eval()
        got = copied(**inputs).logits
    assert got.shape == (1, 2)
    assert torch.equal(got, want)
    assert copied.config.id2label == {0: "neg", 1: "pos"}


def test_copy_export_reports_progress(completed, tmp_path):
    seen = []
    copy_export(completed.run_dir, tmp_path / "p", [TASK, "full"], emit=seen.append)
    assert seen and all(isinstance(e, Progress) and e.phase == "export" for e in seen)
    assert all(e.total == 2 for e in seen)
    assert [e.done for e in seen] == sorted(e.done for e in seen)
    assert seen[-1].done == seen[-1].total == 2
    assert seen[0].done == 0


def test_copy_export_refuses_a_non_empty_destination_and_leaves_it_alone(completed, tmp_path):
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine", encoding="utf-8")
    (dest / "sub").mkdir()
    (dest / "sub" / "a.bin").write_bytes(b"\x00\x01")
    before = _files(dest)
    with pytest.raises(UserError, match="not an empty folder") as info:
        copy_export(completed.run_dir, dest, [TASK])
    assert str(dest) in str(info.value)
    assert _files(dest) == before and sorted(p.name for p in dest.iterdir()) == ["keep.txt", "sub"]
    assert _partials(tmp_path) == []


def test_copy_export_refuses_a_file_as_destination(completed, tmp_path):
    dest = tmp_path / "a-file"
    dest.write_text("data", encoding="utf-8")
    with pytest.raises(UserError, match="not an empty folder"):
        copy_export(completed.run_dir, dest, [TASK])
    assert dest.read_text(encoding="utf-8") == "data"


def test_copy_export_refuses_an_unknown_task_and_names_the_available_ones(completed, tmp_path):
    dest = tmp_path / "x"
    with pytest.raises(UserError, match="nope") as info:
        copy_export(completed.run_dir, dest, [TASK, "nope"])
    assert TASK in str(info.value) and "full" in str(info.value)
    assert not dest.exists() and _partials(tmp_path) == []


def test_copy_export_of_a_run_without_export_says_it_has_none(stopped, tmp_path):
    with pytest.raises(UserError, match="none"):
        copy_export(stopped.run_dir, tmp_path / "x", [TASK])
    assert not (tmp_path / "x").exists()


def test_copy_export_refuses_an_empty_selection(completed, tmp_path):
    dest = tmp_path / "x"
    with pytest.raises(UserError, match="at least one"):
        copy_export(completed.run_dir, dest, [])
    assert not dest.exists() and _partials(tmp_path) == []


def test_a_failed_copy_leaves_neither_destination_nor_partial_folder(completed, tmp_path, monkeypatch):
    real, calls = shutil.copytree, []

    def flaky(src, dst, *args, **kwargs):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(runs_mod.shutil, "copytree", flaky)
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="No space left on device") as info:
        copy_export(completed.run_dir, dest, [TASK, "full"])
    assert str(dest) in str(info.value)
    assert len(calls) == 2
    assert not dest.exists()
    assert _partials(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_a_failed_copy_into_an_existing_empty_folder_leaves_it_empty(completed, tmp_path, monkeypatch):
    def broken(src, dst, *args, **kwargs):
        raise OSError(13, "Permission denied")
    monkeypatch.setattr(runs_mod.shutil, "copytree", broken)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UserError, match="Permission denied"):
        copy_export(completed.run_dir, dest, [TASK])
    assert dest.is_dir() and list(dest.iterdir()) == []
    assert _partials(tmp_path) == []


def test_a_stale_partial_folder_is_replaced(completed, tmp_path):
    stale = tmp_path / ".dest.partial"
    stale.mkdir()
    (stale / "junk.txt").write_text("left by a crash", encoding="utf-8")
    dest = tmp_path / "dest"
    copy_export(completed.run_dir, dest, [TASK])
    assert [p.name for p in dest.iterdir()] == [TASK]
    assert not stale.exists()


def test_only_runs_whose_lock_outlived_their_process_are_offered_as_interrupted(tmp_path):
    import json
    import os
    import socket

    from qarac_gui.core.results.history import interrupted_runs, summarize

    def crashed(name, pid=None):
        run_dir = tmp_path / name
        (run_dir / "checkpoints" / "step-00000004").mkdir(parents=True)
        started = {"event": "RunStarted", "run_dir": str(run_dir), "total_steps": 10, "start_step": 0,
                   "tasks": {"t": {}}, "lr_curve": {}, "device": "cpu", "precision": "fp32", "removed_heads": {},
                   "encoder_params": 1, "trainable_params": 1}
        (run_dir / "events.jsonl").write_text(json.dumps(started) + "\n")
        if pid is not None:
            (run_dir / "running.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
        return run_dir
    from qarac_gui.core.results.history import lock_run, unlock_run
    crashed("gone", pid=99_999_999)          # its process is gone: a crash
    crashed("reused", pid=os.getpid())       # its PID now belongs to a live process, but nobody holds the run
    alive = crashed("alive")                 # still training (here: this very process)
    lock_run(alive)
    try:
        crashed("old")                       # no lock: not read at all
        assert sorted(r.name for r in interrupted_runs(tmp_path)) == ["gone", "reused"]
        assert summarize(alive).status == "running" and not summarize(alive).resumable
    finally:
        unlock_run(alive)
