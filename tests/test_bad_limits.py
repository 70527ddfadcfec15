"""Limits checked against the model and the machine before anything heavy runs: a max_length longer than the
model's position embeddings, a run too long to plan, a seed or a thread count the libraries cannot take. Each is
refused with the key, the limit and what to do, before a run folder is made; nothing the user had is changed."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from pathlib import Path

import pytest
import tomli_w
from tiny import WORDS, project_dict

from qarac_gui.cli import main
from qarac_gui.core.errors import UserError
from qarac_gui.core.events import RunEnded, RunStarted
from qarac_gui.core.project.config import load_project, parse_project
from qarac_gui.core.project.convert import ConfigError
from qarac_gui.core.run import run
from qarac_gui.core.training.plan import lr_curve, lr_factor

pytestmark = pytest.mark.usefixtures("torch_threads")


def _snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes | None]:
    """Every file and folder under `folder` with its bytes (None for folders), to prove nothing changed."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(Path(folder).rglob("*")) if p.name not in skip}


def _long_rows(path: Path, n: int = 40) -> Path:
    """Rows of 300 words: longer than the 130 position embeddings of the tiny models."""
    rng = random.Random(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [" ".join(rng.choice(WORDS) for _ in range(300)) + f",{['neg', 'pos'][i % 2]}" for i in range(n)]
    path.write_text("text,label\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_project(tmp_path: Path, model: Path, edit=None, long_rows: bool = False) -> Path:
    raw = project_dict(model, tmp_path / "data", ["classification"])
    if long_rows:
        raw["tasks"][0]["data"]["train"] = str(_long_rows(tmp_path / "data" / "long.csv"))
    if edit:
        edit(raw)
    path = tmp_path / "project.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def _cli_error(capsys, *args) -> str:
    """Runs qarac-train in this process; it must fail with one "error:" line and no "unexpected" one."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "unexpected" not in err and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def _max_length(n: int, task: int = 0):
    return lambda raw: raw["tasks"][task].update(max_length=n)


# ---------------------------------------------------------------------------------------------------------------
# max_length against the model's position embeddings (the tiny models have max_position_embeddings = 130)


@pytest.mark.parametrize("arch, max_length, limit", [
    pytest.param("bert", 1024, 130, id="bert-1024"),
    pytest.param("bert", 131, 130, id="bert-one-over"),
    pytest.param("roberta", 130, 128, id="roberta-padding-offset"),     # positions start after the padding id
])
def test_a_max_length_over_the_models_positions_is_refused_before_a_run_folder(tmp_path, tiny_bert, tiny_roberta,
                                                                             capsys, arch, max_length, limit):
    model = tiny_bert if arch == "bert" else tiny_roberta
    path = _write_project(tmp_path, model, _max_length(max_length), long_rows=True)
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    line = _cli_error(capsys, path, "--out", out)
    assert f"tasks.classification.max_length: {max_length} is more than" in line
    assert f"takes {limit} tokens" in line and f"set tasks.classification.max_length to {limit} or less" in line
    assert not out.exists() and _snapshot(tmp_path) == before


@pytest.mark.parametrize("arch, max_length", [pytest.param("bert", 130, id="bert"),
                                              pytest.param("roberta", 128, id="roberta")])
def test_a_max_length_at_the_models_limit_trains(tmp_path, tiny_bert, tiny_roberta, capsys, arch, max_length):
    model = tiny_bert if arch == "bert" else tiny_roberta
    path = _write_project(tmp_path, model, _max_length(max_length), long_rows=True)
    code = main([str(path), "--out", str(tmp_path / "out"), "--set", "train.max_steps=2"])
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize("config, limit", [
    pytest.param({"model_type": "bert", "max_position_embeddings": 512}, 512, id="bert"),
    pytest.param({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512, id="roberta"),
    pytest.param({"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512, id="xlmr"),
    pytest.param({"model_type": "deberta-v2", "max_position_embeddings": 512, "position_biased_input": False}, None,
                 id="deberta-relative-only"),
    pytest.param({"model_type": "t5", "d_model": 512}, None, id="no-position-table"),
])
def test_the_position_limit_follows_the_architecture(config, limit):
    from qarac_gui.core.model.positions import position_limit
    found = position_limit(config)
    assert (found[0] if found else None) == limit


def test_the_tokenizers_model_max_length_is_a_limit_too(tmp_path, tiny_bert, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    config = model / "tokenizer_config.json"
    config.write_text(json.dumps(json.loads(config.read_text(encoding="utf-8")) | {"model_max_length": 64}),
                      encoding="utf-8")
    path = _write_project(tmp_path, model, _max_length(100), long_rows=True)
    before = _snapshot(tmp_path)
    line = _cli_error(capsys, path, "--out", tmp_path / "out")
    assert "tasks.classification.max_length: 100 is more than" in line and "takes 64 tokens" in line
    assert "model_max_length" in line
    assert _snapshot(tmp_path) == before


def test_the_second_task_over_the_limit_is_the_one_named(tmp_path, tiny_bert, capsys):
    def edit(raw):
        raw["tasks"].append(json.loads(json.dumps(raw["tasks"][0])) | {"name": "second", "max_length": 512})
    path = _write_project(tmp_path, tiny_bert, edit)
    line = _cli_error(capsys, path, "--out", tmp_path / "out")
    assert "tasks.second.max_length: 512" in line and "tasks.classification.max_length" not in line


def test_a_max_length_over_the_limit_is_caught_at_run_time_too(tmp_path, tiny_bert):
    """The GUI's Start and --resume do not go through the CLI's pre-flight: the run checks after loading."""
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"]), tmp_path)
    project.tasks[0].data.train = str(_long_rows(tmp_path / "data" / "long.csv"))
    project.tasks[0].max_length = 1024
    events = []
    with pytest.raises(UserError, match="tasks.classification.max_length: 1024 is more than .* takes 130 tokens"):
        run(project, events.append, threading.Event(), run_dir=tmp_path / "run")
    assert not any(isinstance(e, RunStarted) for e in events)
    assert isinstance(events[-1], RunEnded) and events[-1].reason == "failed"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_each_task_is_held_to_its_own_backbones_limit(tmp_path, tiny_bert, tiny_roberta, capsys):
    def edit(raw):
        raw["backbones"]["rob"] = {"model": str(tiny_roberta)}
        raw["tasks"][0]["max_length"] = 129                                  # the BERT takes 130
        raw["tasks"].append(json.loads(json.dumps(raw["tasks"][0])) | {"name": "second", "backbone": "rob"})
    path = _write_project(tmp_path, tiny_bert, edit)
    before = _snapshot(tmp_path)
    line = _cli_error(capsys, path, "--out", tmp_path / "out")
    assert "tasks.second.max_length: 129 is more than backbone 'rob'" in line and "takes 128 tokens" in line
    assert "tasks.classification" not in line
    assert not (tmp_path / "out").exists() and _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------------------------
# How long a run is: planned lazily, refused only past what is sensible


def test_the_planned_lr_sent_at_the_start_of_a_long_run_is_compact(tmp_path, tiny_bert):
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"], train={"max_steps": 10**6},
                       optim={"warmup_steps": 1000, "scheduler": "cosine"})
    project = parse_project(raw, tmp_path)
    stop = threading.Event()
    started = []

    def stop_at_start(event):
        if isinstance(event, RunStarted):
            started.append(event)
            stop.set()
    t0 = time.monotonic()
    run(project, stop_at_start, stop, run_dir=tmp_path / "run")
    curve = started[0].lr_curve
    assert curve["steps"][0] == 1 and curve["steps"][-1] == 10**6 and len(curve["steps"]) <= 2010
    assert len(curve["encoder"]) == len(curve["heads"]) == len(curve["steps"])
    assert 1001 in curve["steps"] and max(curve["encoder"]) == pytest.approx(1e-3)     # the peak is drawn
    for step, lr in zip(curve["steps"][::97], curve["encoder"][::97]):
        assert lr == pytest.approx(1e-3 * lr_factor(project.optim, step - 1, 10**6))
    first = (tmp_path / "run" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert max(len(line) for line in first) < 200_000
    assert time.monotonic() - t0 < 60


def test_the_lr_curve_of_the_longest_plan_is_bounded_and_quick(tiny_bert, tmp_path):
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"],
                                         optim={"warmup_steps": 0, "head_warmup_steps": 5000}), tmp_path)
    t0 = time.monotonic()
    curve = lr_curve(project, 10**8)
    assert time.monotonic() - t0 < 5
    assert len(curve["steps"]) <= 2010 and curve["steps"] == sorted(set(curve["steps"]))
    # the heads-only phase ends exactly where it is drawn: 0 at its last step, the lr right after it
    i = curve["steps"].index(5000)
    assert curve["steps"][i + 1] == 5001 and curve["encoder"][i] == 0 and curve["encoder"][i + 1] > 0


def test_epochs_that_plan_more_steps_than_sensible_are_refused_before_a_run_folder(tmp_path, tiny_bert, capsys):
    # 36 training rows in batches of 8: 5 steps an epoch, so 5e7 epochs are 2.5e8 steps
    path = _write_project(tmp_path, tiny_bert, lambda raw: raw["train"].update(max_steps=0, epochs=5e7))
    before = _snapshot(tmp_path)
    line = _cli_error(capsys, path, "--out", tmp_path / "out")
    assert "train.epochs: 5e+07 epochs of classification (5 steps each) are 250000000 optimiser steps" in line
    assert "100000000" in line
    assert not (tmp_path / "out").exists() and _snapshot(tmp_path) == before


def test_the_run_charts_draw_a_compact_planned_curve_at_its_steps(qtbot):
    pytest.importorskip("PySide6")
    from qarac_gui.ui.panels.charts_panel import ChartsPanel
    panel = ChartsPanel()
    qtbot.addWidget(panel)
    steps = [1, 500, 1000, 10**6]
    panel.handle(RunStarted("run", 10**6, 0, {"t": {}}, {"steps": steps, "encoder": [0.0, 0.5, 1.0, 0.0],
                                                          "heads": [1.0] * 4}, "cpu", "fp32", {}, 0, 0))
    panel.flush()
    planned = panel.lr.series["planned encoder"]
    assert list(planned.x) == steps and list(planned.y) == [0.0, 0.5, 1.0, 0.0]


# ---------------------------------------------------------------------------------------------------------------
# Integers past what the libraries or the memory take: refused by validate with the range and what to do


def _at(section: str, key: str, value):
    return lambda raw: raw.setdefault(section, {}).update({key: value})


def _in_task(key: str, value, sub: str = ""):
    return lambda raw: (raw["tasks"][0][sub] if sub else raw["tasks"][0]).update({key: value})


LIMIT_CASES = [
    ("seed-2**32", _at("train", "seed", 2**32), "train.seed: 4294967296 is outside 0..4294967295"),
    ("seed-int64-max", _at("train", "seed", 2**63 - 1), "the seeds numpy's and torch's random generators take"),
    ("threads-a-million", _at("train", "num_threads", 10**6), "train.num_threads: 1000000 is more than 1024"),
    ("max-steps-1e9", _at("train", "max_steps", 10**9),
     "train.max_steps: 1000000000 is more than 100000000 (the longest run this app plans"),
    ("epochs-1e9", _at("train", "epochs", 1e9), "train.epochs: 1000000000 is more than 100000000"),
    ("grad-accum-1e9", _at("optim", "grad_accum", 10**9), "optim.grad_accum: 1000000000 is more than 65536"),
    ("batch-size-1e7", _in_task("batch_size", 10**7), "tasks.classification.batch_size: 10000000 is more than 65536"),
    ("eval-batch-size-1e9", _at("eval", "batch_size", 10**9), "eval.batch_size: 1000000000 is more than 65536"),
    ("max-length-1e7", _in_task("max_length", 10**7),
     "tasks.classification.max_length: 10000000 is more than 1048576"),
    ("hidden-size-1e9", _in_task("hidden_size", 10**9, "head"),
     "tasks.classification.head.hidden_size: 1000000000 is more than 65536"),
    ("keep-1e9", _at("checkpoint", "keep", 10**9), "checkpoint.keep: 1000000000 is more than 1000"),
    ("log-every-1e12", _at("train", "log_every", 10**12), "train.log_every: 1000000000000 is more than 100000000"),
    ("warmup-1e12", _at("optim", "warmup_steps", 10**12), "optim.warmup_steps: 1000000000000 is more than"),
]


@pytest.mark.parametrize("edit, fragment", [pytest.param(e, f, id=i) for i, e, f in LIMIT_CASES])
def test_an_integer_past_its_limit_is_refused_with_the_range(tmp_path, tiny_bert, edit, fragment):
    path = _write_project(tmp_path, tiny_bert, edit)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert fragment in str(info.value)
    assert path.read_bytes() == before


def test_a_seed_past_its_limit_is_one_error_line_from_the_cli(tmp_path, tiny_bert, capsys):
    path = _write_project(tmp_path, tiny_bert)
    line = _cli_error(capsys, path, "--out", tmp_path / "out", "--set", f"train.seed={2**32}")
    assert "train.seed: 4294967296 is outside 0..4294967295" in line and "choose a seed in that range" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("section, key, value", [
    pytest.param("train", "seed", 2**32 - 1, id="largest-seed"),
    pytest.param("train", "num_threads", 1024, id="most-threads"),
    pytest.param("train", "max_steps", 10**8, id="longest-run"),
    pytest.param("optim", "grad_accum", 65536, id="most-accumulation"),
])
def test_the_largest_sensible_values_load(tmp_path, tiny_bert, section, key, value):
    path = _write_project(tmp_path, tiny_bert, _at(section, key, value))
    assert getattr(getattr(load_project(path), section), key) == value
