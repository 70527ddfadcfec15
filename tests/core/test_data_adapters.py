"""A task's row filter and label map (data.filter, data.label_map): checked with the project, applied to local files
and Hub datasets as they are read, before rows are held out and before the limit, and shown by the preview."""

import csv
import json
import threading

import pytest
from tiny import project_dict

from qarac_gui.core.data.adapters import adapt_rows
from qarac_gui.core.data.load import DataError, infer_labels, load_splits, load_train
from qarac_gui.core.data.preview import filter_summary, preview_task
from qarac_gui.core.events import RunEnded, RunStarted
from qarac_gui.core.project.config import parse_project, validate
from qarac_gui.core.project.convert import ConfigError

# SNLI's shape: 0 entailment, 1 neutral, 2 contradiction, -1 no gold label.
SNLI = [("a man sleeps", "a person rests", 0), ("a dog runs", "a cat sleeps", 2), ("the film was good", "it rained", 1),
        ("two men talk", "people speak", -1), ("a red car", "a blue car", 2), ("alice reads", "someone reads", 0),
        ("the city is loud", "the river is quiet", 1), ("bob cooks", "bob eats", -1)] * 3
COSINE = {"0": 1, "1": 0, "2": -1}


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def snli_project(tmp_path, model, **data):
    path = write_csv(tmp_path / "snli.csv", ["premise", "hypothesis", "label"], SNLI)
    raw = project_dict(model, tmp_path / "unused", [])
    raw["tasks"] = [{"name": "nli", "batch_size": 4, "max_length": 32, "head": {"kind": "similarity"},
                     "data": {"train": str(path), "text": "premise", "text_pair": "hypothesis", "label": "label",
                              "validation_fraction": 0.0, **data}}]
    return parse_project(raw, tmp_path)


def classification_project(tmp_path, rows, **data):
    path = write_csv(tmp_path / "rows.csv", ["text", "label"], rows)
    raw = project_dict(tmp_path / "model", tmp_path / "unused", [])
    raw["tasks"] = [{"name": "cls", "head": {"kind": "classification"},
                     "data": {"train": str(path), "validation_fraction": 0.0, **data}}]
    return parse_project(raw, tmp_path)


# ---- checked with the project ----------------------------------------------------------------------------------

def _problems(**data):
    raw = {"version": 2, "name": "p", "backbones": {"encoder": {"model": "m"}}, "train": {"max_steps": 1},
           "tasks": [{"name": "t", "head": {"kind": data.pop("kind", "classification")},
                      "data": {"train": "t.csv", **data}}]}
    return validate(parse_project(raw, check=False))


def test_a_filter_outside_the_grammar_is_a_problem_naming_the_key():
    problems = _problems(filter="label = 1")
    assert len(problems) == 1
    assert problems[0].startswith("tasks.t.data.filter: 'label = 1': unexpected '=' at character 7")
    assert _problems(filter="   ") == ["tasks.t.data.filter: it is empty; write a condition such as label == 1, or "
                                       "remove the filter"]
    assert _problems(filter="label != -1 and text != ''") == []


def test_a_label_map_is_one_type_and_only_for_tasks_with_labels():
    assert _problems(label_map={"0": 1, "1": 0.5}) == []
    assert _problems(label_map={"0": 1, "1": "neg"}) == [
        "tasks.t.data.label_map: mixes numbers and text; map every key to a number, or every key to a text, so that "
        "the label column holds one type"]
    assert _problems(kind="masked_lm", label_map={"0": 1}) == [
        "tasks.t.data.label_map: a masked_lm task has no labels to map; remove label_map"]
    assert _problems(label_map={"0": 2**70})[0].startswith("tasks.t.data.label_map: the value of '0' is beyond")


@pytest.mark.parametrize("value", [True, [1], {"a": 1}])
def test_a_label_map_value_that_is_neither_number_nor_text_is_refused(value):
    with pytest.raises(ConfigError, match=r"^tasks\.t\.data\.label_map\.0: expected a number or a string, got "):
        _problems(label_map={"0": value})


def test_numbers_in_a_label_map_keep_their_type():
    raw = {"version": 2, "name": "p", "backbones": {"encoder": {"model": "m"}}, "train": {"max_steps": 1},
           "tasks": [{"name": "t", "data": {"train": "t.csv", "label_map": {"a": 1, "b": 0.5, "c": "x"}}}]}
    mapped = parse_project(raw, check=False).tasks[0].data.label_map
    assert [(v, type(v)) for v in mapped.values()] == [(1, int), (0.5, float), ("x", str)]


# ---- applied as the rows are read ------------------------------------------------------------------------------

def test_snli_filtered_and_mapped_to_cosine_targets(tmp_path, tiny_bert):
    p = snli_project(tmp_path, tiny_bert, filter="label != -1", label_map=COSINE)
    train, valid = load_splits(p, p.tasks[0])
    assert valid is None and len(train) == 18
    assert train["label"] == [COSINE[str(lab)] for *_, lab in SNLI if lab != -1]
    assert train["premise"][:3] == ["a man sleeps", "a dog runs", "the film was good"]


def test_the_filter_applies_before_the_held_out_rows_and_the_limit(tmp_path, tiny_bert):
    p = snli_project(tmp_path, tiny_bert, filter="label == 0 or label == 2", validation_fraction=0.25, limit=5)
    train, valid = load_splits(p, p.tasks[0])
    kept = [(a, b) for a, b, lab in SNLI if lab in (0, 2)]                    # 12 rows
    assert (len(train), len(valid)) == (5, 3)                                 # 3 of 12 held out, then 5 of 9
    assert set(zip(train["premise"], train["hypothesis"])) | set(zip(valid["premise"], valid["hypothesis"])) <= \
        set(kept)
    assert set(train["label"]) | set(valid["label"]) <= {0, 2}


def test_a_validation_file_is_filtered_and_mapped_too(tmp_path, tiny_bert):
    valid_path = write_csv(tmp_path / "valid.csv", ["premise", "hypothesis", "label"], SNLI[:8])
    p = snli_project(tmp_path, tiny_bert, filter="label != -1", label_map=COSINE, validation=str(valid_path))
    _, valid = load_splits(p, p.tasks[0])
    assert valid["label"] == [1, -1, 0, -1, 1, 0]


def test_a_folder_given_as_a_hub_dataset_with_declared_classes(tmp_path, tiny_bert):
    from datasets import ClassLabel, Dataset, Features, Value
    features = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
    folder = tmp_path / "snli_like"
    folder.mkdir()
    for split, rows in (("train", SNLI), ("validation", SNLI[:8])):
        ds = Dataset.from_dict({"premise": [r[0] for r in rows], "hypothesis": [r[1] for r in rows],
                                "label": [r[2] for r in rows]}, features=features)
        ds.to_parquet(folder / f"{split}.parquet")
    p = snli_project(tmp_path, tiny_bert, filter="label != -1", label_map=COSINE)
    p.tasks[0].data.train, p.tasks[0].data.hub, p.tasks[0].data.validation_split = "", str(folder), "validation"
    assert load_train(p, p.tasks[0], adapt=False).features["label"].names[0] == "entailment"
    train, valid = load_splits(p, p.tasks[0])
    assert len(train) == 18 and valid["label"] == [1, -1, 0, -1, 1, 0]
    # the declared names described the numbers before the map, so they no longer apply
    assert train.features["label"] == Value("int64")
    p.tasks[0].head.kind, p.tasks[0].data.label_map = "classification", {"0": "yes", "1": "maybe", "2": "no"}
    train, valid = load_splits(p, p.tasks[0])
    assert infer_labels(p.tasks[0], train, valid) == ["maybe", "no", "yes"]


def test_a_column_the_filter_names_must_exist(tmp_path, tiny_bert):
    p = snli_project(tmp_path, tiny_bert, filter="gold_label != '-'")
    with pytest.raises(DataError) as info:
        load_splits(p, p.tasks[0])
    assert str(info.value) == ("task nli: training data has no column 'gold_label', which data.filter names "
                               "(columns: premise, hypothesis, label); name a column of the data in the filter")


def test_a_filter_that_keeps_nothing_says_so(tmp_path, tiny_bert):
    p = snli_project(tmp_path, tiny_bert, filter="label > 5")
    with pytest.raises(DataError, match=r"^task nli: training data: data\.filter 'label > 5' keeps none of its 24 "
                                        r"rows; loosen the filter"):
        load_splits(p, p.tasks[0])


def test_a_row_the_filter_cannot_judge_is_named_as_in_the_file(tmp_path):
    p = classification_project(tmp_path, [("a", "1"), ("b", "x"), ("c", "2")], filter="label > 0")
    with pytest.raises(DataError, match=r"^task cls: training data, row 1: filter 'label > 0': cannot order '1' "
                                        r"\(str\) against 0"):
        load_train(p, p.tasks[0])


def test_an_unmapped_label_is_named_with_its_row_in_the_file(tmp_path):
    rows = [("a", 0), ("b", 1), ("c", 7), ("d", 3), ("e", 1)]
    p = classification_project(tmp_path, rows, label_map={"0": "neg", "1": "pos"})
    with pytest.raises(DataError) as info:
        load_train(p, p.tasks[0])
    assert str(info.value) == ("task cls: training data, row 3: 'label' holds 7, which data.label_map has no key for "
                               "(keys: '0', '1'); add it, or drop such rows with data.filter")
    # rows the filter drops need no key; a later one is named by its row in the file, not among the kept rows
    p.tasks[0].data.filter = "label != 7"
    with pytest.raises(DataError, match=r"^task cls: training data, row 4: 'label' holds 3,"):
        load_train(p, p.tasks[0])
    p.tasks[0].data.filter = "label < 2"
    assert load_train(p, p.tasks[0])["label"] == ["neg", "pos", "pos"]


def test_cells_match_keys_by_their_text(tmp_path):
    # A column with an empty cell is read as decimals: 1.0 matches "1"; the empty cell stays empty.
    p = classification_project(tmp_path, [("a", "1"), ("b", ""), ("c", "0")], label_map={"1": "pos", "0.0": "neg"})
    assert load_train(p, p.tasks[0])["label"] == ["pos", None, "neg"]
    p = classification_project(tmp_path, [("a", "yes"), ("b", "no")], label_map={"yes": 1, "no": 0})
    assert load_train(p, p.tasks[0])["label"] == [1, 0]


def test_lists_and_separated_labels_are_mapped_label_by_label(tmp_path):
    path = tmp_path / "ner.jsonl"
    path.write_text(json.dumps({"tokens": ["alice", "in", "rome"], "tags": ["PER", "O", "LOC"]}) + "\n"
                    + json.dumps({"tokens": ["bob"], "tags": ["PER"]}) + "\n", encoding="utf-8")
    raw = project_dict(tmp_path / "model", tmp_path / "unused", [])
    raw["tasks"] = [{"name": "ner", "head": {"kind": "token_classification"}, "data": {
        "train": str(path), "text": "tokens", "label": "tags", "validation_fraction": 0.0,
        "label_map": {"PER": "B-PER", "LOC": "B-LOC", "O": "O"}}}]
    p = parse_project(raw, tmp_path)
    assert load_train(p, p.tasks[0])["tags"] == [["B-PER", "O", "B-LOC"], ["B-PER"]]
    p = classification_project(tmp_path, [("a", "x; y"), ("b", "y")], label_map={"x": "food", "y": "room"})
    p.tasks[0].head.kind = "multilabel"
    assert load_train(p, p.tasks[0])["label"] == ["food;room", "room"]


def test_the_same_adapters_give_the_same_fingerprint(tmp_path, tiny_bert):
    # datasets caches what follows (tokenising) by fingerprint: a rerun must find it, a changed filter must not
    p = snli_project(tmp_path, tiny_bert, filter="label != -1", label_map=COSINE)
    task = p.tasks[0]
    raw = load_train(p, task, adapt=False)
    first, again = adapt_rows(task, raw, "training data"), adapt_rows(task, raw, "training data")
    assert first._fingerprint == again._fingerprint
    task.data.filter = "label != -1 and label != 2"
    assert adapt_rows(task, raw, "training data")._fingerprint != first._fingerprint


def test_a_filtered_and_mapped_task_trains(tmp_path, tiny_bert, torch_threads):
    from qarac_gui.core.run import run
    p = snli_project(tmp_path, tiny_bert, filter="label != -1", label_map=COSINE, validation_fraction=0.25)
    p.train.max_steps = 2
    events = []
    ended = run(p, events.append, threading.Event(), run_dir=tmp_path / "run", min_log_interval=0)
    assert isinstance(ended, RunEnded) and ended.reason == "completed"
    started = next(e for e in events if isinstance(e, RunStarted))
    assert (started.tasks["nli"]["train_rows"], started.tasks["nli"]["valid_rows"]) == (13, 5)


# ---- shown by the preview --------------------------------------------------------------------------------------

def test_the_preview_shows_the_adapted_rows_and_what_the_filter_kept(tmp_path, tiny_bert):
    p = snli_project(tmp_path, tiny_bert, filter="label != -1", label_map=COSINE)
    preview = preview_task(p, p.tasks[0])
    assert preview.errors == []
    assert preview.columns == ["premise", "hypothesis", "label"]
    assert [row[2] for row in preview.rows[:6]] == ["1", "-1", "0", "-1", "1", "0"]
    assert (preview.filter_kept, preview.filter_read, preview.train_rows) == (18, 24, 18)
    assert filter_summary(preview) == "task nli: data.filter kept 18 of the 24 rows of the training data"
    p.tasks[0].data.filter = ""
    p.tasks[0].data.label_map = {}
    plain = preview_task(p, p.tasks[0])
    assert (plain.filter_read, filter_summary(plain)) == (0, "")


def test_the_preview_names_bad_rows_as_they_are_in_the_file(tmp_path, tiny_bert):
    rows = [("a", "b", 0), ("c", "d", -1), ("e", "f", 9), ("g", "h", 1)]
    p = snli_project(tmp_path, tiny_bert, filter="label != -1", label_map={"0": 1, "1": 0, "9": 5})
    write_csv(tmp_path / "snli.csv", ["premise", "hypothesis", "label"], rows)
    preview = preview_task(p, p.tasks[0])
    assert any(e.startswith("task nli: training data, row 3, has score 5") for e in preview.errors), preview.errors
    # a filter that names no column of the data: an error, and the columns still there to choose from
    p.tasks[0].data.filter = "gold == 1"
    preview = preview_task(p, p.tasks[0])
    assert preview.columns == ["premise", "hypothesis", "label"] and "no column 'gold'" in preview.errors[0]
