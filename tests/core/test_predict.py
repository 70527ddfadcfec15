"""Trying a trained model on typed text: each kind's prediction on tiny trained models, from an export or from a
run's latest checkpoint, and the words a person gets when there is nothing to try yet."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import torch
from tiny import TASK_COLUMNS, project_dict

from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds.layers import generate, sentence_vector
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.results.predict import has_model, load_trial_model, runs_with_models

NAME = {kind: kind.replace("_", "-") for kind in TASK_COLUMNS}


@pytest.fixture(scope="module")
def ordinary(kinds_run):
    return kinds_run, load_trial_model(kinds_run)


@pytest.fixture(scope="module")
def recipe(recipe_run):
    return load_trial_model(recipe_run)


# ------------------------------------------------------------------------------------------ ordinary kinds


@pytest.mark.slow
def test_classification_gives_every_labels_probability_and_the_most_likely_label(ordinary):
    _, model = ordinary
    for text, expected in (("the food was very great", "pos"), ("the room was awful", "neg")):
        p = model.predict(NAME["classification"], {"text": text})
        probabilities = p.values["probabilities"]
        assert set(probabilities) == {"neg", "pos"}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert p.values["label"] == max(probabilities, key=probabilities.get) == expected
        assert p.rows[0][0] == expected and p.text.startswith(expected)


@pytest.mark.slow
def test_multilabel_gives_the_labels_over_the_threshold(ordinary):
    run_dir, model = ordinary
    p = model.predict(NAME["multilabel"], {"text": "food staff the film was good"})
    probabilities = p.values["probabilities"]
    assert set(probabilities) == {"food", "room", "staff"}
    assert p.values["labels"] == [n for n, v in probabilities.items() if v > p.values["threshold"]]
    assert {"food", "staff"} <= set(p.values["labels"])


@pytest.mark.slow
def test_regression_gives_the_heads_number(ordinary):
    _, model = ordinary
    high = model.predict(NAME["regression"], {"text": "the app was very very good"}).values["value"]
    low = model.predict(NAME["regression"], {"text": "the app was bad"}).values["value"]
    assert high > low + 0.3           # the score counts "very" and adds one for a good opinion


@pytest.mark.slow
def test_token_classification_tags_each_typed_word(ordinary):
    _, model = ordinary
    p = model.predict(NAME["token_classification"], {"text": "carol was in berlin at nine"})
    assert p.values["tags"] == [("carol", "B-PER"), ("was", "O"), ("in", "O"), ("berlin", "B-LOC"), ("at", "O"),
                                ("nine", "O")]
    assert p.values["entities"] == [("carol", "PER"), ("berlin", "LOC")]


@pytest.mark.slow
def test_span_qa_answers_with_a_span_of_the_context(ordinary):
    _, model = ordinary
    context = "bob lives in london near the river"
    p = model.predict(NAME["span_qa"], {"text": "where does bob live", "pair": context})
    assert p.values["answer"] == "london" == context[p.values["start"]:p.values["end"]]
    assert 0 < p.values["score"] <= 1


@pytest.mark.slow
def test_similarity_is_the_cosine_of_the_two_embeddings(ordinary):
    _, model = ordinary
    alike = model.predict(NAME["similarity"], {"text": "the film was good", "pair": "the film was great"})
    unlike = model.predict(NAME["similarity"], {"text": "the film was good", "pair": "the film was awful"})
    assert -1 <= unlike.values["cosine"] < 0 < alike.values["cosine"] <= 1
    # The head's own forward pass gives the same number.
    task = model.project.task(NAME["similarity"])
    tokenizer = model.tokenizers[task.backbone]
    batch = dict(tokenizer("the film was good", return_tensors="pt"))
    batch.update({"b_" + k: v for k, v in tokenizer("the film was great", return_tensors="pt").items()})
    batch["labels"] = torch.zeros(1)
    with torch.no_grad():
        assert float(model.model(task.name, batch).logits[0]) == pytest.approx(alike.values["cosine"], abs=1e-6)


@pytest.mark.slow
def test_masked_lm_fills_the_mask_with_the_most_likely_tokens(ordinary):
    _, model = ordinary
    p = model.predict(NAME["masked_lm"], {"text": "the film was <mask>"})     # either spelling of the mask
    (fills,) = p.values["fills"]
    probabilities = [v for _, v in fills]
    assert len(fills) == 5 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
    with pytest.raises(UserError, match=r"\[MASK\] where a word is missing"):
        model.predict(NAME["masked_lm"], {"text": "the film was good"})


@pytest.mark.slow
def test_the_latest_checkpoint_predicts_as_the_export_of_the_same_step(ordinary, tmp_path):
    run_dir, exported = ordinary
    stopped = tmp_path / "stopped"                  # the same run as it was before its export: checkpoints only
    shutil.copytree(run_dir, stopped, ignore=shutil.ignore_patterns("export"))
    model = load_trial_model(stopped)
    assert model.origin == "the checkpoint of step 100" and exported.origin == "the exported model (step 100)"
    inputs = {NAME["classification"]: {"text": "the staff was fine"},
              NAME["token_classification"]: {"text": "dave was in rome at ten"},
              NAME["span_qa"]: {"text": "where does alice live", "pair": "alice lives in paris near the river"},
              NAME["similarity"]: {"text": "the app was poor", "pair": "the app was bad"}}
    for task, typed in inputs.items():
        assert model.predict(task, typed) == exported.predict(task, typed), task     # the same weights


@pytest.mark.slow
def test_ordinary_kinds_ask_for_their_text_and_pair(ordinary):
    _, model = ordinary
    names = {task: [(i.name, i.label) for i in model.typed_inputs(task)] for task in model.tasks}
    assert names[NAME["classification"]] == [("text", "Text")]
    assert names[NAME["span_qa"]] == [("text", "Question"), ("pair", "Context")]
    assert names[NAME["similarity"]] == [("text", "First sentence"), ("pair", "Second sentence")]
    assert names[NAME["token_classification"]] == [("text", "Words (separated by spaces)")]
    with pytest.raises(UserError, match="type something into 'Context' first"):
        model.predict(NAME["span_qa"], {"text": "where does alice live", "pair": "  "})


# ------------------------------------------------------------------------------- vector and decode heads


def _vectors(model, backbone: str, texts: list[str]) -> torch.Tensor:
    batch = {"x__" + k: v for k, v in model.tokenizers[backbone](texts, padding=True, return_tensors="pt").items()}
    with torch.no_grad():
        return sentence_vector(model.model, backbone, batch, "x__")


def _generated(model, vectors: torch.Tensor) -> list[str]:
    tokenizer = model.tokenizers["decoder"]
    stop = {tokenizer.sep_token_id, tokenizer.eos_token_id} - {None}
    ids = generate(model.model.backbones["decoder"], vectors, stop, 23)
    return [tokenizer.decode(i, skip_special_tokens=True) for i in ids]


@pytest.mark.slow
def test_ranking_typed_hypotheses_puts_the_premises_own_first(recipe):
    # consistency pulls the cosine of a premise and its entailed hypothesis to 1, a neutral one to 0 and a
    # contradiction to -1: typed as three lines, they come back in that order.
    for name in ("alice", "bob", "carol", "dave"):
        for habit, other in (("sleeps", "runs"), ("runs", "sleeps")):
            hypotheses = [f"{name} {other}", f"{name} {habit} in rome", f"{name} {habit}"]
            p = recipe.predict("consistency", {"s1": f"{name} {habit} very fast", "s2": "\n".join(hypotheses)})
            assert p.values["ranking"] == [2, 1, 0], (name, habit, p.values["cosine"])
            assert [row[1] for row in p.rows] == hypotheses[::-1]


@pytest.mark.slow
def test_a_distance_head_ranks_by_the_distance_of_the_two_sides(recipe):
    question = "where is the tower of rome"
    answers = ["the tower is in rome", "the cat sleeps", "the museum is in paris"]
    p = recipe.predict("question_answering", {"q": question, "a": "\n".join(answers)})
    left = _vectors(recipe, "question_encoder", [question])
    right = _vectors(recipe, "answer_encoder", answers)
    distances = (left - right).norm(dim=-1)
    assert p.values["distance"] == pytest.approx(distances.tolist(), abs=1e-5)
    assert p.values["ranking"] == distances.argsort().tolist()
    assert p.values["rows"] == [{"q": question, "a": a} for a in answers]     # one question serves every row


@pytest.mark.slow
def test_decode_writes_what_generate_writes_from_the_same_vector(recipe):
    sentences = ["alice sleeps", "the museum is in paris"]
    p = recipe.predict("encode_decode", {"s": "\n".join(sentences)})
    assert p.values["texts"] == _generated(recipe, _vectors(recipe, "answer_encoder", sentences))
    premises = ("a cat sleeps", "bob is a cat")
    p = recipe.predict("reasoning", {"p1": premises[0], "p2": premises[1]})
    vectors = _vectors(recipe, "answer_encoder", list(premises))
    assert p.values["texts"] == _generated(recipe, vectors[:1] + vectors[1:])


@pytest.mark.slow
def test_named_inputs_are_typed_one_line_per_row(recipe):
    assert [(i.name, i.lines) for i in recipe.typed_inputs("reasoning")] == [("p1", True), ("p2", True)]
    assert recipe.typed_inputs("question_answering")[1].label == "a: answer (read by answer_encoder)"
    with pytest.raises(UserError, match="'p2' has 2"):
        recipe.predict("reasoning", {"p1": "a\nb\nc", "p2": "d\ne"})
    with pytest.raises(UserError, match="type something into 'q' first"):
        recipe.predict("question_answering", {"q": "\n \n", "a": "the cat sleeps"})


# ---------------------------------------------------------------------------------- nothing to try yet


def test_a_folder_without_a_model_says_what_is_missing(tmp_path, tiny_bert):
    with pytest.raises(UserError, match="neither a run folder nor an exported multi-task model"):
        load_trial_model(tmp_path)
    assert not has_model(tmp_path)
    # A run that has started but not yet written a checkpoint.
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"])
    from qarac_gui.core.project.config import dumps_project
    (run_dir / "project.toml").write_text(dumps_project(parse_project(raw, tmp_path)), encoding="utf-8")
    (run_dir / "checkpoints" / ".tmp-step-00000004").mkdir()          # being written: not a checkpoint yet
    assert not has_model(run_dir)
    with pytest.raises(UserError, match="run has no model yet: a run writes its first checkpoint"):
        load_trial_model(run_dir)
    assert runs_with_models(tmp_path) == []


@pytest.mark.slow
def test_a_run_with_a_checkpoint_is_listed_while_it_trains(tmp_path, tiny_bert):
    from qarac_gui.core.events import CheckpointSaved
    from qarac_gui.core.run import run
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"], train={"max_steps": 40},
                       checkpoint={"every": 2})
    stop, seen = threading.Event(), {}

    def emit(event):            # while the run goes on: try its newest checkpoint, then stop it
        if isinstance(event, CheckpointSaved) and "model" not in seen:
            assert runs_with_models(tmp_path / "runs") == [tmp_path / "runs" / "run"]
            seen["model"] = load_trial_model(tmp_path / "runs" / "run")
            stop.set()
    run(parse_project(raw, tmp_path), emit, stop, run_dir=tmp_path / "runs" / "run")
    model = seen["model"]
    assert model.origin == "the checkpoint of step 2"
    probabilities = model.predict("classification", {"text": "the film was good"}).values["probabilities"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert json.loads((tmp_path / "runs" / "run" / "checkpoints" / "step-00000002" / "manifest.json")
                      .read_text())["step"] == 2
