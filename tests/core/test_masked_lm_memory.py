"""The masked-LM head projects only the masked positions onto the vocabulary: the loss and the evaluation's
metrics are those of every position's logits, and evaluation keeps no logits on the host."""

from __future__ import annotations

import contextlib
import gc
import math
import random
import sys
from pathlib import Path

import pytest
import torch
from tiny import project_dict
from torch.nn import functional as F

from qarac_gui.core.data.tokenize import TaskData
from qarac_gui.core.model.multitask import MultiTaskModel
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.training.evaluation import EVAL_MASK_SEED, evaluate_task

pytestmark = pytest.mark.usefixtures("torch_threads")

TASK = "masked-lm"          # tiny.project_dict's name for the masked_lm task
CPU = torch.device("cpu")


def _project(tmp_path: Path, eval_batch: int):
    # The model folder is never read: the tests build the encoder from a config of their own.
    raw = project_dict(tmp_path / "model", tmp_path / "data", ["masked_lm"], eval={"batch_size": eval_batch})
    return parse_project(raw, tmp_path, check=False)


def _model(project, vocab: int, hidden: int = 16, seed: int = 0) -> MultiTaskModel:
    from transformers import BertConfig, BertModel
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    return MultiTaskModel(project, {"encoder": BertModel(config)}, {})


def _rows(n: int, vocab: int, shortest: int, longest: int, seed: int = 0) -> dict[str, list]:
    """Tokenised rows as the tokenizer leaves them: [CLS] words [SEP], of random lengths."""
    rng = random.Random(seed)
    ids, special = [], []
    for _ in range(n):
        words = rng.randint(shortest - 2, longest - 2)
        ids.append([2] + [rng.randrange(5, vocab) for _ in range(words)] + [3])
        special.append([1] + [0] * words + [1])
    return {"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids],
            "token_type_ids": [[0] * len(r) for r in ids], "special_tokens_mask": special}


def _data(project, vocab: int, rows: dict[str, list]) -> TaskData:
    from datasets import Dataset
    return TaskData(task=project.task(TASK), labels=[], train=None, valid=Dataset.from_dict(rows), pad_id=0,
                    mask_id=4, vocab_size=vocab)


def _all_logits(model: MultiTaskModel, batch: dict) -> torch.Tensor:
    return model.heads[TASK].lm_head(model.backbones["encoder"](
        **{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).last_hidden_state)


def _old_loss(model: MultiTaskModel, batch: dict, vocab: int) -> torch.Tensor:
    """The loss as it was computed: every position's logits, the unlabelled ones ignored."""
    logits = _all_logits(model, batch)
    return F.cross_entropy(logits.view(-1, vocab).float(), batch["labels"].view(-1), ignore_index=-100)


@torch.no_grad()
def _old_evaluation(model: MultiTaskModel, data: TaskData, batch_size: int) -> dict[str, float]:
    """The evaluation as it was: each batch's loss from the logits of every position."""
    losses, weights = [], []
    for start in range(0, len(data.valid), batch_size):
        rows = data.valid[start:start + batch_size]
        batch = data.collate(rows, EVAL_MASK_SEED + start)
        logits = _all_logits(model, batch)
        losses.append(F.cross_entropy(logits.view(-1, data.vocab_size).float(), batch["labels"].view(-1),
                                      ignore_index=-100).item())
        weights.append(len(rows["input_ids"]))
    mean = sum(loss * w for loss, w in zip(losses, weights)) / sum(weights)
    return {"loss": mean, "perplexity": math.exp(mean)}


def test_training_loss_and_gradients_are_those_of_every_positions_logits(tmp_path):
    vocab = 500
    project = _project(tmp_path, 16)
    model = _model(project, vocab).train()
    data = _data(project, vocab, _rows(12, vocab, 6, 20))
    batch = data.collate(data.valid[0:12], seed=3)
    masked = int((batch["labels"] != -100).sum())
    assert 0 < masked < batch["labels"].numel() // 4

    head = model.heads[TASK]
    decoder = next(m for m in head.lm_head.modules() if isinstance(m, torch.nn.Linear) and m.out_features == vocab)
    projected = []
    hook = decoder.register_forward_hook(lambda module, args, out: projected.append(args[0].shape[:-1].numel()))
    out = model(TASK, batch)
    hook.remove()
    assert projected == [masked]            # only the masked positions met the vocabulary

    out.loss.backward()
    new_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    old = _old_loss(model, batch, vocab)
    old.backward()
    old_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    torch.testing.assert_close(out.loss, old, rtol=1e-5, atol=1e-6)
    assert new_grads.keys() == old_grads.keys() and new_grads
    for name in old_grads:
        torch.testing.assert_close(new_grads[name], old_grads[name], rtol=1e-4, atol=1e-7,
                                   msg=lambda m, name=name: f"{name}: {m}")
    # Asked for, the logits are still those of every position (the export is compared with them).
    torch.testing.assert_close(out.logits, _all_logits(model, batch))


def test_a_batch_without_masked_tokens_has_a_nan_loss_as_before(tmp_path):
    vocab = 50
    project = _project(tmp_path, 16)
    model = _model(project, vocab)
    data = _data(project, vocab, _rows(2, vocab, 4, 6))
    batch = data.collate(data.valid[0:2], seed=0)
    batch["labels"] = torch.full_like(batch["labels"], -100)
    batch["masked_positions"] = batch["masked_positions"][:0]     # as collate finds them for such a batch
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            out = model(TASK, batch)
        assert out.loss.isnan() and _old_loss(model, batch, vocab).isnan()
        assert [float(t) for t in out.kept] == [0.0, 0.0]


@pytest.mark.parametrize("chunk", [None, 7])
def test_evaluation_metrics_equal_those_of_every_positions_logits(tmp_path, monkeypatch, chunk):
    # Batches of different sizes and lengths (37 rows by 16), so that the per-batch weighting counts; with a chunk
    # of 7 positions the masked positions of a batch go through the head in several pieces.
    vocab = 300
    if chunk:
        from qarac_gui.core.kinds import layers
        monkeypatch.setattr(layers, "EVAL_LOGITS", 7 * vocab)
    project = _project(tmp_path, 16)
    model = _model(project, vocab, seed=5).eval()
    data = _data(project, vocab, _rows(37, vocab, 4, 40, seed=2))
    got = evaluate_task(model, data, CPU, 16, contextlib.nullcontext)
    want = _old_evaluation(model, data, 16)
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-5), name


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/self/status has no {field}")


@contextlib.contextmanager
def _added_host_memory():
    """The peak resident memory above where it stood when the block began, in bytes (in the dict yielded)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")     # the peak (VmHWM) starts again from now
    before = _status_kib("VmRSS")
    measured: dict[str, int] = {}
    yield measured
    measured["bytes"] = (_status_kib("VmHWM") - before) * 1024


def _can_measure() -> bool:
    try:
        with _added_host_memory():
            pass
    except OSError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _can_measure(),
                    reason="measures the peak resident memory through Linux's /proc/self (clear_refs, VmHWM)")
def test_evaluating_200_rows_of_128_tokens_with_a_30k_vocabulary_adds_under_300_mb(tmp_path):
    """Method: the process's peak resident memory (VmHWM of /proc/self/status, reset by writing 5 to
    /proc/self/clear_refs) during evaluate_task, less the resident memory (VmRSS) just before it. Tensors are
    allocated by torch outside Python's allocator, so tracemalloc would not see them; the peak, unlike the
    resident memory read afterwards, also sees what evaluation held and let go before it returned.

    Keeping every position's float32 logits, as evaluation once did, holds 200 * 128 * 30000 * 4 bytes = 3.07 GB
    by the last batch; the evaluation batch is the app's default (64 rows: 983 MB of logits each)."""
    vocab, rows, tokens = 30000, 200, 128
    project = _project(tmp_path, 64)
    assert project.eval.batch_size == 64
    model = _model(project, vocab, hidden=32).eval()
    data = _data(project, vocab, _rows(rows, vocab, tokens, tokens))
    assert {len(ids) for ids in data.valid["input_ids"]} == {tokens}

    # The measurement sees memory taken and given back within the block: 400 MB here.
    with _added_host_memory() as calibration:
        block = torch.ones(100_000_000)
        del block
    assert calibration["bytes"] > 380e6

    with _added_host_memory() as evaluation:
        result = evaluate_task(model, data, CPU, project.eval.batch_size, contextlib.nullcontext)
    assert math.isfinite(result["perplexity"]) and result["perplexity"] > 1000     # near-uniform over 30k tokens
    assert evaluation["bytes"] < 300e6, f"evaluation added {evaluation['bytes'] / 1e6:.0f} MB"
