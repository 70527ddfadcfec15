"""Data and labels are never silently wrong: span QA answers that do not point at their text, null or non-text
cells in text columns, label mistakes, duplicated CSV columns and files that are not files are each refused or
reported, naming the row, column or labels; the run agrees with what the preview said; the user's file stays as
it was."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
import tomli_w
from deadline import deadline
from tiny import project_dict

from qarac_gui.cli import main
from qarac_gui.core.data.load import DataError, load_splits
from qarac_gui.core.data.preview import length_summary, preview_task
from qarac_gui.core.data.tokenize import tokenize
from qarac_gui.core.model.backbone import load_backbone
from qarac_gui.core.project.config import BackboneConfig, parse_project
from qarac_gui.core.training.setup import prepare_tasks

pytestmark = pytest.mark.usefixtures("torch_threads")


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")


CITIES = ["paris", "london", "berlin", "rome"]


def _span_rows(n: int = 10) -> list[dict]:
    rows = []
    for i in range(n):
        city = CITIES[i % 4]
        context = f"row {i}: alice lives in {city} near the river"
        rows.append({"question": f"where does alice live {i}", "context": context,
                     "answers": {"text": [city], "answer_start": [context.index(city)]}})
    return rows


def _span(row: int, **answers) -> bytes:
    """Span QA rows whose 1-based data row `row` has its answers replaced (or updated) by `answers`."""
    rows = _span_rows()
    if row:
        rows[row - 1]["answers"] = answers.pop("whole", None) or {**rows[row - 1]["answers"], **answers}
    return _jsonl(rows)


def _span_edit(row: int, **fields) -> bytes:
    rows = _span_rows()
    rows[row - 1].update(fields)
    return _jsonl(rows)


def _cls_rows(n: int = 10) -> list[dict]:
    return [{"text": f"the film {i} was {['bad', 'good'][i % 2]}", "label": ["neg", "pos"][i % 2]} for i in range(n)]


def _cls(row: int = 0, **fields) -> bytes:
    rows = _cls_rows()
    if row:
        rows[row - 1].update(fields)
    return _jsonl(rows)


def _cls_csv(lines: list[str], header: str = "text,label") -> bytes:
    return (header + "\n" + "".join(line + "\n" for line in lines)).encode("utf-8")


GOOD_CSV = [f"the film {i} was {['bad', 'good'][i % 2]},{['neg', 'pos'][i % 2]}" for i in range(10)]


def _tag_rows(n: int = 10) -> list[dict]:
    return [{"tokens": ["alice", "was", "in", CITIES[i % 4], "at", f"nine{i}"],
             "tags": ["B-PER", "O", "O", "B-LOC", "O", "O"]} for i in range(n)]


def _tags(row: int, **fields) -> bytes:
    rows = _tag_rows()
    rows[row - 1].update(fields)
    return _jsonl(rows)


def _all_string_starts() -> bytes:
    rows = _span_rows()
    for r in rows:
        r["answers"]["answer_start"] = [str(s) for s in r["answers"]["answer_start"]]
    return _jsonl(rows)


def _labels(*names):
    return lambda task: setattr(task.head, "labels", list(names))


SPAN_CTX3 = _span_rows()[2]["context"]

# id, kind, {file name: bytes} (the first is the training file, a "v." one the validation file), task edit,
# outcome, fragment of the one error (or of a warning)
CASES = [
    # 1. span QA answers that do not point at their text
    ("span-start-negative", "span_qa", {"t.jsonl": _span(3, answer_start=[-1])}, None, "error",
     "training data, row 3, has answer_start -1 for 'berlin', outside its context"),
    ("span-start-past-the-end", "span_qa", {"t.jsonl": _span(3, answer_start=[400])}, None, "error",
     f"row 3, has answer_start 400 for 'berlin', outside its context of {len(SPAN_CTX3)} characters"),
    ("span-start-off-by-two", "span_qa", {"t.jsonl": _span(3, answer_start=[SPAN_CTX3.index("berlin") + 2])}, None,
     "error", "row 3, has answer 'berlin' at answer_start 24, but the context there reads 'rlin n'"),
    ("span-answer-not-in-context", "span_qa", {"t.jsonl": _span(3, text=["tokyo"])}, None, "error",
     "row 3, has answer 'tokyo' at answer_start 22, but the context there reads 'berli' ('tokyo' is not in "
     "the context)"),
    ("span-start-as-a-string", "span_qa", {"t.jsonl": _all_string_starts()}, None, "error",
     "training data, row 1, has answer_start '22', not a whole number"),
    ("span-answers-missing-text", "span_qa", {"t.jsonl": _span(3, whole={"answer_start": [22]})}, None, "error",
     "row 3, has {'answer_start': [22]} in 'answers', but span QA answers are"),
    ("span-more-starts-than-texts", "span_qa", {"t.jsonl": _span(3, answer_start=[22, 3])}, None, "error",
     "row 3, has 1 answer text(s) but 2 answer_start value(s) in 'answers'"),
    ("span-empty-answer-text", "span_qa", {"t.jsonl": _span(3, text=[""])}, None, "error",
     "row 3, has an empty answer text in 'answers'"),
    ("span-bad-row-in-the-validation-file", "span_qa",
     {"t.jsonl": _span(0), "v.jsonl": _span(2, answer_start=[3])}, None, "error",
     "validation data, row 2, has answer 'london' at answer_start 3"),
    # 2. null or non-text cells in text, question, context and token columns
    ("null-text-in-the-middle-of-jsonl", "classification", {"t.jsonl": _cls(6, text=None)}, None, "error",
     "training data, row 6, has no text in 'text' (null or an empty cell); fill it in or remove the row"),
    ("empty-text-cell-csv", "classification", {"t.csv": _cls_csv(GOOD_CSV[:3] + [",pos"] + GOOD_CSV[3:])}, None,
     "error", "training data, row 4, has no text in 'text'"),
    ("number-in-a-text-column", "classification", {"t.jsonl": _cls(3, text=5)}, None, "error",
     "row 3, has 5 (a number) in 'text', not text"),
    ("all-numbers-text-column-csv", "classification",
     {"t.csv": _cls_csv([f"{i},{['neg', 'pos'][i % 2]}" for i in range(10)])}, None, "error",
     "row 1, has 0 (a number) in 'text', not text; map the column that holds the text"),
    ("null-question", "span_qa", {"t.jsonl": _span_edit(2, question=None)}, None, "error",
     "training data, row 2, has no text in 'question'"),
    ("null-context", "span_qa", {"t.jsonl": _span_edit(4, context=None)}, None, "error",
     "training data, row 4, has no text in 'context'"),
    ("empty-second-sentence-csv", "similarity",
     {"t.csv": _cls_csv([f"a {i},b {i},0.5" for i in range(5)] + ["a,,0.5"], "sentence1,sentence2,score")}, None,
     "error", "training data, row 6, has no text in 'sentence2'"),
    ("tokens-a-string-not-a-list", "token_classification", {"t.jsonl": _tags(2, tokens="alice was in rome at 9")},
     None, "error", "row 2, has 'alice was in rome at 9' in 'tokens', but a token classification head needs a "
     "list of words per row"),
    ("tokens-with-a-null-word", "token_classification",
     {"t.jsonl": _tags(3, tokens=["alice", None, "in", "rome", "at", "nine"])}, None, "error",
     "row 3, has null as word 2 in 'tokens'; every word must be text"),
    ("tokens-and-tags-differ-in-number", "token_classification",
     {"t.jsonl": _tags(3, tags=["B-PER", "O", "O", "B-LOC", "O"])}, None, "error",
     "row 3, has 6 words in 'tokens' but 5 tags in 'tags'; give exactly one tag per word"),
    ("null-label", "classification", {"t.jsonl": _cls(3, label=None)}, None, "error",
     "training data, row 3, has no label in 'label'"),
    # 3. label mistakes: warnings that name the labels or the columns
    ("validation-label-never-in-training", "classification",
     {"t.jsonl": _cls(), "v.jsonl": _cls(2, label="neutral")}, None, "warning",
     "label(s) 'neutral' appear only in the validation data"),
    ("validation-label-listed-but-never-trained", "classification",
     {"t.jsonl": _cls(), "v.jsonl": _cls(2, label="neutral")}, _labels("neg", "pos", "neutral"), "warning",
     "label(s) 'neutral' appear only in the validation data"),
    ("labels-differ-only-by-case", "classification", {"t.jsonl": _cls(3, label="Pos")}, None, "warning",
     "labels 'Pos' and 'pos' differ only in upper/lower case or surrounding spaces"),
    ("label-with-a-leading-space-csv", "classification",
     {"t.csv": _cls_csv(GOOD_CSV[:3] + ["the film x was bad, neg"])}, None, "warning",
     "labels ' neg' and 'neg' differ only in upper/lower case or surrounding spaces"),
    ("empty-label-name", "classification", {"t.jsonl": _cls(3, label="")}, None, "warning",
     "the label '' (empty) is in the data"),
    ("empty-tag-name", "token_classification", {"t.jsonl": _tags(3, tags=["B-PER", "O", "", "B-LOC", "O", "O"])},
     None, "warning", "the label '' (empty) is in the data"),
    ("duplicate-column-in-a-csv-header", "classification",
     {"t.csv": _cls_csv([line + ",other" for line in GOOD_CSV], "text,label,text")}, None, "warning",
     "t.csv has 2 columns named 'text'; only the first is read as 'text'"),
    ("duplicate-column-in-a-tsv-header", "classification",
     {"t.tsv": _cls_csv([line.replace(",", "\t") + "\tx" for line in GOOD_CSV], "text\tlabel\tlabel")}, None,
     "warning", "t.tsv has 2 columns named 'label'; only the first is read as 'label'"),
    # 5. a data file that is not a file
    ("a-folder-named-like-a-file", "classification", {"t.csv": None}, None, "error",
     "t.csv: not a regular file (a folder); choose a data file"),
]


def _setup(tmp_path: Path, tiny_bert: Path, kind: str, files: dict, edit=None):
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", [kind]), tmp_path)
    task = project.tasks[0]
    for name, content in files.items():
        path = tmp_path / name
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
        if name.startswith("v."):
            task.data.validation = str(path)
        else:
            task.data.train = str(path)
    task.data.validation_fraction = 0.0          # rows keep their file's row numbers
    if edit:
        edit(task)
    return project, task


@pytest.mark.parametrize("kind, files, edit, outcome, fragment",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_data_is_reported_naming_the_row_column_or_labels(tmp_path, tiny_bert, kind, files, edit, outcome,
                                                              fragment):
    project, task = _setup(tmp_path, tiny_bert, kind, files, edit)
    preview = preview_task(project, task)
    if outcome == "error":
        assert len(preview.errors) == 1, preview.errors
        assert fragment in preview.errors[0], preview.errors
    else:
        assert preview.errors == [], preview.errors
        assert any(fragment in w for w in preview.warnings), preview.warnings
    for name, content in files.items():
        path = tmp_path / name
        assert (path.is_dir() and not any(path.iterdir())) if content is None else path.read_bytes() == content


def test_good_span_and_tag_data_have_no_errors_and_no_label_warnings(tmp_path, tiny_bert):
    for kind, files in (("span_qa", {"t.jsonl": _span(0)}), ("token_classification", {"t.jsonl": _jsonl(
            _tag_rows())}), ("classification", {"t.jsonl": _cls(), "v.jsonl": _cls()})):
        project, task = _setup(tmp_path / kind, tiny_bert, kind, files)
        preview = preview_task(project, task)
        assert preview.errors == []
        assert not [w for w in preview.warnings if "label" in w or "column" in w], preview.warnings


# ---------------------------------------------------------------------------------------------------------------
# 5. Files that are not files: refused before anything opens them (which would hang or fill memory)


def _not_regular(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    link = tmp_path / "zeros.csv"
    link.symlink_to("/dev/zero")
    return {"fifo": (fifo, "a named pipe (FIFO)"), "device": (Path("/dev/zero"), "a device"),
            "link-to-a-device": (link, "a device")}


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="needs FIFOs and /dev/zero")
@pytest.mark.parametrize("which", ["fifo", "device", "link-to-a-device"])
def test_a_fifo_or_device_is_refused_as_not_a_regular_file_without_opening_it(tmp_path, tiny_bert, which):
    path, what = _not_regular(tmp_path)[which]
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"]), tmp_path)
    task = project.tasks[0]
    task.data.train, task.data.format = str(path), "csv"
    with deadline(20):
        with pytest.raises(DataError) as info:
            load_splits(project, task)
        preview = preview_task(project, task)
    assert str(info.value).startswith(f"{path}: not a regular file ({what}); choose a data file")
    assert preview.errors == [f"task {task.name}: {info.value}"]      # the preview names the task too
    assert stat.S_ISFIFO(path.stat().st_mode) if which == "fifo" else stat.S_ISCHR(path.stat().st_mode)


def test_a_fifo_validation_file_is_refused_too(tmp_path, tiny_bert):
    fifo = tmp_path / "valid.csv"
    os.mkfifo(fifo)
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"]), tmp_path)
    project.tasks[0].data.validation = str(fifo)
    with deadline(20), pytest.raises(DataError, match="valid.csv: not a regular file"):
        load_splits(project, project.tasks[0])


# ---------------------------------------------------------------------------------------------------------------
# 4. The pre-flight token count: bounded work per cell, right counts within limits


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_bert):
    return load_backbone(BackboneConfig(model=str(tiny_bert)), tiny_bert.parent).tokenizer


class _Spy:
    """The tokenizer, recording the longest text each call was given and whether it truncated."""

    def __init__(self, tokenizer):
        self.tokenizer, self.longest, self.truncated = tokenizer, 0, []

    def __call__(self, first, *args, **kwargs):
        sizes = [len(t) if isinstance(t, str) else sum(len(w) for w in t) for t in first]
        self.longest = max([self.longest] + sizes)
        self.truncated.append(kwargs.get("truncation"))
        return self.tokenizer(first, *args, **kwargs)


def test_the_token_count_never_tokenises_a_whole_giant_cell(tmp_path, tiny_bert, bert_tokenizer):
    giant = "the film was good " * (2 * 1024 * 1024 // 18)            # one 2 MB text cell
    lines = [f"{giant},pos"] + [f"{' '.join(['good'] * n)},{['neg', 'pos'][n % 2]}" for n in range(1, 11)]
    path = tmp_path / "giant.csv"
    path.write_bytes(_cls_csv(lines))
    project, task = _setup(tmp_path, tiny_bert, "classification", {})
    task.data.train = str(path)
    spy = _Spy(bert_tokenizer)
    preview = preview_task(project, task, tokenizer=spy)
    assert spy.longest < 100_000 and all(spy.truncated), (spy.longest, spy.truncated)
    assert sorted(preview.token_lengths)[:10] == list(range(3, 13))      # rows within limits: exact
    assert max(preview.token_lengths) > task.max_length                  # the giant row still counts as too long
    assert any("longer than max_length 32 tokens" in w for w in preview.warnings)
    assert "longest 64 or more" in length_summary(preview)


def test_the_token_count_of_word_lists_is_bounded_too(tmp_path, tiny_bert, bert_tokenizer):
    rows = _tag_rows()
    rows[0] = {"tokens": ["paris"] * 200_000, "tags": ["B-LOC"] * 200_000}
    project, task = _setup(tmp_path, tiny_bert, "token_classification", {"t.jsonl": _jsonl(rows)})
    spy = _Spy(bert_tokenizer)
    preview = preview_task(project, task, tokenizer=spy)
    assert preview.errors == [] and all(spy.truncated)
    assert spy.longest < 100_000
    within = sorted(len(bert_tokenizer(r["tokens"], is_split_into_words=True)["input_ids"]) for r in rows[1:])
    assert sorted(preview.token_lengths) == within + [2 * task.max_length]


# ---------------------------------------------------------------------------------------------------------------
# The run agrees with the preview: a DataError naming the row and column, never a TypeError from the tokenizer


def _tokenizer(project):
    return load_backbone(project.backbones["encoder"], project.root).tokenizer


@pytest.mark.parametrize("split", ["train", "held-out"])
def test_the_run_refuses_a_misplaced_answer_naming_its_row_in_the_file(tmp_path, tiny_bert, split):
    project, task = _setup(tmp_path, tiny_bert, "span_qa", {"t.jsonl": _span(0)})
    task.data.validation_fraction = 0.3          # both splits are shuffled views of the file
    train, valid = load_splits(project, task)
    question = (train if split == "train" else valid)[-1]["question"]
    row = next(i for i, r in enumerate(_span_rows(), 1) if r["question"] == question)
    (tmp_path / "t.jsonl").write_bytes(_span(row, answer_start=[-1]))
    with pytest.raises(DataError, match=f"task span-qa: training data, row {row}, has answer_start -1 for"):
        prepare_tasks(project, {"encoder": _tokenizer(project)}, lambda e: None, threading.Event())


@pytest.mark.parametrize("kind, content, message", [
    pytest.param("span_qa", _span_edit(2, question=None), "training data, row 2, has no text in 'question'",
                 id="null-question"),
    pytest.param("span_qa", _span_edit(4, context=None), "training data, row 4, has no text in 'context'",
                 id="null-context"),
    pytest.param("token_classification", _tags(3, tokens=["alice", None, "in", "rome", "at", "nine"]),
                 "training data, row 3, has null as word 2 in 'tokens'", id="null-word"),
    pytest.param("classification", _cls(6, text=None), "training data, row 6, has no text in 'text'",
                 id="null-text"),
])
def test_tokenising_a_null_cell_is_a_data_error_naming_row_and_column(tmp_path, tiny_bert, kind, content, message):
    project, task = _setup(tmp_path, tiny_bert, kind, {"t.jsonl": content})
    train, _ = load_splits(project, task)
    labels = {"classification": ["neg", "pos"], "token_classification": ["O", "B-LOC", "B-PER"]}.get(kind, [])
    with pytest.raises(DataError) as info:
        tokenize(task, _tokenizer(project), labels, train, "train")
    assert message in str(info.value)


def test_a_null_in_a_validation_file_names_the_validation_row_at_run_time(tmp_path, tiny_bert):
    project, task = _setup(tmp_path, tiny_bert, "classification", {"t.jsonl": _cls(), "v.jsonl": _cls(2, text=None)})
    with pytest.raises(DataError, match="validation data, row 2, has no text in 'text'"):
        prepare_tasks(project, {"encoder": _tokenizer(project)}, lambda e: None, threading.Event())


# ---------------------------------------------------------------------------------------------------------------
# The command line: exit 1 with one "error:" line and no run folder, or exit 0 with a "warning:" line


def _project_file(tmp_path: Path, tiny_bert: Path, kind: str, train: Path, **data) -> Path:
    raw = project_dict(tiny_bert, tmp_path / "data", [kind], train={"max_steps": 1})
    raw["tasks"][0]["data"].update(train=str(train), **data)
    path = tmp_path / "project.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def _one_error_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if not x.startswith(("warning: ", "task "))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_cli_refuses_a_misplaced_answer_before_making_a_run_folder(tmp_path, tiny_bert, capsys):
    data = tmp_path / "qa.jsonl"
    data.write_bytes(_span(3, answer_start=[-1]))
    before = data.read_bytes()
    out = tmp_path / "out"
    assert main([str(_project_file(tmp_path, tiny_bert, "span_qa", data)), "--out", str(out)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "row 3, has answer_start -1 for 'berlin', outside its context" in line
    assert not out.exists() and data.read_bytes() == before


def test_cli_refuses_a_null_text_naming_row_and_column(tmp_path, tiny_bert, capsys):
    data = tmp_path / "t.jsonl"
    data.write_bytes(_cls(6, text=None))
    out = tmp_path / "out"
    assert main([str(_project_file(tmp_path, tiny_bert, "classification", data)), "--out", str(out)]) == 1
    assert "training data, row 6, has no text in 'text'" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_cli_refuses_a_fifo_without_hanging(tmp_path, tiny_bert, capsys):
    fifo = tmp_path / "t.csv"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    with deadline(60):
        code = main([str(_project_file(tmp_path, tiny_bert, "classification", fifo)), "--out", str(out)])
    assert code == 1
    assert _one_error_line(capsys.readouterr().err) == (
        f"error: task classification: {fifo}: not a regular file (a named pipe (FIFO)); choose a data file (CSV, "
        "TSV, JSON, JSON Lines or Parquet) saved on disk")
    assert not out.exists() and stat.S_ISFIFO(fifo.stat().st_mode)


def test_cli_warns_of_labels_that_differ_by_case_and_a_duplicated_column_and_trains(tmp_path, tiny_bert, capsys):
    data = tmp_path / "t.csv"
    lines = [f"the film {i} was fine,{['neg', 'pos', 'Pos'][i % 3]},x" for i in range(12)]
    data.write_bytes(_cls_csv(lines, "text,label,label"))
    before = data.read_bytes()
    out = tmp_path / "out"
    assert main([str(_project_file(tmp_path, tiny_bert, "classification", data)), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warnings = [x for x in err.splitlines() if x.startswith("warning: ")]
    assert any("labels 'Pos' and 'pos' differ only in upper/lower case" in w for w in warnings), err
    assert any("has 2 columns named 'label'; only the first is read as 'label'" in w for w in warnings), err
    assert (out / "export").is_dir() and data.read_bytes() == before
