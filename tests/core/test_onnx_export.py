"""ONNX export of exported task folders: model.onnx with dynamic batch and length beside its tokenizer, checked
against transformers with onnxruntime; the folders it does not cover and the missing libraries get words."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
import tiny

from qarac_gui.core.events import Progress
from qarac_gui.core.results.onnx_export import (
    EXTRA,
    TOLERANCE,
    OnnxError,
    copy_with_onnx,
    export_folders_onnx,
    export_onnx,
    export_run_onnx,
    install_hint,
    missing_libraries,
    onnx_problem,
)

needs_onnx = pytest.mark.skipif(bool(missing_libraries()), reason=install_hint(missing_libraries()))

CLASSES = {"classification": ("AutoModelForSequenceClassification", ("logits",)),
           "token": ("AutoModelForTokenClassification", ("logits",)),
           "qa": ("AutoModelForQuestionAnswering", ("start_logits", "end_logits"))}
# Other counts and lengths than the export's own check uses: 1 row of two words, 4 rows of up to ~20 words.
SHORT = ["bob sleeps"]
LONG = ["the museum in berlin opens at nine in the morning and closes at ten in the evening very slow",
        "a cat", "the hotel staff was not really friendly and the room was loud", "who runs"]


def _folder(path: Path, kind: str, arch: str = "bert", layers: int = 2) -> Path:
    """A task folder as export.py writes one: the architecture's own class and the tokenizer, random weights."""
    import torch
    import transformers
    tokenizer = tiny.make_tokenizer(arch)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id)
    config = transformers.BertConfig(**common, num_labels=2 if kind == "qa" else 3)    # qa: start and end
    torch.manual_seed(0)
    getattr(transformers, CLASSES[kind][0]).from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _encode(tokenizer, texts: list[str], kind: str):
    if kind == "qa":        # (question, context) pairs
        return tokenizer(texts, [t[::-1] for t in texts], padding=True, return_tensors="pt")
    return tokenizer(texts, padding=True, return_tensors="pt")


@needs_onnx
@pytest.mark.slow         # an export and onnxruntime check a kind: seconds each
@pytest.mark.parametrize("kind", list(CLASSES))
def test_export_matches_transformers_at_other_batch_sizes_and_lengths(tmp_path, torch_threads, kind):
    import numpy as np
    import onnxruntime
    import transformers
    folder = _folder(tmp_path / kind, kind)
    events = []
    result = export_onnx(folder, emit=events.append)
    assert result.folder == folder / "onnx"
    assert {"model.onnx", "config.json", "tokenizer.json"} <= {p.name for p in result.folder.iterdir()}
    assert result.outputs == CLASSES[kind][1]
    assert 0 <= result.max_difference <= TOLERANCE
    assert len({rows for rows, _ in result.shapes}) >= 2 and len({n for _, n in result.shapes}) >= 2
    assert [e.done for e in events if isinstance(e, Progress) and e.phase == "onnx"][-1] == 3
    # Checked again here, independently of the export's own check: the tokenizer beside model.onnx, new shapes.
    session = onnxruntime.InferenceSession(str(result.folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(CLASSES[kind][1])
    assert all(isinstance(d, str) for i in session.get_inputs() for d in i.shape)       # named, not fixed, axes
    tokenizer = transformers.AutoTokenizer.from_pretrained(result.folder)
    model = getattr(transformers, CLASSES[kind][0]).from_pretrained(folder).eval()
    lengths = set()
    for texts in (SHORT, LONG):
        batch = _encode(tokenizer, texts, kind)
        feed = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
        got = session.run(None, feed)
        expected = model(**batch)
        for name, have in zip(CLASSES[kind][1], got, strict=True):
            want = expected[name].detach().numpy()
            assert have.shape == want.shape and have.shape[0] == len(texts)
            assert np.abs(have - want).max() <= TOLERANCE
        lengths.add(batch["input_ids"].shape[1])
    assert len(lengths) == 2


@needs_onnx
def test_outputs_beyond_the_tolerance_fail_and_keep_nothing(tmp_path, torch_threads):
    folder = _folder(tmp_path / "classification", "classification", layers=1)     # the export's cost is per layer
    with pytest.raises(OnnxError, match=r"differ from transformers' by up to .* \(more than -1\)"):
        export_onnx(folder, out=tmp_path / "out", tolerance=-1.0)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_missing_library_names_the_pip_command_and_writes_nothing(tmp_path, monkeypatch):
    folder = _folder(tmp_path / "classification", "classification")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)       # what an import finds when it is not installed
    assert "onnxruntime" in missing_libraries()
    for call in (lambda: export_onnx(folder), lambda: export_folders_onnx({"classification": folder})):
        with pytest.raises(OnnxError) as error:
            call()
        assert "onnxruntime" in str(error.value) and f"pip install '{EXTRA}'" in str(error.value)
    assert not (folder / "onnx").exists()


def _unsupported(base: Path) -> dict[str, Path]:
    """The other folders an export holds: similarity (sentence-transformers), the full model, the backbones of the
    tasks over named inputs, and an encoder without a task class."""
    import transformers
    tokenizer = tiny.make_tokenizer()
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)
    folders = {}
    for name in ("similarity", "encoder", "backbones/question_encoder"):
        transformers.AutoModel.from_config(config).save_pretrained(base / name)
        tokenizer.save_pretrained(base / name)
        folders[name.split("/")[0]] = base / name.split("/")[0]
    (base / "similarity" / "modules.json").write_text(json.dumps([]), encoding="utf-8")
    (base / "full").mkdir()
    (base / "full" / "manifest.json").write_text(json.dumps({"format": "qarac_gui.multitask/1"}), encoding="utf-8")
    folders["full"] = base / "full"
    return folders


def test_folders_without_an_onnx_export_are_refused_with_the_reason(tmp_path):
    folders = _unsupported(tmp_path)
    reasons = {"similarity": "sentence-transformers", "full": "whole multi-task model",
               "backbones": "backbones of the tasks over named inputs", "encoder": "BertModel"}
    for name, folder in folders.items():
        assert reasons[name] in onnx_problem(folder)
        with pytest.raises(OnnxError, match=f"^{name} is not exported to ONNX because .*{reasons[name]}"):
            export_onnx(folder)
        assert not (folder / "onnx").exists()


@needs_onnx
def test_a_batch_skips_the_unsupported_folders_and_refuses_a_taken_destination_first(tmp_path):
    folders = _unsupported(tmp_path)
    done, skipped = export_folders_onnx(folders)
    assert done == {}
    assert sorted(s.split(":")[0] for s in skipped) == sorted(folders)
    assert all(": not exported to ONNX because " in s for s in skipped)
    fresh = _folder(tmp_path / "fresh", "classification")
    taken = _folder(tmp_path / "taken", "token")
    (taken / "onnx").mkdir()
    (taken / "onnx" / "model.onnx").write_bytes(b"")
    with pytest.raises(OnnxError, match="^taken already has an onnx/ folder; remove it"):
        export_folders_onnx({"fresh": fresh, "taken": taken})
    assert not (fresh / "onnx").exists()


def test_a_folder_that_is_not_a_finished_run_is_named(tmp_path):
    with pytest.raises(OnnxError, match="has no exported models"):
        export_run_onnx(tmp_path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, torch_threads) -> Path:
    """A short run of every kind with a task folder (and similarity, which has no ONNX export), on tiny BERT."""
    from qarac_gui.core.project.config import parse_project
    from qarac_gui.core.run import run
    base = tmp_path_factory.mktemp("onnx-run")
    model = tiny.make_model_folder(base / "model", "bert")
    kinds = ["classification", "regression", "token_classification", "span_qa", "masked_lm", "similarity"]
    raw = tiny.project_dict(model, base / "data", kinds, train={"max_steps": 2})
    app = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as mp:     # the autouse app-dir fixture is not active in a module fixture
        mp.setenv("QARAC_GUI_DATA", str(app / "app-data"))
        mp.setenv("QARAC_GUI_CACHE", str(app / "app-cache"))
        ended = run(parse_project(raw, base), lambda event: None, threading.Event(), run_dir=base / "run",
                    min_log_interval=0)
    assert ended.reason == "completed", ended.message
    return base / "run"


@needs_onnx
@pytest.mark.slow
def test_a_run_is_written_as_onnx_task_by_task_and_copies_with_it(run_dir, tmp_path):
    events = []
    done, skipped = export_run_onnx(run_dir, events.append)
    assert sorted(done) == ["classification", "masked-lm", "regression", "span-qa", "token-classification"]
    assert all(r.max_difference <= TOLERANCE and (r.folder / "model.onnx").is_file() for r in done.values())
    assert done["span-qa"].outputs == ("start_logits", "end_logits")
    assert sorted(s.split(":")[0] for s in skipped) == ["full", "similarity"]
    assert any(isinstance(e, Progress) and e.message == "Writing span-qa as ONNX" for e in events)
    # The app's export copy: the ONNX models written above come along and are not written again.
    written, again, notes = copy_with_onnx(run_dir, tmp_path / "copy", ["classification", "similarity"])
    assert again == {} and (tmp_path / "copy" / "classification" / "onnx" / "model.onnx").is_file()
    assert sorted(n.split(":")[0] for n in notes) == ["classification", "similarity"]
    with pytest.raises(OnnxError, match="already have an onnx/ folder"):
        export_run_onnx(run_dir)
