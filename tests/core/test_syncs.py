"""A training step never waits for the device, except for the one-step-late verdict on non-finite values and the
losses read once per log interval.

On a CPU nothing waits, so the test counts what would: every read of a tensor's value on the host (item, bool,
tolist, numpy) and every op whose output shape depends on tensor values (nonzero, masked_select, boolean
indexing), each of which blocks on a GPU until the queue drains. Collating batches on the host is not counted:
those tensors are not on the device yet.
"""

from __future__ import annotations

import collections
import threading
import traceback

import pytest
from recipe_data import recipe_project, write_recipe_data
from tiny import project_dict

torch = pytest.importorskip("torch")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from qarac_gui.core.project.config import parse_project  # noqa: E402
from qarac_gui.core.training import loop, prefetch  # noqa: E402
from qarac_gui.core.training.setup import build_run  # noqa: E402

WAITING_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.is_nonzero.default",
               "aten.masked_select.default", "aten.equal.default", "aten._unique2.default"}
INDEXING_OPS = {"aten.index.Tensor", "aten.index_put_.default", "aten.index_put.default"}
ALLOWED = {"resolve", "flush"}      # the guard's one-step-late verdict; the loss log, once per log interval


def _caller() -> str:
    """The engine function that asked: the innermost frame in qarac_gui outside this counting."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        if "qarac_gui" in frame.filename:
            return frame.name
    return "?"


class HostReads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.on = False
        self.where: collections.Counter = collections.Counter()

    def note(self) -> None:
        if self.on and threading.current_thread() is threading.main_thread():
            self.where[_caller()] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in WAITING_OPS or (name in INDEXING_OPS and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()))):
            self.note()
        return func(*args, **(kwargs or {}))


def _count_steady_steps(monkeypatch, project, run_dir, first: int) -> tuple[collections.Counter, int, int]:
    """Train the project, counting host reads from step `first` until the last step begins (the last step
    evaluates and checkpoints, which read the device on purpose); (reads by caller, steps counted, flushes)."""
    stop = threading.Event()
    t, state, _ = build_run(project, run_dir, lambda e: None, stop, resume=False)
    reads = HostReads()
    steps = {"counted": 0, "flushes": 0}
    real_backward, real_collate, real_flush = loop._backward, prefetch.collate_step, loop._LossLog.flush
    last = t.plan.total_steps

    def backward(t_, state_, step, *args):
        reads.on = first <= step < last
        steps["counted"] += reads.on
        return real_backward(t_, state_, step, *args)

    def collate(*args, **kwargs):           # host tensors, before they go to the device
        was, reads.on = reads.on, False
        try:
            return real_collate(*args, **kwargs)
        finally:
            reads.on = was

    def flush(self, *args):
        steps["flushes"] += reads.on
        return real_flush(self, *args)

    for name in ("tolist", "numpy"):        # on a CPU tensor these read memory without dispatching an op
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            reads.note()
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    monkeypatch.setattr(loop, "_backward", backward)
    monkeypatch.setattr(prefetch, "collate_step", collate)
    monkeypatch.setattr(loop._LossLog, "flush", flush)
    with reads:
        assert loop.fit(t, state, lambda e: None, stop, min_log_interval=0) == "completed"
    return reads.where, steps["counted"], steps["flushes"]


QUIET = {"log_every": 4, "seed": 3}
NO_SAVES = {"checkpoint": {"every": 0, "minutes": 0}, "eval": {"every": 0, "batch_size": 16}}


KIND_SETS = [["classification", "similarity", "masked_lm"],
             ["regression", "multilabel", "token_classification", "span_qa"]]


@pytest.mark.parametrize("kinds", KIND_SETS)
def test_steady_steps_read_the_device_only_for_the_verdict_and_the_log(tmp_path, monkeypatch, tiny_bert, kinds):
    raw = project_dict(tiny_bert, tmp_path / "data", kinds, train={"max_steps": 14, **QUIET}, **NO_SAVES)
    reads, steps, flushes = _count_steady_steps(monkeypatch, parse_project(raw, tmp_path), tmp_path / "run", 4)
    assert steps == 10 and flushes >= 2
    assert set(reads) <= ALLOWED, f"host reads of device values during steady steps: {dict(reads)}"
    assert reads["resolve"] <= steps and reads["flush"] <= flushes, dict(reads)


def test_the_recipes_decoder_and_attention_pooling_do_not_wait_either(tmp_path, monkeypatch, tiny_bert):
    raw = recipe_project(tiny_bert, write_recipe_data(tmp_path / "data"), steps=10)
    raw["train"].update(QUIET)
    raw.update(NO_SAVES)
    reads, steps, flushes = _count_steady_steps(monkeypatch, parse_project(raw, tmp_path), tmp_path / "run", 3)
    assert steps == 7
    assert set(reads) <= ALLOWED, f"host reads of device values during steady steps: {dict(reads)}"
    assert reads["resolve"] <= steps and reads["flush"] <= flushes, dict(reads)


@pytest.mark.parametrize("causal", [False, True])
def test_the_prepared_attention_mask_gives_the_states_of_transformers_own(tiny_bert, causal):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from qarac_gui.core.kinds.layers import attention_input
    if causal:      # a decoder backbone, as the recipe loads it
        config = AutoConfig.from_pretrained(tiny_bert, is_decoder=True)
        model = AutoModelForCausalLM.from_pretrained(tiny_bert, config=config)
    else:
        model = AutoModel.from_pretrained(tiny_bert)
    model.eval()
    ids = torch.randint(5, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0
    mask[2, 7:] = 0
    prepared = attention_input(model, mask, causal=causal)
    assert prepared.dim() == 4          # the path that skips transformers' own check is the one tested
    with torch.no_grad():
        own = model(input_ids=ids, attention_mask=mask)
        ours = model(input_ids=ids, attention_mask=prepared)
    key = "logits" if causal else "last_hidden_state"
    torch.testing.assert_close(getattr(ours, key), getattr(own, key), rtol=0, atol=0)
