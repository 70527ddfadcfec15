"""The heads-only warm-up with a head that has no weights of its own (the default similarity head compares the
pooled vectors): that task contributes no gradient while the encoder is fixed, and trains after."""

import threading

import pytest
import torch
from tiny import project_dict

from qarac_gui.core.events import RunEnded, StepLogged
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.run import run

pytestmark = pytest.mark.usefixtures("torch_threads")


def test_a_similarity_task_waits_out_the_heads_only_phase(tmp_path, tiny_bert):
    raw = project_dict(tiny_bert, tmp_path / "data", ["similarity", "classification"],
                       optim={"head_warmup_steps": 3, "lr": 1e-3}, train={"max_steps": 6, "log_every": 1})
    project = parse_project(raw, tmp_path)
    events = []
    ended = run(project, events.append, threading.Event(), run_dir=tmp_path / "run", min_log_interval=0)
    assert ended.reason == "completed" and ended.step == 6
    logged = [e for e in events if isinstance(e, StepLogged)]
    assert [e.step for e in logged] == [1, 2, 3, 4, 5, 6]
    assert all("similarity" in e.task_losses and "classification" in e.task_losses for e in logged)
    assert [e.lr for e in logged[:3]] == [0.0, 0.0, 0.0] and logged[3].lr > 0    # the encoder waits, then trains
    assert isinstance(events[-1], RunEnded)


def test_during_the_warm_up_the_encoder_does_not_move(tmp_path, tiny_bert):
    from safetensors.torch import load_file
    raw = project_dict(tiny_bert, tmp_path / "data", ["similarity"], optim={"head_warmup_steps": 4, "lr": 1e-2},
                       train={"max_steps": 4}, export={"full_model": True})
    ended = run(parse_project(raw, tmp_path), lambda e: None, threading.Event(), run_dir=tmp_path / "run")
    assert ended.reason == "completed"
    before = load_file(str(tiny_bert / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "export" / "similarity" / "model.safetensors"))
    shared = [k for k in before if k in after and "pooler" not in k]
    assert shared and all(torch.equal(before[k], after[k]) for k in shared)
