"""Out of GPU memory (injected on the CPU): the step is redone in smaller micro-batches with the same rows, so the
effective batch and the schedule do not change; a batch of one row that does not fit is a clear error."""

import json
import threading

import pytest
import torch
from faults import out_of_memory_above
from tiny import make_model_folder, project_dict

from qarac_gui.core.errors import UserError
from qarac_gui.core.events import Progress, StepLogged
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.run import run
from qarac_gui.core.training.plan import lr_curve

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory):
    # Without dropout, the split step's gradients equal the whole batch's up to rounding.
    folder = make_model_folder(tmp_path_factory.mktemp("models") / "bert", "bert")
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _run(tmp_path, model, name, balancing="weights", **sections):
    raw = project_dict(model, tmp_path / "data", ["classification", "regression"],
                       train={"max_steps": 6, "log_every": 1, "balancing": balancing}, checkpoint={"every": 3},
                       **sections)
    for task in raw["tasks"]:
        task["head"]["dropout"] = 0.0
    project = parse_project(raw, tmp_path)
    events = []
    ended = run(project, events.append, threading.Event(), run_dir=tmp_path / name, min_log_interval=0.0)
    return project, events, ended


@pytest.mark.slow
@pytest.mark.parametrize("balancing", ["weights", "upgrad"])
def test_out_of_memory_halves_the_micro_batch_until_it_fits_and_changes_nothing_else(tmp_path, no_dropout_model,
                                                                                     monkeypatch, balancing):
    """With an aggregator too: each micro-batch adds into its task's row of the Jacobian."""
    if balancing != "weights":
        pytest.importorskip("torchjd")
    from qarac_gui.core.training.guard import StepGuard
    first_grads, real_step = [], StepGuard.optimizer_step

    def optimizer_step(self):
        if len(first_grads) < len(runs):        # the first applied step of each run
            first_grads.append([q.grad.clone() for g in self.optimizer.param_groups for q in g["params"]
                                if q.grad is not None])
        real_step(self)
    monkeypatch.setattr(StepGuard, "optimizer_step", optimizer_step)
    runs = ["whole"]
    whole_ran = out_of_memory_above(monkeypatch, 10**6)
    _, whole_events, _ = _run(tmp_path, no_dropout_model, "whole", balancing)
    whole_rows, whole_largest = sum(whole_ran), max(whole_ran)
    ran = out_of_memory_above(monkeypatch, 3)
    runs.append("split")
    project, events, ended = _run(tmp_path, no_dropout_model, "split", balancing)
    assert ended.reason == "completed"
    weighed = [e.task_weights for e in events if isinstance(e, StepLogged) and e.task_weights]
    assert len(weighed) == (0 if balancing == "weights" else 6)
    notes = [e.message for e in events if isinstance(e, Progress) and e.phase == "memory"]
    assert len(notes) == 2 and "at step 1" in notes[0]
    assert "at most 4 rows (each batch in 2 parts)" in notes[0] and "at most 2 rows (each batch in 4 parts)" in notes[1]
    # every row of every batch still trained, in micro-batches of at most 2 rows
    assert max(ran) == 2 and sum(ran) == whole_rows and whole_largest == 8
    assert [e.lr for e in events if isinstance(e, StepLogged)] == pytest.approx(lr_curve(project, 6)["encoder"])
    state = json.loads((tmp_path / "split" / "checkpoints" / "step-00000006" / "state.json").read_text())
    assert state["trainer"]["micro_split"] == 4
    # The gradients of the first step are the whole batch's, up to rounding; so are its losses.
    whole, split = first_grads
    assert len(whole) == len(split) > 10
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(whole, split))
    assert any(not torch.equal(a, b) for a, b in zip(whole, split))       # it really ran as smaller parts
    first = {e.step: e.task_losses for e in whole_events if isinstance(e, StepLogged)}[1]
    assert next(e.task_losses for e in events if isinstance(e, StepLogged)) == pytest.approx(first, rel=1e-5)


def test_when_not_even_one_row_fits_the_run_fails_with_what_to_change(tmp_path, tiny_bert, monkeypatch):
    out_of_memory_above(monkeypatch, 0)
    with pytest.raises(UserError) as error:
        _run(tmp_path, tiny_bert, "hopeless")
    message = str(error.value)
    assert "out of CPU memory at step 1 even with one row per micro-batch" in message
    assert "max length" in message and "mixed precision" in message
    ended = json.loads((tmp_path / "hopeless" / "events.jsonl").read_text().splitlines()[-1])
    assert ended["event"] == "RunEnded" and ended["reason"] == "failed"


def test_the_batch_probe_finds_the_largest_batch_of_the_longest_rows_and_leaves_the_model_alone(
        tmp_path, tiny_bert, monkeypatch):
    from qarac_gui.core import probe
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification", "similarity"])
    project = parse_project(raw, tmp_path)
    with pytest.raises(UserError, match="needs a GPU: on the CPU running out of memory raises no error"):
        probe.probe_batches(project, lambda e: None, threading.Event())

    monkeypatch.setattr(probe, "CATCHABLE", ("cuda", "cpu"))      # treat the CPU like a GPU, errors injected
    ran = out_of_memory_above(monkeypatch, 13)
    rng = torch.get_rng_state()
    fits = probe.probe_batches(project, lambda e: None, threading.Event())
    assert [(f.task, f.configured, f.largest) for f in fits] == [("classification", 8, 8), ("similarity", 8, 8)]
    assert all(f.tokens > 5 for f in fits)
    assert torch.equal(torch.get_rng_state(), rng)
    assert ran == [8, 8]           # 8 fit, 16 failed: the largest power-of-two step that fits is 8

    out_of_memory_above(monkeypatch, 40)          # generous memory: batches grow to the 36 training rows there are
    fits = probe.probe_batches(project, lambda e: None, threading.Event())
    assert [f.largest for f in fits] == [36, 36]


@pytest.mark.slow
def test_the_batch_probe_counts_every_named_input_of_a_several_backbone_task(tmp_path, tiny_bert, monkeypatch):
    from recipe_data import recipe_project, write_recipe_data

    from qarac_gui.core import probe
    project = parse_project(recipe_project(tiny_bert, write_recipe_data(tmp_path / "data")), tmp_path)
    monkeypatch.setattr(probe, "CATCHABLE", ("cuda", "cpu"))
    out_of_memory_above(monkeypatch, 40)
    fits = probe.probe_batches(project, lambda e: None, threading.Event())
    assert [f.task for f in fits] == [t.name for t in project.tasks]
    assert all(f.largest >= 8 for f in fits)
    # the longest row of a vector task counts both its inputs' tokens: more than any one input has
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    rows = [json.loads(line) for line in (tmp_path / "data" / "wiki_qa.jsonl").read_text().splitlines()]
    longest_single = max(len(tok(r[c])["input_ids"]) for r in rows for c in ("question", "answer"))
    assert next(f for f in fits if f.task == "question_answering").tokens > longest_single


def test_the_cli_prints_what_the_probe_found(tmp_path, tiny_bert, monkeypatch, capsys):
    import tomli_w

    from qarac_gui import cli
    from qarac_gui.core import probe
    monkeypatch.setattr(probe, "CATCHABLE", ("cuda", "cpu"))
    out_of_memory_above(monkeypatch, 5)
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"])
    path = tmp_path / "p.toml"
    path.write_text(tomli_w.dumps(raw))
    assert cli.main([str(path), "--find-batch-size"]) == 0
    out = capsys.readouterr().out
    assert "classification: batches of up to 4 rows fit (longest row" in out and "the project sets 8" in out
    assert not (__import__("pathlib").Path(__import__("tempfile").gettempdir()) / "qarac-gui-probe").exists()
