"""train.compile: the backbones compiled by torch.compile, batches padded to multiples of 16 tokens; the run
checkpoints, resumes and exports as an uncompiled one does."""

from __future__ import annotations

import threading

import pytest
from tiny import project_dict

torch = pytest.importorskip("torch")

from qarac_gui.core.errors import UserError  # noqa: E402
from qarac_gui.core.events import StepLogged  # noqa: E402
from qarac_gui.core.project.config import parse_project  # noqa: E402
from qarac_gui.core.run import run  # noqa: E402
from qarac_gui.core.training import compiling  # noqa: E402
from qarac_gui.core.training.setup import prepare_tasks  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_threads")


def _tasks(tmp_path, tiny_bert, kinds, max_length=32):
    from transformers import AutoTokenizer
    raw = project_dict(tiny_bert, tmp_path / "data", kinds)
    for task in raw["tasks"]:
        task["max_length"] = max_length
    p = parse_project(raw, tmp_path)
    return prepare_tasks(p, {"encoder": AutoTokenizer.from_pretrained(tiny_bert)}, lambda e: None,
                         threading.Event())


def test_batches_are_padded_to_a_multiple_but_never_past_the_longest_row_allowed(tmp_path, tiny_bert):
    # The tiny data's texts are 5 to 12 tokens: a multiple of 10 and a max_length of 12 show both rules.
    tasks = _tasks(tmp_path, tiny_bert, ["classification", "token_classification"], max_length=12)
    data = tasks["classification"]
    data.pad_multiple = 10
    lengths = [len(x) for x in data.train["input_ids"]]
    by_length = sorted(range(len(lengths)), key=lengths.__getitem__)
    short, long = by_length[:3], by_length[-3:]
    assert max(lengths[i] for i in short) < 10 < max(lengths[i] for i in long) <= 12
    assert data.collate(data.train[short])["input_ids"].shape[1] == 10
    batch = data.collate(data.train[long])     # 20 would pass max_length: 12 is as wide as a row can be
    assert batch["input_ids"].shape[1] == 12
    assert batch["attention_mask"].sum() == sum(lengths[i] for i in long)
    tags = tasks["token-classification"]       # labels per token follow the padded width
    tags.pad_multiple = 10
    batch = tags.collate(tags.train[[0, 1, 2]])
    assert batch["input_ids"].shape[1] == 10 and batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_a_decoders_target_stays_one_token_short_of_max_length(tmp_path, tiny_bert):
    from qarac_gui.core.kinds import kind_of
    from qarac_gui.core.project.config import TaskConfig
    task = TaskConfig.__new__(TaskConfig)
    task.max_length, task.head = 24, type("H", (), {"kind": "decode"})()
    decode = kind_of(task.head)
    assert decode.longest(task, "target__") == 23 and decode.longest(task, "s__") == 24


def test_compile_needs_a_compiler_and_says_which(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    assert "C++ compiler" in compiling.compile_problem(cpu)
    assert "train.compile = false" in compiling.compile_problem(cpu)
    assert "MPS" in compiling.compile_problem(torch.device("mps"))
    model = type("M", (), {"backbones": {}})()
    with pytest.raises(UserError, match="C\\+\\+ compiler"):
        compiling.compile_backbones(model, {}, cpu)


def test_no_compiler_refuses_the_run_in_words_before_training(tmp_path, tiny_bert, monkeypatch):
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"], train={"compile": True})
    events = []
    with pytest.raises(UserError, match="C\\+\\+ compiler"):     # re-raised after the run ended in its words
        run(parse_project(raw, tmp_path), events.append, threading.Event(), run_dir=tmp_path / "run")
    ended = events[-1]
    assert ended.reason == "failed" and "C++ compiler" in ended.message
    assert not [e for e in events if isinstance(e, StepLogged)]


def _child(project, run_dir, *flags):
    """A run in a process of its own, as after a crash or a restart of the app: its events, as JSON."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    child = Path(__file__).resolve().parent.parent / "train_child.py"
    out = subprocess.run([sys.executable, str(child), str(project), str(run_dir), *flags], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def _of(events, kind):
    return [e for e in events if e["event"] == kind]


@pytest.mark.slow
@pytest.mark.skipif(compiling.compile_problem(torch.device("cpu")) != "", reason="no C++ compiler for torch.compile")
def test_a_compiled_run_logs_its_graphs_stops_resumes_and_exports(tmp_path, tiny_bert):
    import tomli_w
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "masked_lm"],
                       train={"max_steps": 6, "compile": True, "seed": 3, "num_threads": 2}, optim={"lr": 1e-3})
    project = tmp_path / "project.toml"
    project.write_text(tomli_w.dumps(raw), encoding="utf-8")
    straight = _child(project, tmp_path / "straight")
    said = [e["message"] for e in _of(straight, "Progress") if e["phase"] == "compile"]
    assert said and "in this run" in said[-1], said
    assert int(said[-1].split(", ")[-1].split()[0]) >= 2        # training and evaluation: a graph each
    first = _child(project, tmp_path / "resumed", "--stop-at", "3")
    assert _of(first, "RunEnded")[0]["reason"] == "stopped" and _of(first, "CheckpointSaved")[-1]["step"] == 3
    second = _child(project, tmp_path / "resumed", "--resume")
    assert _of(second, "RunStarted")[0]["start_step"] == 3 and _of(second, "RunEnded")[0]["reason"] == "completed"

    def losses(events):
        return {e["step"]: e["task_losses"] for e in _of(events, "StepLogged") if e["step"] > 3}
    # Not to the last bit (see compiling.py): the resumed run continues the same run, to float rounding.
    a, b = losses(straight), losses(second)
    assert a.keys() == b.keys() == {4, 5, 6}
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5), step
    from safetensors.torch import load_file
    exported = sorted((tmp_path / "straight" / "export").rglob("*.safetensors"))
    assert exported
    for path in exported:
        x = load_file(path)
        y = load_file(tmp_path / "resumed" / "export" / path.relative_to(tmp_path / "straight" / "export"))
        assert x.keys() == y.keys() and not any("_orig_mod" in k for k in x)   # the names of uncompiled weights
        for key in x:
            torch.testing.assert_close(y[key], x[key], rtol=0, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.slow
@pytest.mark.skipif(compiling.compile_problem(torch.device("cpu")) != "", reason="no C++ compiler for torch.compile")
def test_per_task_lora_adapters_switch_inside_a_compiled_backbone(tmp_path, quiet_bert):
    # Each task's batches run with its own adapter active; a graph compiled while one adapter was active must not
    # serve the other's batches: the compiled run trains as the eager one, to float rounding.
    pytest.importorskip("peft")
    model = quiet_bert                  # compiled dropout draws other masks than eager: without it, same numbers

    def losses(name, compiled):
        raw = project_dict(model, tmp_path / "data", ["classification", "regression"],
                           train={"max_steps": 4, "compile": compiled, "seed": 3}, optim={"lr": 1e-2})
        raw["backbones"]["encoder"].update(adapter="lora", adapter_scope="per_task", lora_dropout=0.0)
        for task in raw["tasks"]:
            task["head"]["dropout"] = 0.0
        events = []
        ended = run(parse_project(raw, tmp_path), events.append, threading.Event(), run_dir=tmp_path / name,
                    min_log_interval=0.0)
        assert ended.reason == "completed", ended.message
        return {e.step: e.task_losses for e in events if isinstance(e, StepLogged)}
    eager, compiled = losses("eager", False), losses("compiled", True)
    assert eager.keys() == compiled.keys() == {1, 2, 3, 4}
    for step in eager:
        assert compiled[step] == pytest.approx(eager[step], rel=1e-4), step
    assert eager[4] != eager[1]         # the adapters trained
