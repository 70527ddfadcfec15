import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tiny import make_model_folder, project_dict, write_task_data

from qarac_gui.core.data.load import DataError, infer_labels, load_splits
from qarac_gui.core.data.tokenize import tokenize
from qarac_gui.core.model.backbone import load_backbone
from qarac_gui.core.project.config import parse_project
from qarac_gui.core.training.setup import prepare_tasks


def _project(tmp_path, model, kinds, **sections):
    return parse_project(project_dict(model, tmp_path / "data", kinds, **sections), tmp_path)


def _tokenizer(project):
    return load_backbone(project.backbones["encoder"], project.root).tokenizer


def test_held_out_validation_is_reproducible_and_disjoint(tmp_path, tiny_bert):
    p = _project(tmp_path, tiny_bert, ["classification"])
    task = p.tasks[0]
    a_train, a_valid = load_splits(p, task)
    b_train, b_valid = load_splits(p, task)
    assert len(a_valid) == 12 and len(a_train) == 36                   # 25 % of 48 rows
    assert a_valid["text"] == b_valid["text"]
    p.train.seed = 8
    _, c_valid = load_splits(p, task)
    assert c_valid["text"] != a_valid["text"]


def test_a_folder_given_as_hub_dataset_loads_its_splits(tmp_path, tiny_bert):
    folder = tmp_path / "hub_like"
    folder.mkdir()
    write_task_data(tmp_path / "raw", "classification", n=30).rename(folder / "train.csv")
    write_task_data(tmp_path / "raw", "classification", n=10, seed=1).rename(folder / "validation.csv")
    raw = project_dict(tiny_bert, tmp_path / "data", ["classification"])
    raw["tasks"][0]["data"] = {"hub": str(folder), "train_split": "train", "validation_split": "validation",
                               "text": "text", "label": "label"}
    p = parse_project(raw, tmp_path)
    train, valid = load_splits(p, p.tasks[0])
    assert (len(train), len(valid)) == (30, 10)


def test_missing_column_error_lists_the_columns(tmp_path, tiny_bert):
    p = _project(tmp_path, tiny_bert, ["classification"])
    p.tasks[0].data.label = "sentiment"
    with pytest.raises(DataError, match=r"no column 'sentiment' \(columns: text, label\)"):
        load_splits(p, p.tasks[0])


def test_labels_are_inferred_sorted_given_or_declared(tmp_path, tiny_bert):
    from datasets import ClassLabel, Dataset, Features, Value
    p = _project(tmp_path, tiny_bert, ["classification"])
    task = p.tasks[0]
    numeric = Dataset.from_dict({"text": ["a", "b", "c"], "label": [10, 2, 1]})
    assert infer_labels(task, numeric, None) == ["1", "2", "10"]
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "neutral", "pos"])})
    declared = Dataset.from_dict({"text": ["a"], "label": [2]}, features=features)
    assert infer_labels(task, declared, None) == ["neg", "neutral", "pos"]
    task.head.labels = ["pos", "neg"]
    assert infer_labels(task, numeric, None) == ["pos", "neg"]


def test_unknown_label_and_out_of_range_score_name_the_value(tmp_path, tiny_bert):
    from datasets import Dataset
    p = _project(tmp_path, tiny_bert, ["classification", "similarity"])
    tok = _tokenizer(p)
    cls, sim = p.tasks
    bad_label = Dataset.from_dict({"text": ["good film"], "label": ["meh"]})
    with pytest.raises(DataError, match="label 'meh' is not one of the task's labels"):
        tokenize(cls, tok, ["neg", "pos"], bad_label, "train")
    bad_score = Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "score": [1.5]})
    with pytest.raises(DataError, match=r"score 1.5 .* in \[-1, 1\]"):
        tokenize(sim, tok, [], bad_score, "train")


def test_multilabel_rows_become_multi_hot(tmp_path, tiny_bert):
    from datasets import Dataset
    p = _project(tmp_path, tiny_bert, ["multilabel"])
    ds = Dataset.from_dict({"text": ["a", "b"], "labels": ["food; staff", ""]})
    out = tokenize(p.tasks[0], _tokenizer(p), ["food", "room", "staff"], ds, "train")
    assert out["labels"] == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]


def test_only_the_first_sub_token_of_a_word_carries_its_tag(tmp_path, tiny_bert):
    from datasets import Dataset
    p = _project(tmp_path, tiny_bert, ["token_classification"])
    tok = _tokenizer(p)
    words = ["carolberlin", "was", "in", "rome"]                      # the first word splits into sub-tokens
    ds = Dataset.from_dict({"tokens": [words], "tags": [["B-PER", "O", "O", "B-LOC"]]})
    out = tokenize(p.tasks[0], tok, ["O", "B-LOC", "B-PER"], ds, "train")
    labels, word_ids = out["labels"][0], tok(words, is_split_into_words=True).word_ids()
    assert word_ids.count(0) > 1
    assert [label for label in labels if label != -100] == [2, 0, 0, 1]
    assert labels[0] == -100 and labels[-1] == -100                    # [CLS] and [SEP]


def test_span_positions_point_at_the_answer_and_cut_answers_point_at_the_start(tmp_path, tiny_bert):
    from datasets import Dataset
    p = _project(tmp_path, tiny_bert, ["span_qa"])
    p.tasks[0].max_length = 12
    tok = _tokenizer(p)
    context = "alice lives in paris near the river and bob lives in rome near the tower"
    ds = Dataset.from_dict({"question": ["where", "where"], "context": [context, context],
                            "answers": [{"text": ["paris"], "answer_start": [context.index("paris")]},
                                        {"text": ["tower"], "answer_start": [context.index("tower")]}]})
    out = tokenize(p.tasks[0], tok, [], ds, "valid")
    ids = out["input_ids"][0]
    start, end = out["start_positions"][0], out["end_positions"][0]
    assert tok.decode(ids[start:end + 1]).strip() == "paris"
    assert (out["start_positions"][1], out["end_positions"][1]) == (0, 0)      # truncated away
    assert out["answer_texts"] == [["paris"], ["tower"]]


def test_tokenisation_is_cached_under_the_app_cache(tmp_path, tiny_bert):
    p = _project(tmp_path, tiny_bert, ["classification", "regression"])
    toks = {"encoder": _tokenizer(p)}
    first = prepare_tasks(p, toks, lambda e: None, threading.Event())
    second = prepare_tasks(p, toks, lambda e: None, threading.Event())
    for name in first:
        a, b = first[name].train.cache_files[0]["filename"], second[name].train.cache_files[0]["filename"]
        assert a == b and a.startswith(os.environ["QARAC_GUI_CACHE"])


def test_collate_pads_each_batch_to_its_own_longest_row(tmp_path, tiny_bert):
    p = _project(tmp_path, tiny_bert, ["classification", "token_classification"])
    tasks = prepare_tasks(p, {"encoder": _tokenizer(p)}, lambda e: None, threading.Event())
    data = tasks["classification"]
    lengths = [len(x) for x in data.train["input_ids"]]
    short = sorted(range(len(lengths)), key=lengths.__getitem__)[:2]
    batch = data.collate(data.train[short])
    assert max(lengths[i] for i in short) < max(lengths)
    assert tuple(batch["input_ids"].shape) == (2, max(lengths[i] for i in short))
    tags = tasks["token-classification"]
    batch = tags.collate(tags.train[[0, 1]])
    assert batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_masked_lm_masks_only_real_tokens_and_is_reproducible(tmp_path, tiny_bert):
    p = _project(tmp_path, tiny_bert, ["masked_lm"])
    p.tasks[0].head.mlm_probability = 0.5
    tok = _tokenizer(p)
    data = prepare_tasks(p, {"encoder": tok}, lambda e: None, threading.Event())["masked-lm"]
    rows = data.train[list(range(8))]
    a, b, c = data.collate(rows, seed=1), data.collate(rows, seed=1), data.collate(rows, seed=2)
    assert (a["input_ids"] == b["input_ids"]).all() and not (a["input_ids"] == c["input_ids"]).all()
    masked = a["labels"] != -100
    assert masked.any()
    special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    assert not any(int(t) in special for t in a["labels"][masked])


@pytest.mark.slow
def test_hub_model_id_loads_from_the_hugging_face_cache_offline(tmp_path):
    """A Hub id resolves through the standard HF cache layout without any network."""
    source = make_model_folder(tmp_path / "src", "bert")
    repo = tmp_path / "hub" / "models--qarac-test--tiny-bert"
    commit = "a" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in source.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = ("from pathlib import Path; from qarac_gui.core.model.backbone import load_backbone;"
            "from qarac_gui.core.project.config import BackboneConfig;"
            "b = load_backbone(BackboneConfig(model='qarac-test/tiny-bert'), Path('.'));"
            "print(b.source, b.model.config.hidden_size)")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["qarac-test/tiny-bert", "32"]


def test_unreadable_files_name_the_file(tmp_path, tiny_bert):
    p = _project(tmp_path, tiny_bert, ["classification"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    p.tasks[0].data.train = str(empty)
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        load_splits(p, p.tasks[0])
    p.tasks[0].data.train = str(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_splits(p, p.tasks[0])
    odd = tmp_path / "rows.xlsx"
    odd.write_text("x")
    p.tasks[0].data.train = str(odd)
    with pytest.raises(DataError, match="cannot tell the format"):
        load_splits(p, p.tasks[0])
    assert Path(p.tasks[0].data.train).exists()


def test_integer_labels_of_a_dataset_with_class_names_map_to_those_names(tmp_path, tiny_bert):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value
    p = _project(tmp_path, tiny_bert, ["classification", "token_classification"])
    tok = _tokenizer(p)
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    ds = Dataset.from_dict({"text": ["bad", "good"], "label": [0, 1]}, features=features)
    labels = infer_labels(p.tasks[0], ds, None)
    assert tokenize(p.tasks[0], tok, labels, ds, "train")["labels"] == [0, 1]
    # conll-style: tags are integers into the declared tag names; here the project lists them in another order
    tag_features = Features({"tokens": Sequence(Value("string")),
                             "tags": Sequence(ClassLabel(names=["O", "B-PER", "B-LOC"]))})
    tags = Dataset.from_dict({"tokens": [["bob", "in", "rome"]], "tags": [[1, 0, 2]]}, features=tag_features)
    out = tokenize(p.tasks[1], tok, ["O", "B-LOC", "B-PER"], tags, "train")
    assert [x for x in out["labels"][0] if x != -100] == [2, 0, 1]
