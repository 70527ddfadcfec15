"""Tests for qarac_gui.core.kinds.metrics."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qarac_gui.core.kinds.metrics import (
    HIGHER_IS_BETTER,
    classification_metrics,
    entity_metrics,
    is_better,
    multilabel_metrics,
    perplexity,
    recall_at_1,
    regression_metrics,
    span_qa_metrics,
)

approx = pytest.approx


# --------------------------------------------------------------- classification


def test_classification_macro_f1_differs_from_accuracy():
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 0, 0, 1, 1, 2]
    m = classification_metrics(y_true, y_pred, num_labels=3)
    # 6 of 8 correct.
    assert m["accuracy"] == approx(0.75)
    # class 0: tp=4 fp=1 fn=0 -> P=4/5 R=1   F1=8/9
    # class 1: tp=1 fp=1 fn=1 -> P=1/2 R=1/2 F1=1/2
    # class 2: tp=1 fp=0 fn=1 -> P=1   R=1/2 F1=2/3
    # macro = (8/9 + 1/2 + 2/3) / 3 = 37/54
    assert m["macro_f1"] == approx(37 / 54)
    assert m["macro_f1"] != approx(m["accuracy"])


def test_classification_ignores_labels_absent_from_both_sides():
    # Labels 2..4 never occur; they must not drag macro F1 down to 2/5.
    m = classification_metrics([0, 1, 1], [0, 1, 1], num_labels=5)
    assert m == {"accuracy": 1.0, "macro_f1": 1.0}


def test_classification_counts_label_only_predicted():
    # class 0: tp=1 fn=1 -> F1=2/3; class 2 (only predicted): tp=0 fp=1 -> F1=0
    m = classification_metrics([0, 0], [0, 2], num_labels=3)
    assert m["accuracy"] == approx(0.5)
    assert m["macro_f1"] == approx(1 / 3)


def test_classification_rejects_out_of_range_and_mismatch():
    with pytest.raises(ValueError, match="range"):
        classification_metrics([0, 3], [0, 0], num_labels=3)
    with pytest.raises(ValueError, match="length"):
        classification_metrics([0, 1], [0], num_labels=2)


def _reference_classification(y_true, y_pred):
    n = len(y_true)
    accuracy = sum(t == p for t, p in zip(y_true, y_pred)) / n
    f1s = []
    for label in set(y_true) | set(y_pred):
        tp = sum(t == label and p == label for t, p in zip(y_true, y_pred))
        fp = sum(t != label and p == label for t, p in zip(y_true, y_pred))
        fn = sum(t == label and p != label for t, p in zip(y_true, y_pred))
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return accuracy, sum(f1s) / len(f1s)


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.integers(min_value=1, max_value=6).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(
                st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)),
                min_size=1,
                max_size=40,
            ),
        )
    )
)
def test_classification_matches_reference(case):
    num_labels, pairs = case
    y_true = [t for t, _ in pairs]
    y_pred = [p for _, p in pairs]
    accuracy, macro_f1 = _reference_classification(y_true, y_pred)
    m = classification_metrics(y_true, y_pred, num_labels)
    assert m["accuracy"] == approx(accuracy)
    assert m["macro_f1"] == approx(macro_f1)


# ------------------------------------------------------------------ multilabel


def test_multilabel_hand_computed():
    y_true = [[1, 0, 1], [0, 1, 0]]
    y_pred = [[1, 1, 1], [0, 1, 0]]
    m = multilabel_metrics(y_true, y_pred)
    # micro: tp=3 fp=1 fn=0 -> 2*3 / (2*3 + 1) = 6/7
    assert m["micro_f1"] == approx(6 / 7)
    # per label: 1, 2/3 (tp=1 fp=1), 1 -> mean 8/9
    assert m["macro_f1"] == approx(8 / 9)
    # only the second row matches exactly
    assert m["subset_accuracy"] == approx(0.5)


def test_multilabel_never_present_label_scores_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = multilabel_metrics([[1, 0], [0, 0]], [[1, 0], [0, 0]])
    assert m["micro_f1"] == approx(1.0)
    assert m["macro_f1"] == approx(0.5)
    assert m["subset_accuracy"] == approx(1.0)


def test_multilabel_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        multilabel_metrics([[1, 0]], [[1, 0, 1]])


# ------------------------------------------------------------------ regression


def test_regression_hand_computed():
    m = regression_metrics([1, 2, 3, 4], [1, 2, 3, 5])
    assert m["mse"] == approx(0.25)
    # deviations x: -1.5 -.5 .5 1.5 (ss 5); y: -1.75 -.75 .25 2.25 (ss 8.75); cov 6.5
    assert m["pearson"] == approx(6.5 / math.sqrt(5 * 8.75))
    assert m["spearman"] == approx(1.0)


def test_regression_spearman_differs_from_pearson():
    m = regression_metrics([1, 2, 3], [30, 1, 2])
    # ranks 1,2,3 vs 3,1,2: d^2 = 4+1+1 = 6 -> 1 - 6*6 / (3*8) = -0.5
    assert m["spearman"] == approx(-0.5)
    assert m["pearson"] != approx(-0.5)
    assert m["mse"] == approx((29**2 + 1 + 1) / 3)


@pytest.mark.parametrize(
    "y_true, y_pred",
    [
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]),
        ([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]),
        ([2.0], [3.0]),
    ],
)
def test_regression_constant_or_single_point_gives_zero_correlation(y_true, y_pred):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = regression_metrics(y_true, y_pred)
    assert m["pearson"] == 0.0
    assert m["spearman"] == 0.0
    expected_mse = sum((t - p) ** 2 for t, p in zip(y_true, y_pred)) / len(y_true)
    assert m["mse"] == approx(expected_mse)


def test_regression_near_constant_input_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = regression_metrics([1.0, 1.0 + 1e-15, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    assert all(math.isfinite(v) for v in m.values())


# --------------------------------------------------------------------- entities


def test_entity_truncated_span_high_token_accuracy_low_f1():
    true = [["B-PER", "I-PER"] + ["O"] * 8]
    pred = [["B-PER", "O"] + ["O"] * 8]
    m = entity_metrics(true, pred)
    assert m["token_accuracy"] == approx(0.9)
    assert m["entity_precision"] == 0.0
    assert m["entity_recall"] == 0.0
    assert m["entity_f1"] == 0.0


def test_entity_wrong_type_across_sentences():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    m = entity_metrics(true, pred)
    # 3 true, 3 predicted, 2 match
    assert m["entity_precision"] == approx(2 / 3)
    assert m["entity_recall"] == approx(2 / 3)
    assert m["entity_f1"] == approx(2 / 3)
    assert m["token_accuracy"] == approx(5 / 6)


def test_entity_precision_and_recall_differ():
    true = [["B-PER", "O", "B-LOC", "O"]]
    pred = [["B-PER", "O", "O", "O"]]
    m = entity_metrics(true, pred)
    # P = 1/1, R = 1/2, F1 = 2/3
    assert m["entity_precision"] == approx(1.0)
    assert m["entity_recall"] == approx(0.5)
    assert m["entity_f1"] == approx(2 / 3)


def test_entity_lenient_i_start():
    # I-PER after O opens an entity, identical to B-PER I-PER.
    m = entity_metrics([["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]])
    assert m["entity_f1"] == approx(1.0)
    assert m["token_accuracy"] == approx(2 / 3)
    # I-LOC after B-PER is a new LOC entity, not a continuation.
    m = entity_metrics([["B-PER", "B-LOC"]], [["B-PER", "I-LOC"]])
    assert m["entity_f1"] == approx(1.0)
    assert m["token_accuracy"] == approx(0.5)


def test_entity_adjacent_b_tags_are_separate():
    # true: PER(0,0) PER(1,1); pred: PER(0,1) -> nothing matches
    m = entity_metrics([["B-PER", "B-PER"]], [["B-PER", "I-PER"]])
    assert m["entity_f1"] == 0.0
    assert m["entity_recall"] == 0.0


def test_entity_iobes():
    true = [["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"]]
    pred = [["B-PER", "O", "B-LOC", "E-LOC", "O"]]
    m = entity_metrics(true, pred)
    # PER(0,0) matches S-PER; LOC(2,3) vs LOC(2,4) does not -> 1 of 2 each way
    assert m["entity_precision"] == approx(0.5)
    assert m["entity_recall"] == approx(0.5)
    assert m["entity_f1"] == approx(0.5)
    assert m["token_accuracy"] == approx(2 / 5)


def test_entity_iobes_e_then_i_starts_new_entity():
    # B-PER E-PER closes PER(0,1); the following I-PER opens PER(2,2).
    m = entity_metrics([["B-PER", "E-PER", "S-PER"]], [["B-PER", "E-PER", "I-PER"]])
    assert m["entity_f1"] == approx(1.0)


def test_entity_all_outside_scores_zero():
    m = entity_metrics([["O", "O"]], [["O", "O"]])
    assert m["entity_f1"] == 0.0
    assert m["token_accuracy"] == 1.0


def test_entity_sentence_length_mismatch_raises():
    with pytest.raises(ValueError):
        entity_metrics([["O", "O"]], [["O"]])


# ----------------------------------------------------------------------- span QA


def test_squad_normalisation_exact_match():
    m = span_qa_metrics(["The Eiffel Tower!"], [["eiffel tower"]])
    assert m == {"exact_match": 1.0, "f1": 1.0}


def test_squad_articles_only_as_whole_words_and_inner_punctuation():
    m = span_qa_metrics(["U.S. theatre"], [["us theatre"]])
    assert m["exact_match"] == 1.0
    m = span_qa_metrics(["theatre"], [["atre"]])
    assert m["exact_match"] == 0.0
    assert m["f1"] == 0.0


def test_squad_partial_f1():
    # normalised: [big, red, dog] vs [red, dog, barked]: overlap 2 -> P=R=2/3
    m = span_qa_metrics(["the big red dog"], [["a red dog barked"]])
    assert m["exact_match"] == 0.0
    assert m["f1"] == approx(2 / 3)


def test_squad_max_over_references_and_mean_over_examples():
    preds = ["red", "The Eiffel Tower!"]
    refs = [["red big dog", "red dog"], ["eiffel tower", "paris"]]
    m = span_qa_metrics(preds, refs)
    # example 1: vs "red big dog" F1 = 2*(1*1/3)/(4/3) = 1/2; vs "red dog" = 2/3 -> 2/3
    # example 2: EM 1, F1 1
    assert m["exact_match"] == approx(0.5)
    assert m["f1"] == approx((2 / 3 + 1) / 2)


def test_squad_repeated_tokens_counted_by_multiplicity():
    # [red, red, dog] vs [red, dog]: common = {red:1, dog:1} = 2 -> P=2/3 R=1 F1=0.8
    m = span_qa_metrics(["red red dog"], [["red dog"]])
    assert m["f1"] == approx(0.8)


def test_squad_empty_reference_list_is_empty_answer():
    m = span_qa_metrics(["", "something"], [[], []])
    assert m["exact_match"] == approx(0.5)
    assert m["f1"] == approx(0.5)


# -------------------------------------------------------------------- perplexity


def test_perplexity_values():
    assert perplexity(0.0) == {"perplexity": 1.0}
    assert perplexity(math.log(7.0))["perplexity"] == approx(7.0)
    assert perplexity(1000.0)["perplexity"] == float("inf")
    assert math.isnan(perplexity(float("nan"))["perplexity"])


# ---------------------------------------------------------------------- is_better


def test_is_better_higher():
    assert is_better("accuracy", 0.9, 0.8)
    assert not is_better("accuracy", 0.8, 0.9)
    assert not is_better("accuracy", 0.8, 0.8)
    assert is_better("f1", 0.1, None)


def test_is_better_lower():
    assert is_better("loss", 0.5, 0.6)
    assert not is_better("loss", 0.6, 0.5)
    assert is_better("mse", 1.0, 2.0)
    assert not is_better("perplexity", 30.0, 20.0)
    assert is_better("loss", 99.0, None)


def test_is_better_task_prefix():
    assert is_better("sentiment/accuracy", 0.9, 0.8)
    assert not is_better("sentiment/accuracy", 0.7, 0.8)
    assert is_better("sts/mse", 0.1, 0.2)
    assert not is_better("lm/perplexity", 12.0, 11.0)


@pytest.mark.parametrize("name", ["bleu", "task/bleu", "loss/"])
def test_is_better_unknown_metric(name):
    with pytest.raises(ValueError, match="bleu" if "bleu" in name else "loss/"):
        is_better(name, 1.0, 0.0)


# ------------------------------------------------------------------- general


def _all_outputs():
    return [
        classification_metrics([0, 1, 2], [0, 2, 2], 3),
        multilabel_metrics([[1, 0]], [[1, 1]]),
        regression_metrics([1.0, 2.0, 4.0], [1.5, 2.0, 3.0]),
        entity_metrics([["B-PER", "I-PER"]], [["B-PER", "O"]]),
        span_qa_metrics(["a"], [["b"]]),
        perplexity(1.0),
        recall_at_1(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]])),
    ]


def test_outputs_are_plain_floats_and_keys_are_ranked():
    keys = set()
    for out in _all_outputs():
        keys |= set(out)
        for value in out.values():
            assert type(value) is float
    assert keys | {"loss"} == set(HIGHER_IS_BETTER)
    lower = {k for k, higher in HIGHER_IS_BETTER.items() if not higher}
    assert lower == {"mse", "loss", "perplexity"}


def test_recall_at_1_counts_rows_whose_own_partner_is_the_nearest():
    left = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    right = np.array([[0.1, 0.0], [3.0, 0.0], [1.2, 0.0]])      # row 1's partner is farther than row 2's
    assert recall_at_1(left, right) == {"recall_at_1": approx(1 / 3)}
    assert recall_at_1(left, left) == {"recall_at_1": 1.0}
    with pytest.raises(ValueError, match="length mismatch"):
        recall_at_1(left, right[:2])


def test_empty_inputs_give_zero():
    assert classification_metrics([], [], 3) == {"accuracy": 0.0, "macro_f1": 0.0}
    assert multilabel_metrics([], []) == {"micro_f1": 0.0, "macro_f1": 0.0, "subset_accuracy": 0.0}
    assert regression_metrics([], []) == {"mse": 0.0, "pearson": 0.0, "spearman": 0.0}
    zero_entities = {
        "entity_f1": 0.0,
        "entity_precision": 0.0,
        "entity_recall": 0.0,
        "token_accuracy": 0.0,
    }
    assert entity_metrics([], []) == zero_entities
    assert entity_metrics([[]], [[]]) == zero_entities
    assert span_qa_metrics([], []) == {"exact_match": 0.0, "f1": 0.0}
    assert recall_at_1(np.zeros((0, 2)), np.zeros((0, 2))) == {"recall_at_1": 0.0}


def test_the_metrics_need_neither_sklearn_nor_scipy():
    """Imported in a run's thread, either would hold a window's event loop for a quarter of a second at a time."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = (
        "import sys; from qarac_gui.core.kinds.metrics import *; "
        "classification_metrics([0, 1, 2], [0, 2, 2], 3); multilabel_metrics([[0, 1]], [[1, 1]]); "
        "regression_metrics([1.0, 2.0, 3.0], [1.5, 2.0, 2.5]); "
        "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"



# ---------------------------------------------------------------- the same numbers as scikit-learn and SciPy

labels_and_predictions = st.integers(1, 6).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=60)))


@settings(max_examples=200, deadline=None)
@given(labels_and_predictions)
def test_classification_metrics_are_scikit_learns(case):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    k, pairs = case
    t, p = [a for a, _ in pairs], [b for _, b in pairs]
    present = sorted(set(t) | set(p))
    got = classification_metrics(t, p, k)
    assert got["accuracy"] == approx(sklearn_metrics.accuracy_score(t, p), abs=1e-12)
    assert got["macro_f1"] == approx(sklearn_metrics.f1_score(t, p, labels=present, average="macro",
                                                              zero_division=0), abs=1e-12)


# two labels at least: scikit-learn reads a single column as one binary target, not as indicators
@settings(max_examples=200, deadline=None)
@given(st.integers(2, 5).flatmap(lambda n: st.lists(
    st.tuples(st.lists(st.integers(0, 1), min_size=n, max_size=n), st.lists(st.integers(0, 1), min_size=n, max_size=n)),
    min_size=1, max_size=30)))
def test_multilabel_metrics_are_scikit_learns(rows):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    t, p = np.array([a for a, _ in rows]), np.array([b for _, b in rows])
    got = multilabel_metrics(t, p)
    assert got["micro_f1"] == approx(sklearn_metrics.f1_score(t, p, average="micro", zero_division=0), abs=1e-12)
    assert got["macro_f1"] == approx(sklearn_metrics.f1_score(t, p, average="macro", zero_division=0), abs=1e-12)
    assert got["subset_accuracy"] == approx(sklearn_metrics.accuracy_score(t, p), abs=1e-12)


# few distinct values, so that ties (which Spearman ranks by their mean) are common
scores = st.lists(st.tuples(st.sampled_from([-2.5, 0.0, 0.5, 1.0, 3.0, 1e3]), st.floats(-10, 10)), min_size=2,
                  max_size=40)


@settings(max_examples=200, deadline=None)
@given(scores)
def test_correlations_are_scipys(pairs):
    stats = pytest.importorskip("scipy.stats")
    t, p = np.array([a for a, _ in pairs]), np.array([round(b, 1) for _, b in pairs])
    got = regression_metrics(t, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # SciPy warns on a constant side, where both say 0 here
        want = {"pearson": float(stats.pearsonr(t, p)[0]), "spearman": float(stats.spearmanr(t, p)[0])}
    for name, value in want.items():
        assert got[name] == approx(0.0 if math.isnan(value) else value, abs=1e-9), name
