"""A corpus of bad inputs: each must be refused (or, where it is fine, accepted) with a message that names the
problem and what to do, and nothing the user had may be lost or changed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
import tomli_w
from tiny import project_dict

from qarac_gui.cli import main
from qarac_gui.core.data.load import load_splits
from qarac_gui.core.data.preview import preview_task
from qarac_gui.core.errors import UserError
from qarac_gui.core.model.backbone import ModelLoadError, load_backbone
from qarac_gui.core.project.config import BackboneConfig, load_project, parse_project
from qarac_gui.core.project.convert import ConfigError
from qarac_gui.core.results.export import ExportError, check_destination
from qarac_gui.core.results.history import copy_export
from qarac_gui.core.run import run

pytestmark = pytest.mark.usefixtures("torch_threads")


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under `folder` with its bytes (None for folders), to prove nothing changed."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(Path(folder).rglob("*"))}


def _write_project(tmp_path: Path, model: Path, edit=None, kinds=("classification",), name="project.toml") -> Path:
    raw = project_dict(model, tmp_path / "data", list(kinds))
    if edit:
        edit(raw)
    path = tmp_path / name
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


@pytest.fixture
def cli(capsys):
    """qarac-train in this process: its exit code and what it printed. One real process is enough for the exit
    code and the absence of a traceback (test_cli.py::test_errors_exit_1_without_a_traceback_from_a_real_process)."""
    def call(*args) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return call


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    # the pre-flight check's warnings and token-length notes may come first
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith(("warning: ", "task "))]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def bug(reason: str):
    return pytest.mark.xfail(strict=True, reason=reason)


def _case(case_id: str, *values, xfail: str = ""):
    """One row of a table: its id, its values, and the bug that makes it fail, if any."""
    return pytest.param(*values, id=case_id, marks=[bug(xfail)] if xfail else [])


# ---------------------------------------------------------------------------------------------------------------
# The project file: load_project refuses it with the key and the fix, and leaves the file as it was.


def _task(raw, i=0):
    return raw["tasks"][i]


def _rename(name):
    return lambda raw: _task(raw).update(name=name)


def _second_task_named(name):
    def edit(raw):
        raw["tasks"].append(json.loads(json.dumps(raw["tasks"][0])) | {"name": name})
    return edit


CONFIG_CASES = [
    ("unknown-key-did-you-mean", lambda raw: raw["optim"].update(lrr=1e-3),
     "optim.lrr: unknown key (did you mean 'lr'?)"),
    ("unknown-task-key-did-you-mean", lambda raw: _task(raw).update(batchsize=4),
     "tasks.classification.batchsize: unknown key (did you mean 'batch_size'?)"),
    ("wrong-type", lambda raw: raw["train"].update(max_steps="ten"),
     "train.max_steps: expected an integer, got 'ten'"),
    ("wrong-type-table", lambda raw: raw.update(optim=3), "optim: expected a table, got 3"),
    ("duplicate-task-names", _second_task_named("classification"),
     "two tasks are named 'classification'; task names must be unique"),
    ("duplicate-task-names-case", _second_task_named("Classification"), "task names must be unique"),
    ("name-dotdot-escape", _rename("../x"), "'../x' must start with a letter or digit"),
    ("name-slash", _rename("a/b"), "'a/b' must start with a letter or digit and use only letters"),
    ("name-hidden", _rename(".hidden"), "'.hidden' must start with a letter or digit"),
    ("name-backslash", _rename("a\\b"), "(it becomes a folder name on export)"),
    ("name-empty", _rename(""), "tasks[0].name: '' must start with a letter or digit"),
    ("name-reserved-con", _rename("con"), "'con' is reserved (a device name on Windows"),
    ("name-reserved-full", _rename("full"), "'full' is reserved"),
    ("negative-batch-size", lambda raw: _task(raw).update(batch_size=-8),
     "tasks.classification.batch_size: must be at least 1"),
    ("lr-zero", lambda raw: raw["optim"].update(lr=0), "optim.lr: must be above 0"),
    ("lr-nan", lambda raw: raw["optim"].update(lr=float("nan")), "optim.lr: expected a finite number"),
    ("no-steps-no-epochs", lambda raw: raw["train"].update(max_steps=0, epochs=0),
     "train: set train.max_steps (optimiser steps) or train.epochs above 0"),
    ("validation-fraction-one", lambda raw: _task(raw)["data"].update(validation_fraction=1.0),
     "tasks.classification.data.validation_fraction: must be in [0, 1)"),
    ("eval-metric-unknown-task", lambda raw: raw["eval"].update(metric="sentiment/accuracy"),
     "eval.metric: no task named 'sentiment'"),
    ("eval-metric-no-slash", lambda raw: raw["eval"].update(metric="accuracy"),
     "eval.metric: write it as TASK/METRIC"),
    ("unknown-head-kind", lambda raw: _task(raw)["head"].update(kind="sentiment"),
     "tasks.classification.head.kind: 'sentiment' is not one of classification, multilabel"),
    ("unknown-backbone", lambda raw: _task(raw).update(backbone="bert"),
     "tasks.classification.backbone: no backbone named 'bert' (have: encoder)"),
    ("newer-version", lambda raw: raw.update(version=99), "newer than this app understands (3); update qarac_gui"),
]


@pytest.mark.parametrize("edit, fragment", [pytest.param(e, f, id=i) for i, e, f in CONFIG_CASES])
def test_a_bad_project_file_is_refused_and_left_unchanged(tmp_path, tiny_bert, edit, fragment):
    path = _write_project(tmp_path, tiny_bert, edit)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{path}: ")               # names the file
    assert path.read_bytes() == before


@pytest.mark.parametrize("text, fragment", [
    pytest.param("version = 1\nname = \n", "not valid TOML: Invalid value (at line 2", id="missing-value"),
    pytest.param("version = 1\n[optim\nlr = 1\n", "not valid TOML", id="unclosed-table"),
    pytest.param('version = 1\nname = "a\n', "not valid TOML", id="unclosed-string"),
    pytest.param("version = 1\nname = 'a'\nname = 'b'\n", "not valid TOML", id="duplicate-key"),
])
def test_invalid_toml_names_the_file_and_is_left_unchanged(tmp_path, text, fragment):
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert str(info.value).startswith(f"{path}: {fragment}")
    assert path.read_text(encoding="utf-8") == text


def test_a_project_file_with_a_utf8_byte_order_mark_loads(tmp_path, tiny_bert):
    path = _write_project(tmp_path, tiny_bert)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_project(path).tasks[0].name == "classification"


def test_a_utf16_project_file_says_save_it_as_utf8(tmp_path, tiny_bert):
    path = _write_project(tmp_path, tiny_bert)
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="not UTF-8 text .*; save it as UTF-8"):
        load_project(path)
    assert path.read_bytes() == before


def test_a_set_with_an_unknown_key_suggests_the_close_one(tmp_path, tiny_bert):
    path = _write_project(tmp_path, tiny_bert)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        load_project(path, ["train.max_step=3"])
    assert str(info.value) == f"{path}: train.max_step: unknown key (did you mean 'max_steps'?)"
    assert path.read_bytes() == before                            # an override never writes the file


# ---------------------------------------------------------------------------------------------------------------
# Data files: the preview names the file, the row or the columns, and says what to do; the file is untouched.


def _rows(n, score=False):
    return b"".join(b"the film was good %d,%s\n" % (i, (b"%d" % i) if score else [b"neg", b"pos"][i % 2])
                    for i in range(n))


def _labels(*names):
    return lambda task: setattr(task.head, "labels", list(names))


DATA_CASES = [
    # id, kind, file name, bytes, task edit, error fragment
    ("unbalanced-quote", "classification", "t.csv", b'text,label\n"good film,pos\nbad film,neg\n', None,
     "t.csv: could not be read as CSV"),
    ("unbalanced-quote-names-the-problem", "classification", "t.csv", b'text,label\n"good film,pos\nbad,neg\n', None,
     "EOF inside string starting at row 1"),
    ("wrong-field-count", "classification", "t.csv", b"text,label\ngood,pos\nbad,neg,extra,more\nfine,pos\n", None,
     "Expected 2 fields in line 3, saw 4"),
    _case("latin-1", "classification", "t.csv", "text,label\ncafé good,pos\nbad,neg\n".encode("latin-1"), None,
                 "t.csv: line 2 (byte 15) is not UTF-8 text; save the file as UTF-8"),
    _case("utf-16", "classification", "t.csv", "text,label\ngood,pos\nbad,neg\n".encode("utf-16"), None,
                 "t.csv: line 1 (byte 1) is not UTF-8 text; save the file as UTF-8"),
    ("empty-file", "classification", "t.csv", b"", None, "t.csv: the file is empty"),
    _case("header-only", "classification", "t.csv", b"text,label\n", None, "has no rows"),
    ("empty-jsonl", "classification", "t.jsonl", b"\n\n", None, "t.jsonl"),
    ("broken-jsonl", "classification", "t.jsonl", b'{"text": "good", "label": "pos"}\n{"text": "bad", \n', None,
     "t.jsonl: could not be read as JSONL"),
    ("missing-column-lists-the-real-ones", "classification", "t.csv", b"review,sentiment\ngood,pos\nbad,neg\n", None,
     "has no column 'text', 'label' (columns: review, sentiment); map the columns"),
    ("label-out-of-range", "classification", "t.csv", b"text,label\n" + _rows(10) + b"bad,neutral\n",
     _labels("neg", "pos"), "labels neutral are in the data but not in head.labels; add them or clear head.labels"),
    ("integer-label-out-of-range", "classification", "t.csv",
     b"text,label\n" + b"".join(b"good %d,%d\n" % (i, i % 2) for i in range(10)) + b"bad,2\n",
     _labels("0", "1"), "labels 2 are in the data but not in head.labels"),
    ("one-label-only", "classification", "t.csv", b"text,label\n" + b"good,pos\n" * 10, None,
     "has 1 label(s) in 'label'; a classifier needs at least two"),
    ("string-label-for-regression", "regression", "t.csv", b"text,score\n" + _rows(10, True) + b"bad,high\n", None,
     "row 11, has 'high' in 'score', but a regression head needs a number; fix the row"),
    ("nan-score", "regression", "t.csv", b"text,score\n" + _rows(10, True) + b"bad,nan\n", None,
     "row 11, has None in 'score', but a regression head needs a number"),
    ("empty-score", "regression", "t.csv", b"text,score\n" + _rows(10, True) + b"bad,\n", None,
     "row 11, has None in 'score'"),
    ("inf-score", "regression", "t.csv", b"text,score\n" + _rows(10, True) + b"bad,inf\n", None,
     "row 11, has inf in 'score', but a regression head needs a number"),
    ("unknown-extension", "classification", "t.xlsx", b"PK\x03\x04", None,
     "t.xlsx: cannot tell the format from the extension; use .csv"),
]


@pytest.mark.parametrize("kind, filename, content, edit, fragment",
                         [c if hasattr(c, "marks") else _case(*c) for c in DATA_CASES])
def test_bad_data_is_an_error_in_the_preview_and_the_file_is_untouched(tmp_path, tiny_bert, kind, filename,
                                                                         content, edit, fragment):
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", [kind]), tmp_path)
    task = project.tasks[0]
    path = tmp_path / filename
    path.write_bytes(content)
    task.data.train = str(path)
    task.data.validation_fraction = 0.0          # every row stays in the training data the preview counts
    if edit:
        edit(task)
    preview = preview_task(project, task)
    assert len(preview.errors) == 1, preview.errors
    assert fragment in preview.errors[0]
    assert path.read_bytes() == content


def test_an_unknown_label_in_the_validation_file_is_caught_by_the_preview(tmp_path, tiny_bert):
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"]), tmp_path)
    task = project.tasks[0]
    (tmp_path / "valid.csv").write_bytes(b"text,label\ngood,pos\nbad,meh\n")
    task.data.validation = str(tmp_path / "valid.csv")
    task.head.labels = ["neg", "pos"]
    preview = preview_task(project, task)
    assert any("meh" in e and "head.labels" in e for e in preview.errors), preview.errors


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_bert):
    return load_backbone(BackboneConfig(model=str(tiny_bert)), tiny_bert.parent).tokenizer


def test_a_giant_cell_loads_and_the_preview_warns_it_will_be_cut(tmp_path, tiny_bert, bert_tokenizer):
    giant = "the film was good " * (5 * 1024 * 1024 // 18 + 1)        # one 5 MB text cell
    content = ("text,label\n" + f"{giant},pos\n" + "".join(f"film {i},{['neg', 'pos'][i % 2]}\n" for i in range(10)))
    path = tmp_path / "giant.csv"
    path.write_text(content, encoding="utf-8")
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"]), tmp_path)
    task = project.tasks[0]
    task.data.train, task.data.validation_fraction = str(path), 0.0
    train, _ = load_splits(project, task)
    assert len(train) == 11 and len(train[0]["text"]) >= 5 * 1024 * 1024
    preview = preview_task(project, task, tokenizer=bert_tokenizer)
    assert preview.errors == []
    assert any("longer than max_length 32 tokens and will be cut; raise max_length" in w for w in preview.warnings)
    assert len(preview.rows[0][0]) == 200                        # the table shows a cut cell, not 5 MB
    assert path.stat().st_size == len(content.encode("utf-8"))


# ---------------------------------------------------------------------------------------------------------------
# Base models


def _copy_model(tiny_bert: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    change(folder)
    return folder


def _set_model_type(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["model_type"] = "frobnicator"
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def _remove_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)


MODEL_CASES = [
    ("missing-folder", lambda f: shutil.rmtree(f), "does not exist; choose a folder that holds config.json"),
    ("no-weights", lambda f: (f / "model.safetensors").unlink(), "has no weights (no *.safetensors or pytorch_model"),
    ("no-config", lambda f: (f / "config.json").unlink(), "has no config.json: it is not a Hugging Face model"),
    ("pickle-only", lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"),
     "has only pickle weights (pytorch_model.bin), which can run code when loaded; set allow_pickle = true"),
    ("unknown-model-type", _set_model_type, "has model type `frobnicator` but Transformers does not recognize"),
    _case("garbage-safetensors", lambda f: (f / "model.safetensors").write_bytes(b"\xff" * 4096),
                 "model.safetensors", "is damaged"),
    _case("no-tokenizer-files", _remove_tokenizer, "tokenizer", "tokenizer"),
]


@pytest.mark.parametrize("change, fragment, fragment2",
                         [c if hasattr(c, "marks") else _case(*c, "") for c in MODEL_CASES])
def test_a_bad_model_folder_is_a_model_load_error(tmp_path, tiny_bert, change, fragment, fragment2):
    folder = _copy_model(tiny_bert, tmp_path, change)
    before = _snapshot(tmp_path)
    with pytest.raises(ModelLoadError) as info:
        load_backbone(BackboneConfig(model=str(folder)), tmp_path)
    assert fragment in str(info.value) and fragment2 in str(info.value)
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------------------------
# Export destinations and run folders


def _fake_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    for name in ("classification", "full"):
        folder = run_dir / "export" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    return run_dir


def test_export_into_a_non_empty_folder_is_refused_and_its_files_kept(tmp_path):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "thesis.txt").write_text("years of work", encoding="utf-8")
    before = _snapshot(dest)
    with pytest.raises(ExportError, match="is not an empty folder; choose an empty or new folder so nothing is"):
        check_destination(dest)
    with pytest.raises(UserError, match=f"{dest} is not an empty folder; choose an empty or new folder"):
        copy_export(_fake_run(tmp_path), dest, ["classification"])
    assert _snapshot(dest) == before
    assert not (tmp_path / ".mine.partial").exists()


def test_export_onto_a_file_is_refused_and_the_file_kept(tmp_path):
    dest = tmp_path / "notes.txt"
    dest.write_text("keep me", encoding="utf-8")
    with pytest.raises(UserError, match="notes.txt is not an empty folder"):
        copy_export(_fake_run(tmp_path), dest, ["classification"])
    assert dest.read_text(encoding="utf-8") == "keep me"


def test_export_of_a_task_the_run_does_not_have_lists_what_it_has(tmp_path):
    with pytest.raises(UserError, match=r"this run has no export of sentiment \(it has: classification, full\)"):
        copy_export(_fake_run(tmp_path), tmp_path / "out", ["sentiment"])
    assert not (tmp_path / "out").exists()


def test_export_into_a_read_only_folder_names_it(tmp_path):
    run_dir = _fake_run(tmp_path)
    parent = tmp_path / "locked"
    parent.mkdir()
    (parent / "keep.txt").write_text("x", encoding="utf-8")
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("running as a user (root) whom chmod does not stop from writing")
        with pytest.raises(UserError, match=f"could not write to {parent / 'out'}: Permission denied"):
            copy_export(run_dir, parent / "out", ["classification"])
        assert sorted(p.name for p in parent.iterdir()) == ["keep.txt"]
    finally:
        parent.chmod(stat.S_IRWXU)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the chmod test above covers non-root")
def test_export_into_a_folder_the_user_may_not_write_names_it_even_when_run_as_root(tmp_path):
    # root may write anywhere, so the copy runs with the effective user id of "nobody", as a normal user would
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="qarac-readonly-"))
    try:
        base.chmod(0o755)
        run_dir = _fake_run(base)
        locked = base / "locked"
        locked.mkdir(mode=0o755)                # owned by root: "nobody" may read it, not write to it
        (locked / "keep.txt").write_text("x", encoding="utf-8")
        os.seteuid(65534)
        try:
            with pytest.raises(UserError, match=f"could not write to {locked / 'out'}: Permission denied"):
                copy_export(run_dir, locked / "out", ["classification"])
        finally:
            os.seteuid(0)
        assert sorted(p.name for p in locked.iterdir()) == ["keep.txt"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_run_into_a_non_empty_folder_is_refused_before_writing(tmp_path, tiny_bert):
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"]), tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "project.toml").write_text("mine", encoding="utf-8")
    with pytest.raises(UserError, match="is not empty .*; choose a new folder, or continue a stopped run there "
                                        "with --resume"):
        run(project, lambda e: None, threading.Event(), run_dir=out)
    assert _snapshot(out) == {"project.toml": b"mine"}


def test_resume_of_a_missing_folder_says_there_is_no_run(tmp_path, tiny_bert):
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"]), tmp_path)
    out = tmp_path / "nowhere"
    with pytest.raises(UserError, match="nowhere does not exist: there is no run to resume there"):
        run(project, lambda e: None, threading.Event(), run_dir=out, resume=True)
    assert not out.exists()


def test_resume_of_a_folder_with_no_run_changes_nothing(tmp_path, tiny_bert):
    project = parse_project(project_dict(tiny_bert, tmp_path / "data", ["classification"]), tmp_path)
    out = tmp_path / "papers"
    out.mkdir()
    (out / "project.toml").write_text("my other project", encoding="utf-8")
    before = _snapshot(out)
    with pytest.raises(UserError, match="no complete checkpoint to resume from"):
        run(project, lambda e: None, threading.Event(), run_dir=out, resume=True)
    assert _snapshot(out) == before


# ---------------------------------------------------------------------------------------------------------------
# The command line: exit 1, one "error:" line, no traceback, nothing lost.


def test_cli_invalid_toml(tmp_path, cli):
    path = tmp_path / "p.toml"
    path.write_text("version = 1\n[optim\n", encoding="utf-8")
    line = _one_error_line(cli(path))
    assert line.startswith(f"error: {path}: not valid TOML") and "line 2" in line
    assert path.read_text(encoding="utf-8") == "version = 1\n[optim\n"


def test_cli_project_file_is_a_directory(tmp_path, cli):
    folder = tmp_path / "project.toml"
    folder.mkdir()
    assert _one_error_line(cli(folder)) == f"error: {folder}: is a folder, not a project file; choose the file itself"
    assert folder.is_dir() and not any(folder.iterdir())


def test_cli_set_with_a_bad_key(tmp_path, tiny_bert, cli):
    path = _write_project(tmp_path, tiny_bert)
    before = path.read_bytes()
    line = _one_error_line(cli(path, "--set", "optim.lrr=1e-4", "--out", tmp_path / "out"))
    assert line == f"error: {path}: optim.lrr: unknown key (did you mean 'lr'?)"
    assert path.read_bytes() == before and not (tmp_path / "out").exists()


def test_cli_set_without_a_value(tmp_path, tiny_bert, cli):
    path = _write_project(tmp_path, tiny_bert)
    line = _one_error_line(cli(path, "--set", "optim.lr", "--out", tmp_path / "out"))
    assert "--set 'optim.lr': expected key=value, e.g. optim.lr=3e-5" in line


def test_cli_negative_batch_size(tmp_path, tiny_bert, cli):
    path = _write_project(tmp_path, tiny_bert)
    line = _one_error_line(cli(path, "--set", "tasks.classification.batch_size=-1", "--out", tmp_path / "out"))
    assert "tasks.classification.batch_size: must be at least 1" in line
    assert not (tmp_path / "out").exists()


def test_cli_run_folder_not_empty(tmp_path, tiny_bert, cli):
    path = _write_project(tmp_path, tiny_bert)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("keep", encoding="utf-8")
    line = _one_error_line(cli(path, "--out", out))
    assert f"{out} is not empty" in line and "--resume" in line
    assert _snapshot(out) == {"results.csv": b"keep"}


def test_cli_resume_with_no_run(tmp_path, tiny_bert, cli):
    path = _write_project(tmp_path, tiny_bert)
    out = tmp_path / "never-ran"
    line = _one_error_line(cli(path, "--out", out, "--resume"))
    assert line == f"error: {out} does not exist: there is no run to resume there"
    assert not out.exists()


def test_cli_missing_model_folder(tmp_path, cli):
    path = _write_project(tmp_path, tmp_path / "no-such-model")
    out = tmp_path / "out"
    line = _one_error_line(cli(path, "--out", out, "--jsonl"))      # events on stdout, the error alone on stderr
    assert "no-such-model does not exist; choose a folder that holds config.json" in line


def test_cli_corrupted_weights(tmp_path, tiny_bert, cli):
    model = _copy_model(tiny_bert, tmp_path, lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 16 + b"junk"))
    path = _write_project(tmp_path, model)
    line = _one_error_line(cli(path, "--out", tmp_path / "out", "--jsonl"))
    assert "model.safetensors" in line and "unexpected" not in line
