"""One class per head kind is the only place that knows it: nothing else names a kind, and a new kind added to
the registry is validated, trained, evaluated and exported without touching anything else."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

import pytest
from tiny import project_dict

import qarac_gui
from qarac_gui.core import kinds
from qarac_gui.core.events import EvalDone, RunEnded, RunStarted
from qarac_gui.core.kinds.pooled import Regression
from qarac_gui.core.project.config import ConfigError, HeadConfig, parse_project

PACKAGE = Path(qarac_gui.__file__).parent


def _kind_names_outside_the_kinds() -> list[str]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        if (PACKAGE / "core" / "kinds") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in kinds.HEAD_KINDS:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    return found


def test_no_module_outside_the_kinds_names_a_kind():
    # The one exception: the kind a new task starts with, the project file's default.
    default = f"core/project/config.py:{_line_of_default()}: {HeadConfig().kind!r}"
    assert [f for f in _kind_names_outside_the_kinds() if f != default] == []


def _line_of_default() -> int:
    source = (PACKAGE / "core" / "project" / "config.py").read_text(encoding="utf-8")
    return next(i for i, line in enumerate(source.splitlines(), 1) if "kind: str = " in line)


def test_every_kind_says_all_the_window_and_the_run_ask_of_it():
    for name, kind in kinds.HEAD_KINDS.items():
        assert kind.name == name and kind.title and kind.help
        assert kind.main_metric in kind.metrics, name
        assert kind.export_as in ("native", "sentence_transformers", "backbones"), name
        assert kind.export_as != "native" or kind.auto_class.startswith("AutoModelFor"), name


class Ordinal(Regression):
    """A kind the app does not have: a score per text, reported by its mean squared error first."""
    name, title, help = "ordinal", "Ordinal score", "A grade per text, learnt as a number."
    main_metric = "mse"


@pytest.mark.slow
def test_a_new_kind_is_one_class_added_to_the_registry(tmp_path, tiny_bert, monkeypatch):
    raw = project_dict(tiny_bert, tmp_path / "data", ["regression"], train={"max_steps": 4})
    raw["tasks"][0]["head"]["kind"] = "ordinal"
    with pytest.raises(ConfigError, match=r"head\.kind.*ordinal"):
        parse_project(raw, tmp_path)

    monkeypatch.setitem(kinds.HEAD_KINDS, "ordinal", Ordinal())
    project = parse_project(raw, tmp_path)
    from qarac_gui.core.run import run
    events = []
    ended = run(project, events.append, threading.Event(), run_dir=tmp_path / "run")
    assert isinstance(ended, RunEnded) and ended.reason == "completed", ended
    evaluated = [e for e in events if isinstance(e, EvalDone)][-1]
    assert set(evaluated.metrics["regression"]) == {"loss", "mse", "pearson", "spearman"}
    assert evaluated.best_value == evaluated.metrics["regression"]["mse"]      # its main metric is watched
    assert [e for e in events if isinstance(e, RunStarted)][0].tasks["regression"]["kind"] == "ordinal"

    from transformers import AutoModelForSequenceClassification
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "export" / "regression")
    assert exported.config.problem_type == "regression" and exported.config.num_labels == 1
    manifest = json.loads((tmp_path / "run" / "export" / "full" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tasks"]["regression"]["kind"] == "ordinal"
