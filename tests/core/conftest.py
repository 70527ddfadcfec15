"""Runs that several test modules read: trained once per session."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest


def train_once(tmp_path_factory, name: str, raw: dict, root: Path) -> Path:
    """Train a raw project into a run folder of its own, with the app's folders under the session's temp dir (the
    autouse app-dir fixture is function-scoped, so it is not active while a session fixture runs)."""
    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.run import run
    app = tmp_path_factory.getbasetemp()
    run_dir = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QARAC_GUI_DATA", str(app / "app-data"))
        mp.setenv("QARAC_GUI_CACHE", str(app / "app-cache"))
        ended = run(parse_project(raw, root), lambda event: None, threading.Event(), run_dir=run_dir,
                    min_log_interval=0)
    assert ended.reason == "completed", (name, ended.message)
    return run_dir


@pytest.fixture(scope="session")
def recipe_run(tmp_path_factory, tiny_bert) -> Path:
    """The recipe's four objectives over three backbones (two attention-pooled encoders and a decoder), trained
    briefly: a run folder with export/backbones and export/full."""
    from recipe_data import recipe_project, write_recipe_data
    root = tmp_path_factory.mktemp("recipe")
    raw = recipe_project(tiny_bert, write_recipe_data(root / "data"), steps=20)
    return train_once(tmp_path_factory, "recipe", raw, root)


@pytest.fixture(scope="session")
def pooled_run(tmp_path_factory, tiny_bert) -> Path:
    """A vector task over two encoders that pool with sentence-transformers' own poolings (the first token, the
    mean), trained for a few steps: a run folder with export/backbones and export/full."""
    import json
    root = tmp_path_factory.mktemp("pooled")
    places = ("paris", "london", "berlin", "rome")
    rows = [{"question": f"where is the {thing} of {place}", "score": 1.0 if i % 2 else -1.0,
             "answer": f"the {thing} is in {place if i % 2 else places[(places.index(place) + 1) % 4]}"}
            for i, (thing, place) in enumerate((t, p) for t in ("museum", "tower", "river", "city") for p in places)]
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    raw = {"version": 2, "name": "pooled",
           "backbones": {"question_encoder": {"model": str(tiny_bert), "pooling": "cls"},
                         "answer_encoder": {"model": str(tiny_bert), "pooling": "mean"}},
           "tasks": [{"name": "matching", "batch_size": 8, "max_length": 16,
                      "inputs": {"q": "question_encoder:question", "a": "answer_encoder:answer"},
                      "head": {"kind": "vector", "left": "q", "right": "a", "compare": "cosine"},
                      "data": {"train": str(data), "label": "score", "validation_fraction": 0.25}}],
           "optim": {"lr": 1e-3, "warmup_steps": 0}, "train": {"max_steps": 3, "log_every": 1, "seed": 1},
           "eval": {"batch_size": 16}}
    return train_once(tmp_path_factory, "pooled", raw, root)


@pytest.fixture(scope="session")
def kinds_run(tmp_path_factory, tiny_bert) -> Path:
    """Every kind over one text (or pair) on one encoder, trained long enough to learn tiny.py's patterns."""
    from tiny import TASK_COLUMNS, project_dict
    root = tmp_path_factory.mktemp("kinds")
    raw = project_dict(tiny_bert, root / "data", list(TASK_COLUMNS), optim={"lr": 3e-3, "warmup_steps": 0},
                       train={"max_steps": 100, "log_every": 10})
    return train_once(tmp_path_factory, "kinds", raw, root)
