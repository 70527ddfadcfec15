"""Starting the app as a user does: the entry points, the arguments, and no heavy import before the window."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qarac_gui.core.project.config import Project, save_project


def probe(*args, env_extra=None, tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QARAC_GUI_DATA": str(tmp_path / "data"),
           **(env_extra or {})}
    command = [*args, "--probe-startup"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def report(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_window_shows_before_torch_transformers_or_datasets_are_imported(tmp_path):
    shown = report(probe(sys.executable, "-m", "qarac_gui", tmp_path=tmp_path))
    assert shown["heavy_modules_loaded"] == []
    assert shown["title"].endswith("— qarac_gui") and "untitled" in shown["title"]


@pytest.mark.slow
def test_the_gui_script_opens_a_project_named_on_the_command_line(tmp_path):
    script = Path(sys.executable).with_name("qarac-gui")
    if not script.exists():
        pytest.skip("qarac-gui is not installed in this environment (pip install -e .)")
    project = Project(name="my-sentiment")
    save_project(project, tmp_path / "mine.toml")
    shown = report(probe(str(script), str(tmp_path / "mine.toml"), tmp_path=tmp_path))
    assert shown["title"].startswith("my-sentiment (mine.toml)") and "qarac_gui" in shown["title"]


@pytest.mark.slow
def test_demo_flag_opens_the_bundled_demo(tmp_path):
    shown = report(probe(sys.executable, "-m", "qarac_gui", "--demo", tmp_path=tmp_path))
    assert shown["title"].startswith("demo (project.toml)")
    assert shown["heavy_modules_loaded"] == []


@pytest.mark.slow
def test_a_missing_project_file_is_a_clear_error(tmp_path):
    result = probe(sys.executable, "-m", "qarac_gui", str(tmp_path / "nope.toml"), tmp_path=tmp_path)
    assert result.returncode == 1
    assert "nope.toml: no such project file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_self_test_trains_the_demo_offscreen_exports_and_reports_success(tmp_path):
    env = {**os.environ, "QARAC_GUI_DATA": str(tmp_path / "data")}
    env.pop("QT_QPA_PLATFORM", None)            # --self-test chooses offscreen by itself
    result = subprocess.run([sys.executable, "-m", "qarac_gui", "--self-test", "--self-test-steps", "2"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["ok"] is True and verdict["steps"] == 2
    assert verdict["exported"] == ["full", "sentiment", "similarity"]
    assert verdict["labels"] == {"0": "negative", "1": "positive"}
    runs = list((tmp_path / "data" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "export" / "sentiment" / "model.safetensors").is_file()


@pytest.mark.slow
def test_self_test_exits_1_with_the_reason_when_the_run_cannot_work(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the data folder should be")
    env = {**os.environ, "QARAC_GUI_DATA": str(blocked), "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-m", "qarac_gui", "--self-test"], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 1
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["ok"] is False and verdict["error"]
