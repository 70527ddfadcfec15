import csv
import random
import re

import pytest
from tiny import make_model_folder, project_dict

from qarac_gui.core.data.preview import TaskPreview, preview_task, start_problems
from qarac_gui.core.errors import UserError
from qarac_gui.core.model.info import describe_model
from qarac_gui.core.project.config import BackboneConfig, parse_project


@pytest.fixture(scope="module")
def described(tiny_bert):
    return describe_model(BackboneConfig(model=str(tiny_bert)), tiny_bert.parent)


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _project(tmp_path, model, kind, train=None, **data):
    """A valid one-task project of `kind`; its training file replaced by `train` and data fields by `data`."""
    p = parse_project(project_dict(model, tmp_path / "data", [kind]), tmp_path)
    task = p.tasks[0]
    if train is not None:
        task.data.train = str(train)
    for key, value in data.items():
        setattr(task.data, key, value)
    return p, task


def _classification_csv(path, counts, words=5, seed=0):
    rng = random.Random(seed)
    rows = [[" ".join(rng.choice(["good", "bad", "film", "room", "very"]) for _ in range(words)), rng.random() > .5,
             label] for label, n in counts.items() for _ in range(n)]
    rng.shuffle(rows)
    return _write_csv(path, ["review", "flag", "sentiment"], rows)


# --- describe_model -------------------------------------------------------------------------------------------

def test_describe_model_reports_the_plain_encoder(tiny_bert, described):
    from transformers import AutoModel
    info, tokenizer = described
    model = AutoModel.from_pretrained(tiny_bert)
    assert info.architecture == "BertModel" and info.model_type == "bert"
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert (info.hidden_size, info.layers, info.removed) == (32, 2, "")
    assert info.vocab_size == len(tokenizer) and info.max_positions == 130
    assert info.spec == str(tiny_bert) and tokenizer.is_fast


def test_describe_model_names_the_head_it_will_remove(tmp_path):
    folder = make_model_folder(tmp_path / "seqcls", "bert", head="seqcls")
    info, _ = describe_model(BackboneConfig(model=str(folder)), tmp_path)
    assert info.architecture == "BertForSequenceClassification"
    assert "BertForSequenceClassification" in info.removed and "classifier" in info.removed


def test_describe_model_of_a_missing_folder_names_it(tmp_path):
    folder = tmp_path / "no-such-model"
    with pytest.raises(UserError, match=str(folder)):
        describe_model(BackboneConfig(model=str(folder)), tmp_path)


# --- preview_task: what the data looks like -------------------------------------------------------------------

def test_classification_preview_shows_mapped_columns_split_and_labels(tmp_path, tiny_bert):
    path = _classification_csv(tmp_path / "reviews.csv", {"pos": 30, "neg": 22, "mixed": 8})
    p, task = _project(tmp_path, tiny_bert, "classification", path, text="review", label="sentiment",
                       validation_fraction=0.25)
    pv = preview_task(p, task)
    assert pv.errors == [] and pv.task == task.name
    assert pv.columns == ["review", "flag", "sentiment"]
    assert pv.headers == ["review", "sentiment"]
    assert (pv.train_rows, pv.valid_rows) == (45, 15)
    assert pv.labels == ["mixed", "neg", "pos"]
    assert sum(pv.label_counts.values()) == pv.train_rows and set(pv.label_counts) == set(pv.labels)
    assert len(pv.rows) == 20
    file_rows = {(r[0], r[2]) for r in _read_csv(path)[1:]}
    assert all(len(r) == 2 and tuple(r) in file_rows for r in pv.rows)       # real rows of the file, as text
    assert pv.truncated_share is None                                          # no tokenizer given


def test_preview_rows_are_the_files_first_rows_as_strings(tmp_path, tiny_bert):
    rows = [[f"the film was good {i}", f"the room {i}", "pos" if i % 2 else "neg"] for i in range(30)]
    path = _write_csv(tmp_path / "pairs.csv", ["a", "b", "y"], rows)
    p, task = _project(tmp_path, tiny_bert, "classification", path, text="a", text_pair="b", label="y",
                       validation_fraction=0.0)
    pv = preview_task(p, task)
    assert pv.headers == ["a", "b", "y"]
    assert pv.rows == rows[:20]
    assert (pv.train_rows, pv.valid_rows) == (30, 0)
    assert pv.label_counts == {"neg": 15, "pos": 15}
    assert any("no validation data" in w for w in pv.warnings)


def test_wrong_label_column_is_an_error_that_lists_the_real_columns(tmp_path, tiny_bert):
    path = _classification_csv(tmp_path / "reviews.csv", {"pos": 10, "neg": 10})
    p, task = _project(tmp_path, tiny_bert, "classification", path, text="review", label="label")
    pv = preview_task(p, task)
    assert len(pv.errors) == 1
    assert "'label'" in pv.errors[0] and "review, flag, sentiment" in pv.errors[0]
    assert pv.columns == ["review", "flag", "sentiment"]                       # the GUI still fills its combos
    assert pv.rows == [] and pv.train_rows == 0


@pytest.mark.parametrize("setup,message", [
    (lambda d, tmp: setattr(d, "train", str(tmp / "missing.csv")), "file not found"),
    (lambda d, tmp: ((tmp / "empty.csv").write_text(""), setattr(d, "train", str(tmp / "empty.csv"))), "empty"),
    (lambda d, tmp: setattr(d, "train", ""), "choose a training data file"),
])
def test_unreadable_or_unchosen_data_is_an_error(tmp_path, tiny_bert, setup, message):
    p, task = _project(tmp_path, tiny_bert, "classification")
    setup(task.data, tmp_path)
    pv = preview_task(p, task)
    assert len(pv.errors) == 1 and message in pv.errors[0]
    assert pv.columns == [] and pv.rows == []


def test_non_numeric_score_names_the_row_and_column(tmp_path, tiny_bert):
    rows = [[f"the film was good {i}", str(i / 10)] for i in range(12)]
    rows[6][1] = "high"
    path = _write_csv(tmp_path / "scores.csv", ["text", "rating"], rows)
    p, task = _project(tmp_path, tiny_bert, "regression", path, label="rating", validation_fraction=0.0)
    pv = preview_task(p, task)
    assert len(pv.errors) == 1
    assert "row 7" in pv.errors[0] and "'high'" in pv.errors[0] and "'rating'" in pv.errors[0]
    assert pv.labels == [] and pv.label_counts == {}


def test_non_numeric_score_row_number_is_the_files_with_a_held_out_split(tmp_path, tiny_bert):
    rows = [[f"the film was good {i}", str(i / 10)] for i in range(40)]
    rows[6][1] = "high"
    path = _write_csv(tmp_path / "scores.csv", ["text", "rating"], rows)
    p, task = _project(tmp_path, tiny_bert, "regression", path, label="rating", validation_fraction=0.25)
    pv = preview_task(p, task)
    assert len(pv.errors) == 1 and "row 7," in pv.errors[0]


def test_imbalanced_classes_warn_and_balanced_ones_do_not(tmp_path, tiny_bert):
    skewed = _classification_csv(tmp_path / "skewed.csv", {"pos": 95, "neg": 5})
    p, task = _project(tmp_path, tiny_bert, "classification", skewed, text="review", label="sentiment")
    pv = preview_task(p, task)
    assert pv.errors == []
    assert [w for w in pv.warnings if "imbalanced" in w and "'neg'" in w]
    balanced = _classification_csv(tmp_path / "balanced.csv", {"pos": 50, "neg": 50})
    task.data.train = str(balanced)
    pv = preview_task(p, task)
    assert pv.errors == [] and not [w for w in pv.warnings if "imbalanced" in w]


def test_truncation_share_and_warning_follow_max_length(tmp_path, tiny_bert, described):
    _, tokenizer = described
    path = _classification_csv(tmp_path / "long.csv", {"pos": 20, "neg": 20}, words=20)
    p, task = _project(tmp_path, tiny_bert, "classification", path, text="review", label="sentiment")
    task.max_length = 8
    short = preview_task(p, task, tokenizer)
    assert short.truncated_share is not None and short.truncated_share > 0.05
    assert [w for w in short.warnings if "max_length 8" in w]
    task.max_length = 128
    roomy = preview_task(p, task, tokenizer)
    assert roomy.truncated_share == 0
    assert not [w for w in roomy.warnings if "max_length" in w]


def test_a_single_label_is_an_error(tmp_path, tiny_bert):
    path = _classification_csv(tmp_path / "one.csv", {"pos": 20})
    p, task = _project(tmp_path, tiny_bert, "classification", path, text="review", label="sentiment")
    pv = preview_task(p, task)
    assert pv.labels == ["pos"]
    assert len(pv.errors) == 1 and "at least two" in pv.errors[0] and "'sentiment'" in pv.errors[0]


# --- start_problems -------------------------------------------------------------------------------------------

def test_start_problems_is_empty_for_a_valid_project_with_clean_previews(tmp_path, tiny_bert, described):
    p = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification", "regression"]), tmp_path)
    previews = {t.name: preview_task(p, t, described[1]) for t in p.tasks}
    assert all(pv.errors == [] for pv in previews.values())
    assert start_problems(p, previews) == []


def test_start_problems_gathers_config_preview_and_model_problems(tmp_path, tiny_bert):
    p, task = _project(tmp_path, tiny_bert, "classification")
    p.optim.lr = 0
    previews = {task.name: TaskPreview(task.name, errors=["bad column"]),
                "gone": TaskPreview("gone", errors=["from a removed task"])}
    problems = start_problems(p, previews, model_error="model folder missing")
    assert [m for m in problems if m.startswith("optim.lr")]
    assert "bad column" in problems and "model folder missing" in problems
    assert "from a removed task" not in problems and len(problems) == 3


# --- duplicates, score ranges, token lengths --------------------------------------------------------------------

def test_repeated_rows_and_validation_rows_seen_in_training_are_reported_with_row_numbers(tmp_path, tiny_bert):
    train = _write_csv(tmp_path / "t.csv", ["text", "label"],
                       [["a good film", "pos"], ["a bad film", "neg"], ["a good film", "pos"], ["a good film", "neg"],
                        ["a bad film", "neg"], ["the room", "pos"]])
    valid = _write_csv(tmp_path / "v.csv", ["text", "label"], [["the room", "pos"], ["new text", "neg"]])
    p, task = _project(tmp_path, tiny_bert, "classification", train, text="text", label="label",
                       validation=str(valid), validation_fraction=0.0)
    warnings = preview_task(p, task).warnings
    assert any("2 training row(s) repeat an earlier one exactly (first: row 3 repeats row 1)" in w for w in warnings)
    assert any("1 validation row(s) also appear in the training data" in w for w in warnings)
    # a different label is a different row: ("a good film", "neg") is not counted as a repeat


def test_similarity_scores_outside_minus_one_to_one_block_start_with_the_rescaling_to_use(tmp_path, tiny_bert):
    train = _write_csv(tmp_path / "sts.csv", ["sentence1", "sentence2", "score"],
                       [["a", "b", "0"], ["c", "d", "5"], ["e", "f", "2.5"]] * 4)
    p, task = _project(tmp_path, tiny_bert, "similarity", train)
    errors = preview_task(p, task).errors
    assert len(errors) == 1
    assert "row 2, has score 5.0" in errors[0] and "cosine in [-1, 1]" in errors[0]
    assert "(score - 0) / 2.5 - 1" in errors[0]


def test_token_lengths_are_measured_with_the_models_tokenizer_and_summarised(tmp_path, tiny_bert, described):
    _, tokenizer = described
    rows = [[" ".join(["good"] * n), "pos" if n % 2 else "neg"] for n in range(1, 41)]
    train = _write_csv(tmp_path / "t.csv", ["text", "label"], rows)
    p, task = _project(tmp_path, tiny_bert, "classification", train, text="text", label="label",
                       validation_fraction=0.0)
    task.max_length = 32
    from qarac_gui.core.data.preview import length_summary
    preview = preview_task(p, task, tokenizer)
    assert sorted(preview.token_lengths) == list(range(3, 43))     # [CLS] n words [SEP]
    assert preview.truncated_share == pytest.approx(10 / 40)
    assert length_summary(preview) == ("task classification: tokens per row (of 40 sampled): median 23, 95% up to 41, "
                                       "longest 42; 25% longer than max_length 32")
    assert any("25% of the sampled rows are longer than max_length 32" in w for w in preview.warnings)


def test_a_validation_split_too_small_to_measure_is_warned_about_with_a_share_that_fixes_it(tmp_path, tiny_bert):
    train = _classification_csv(tmp_path / "small.csv", {"pos": 30, "neg": 30})
    p, task = _project(tmp_path, tiny_bert, "classification", train=train, text="review", label="sentiment",
                       validation_fraction=0.1)
    pv = preview_task(p, task)
    [warning] = [w for w in pv.warnings if "validation rows" in w]
    assert pv.valid_rows == 6 and warning.startswith("task classification: 6 validation rows are too few to measure "
                                                     "(one row moves accuracy by 17%)")
    share = float(re.search(r"raise data\.validation_fraction \(to ([\d.]+) ", warning).group(1))
    task.data.validation_fraction = share
    pv = preview_task(p, task)
    assert pv.valid_rows >= 20 and not [w for w in pv.warnings if "validation rows" in w]


def test_a_small_validation_split_of_a_regression_task_is_not_said_to_move_an_accuracy(tmp_path, tiny_bert):
    rows = [[f"the room was {'very ' * (i % 4)}clean {i}", float(i % 4)] for i in range(60)]
    train = _write_csv(tmp_path / "ratings.csv", ["sentence", "rating"], rows)
    p, task = _project(tmp_path, tiny_bert, "regression", train=train, text="sentence", label="rating",
                       validation_fraction=0.1)
    [warning] = [w for w in preview_task(p, task).warnings if "validation rows" in w]
    assert "accuracy" not in warning and "6 validation rows are too few to measure (one row is 17% of them)" in warning


@pytest.mark.parametrize("columns, expected", [
    (["review", "sentiment"], ("review", "sentiment")),
    (["score", "sentence"], ("sentence", "score")),
    (["question", "answer"], ("question", "answer")),      # no label-like name: the second column
    (["text", "label"], None),                              # already mapped
    (["a", "b", "c"], None),
])
def test_a_two_column_file_is_mapped_as_text_and_label(tmp_path, tiny_bert, columns, expected):
    from qarac_gui.core.data.preview import two_column_mapping
    _, task = _project(tmp_path, tiny_bert, "classification")
    task.data.text, task.data.label = "text", "label"
    assert two_column_mapping(task, columns) == expected
    _, pairs = _project(tmp_path, tiny_bert, "token_classification")
    assert two_column_mapping(pairs, ["tokens", "ner"]) is None       # words and tags are not a text and a label
