"""Evaluation metrics for validation data (pure functions, no Qt)."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "macro_f1": True,
    "micro_f1": True,
    "subset_accuracy": True,
    "mse": False,
    "pearson": True,
    "spearman": True,
    "entity_f1": True,
    "entity_precision": True,
    "entity_recall": True,
    "token_accuracy": True,
    "exact_match": True,
    "f1": True,
    "perplexity": False,
    "recall_at_1": True,
    "loss": False,
}


def _check_same_length(a: Sequence, b: Sequence, what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: length mismatch ({len(a)} vs {len(b)})")


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], num_labels: int
) -> dict[str, float]:
    """Accuracy and macro F1 over the labels present in ``y_true`` or ``y_pred``."""
    _check_same_length(y_true, y_pred, "classification_metrics")
    if len(y_true) == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    present = sorted({int(v) for v in y_true} | {int(v) for v in y_pred})
    bad = [v for v in present if not 0 <= v < num_labels]
    if bad:
        raise ValueError(f"labels {bad} outside range({num_labels})")
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    tp = np.bincount(t[t == p], minlength=num_labels)
    fp, fn = np.bincount(p, minlength=num_labels) - tp, np.bincount(t, minlength=num_labels) - tp
    # Only the labels present: one absent from both sides has no F1, and counting it as 0 would penalise a small
    # validation set that misses a rare class.
    macro = _f1(tp[present], fp[present], fn[present]).mean()
    return {"accuracy": float(np.mean(t == p)), "macro_f1": float(macro)}


def _f1(tp, fp, fn) -> np.ndarray:
    """2 tp / (2 tp + fp + fn): the harmonic mean of precision and recall where they exist, and 0 for a label
    neither true nor predicted (scikit-learn's f1_score with zero_division=0)."""
    tp, fp, fn = (np.asarray(v, dtype=float) for v in (tp, fp, fn))
    over = 2 * tp + fp + fn
    return np.divide(2 * tp, over, out=np.zeros_like(over), where=over > 0)


def multilabel_metrics(y_true, y_pred) -> dict[str, float]:
    """Micro/macro F1 and subset accuracy for 2-D 0/1 indicator arrays."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.size == 0 and p.size == 0:
        return {"micro_f1": 0.0, "macro_f1": 0.0, "subset_accuracy": 0.0}
    if t.ndim != 2 or t.shape != p.shape:
        raise ValueError(f"multilabel_metrics: expected equal 2-D shapes, got {t.shape} and {p.shape}")
    t, p = t.astype(bool), p.astype(bool)
    tp, fp, fn = (t & p).sum(0), (~t & p).sum(0), (t & ~p).sum(0)
    return {
        "micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "macro_f1": float(_f1(tp, fp, fn).mean()),       # over every label, as scikit-learn's macro average
        "subset_accuracy": float(np.mean((t == p).all(1))),
    }


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r; 0.0 where it is undefined (fewer than two points, a constant side, a value not finite)."""
    if a.size < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()) or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    da, db = a - a.mean(), b - b.mean()
    r = float(np.dot(da, db) / math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db))))
    return max(-1.0, min(1.0, r)) if math.isfinite(r) else 0.0


def _ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (SciPy's rankdata, method "average")."""
    order = np.argsort(a, kind="stable")
    ordered = a[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, a.size])
    ranks = np.empty(a.size)
    ranks[order] = np.repeat(starts + (counts + 1) / 2.0, counts)
    return ranks


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """Mean squared error, Pearson and Spearman correlation (0.0 where undefined).

    NumPy only: SciPy, which has both, takes 0.5-1 s to import, and imported in a run's thread it holds the
    interpreter, and so a window's event loop, for a quarter of a second at a time."""
    _check_same_length(y_true, y_pred, "regression_metrics")
    if len(y_true) == 0:
        return {"mse": 0.0, "pearson": 0.0, "spearman": 0.0}
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    finite = np.isfinite(t).all() and np.isfinite(p).all()
    return {
        "mse": float(np.mean((t - p) ** 2)),
        "pearson": _pearson(t, p),
        "spearman": _pearson(_ranks(t), _ranks(p)) if finite else 0.0,
    }


def _split_tag(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, _, etype = tag.partition("-")
    return prefix[:1], etype or "_"


def _entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Spans (type, start, end) from BIO/IOBES tags, conlleval chunk rules."""
    spans: set[tuple[str, int, int]] = set()
    start, prev, prev_type = None, "O", ""
    for i, tag in enumerate(list(tags) + ["O"]):  # sentinel closes a trailing chunk
        cur, ctype = _split_tag(tag)
        ends = prev in ("E", "S") or (prev in ("B", "I") and cur in ("B", "S", "O"))
        ends = ends or (prev != "O" and prev_type != ctype)
        if ends and start is not None:
            spans.add((prev_type, start, i - 1))
            start = None
        # Lenient: an I-/E- after O, a closed chunk, or another type opens a chunk.
        begins = cur in ("B", "S") or (prev in ("E", "S", "O") and cur in ("I", "E"))
        begins = begins or (cur != "O" and prev_type != ctype)
        if begins:
            start = i
        prev, prev_type = cur, ctype
    return spans


def entity_metrics(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict[str, float]:
    """Entity-level micro precision/recall/F1 and token accuracy (seqeval default mode)."""
    _check_same_length(true_tags, pred_tags, "entity_metrics")
    n_true = n_pred = n_hit = tokens = correct = 0
    for t_seq, p_seq in zip(true_tags, pred_tags):
        _check_same_length(t_seq, p_seq, "entity_metrics sentence")
        t_ent, p_ent = _entities(t_seq), _entities(p_seq)
        n_true, n_pred, n_hit = n_true + len(t_ent), n_pred + len(p_ent), n_hit + len(t_ent & p_ent)
        tokens += len(t_seq)
        correct += sum(a == b for a, b in zip(t_seq, p_seq))
    precision = n_hit / n_pred if n_pred else 0.0
    recall = n_hit / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "entity_f1": float(f1),
        "entity_precision": float(precision),
        "entity_recall": float(recall),
        "token_accuracy": correct / tokens if tokens else 0.0,
    }


_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation and articles, squeeze spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(prediction: str, reference: str) -> float:
    pred, ref = _normalize_answer(prediction).split(), _normalize_answer(reference).split()
    if not pred or not ref:
        # v1.1 scores empty-vs-empty F1 0 while EM is 1; agree with EM instead (as SQuAD v2).
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def span_qa_metrics(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """SQuAD exact match and token F1 as fractions, max over each example's references."""
    _check_same_length(predictions, references, "span_qa_metrics")
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    em = f1 = 0.0
    for pred, refs in zip(predictions, references):
        refs = list(refs) or [""]
        norm = _normalize_answer(pred)
        em += max(float(norm == _normalize_answer(r)) for r in refs)
        f1 += max(_token_f1(pred, r) for r in refs)
    return {"exact_match": em / len(predictions), "f1": f1 / len(predictions)}


def perplexity(mean_loss: float) -> dict[str, float]:
    """exp(mean_loss); inf once it would overflow, nan for nan loss."""
    try:
        return {"perplexity": float(math.exp(mean_loss))}
    except OverflowError:
        return {"perplexity": float("inf")}


def recall_at_1(left: np.ndarray, right: np.ndarray) -> dict[str, float]:
    """Share of rows whose left vector is nearer (Euclidean) to its own right vector than to any other row's."""
    _check_same_length(left, right, "recall_at_1")
    if len(left) == 0:
        return {"recall_at_1": 0.0}
    distances = ((left[:, None, :] - right[None, :, :]) ** 2).sum(-1)
    return {"recall_at_1": float((distances.argmin(1) == np.arange(len(left))).mean())}


def is_better(metric: str, new: float, old: float | None) -> bool:
    """Whether ``new`` strictly improves on ``old`` for ``metric`` (``task/`` prefix allowed)."""
    name = metric.rsplit("/", 1)[-1]
    if name not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}")
    if old is None:
        return True
    return new > old if HIGHER_IS_BETTER[name] else new < old
