"""Two runs compared: the settings that differ, named by their keys in the project file (tasks by name), and where
each run ended; from the CLI with --compare."""

from __future__ import annotations

import copy
import threading

import pytest
from tiny import project_dict

from qarac_gui import cli
from qarac_gui.core.project.config import TaskConfig, parse_project
from qarac_gui.core.results.compare import MISSING, compare_runs, settings_diff


def _project(tmp_path, tiny_bert):
    return parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification", "regression"]), tmp_path)


def test_the_diff_names_exactly_the_keys_that_changed(tmp_path, tiny_bert):
    a = _project(tmp_path, tiny_bert)
    b = copy.deepcopy(a)
    b.optim.lr = 3e-5
    b.tasks[1].batch_size = 32
    b.tasks[0].data.filter = "label != 'x'"
    assert [(k, x, y) for k, x, y in settings_diff(a, b)] == [
        ("optim.lr", a.optim.lr, 3e-5),
        ("tasks.classification.data.filter", "", "label != 'x'"),
        ("tasks.regression.batch_size", a.tasks[1].batch_size, 32)]
    b.tasks.reverse()                       # the same tasks in another order are the same settings
    assert [k for k, _, _ in settings_diff(a, b)] == ["optim.lr", "tasks.classification.data.filter",
                                                       "tasks.regression.batch_size"]
    c = copy.deepcopy(a)
    c.tasks.append(TaskConfig(name="extra"))
    added = settings_diff(a, c)
    assert added and all(k.startswith("tasks.extra.") and x == MISSING for k, x, _ in added)
    assert settings_diff(a, copy.deepcopy(a)) == []


def _run(tmp_path, tiny_bert, name, lr):
    from qarac_gui.core.run import run
    project = _project(tmp_path, tiny_bert)
    project.optim.lr, project.train.max_steps, project.eval.every = lr, 2, 0
    ended = run(project, lambda e: None, threading.Event(), run_dir=tmp_path / name)
    assert ended.reason == "completed", ended.message
    return tmp_path / name


def test_compare_prints_both_runs_final_metrics_and_only_the_differing_settings(tmp_path, tiny_bert, capsys):
    a, b = _run(tmp_path, tiny_bert, "run-a", 1e-3), _run(tmp_path, tiny_bert, "run-b", 5e-4)
    c = compare_runs(a, b)
    assert c.differing == ["optim.lr"] and c.steps == ("2 / 2 (completed)", "2 / 2 (completed)")
    assert set(c.metrics) >= {"classification/accuracy", "regression/mse"}
    assert all(x is not None and y is not None for x, y in c.metrics.values())

    assert cli.main(["--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "A: run-a" in out and "B: run-b" in out and "1 setting differ:" in out
    assert [line.split()[0] for line in out.split("differ:")[1].strip().splitlines()] == ["optim.lr"]
    assert "classification/accuracy" in out and "2 / 2 (completed)" in out


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: None], ids=["not-a-run", "missing"])
def test_compare_of_a_folder_that_is_not_a_run_says_so(tmp_path, tiny_bert, capsys, make):
    a = _run(tmp_path, tiny_bert, "run-a", 1e-3)
    other = tmp_path / "other"
    make(other)
    assert cli.main(["--compare", str(a), str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {other} is not a run folder") and "Traceback" not in err


def test_without_a_project_or_compare_the_cli_says_what_to_give(capsys):
    assert cli.main([]) == 1
    assert "give the project file to train (or --compare RUN_A RUN_B" in capsys.readouterr().err
