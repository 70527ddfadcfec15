"""qarac-train: exit codes, JSON-lines events, --set, clear one-line errors, Ctrl-C with a checkpoint, --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import tomli_w
from tiny import project_dict

from qarac_gui import cli
from qarac_gui.cli import main
from qarac_gui.core.events import RunEnded

pytestmark = pytest.mark.usefixtures("torch_threads")

KINDS = ["classification", "regression"]


def _project_file(tmp_path: Path, model: Path, *, kinds=KINDS, name="project.toml", edit=None, **train) -> Path:
    raw = project_dict(model, tmp_path / "data", list(kinds), train={"max_steps": 3, **train})
    if edit:
        edit(raw)
    path = tmp_path / name
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def _events(stdout: str) -> list[dict]:
    events = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(e, dict) and isinstance(e.get("event"), str) for e in events)
    return events


def _names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def _of(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["event"] == name]


def _one_error_line(err: str) -> str:
    # the pre-flight check's warnings and token-length notes may come first
    lines = [x for x in err.strip().splitlines() if not x.startswith(("warning: ", "task "))]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# Successful runs


@pytest.mark.slow
def test_a_two_task_run_exits_0_and_exports_every_task(tmp_path, tiny_bert, capsys):
    project = _project_file(tmp_path, tiny_bert)
    out = tmp_path / "out"
    assert main([str(project), "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""                 # the terminal printer never writes JSON to stdout
    export = out / "export"
    assert sorted(p.name for p in export.iterdir()) == ["classification", "full", "regression"]
    for task in KINDS:
        assert (export / task / "config.json").is_file() and (export / task / "model.safetensors").is_file()
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["step"] == 3
    logged = _events((out / "events.jsonl").read_text(encoding="utf-8"))
    assert logged[-1]["event"] == "RunEnded" and logged[-1]["reason"] == "completed" and logged[-1]["step"] == 3


def test_jsonl_prints_one_event_per_line_in_order_and_set_reaches_the_run(tmp_path, tiny_bert, capsys):
    project = _project_file(tmp_path, tiny_bert)
    out = tmp_path / "out"
    code = main([str(project), "--out", str(out), "--jsonl",
                 "--set", "train.max_steps=2", "--set", "tasks.regression.batch_size=4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    events = _events(captured.out)
    names = _names(events)
    for name in ("RunStarted", "StepLogged", "EvalDone", "ExportDone", "RunEnded"):
        assert name in names
    started, exported, ended = names.index("RunStarted"), names.index("ExportDone"), names.index("RunEnded")
    steps = [i for i, n in enumerate(names) if n == "StepLogged"]
    evals = [i for i, n in enumerate(names) if n == "EvalDone"]
    assert started < steps[0] and steps[-1] < evals[-1] < exported < ended == len(names) - 1
    assert names.count("RunStarted") == 1 and names.count("RunEnded") == 1
    # the overrides reached the run
    assert events[started]["total_steps"] == 2 and events[started]["start_step"] == 0
    assert events[ended]["step"] == 2 and events[ended]["reason"] == "completed"
    assert _of(events, "StepLogged")[-1]["step"] == 2
    assert set(events[started]["tasks"]) == set(KINDS)
    kept = tomllib.loads((out / "project.toml").read_text(encoding="utf-8"))
    assert kept["train"]["max_steps"] == 2
    assert {t["name"]: t["batch_size"] for t in kept["tasks"]} == {"classification": 8, "regression": 4}
    # the stages between the data and the first step say what runs, in order
    said = [e["message"] for e in events[:started] if e["event"] == "Progress"]
    stages = ["Data ready", "Building the model and its heads", f"Moving the model to {events[started]['device']}",
              "Building the optimiser"]
    assert [m for m in said if m in stages] == stages
    assert events[started + 1] == {"event": "Progress", "phase": "train", "message": "Running the first step",
                                   "done": 0, "total": 0}
    # every optimiser step reports its progress on the stream, from the first step on, before its log
    done = _of(events, "StepDone")
    assert [e["step"] for e in done] == [1, 2] and set(done[0]) == {"event", "step", "epoch", "elapsed_s"}
    assert started < names.index("StepDone") < steps[0]
    # the run folder keeps the same events but the per-step progress
    kept = _names(_events((out / "events.jsonl").read_text(encoding="utf-8")))
    assert kept == [n for n in names if n != "StepDone"]


# ---------------------------------------------------------------------------------------------------------------
# Errors: exit 1 and one clear line, no traceback


def test_a_bad_project_file_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\nname = \n", encoding="utf-8")
    before = signal.getsignal(signal.SIGINT)
    assert main([str(bad), "--out", str(tmp_path / "out")]) == 1
    assert signal.getsignal(signal.SIGINT) is before        # the Ctrl-C handler is put back
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {bad}: not valid TOML")
    assert not (tmp_path / "out").exists()


def test_a_project_with_an_unknown_key_is_one_error_line(tmp_path, tiny_bert, capsys):
    project = _project_file(tmp_path, tiny_bert, edit=lambda raw: raw["optim"].update(lrr=1e-3))
    assert main([str(project), "--jsonl"]) == 1
    captured = capsys.readouterr()
    assert _one_error_line(captured.err) == f"error: {project}: optim.lrr: unknown key (did you mean 'lr'?)"
    assert captured.out == ""


def test_a_bad_override_is_one_error_line(tmp_path, tiny_bert, capsys):
    project = _project_file(tmp_path, tiny_bert)
    assert main([str(project), "--jsonl", "--set", "tasks.nope.batch_size=8"]) == 1
    assert _one_error_line(capsys.readouterr().err) == (
        f"error: {project}: --set tasks.nope.batch_size: no task named 'nope'")


def test_a_missing_data_file_is_one_error_line(tmp_path, tiny_bert, capsys):
    missing = tmp_path / "data" / "gone.csv"
    project = _project_file(tmp_path, tiny_bert, edit=lambda raw: raw["tasks"][1]["data"].update(train=str(missing)))
    out = tmp_path / "out"
    assert main([str(project), "--out", str(out), "--jsonl"]) == 1
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert str(missing) in line and "not found" in line
    assert _events(captured.out) == [] and not out.exists()     # the pre-flight check refused it before the run


def test_a_missing_model_folder_is_one_error_line(tmp_path, tiny_bert, capsys):
    gone = tmp_path / "no-such-model"
    project = _project_file(tmp_path, tiny_bert,
                            edit=lambda raw: raw["backbones"]["encoder"].update(model=str(gone)))
    assert main([str(project), "--out", str(tmp_path / "out"), "--jsonl"]) == 1
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert f"model folder {gone} does not exist" in line
    assert _events(captured.out) == [] and not (tmp_path / "out").exists()   # found before a run folder was made


def test_errors_exit_1_without_a_traceback_from_a_real_process(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'no version'\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "qarac_gui.cli", str(bad)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {bad}: version: expected an integer (this app writes "
                                                  "version 3), got None"]


def test_resume_needs_out(tmp_path, capsys):
    assert main([str(tmp_path / "p.toml"), "--resume"]) == 1
    assert "--resume needs --out" in _one_error_line(capsys.readouterr().err)


def test_resume_without_a_checkpoint_is_an_error(tmp_path, tiny_bert, capsys):
    project = _project_file(tmp_path, tiny_bert)
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(project), "--out", str(out), "--resume", "--jsonl"]) == 1
    captured = capsys.readouterr()
    assert f"{out} has no complete checkpoint to resume from" in _one_error_line(captured.err)
    assert not (out / "export").exists()
    assert _events(captured.out) == [] and list(out.iterdir()) == []      # refused before anything was written


def test_a_folder_that_holds_a_run_is_not_overwritten_without_resume(tmp_path, tiny_bert, capsys):
    project = _project_file(tmp_path, tiny_bert)
    out = tmp_path / "out"
    checkpoint = out / "checkpoints" / "step-00000005"
    checkpoint.mkdir(parents=True)
    (checkpoint / "manifest.json").write_text("{}", encoding="utf-8")
    assert main([str(project), "--out", str(out), "--jsonl"]) == 1
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert str(out) in line and "--resume" in line
    assert captured.out == ""
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]      # nothing written into it
    assert (checkpoint / "manifest.json").read_text(encoding="utf-8") == "{}"


def test_a_task_named_full_does_not_fail_after_training(tmp_path, tiny_bert, capsys):
    def rename(raw):
        raw["tasks"][0]["name"] = "full"
    project = _project_file(tmp_path, tiny_bert, edit=rename, max_steps=2)
    code = main([str(project), "--out", str(tmp_path / "out"), "--jsonl"])
    err = capsys.readouterr().err
    assert "unexpected" not in err
    assert code == 0 or "tasks.full" in err          # either it exports, or it is refused up front


@pytest.mark.bug_report
def test_an_unforeseen_error_is_called_a_bug_and_its_details_go_to_the_bug_log(tmp_path, tiny_bert, capsys,
                                                                            monkeypatch):
    from qarac_gui.core import bug_report
    from qarac_gui.core.training import setup as engine

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a slip in the engine")
    monkeypatch.setattr(engine, "build_run", broken)
    monkeypatch.setenv("QARAC_GUI_DATA", str(tmp_path / "app"))
    project = _project_file(tmp_path, tiny_bert)
    assert main([str(project), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    log = tmp_path / "app" / "errors.log"
    assert (f"error: unexpected ZeroDivisionError: a slip in the engine (a bug in qarac_gui: details in {log}; run "
            "again with --debug to see them here)") in err
    assert "Traceback" not in err
    text = log.read_text(encoding="utf-8")
    assert "in qarac-train ---" in text and "Traceback" in text and "in broken" in text
    assert bug_report.log_path() == log


def test_the_terminal_printer_writes_to_the_current_stderr(capsys):
    cli.TerminalPrinter()(RunEnded(3, "completed", "", "somewhere"))
    assert "Run completed at step 3" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C: stop with a checkpoint, exit 130, then --resume to the end


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("qarac-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "qarac_gui.cli"]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_stops_with_a_checkpoint_and_resume_finishes_the_run(tmp_path, tiny_bert, capsys):
    project = _project_file(tmp_path, tiny_bert, max_steps=2000)
    out = tmp_path / "out"
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w", encoding="utf-8") as stderr:
        proc = subprocess.Popen(_console_script() + [str(project), "--out", str(out), "--jsonl"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, env=dict(os.environ))
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    try:
        lines = []
        while True:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if json.loads(line)["event"] == "StepLogged":
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=240)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = stderr_path.read_text(encoding="utf-8")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Stopping after this step" in err
    events = _events("".join(lines) + rest)
    ended = events[-1]
    assert ended["event"] == "RunEnded" and ended["reason"] == "stopped"
    stopped_at = ended["step"]
    assert 1 <= stopped_at < 2000
    saved = _of(events, "CheckpointSaved")
    assert [e["step"] for e in saved] == [stopped_at]
    checkpoint = out / "checkpoints" / f"step-{stopped_at:08d}"
    assert Path(saved[0]["path"]).resolve() == checkpoint.resolve()
    assert (checkpoint / "manifest.json").is_file() and (checkpoint / "model.safetensors").is_file()
    assert not (out / "export").exists()

    # resume in-process with a shorter plan, so it finishes two steps after the checkpoint
    end = stopped_at + 2
    code = main([str(project), "--out", str(out), "--resume", "--jsonl", "--set", f"train.max_steps={end}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    resumed = _events(captured.out)
    started = _of(resumed, "RunStarted")[0]
    assert started["start_step"] == stopped_at and started["total_steps"] == end
    steps = [e["step"] for e in _of(resumed, "StepLogged")]
    assert steps and steps[0] > stopped_at and steps[-1] == end
    assert resumed[-1]["event"] == "RunEnded" and resumed[-1]["reason"] == "completed" and resumed[-1]["step"] == end
    assert (out / "export" / "classification" / "config.json").is_file()
    # the run folder's history holds both sessions
    history = [e for e in _events((out / "events.jsonl").read_text(encoding="utf-8")) if e["event"] == "RunEnded"]
    assert [(e["reason"], e["step"]) for e in history] == [("stopped", stopped_at), ("completed", end)]


def test_preflight_refuses_bad_values_before_loading_the_model_and_prints_warnings(tmp_path, tiny_bert, capsys):
    import csv
    rows = [[f"the film was good {i}", str(i / 10)] for i in range(20)]
    rows[4][1] = "high"
    data = tmp_path / "scores.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["text", "score"], *rows])
    raw = project_dict(tiny_bert, tmp_path / "d", ["regression"])
    raw["tasks"][0]["data"].update({"train": str(data), "validation_fraction": 0.0})
    path = tmp_path / "p.toml"
    path.write_text(__import__("tomli_w").dumps(raw), encoding="utf-8")
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out), "--jsonl"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["warning", "error"] and "Traceback" not in captured.err
    error = lines[-1]
    assert "row 5" in error and "'high'" in error and "'score'" in error
    assert "no validation data" in captured.err                      # the warnings come first
    assert _events(captured.out) == [] and not out.exists()          # nothing loaded, nothing written


def test_onnx_wants_the_folder_of_a_finished_run(tmp_path, capsys):
    assert main(["--onnx"]) == 1
    assert "give the run folder to convert" in capsys.readouterr().err
    assert main([str(tmp_path), "--onnx"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "Traceback" not in err


def test_export_adapter_is_the_projects_export_adapter_setting(tmp_path, tiny_bert, monkeypatch, capsys):
    from qarac_gui.core.errors import UserError
    project = _project_file(tmp_path, tiny_bert)
    seen = []
    real = cli.load_project

    def load_and_stop(path, overrides):
        seen.append(real(path, overrides).export.adapter)
        raise UserError("looked at the project: no run needed")
    monkeypatch.setattr(cli, "load_project", load_and_stop)
    assert main([str(project), "--out", str(tmp_path / "out"), "--export-adapter", "separate"]) == 1
    assert main([str(project), "--out", str(tmp_path / "out"), "--export-adapter", "merged"]) == 1
    assert seen == ["separate", "merged"]
    with pytest.raises(SystemExit):                 # argparse names the two choices
        main([str(project), "--export-adapter", "alone"])
    assert "invalid choice: 'alone'" in capsys.readouterr().err
