"""data.union: one text column gathered from several sources' columns, each through its own filter."""

from __future__ import annotations

import json

import pytest
from tiny import project_dict

from qarac_gui.core.data.load import DataError, load_splits
from qarac_gui.core.data.preview import preview_task
from qarac_gui.core.project.config import ConfigError, parse_project


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def sources(tmp_path):
    qa = _jsonl(tmp_path / "qa.jsonl", [{"question": "who runs", "answer": "bob runs", "label": 1},
                                        {"question": "who sleeps", "answer": "a red cat", "label": 0},
                                        {"question": "who runs", "answer": "alice runs", "label": 1}])
    nli = _jsonl(tmp_path / "nli.jsonl", [{"premise": "bob runs", "hypothesis": "bob is fast", "label": 0},
                                          {"premise": "carol sleeps", "hypothesis": "carol is quiet", "label": 2}])
    return qa, nli


def _project(tmp_path, model, union, **data):
    raw = project_dict(model, tmp_path / "data", ["masked_lm"])
    raw["tasks"][0]["data"] = {"union": union, "text": "sentence", "validation_fraction": 0, **data}
    return parse_project(raw, tmp_path)


def test_a_union_is_the_distinct_texts_of_its_sources_in_first_seen_order(tmp_path, tiny_bert, sources):
    qa, nli = sources
    project = _project(tmp_path, tiny_bert, [{"train": qa, "columns": ["question", "answer"], "filter": "label == 1"},
                                             {"train": nli, "columns": ["premise", "hypothesis"]}])
    train, valid = load_splits(project, project.tasks[0])
    assert valid is None and train.column_names == ["sentence"]
    # question then answer of each kept row, then the second source; "who runs" and "bob runs" only once
    assert train["sentence"] == ["who runs", "bob runs", "alice runs", "bob is fast", "carol sleeps",
                                 "carol is quiet"]
    preview = preview_task(project, project.tasks[0], None)
    assert preview.errors == [] and preview.train_rows == 6


def test_a_union_source_that_lacks_a_column_or_holds_no_text_is_named(tmp_path, tiny_bert, sources):
    qa, nli = sources
    project = _project(tmp_path, tiny_bert, [{"train": qa, "columns": ["question"]},
                                             {"train": nli, "columns": ["premise", "claim"]}])
    with pytest.raises(DataError, match=r"data.union\[1\] \(.*nli.jsonl\) has no column 'claim' \(columns: premise, "
                                         r"hypothesis, label\)"):
        load_splits(project, project.tasks[0])
    project = _project(tmp_path, tiny_bert, [{"train": qa, "columns": ["label"]}])
    with pytest.raises(DataError, match=r"row 1: 'label' holds 1, not text"):
        load_splits(project, project.tasks[0])


def test_a_union_is_checked_in_words_before_anything_is_read(tmp_path, tiny_bert, sources):
    qa, _ = sources
    with pytest.raises(ConfigError) as e:
        _project(tmp_path, tiny_bert, [{"train": qa, "hub": "acme/qa", "columns": []},
                                       {"train": qa, "columns": ["question"], "filter": "label =="}],
                 train=qa, validation=qa)
    lines = str(e.value).splitlines()
    assert "tasks.masked-lm.data.union: the union is the training data; remove train and hub, or the union" in lines
    assert any(line.startswith("tasks.masked-lm.data.union: a union holds out its validation rows") for line in lines)
    assert "tasks.masked-lm.data.union[0]: give either train (a local file) or hub (a Hub dataset id)" in lines
    assert any(line.startswith("tasks.masked-lm.data.union[0].columns: name the text columns") for line in lines)
    assert any(line.startswith("tasks.masked-lm.data.union[1].filter:") for line in lines)


def test_a_union_for_a_task_that_reads_more_than_texts_is_refused_in_words(tmp_path, tiny_bert, sources):
    """A union's rows hold the one text column: a classifier would fail at loading for want of its labels."""
    qa, _ = sources
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"])
    raw["tasks"][0]["data"] = {"union": [{"train": qa, "columns": ["question"]}], "text": "sentence",
                               "label": "label"}
    with pytest.raises(ConfigError, match=r"tasks.classification.data.union: a union makes one column of texts, "
                                          r"'sentence', and a classification task also reads 'label'; use a union "
                                          r"for a task that reads texts alone, such as masked_lm"):
        parse_project(raw, tmp_path)
