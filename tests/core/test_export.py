"""Tests for qarac_gui.core.results.export: per-task folders that plain transformers load, and the full multi-task
model.

Each architecture is trained once (module-scoped fixture, all seven head kinds on one encoder); the tests then
reload the exported folders and compare them with the app's own model reloaded from RUN/export/full.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import module_runs
import pytest
import tiny
import torch
from module_runs import train_run
from torch.nn import functional as F

from qarac_gui.core.events import EvalDone, ExportDone, RunStarted
from qarac_gui.core.project.config import HeadConfig, TaskConfig, load_project, parse_project
from qarac_gui.core.project.convert import ConfigError, to_dict
from qarac_gui.core.results.export import (
    FULL_FORMAT,
    ExportError,
    check_destination,
    export_problem,
    export_task,
    load_full_model,
)
from qarac_gui.core.run import run

KINDS = list(tiny.TASK_COLUMNS)
NAME = {kind: kind.replace("_", "-") for kind in KINDS}     # tiny.project_dict's task names
PROBLEM_TYPE = {"classification": "single_label_classification", "multilabel": "multi_label_classification",
                "regression": "regression"}
ATOL = RTOL = 1e-5
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


# ------------------------------------------------------------------------------------------------ fixtures


@dataclass
class Trained(module_runs.Trained):
    full: Any = None             # load_full_model(RUN/export/full) when the run exported one

    @property
    def export(self) -> Path:
        return self.run_dir / "export"

    def first(self, cls: type) -> Any:
        return next(e for e in self.events if isinstance(e, cls))

    def last(self, cls: type) -> Any:
        return [e for e in self.events if isinstance(e, cls)][-1]


def _train(tmp_path_factory, base: Path, raw: dict, root: Path) -> Trained:
    done = train_run(tmp_path_factory, parse_project(raw, root), base / "run")
    trained = Trained(done.project, done.run_dir, done.events, done.ended)
    if (trained.export / "full").is_dir():
        trained.full = load_full_model(trained.export / "full")
    return trained


@pytest.fixture(scope="module", params=["bert", "roberta"])
def trained(request, tmp_path_factory, torch_threads) -> Trained:
    """One run per architecture with every head kind at its defaults (so every task is exported)."""
    arch = request.param
    base = tmp_path_factory.mktemp(f"export-{arch}")
    model = tiny.make_model_folder(base / "model", arch)
    raw = tiny.project_dict(model, base / "data", KINDS, train={"max_steps": 4})
    return _train(tmp_path_factory, base, raw, base)


ODD_HEADS = {
    "classification": {"pooling": "mean"},                  # not bert's own classifier: skipped
    "token_classification": {"hidden_layer": True},        # bert's token head is one linear layer: skipped
    "regression": {"hidden_layer": False},                  # bert's classifier has a dense layer: skipped
    "similarity": {"pooling": "cls", "hidden_layer": True, "hidden_size": 16},   # exported with a Dense module
    "multilabel": {},                                       # default: exported
}
ODD_SKIPPED = {"classification": 'pooling = "cls"', "token_classification": "hidden_layer = false",
               "regression": "hidden_layer = true"}


@pytest.fixture(scope="module")
def odd(tmp_path_factory, torch_threads) -> Trained:
    """A BERT run with heads plain transformers has no class for, written with paths relative to the project."""
    base = tmp_path_factory.mktemp("export-odd")
    tiny.make_model_folder(base / "model", "bert")
    raw = tiny.project_dict(base / "model", base / "data", list(ODD_HEADS), train={"max_steps": 2})
    raw["backbones"]["encoder"]["model"] = "model"
    for task in raw["tasks"]:
        task["head"].update(ODD_HEADS[task["head"]["kind"]])
        task["data"]["train"] = "data/" + Path(task["data"]["train"]).name
    return _train(tmp_path_factory, base, raw, base)


# ------------------------------------------------------------------------------------------------ helpers


def _rows(kind: str, n: int = 6, seed: int = 1234) -> list[dict]:
    """Fresh rows drawn like the training data (a different seed: validation-like, not the training rows)."""
    return tiny._rows(kind, n, random.Random(seed))


def _inputs(kind: str, tokenizer: Any, rows: list[dict]) -> dict[str, torch.Tensor]:
    cols = tiny.TASK_COLUMNS[kind]
    if kind == "token_classification":
        enc = tokenizer([r[cols["text"]] for r in rows], is_split_into_words=True, padding=True,
                        return_tensors="pt")
    elif kind == "span_qa":
        enc = tokenizer([r[cols["text"]] for r in rows], [r[cols["text_pair"]] for r in rows],
                        truncation="only_second", max_length=32, padding=True, return_tensors="pt")
    else:
        enc = tokenizer([r[cols["text"]] for r in rows], padding=True, return_tensors="pt")
    batch = dict(enc)
    if kind == "masked_lm":
        batch["input_ids"] = batch["input_ids"].clone()
        batch["input_ids"][:, 2] = tokenizer.mask_token_id
    return batch


def _app_output(trained: Trained, task: str, inputs: dict[str, torch.Tensor]) -> Any:
    """The app model's logits for `task`, through its real head forward (dummy targets only feed the loss)."""
    project, model, _, labels = trained.full
    kind = project.task(task).head.kind
    batch = dict(inputs)
    ids = batch["input_ids"]
    n = ids.shape[0]
    if kind == "classification":
        batch["labels"] = torch.zeros(n, dtype=torch.long)
    elif kind == "multilabel":
        batch["labels"] = torch.zeros(n, len(labels[task]))
    elif kind == "regression":
        batch["labels"] = torch.zeros(n)
    elif kind in ("token_classification", "masked_lm"):
        batch["labels"] = torch.zeros_like(ids)
    elif kind == "span_qa":
        batch["start_positions"] = batch["end_positions"] = torch.zeros(n, dtype=torch.long)
    with torch.no_grad():
        return model(task, batch).logits


def _trained_labels(trained: Trained, task: str) -> list[str]:
    return trained.first(RunStarted).tasks[task]["labels"]


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)


def _pair_batch(tokenizer: Any, a: list[str], b: list[str]) -> dict[str, torch.Tensor]:
    batch = dict(tokenizer(a, padding=True, return_tensors="pt"))
    batch.update({"b_" + k: v for k, v in tokenizer(b, padding=True, return_tensors="pt").items()})
    batch["labels"] = torch.zeros(len(a))
    return batch


def _check_sentence_transformer(trained: Trained, task: str, width: int) -> None:
    """SentenceTransformer(folder) embeds like the app's SimilarityHead.embed, so its cosine is the head's."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer
    folder = trained.export / task
    rows = _rows("similarity")
    a, b = [r["sentence1"] for r in rows], [r["sentence2"] for r in rows]
    st = SentenceTransformer(str(folder), device="cpu")
    ea = st.encode(a, convert_to_tensor=True, normalize_embeddings=True)
    eb = st.encode(b, convert_to_tensor=True, normalize_embeddings=True)
    assert ea.shape == (len(a), width)

    _, model, _, _ = trained.full
    batch = _pair_batch(AutoTokenizer.from_pretrained(folder), a, b)
    head, encoder = model.heads[task], model.backbones["encoder"]
    with torch.no_grad():
        cosine = model(task, batch).logits
        app_a = F.normalize(head.embed(encoder, batch), dim=-1)
    _close(ea, app_a)
    _close((ea * eb).sum(-1), cosine)
    # Not a degenerate comparison: the texts get different embeddings.
    assert (app_a - app_a[0]).abs().max() > 1e-4


# ------------------------------------------------------------------------- 1. per-task folders vs the app


def test_run_completes_and_exports_every_task(trained):
    assert trained.ended.reason == "completed"
    assert trained.ended.message == ""
    assert trained.events[-1] == trained.ended
    done = trained.last(ExportDone)
    assert done.path == str(trained.export)
    assert done.folders == {**{NAME[k]: str(trained.export / NAME[k]) for k in KINDS},
                            "full": str(trained.export / "full")}
    assert {p.name for p in trained.export.iterdir()} == set(done.folders)


@pytest.mark.parametrize("kind", list(PROBLEM_TYPE))
def test_sequence_classification_export_matches_the_app(trained, kind):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    task = NAME[kind]
    folder = trained.export / task
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = _inputs(kind, tokenizer, _rows(kind))
    with torch.no_grad():
        got = hf(**inputs).logits
    want = _app_output(trained, task, inputs)

    assert hf.config.problem_type == PROBLEM_TYPE[kind]
    if kind == "regression":
        assert hf.config.num_labels == 1
        assert got.shape == (len(inputs["input_ids"]), 1)
        got = got.squeeze(-1)
    else:
        labels = _trained_labels(trained, task)
        assert labels == trained.full[3][task]
        assert hf.config.num_labels == len(labels) >= 2
        assert hf.config.id2label == dict(enumerate(labels))
        assert hf.config.label2id == {name: i for i, name in enumerate(labels)}
    assert got.shape == want.shape
    _close(got, want)


def test_token_classification_export_matches_the_app(trained):
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    kind, task = "token_classification", NAME["token_classification"]
    folder = trained.export / task
    hf = AutoModelForTokenClassification.from_pretrained(folder).eval()
    inputs = _inputs(kind, AutoTokenizer.from_pretrained(folder), _rows(kind))
    with torch.no_grad():
        got = hf(**inputs).logits
    labels = _trained_labels(trained, task)
    assert hf.config.id2label == dict(enumerate(labels))
    assert hf.config.label2id == {name: i for i, name in enumerate(labels)}
    want = _app_output(trained, task, inputs)
    assert got.shape == want.shape == (*inputs["input_ids"].shape, len(labels))
    _close(got, want)


def test_span_qa_export_matches_the_app(trained):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    kind, task = "span_qa", NAME["span_qa"]
    folder = trained.export / task
    hf = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    inputs = _inputs(kind, AutoTokenizer.from_pretrained(folder), _rows(kind))
    with torch.no_grad():
        out = hf(**inputs)
    start, end = _app_output(trained, task, inputs)
    assert out.start_logits.shape == start.shape == inputs["input_ids"].shape
    _close(out.start_logits, start)
    _close(out.end_logits, end)
    assert not torch.allclose(start, end)      # the two output columns were not mixed up into one


def test_masked_lm_export_matches_the_app_and_stays_tied(trained):
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    kind, task = "masked_lm", NAME["masked_lm"]
    folder = trained.export / task
    hf = AutoModelForMaskedLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = _inputs(kind, tokenizer, _rows(kind))
    with torch.no_grad():
        got = hf(**inputs).logits
    want = _app_output(trained, task, inputs)
    assert got.shape == want.shape == (*inputs["input_ids"].shape, len(tokenizer))
    _close(got, want)
    # The decoder is the input embedding matrix, in the export and in the reloaded app model alike.
    assert hf.get_output_embeddings().weight is hf.get_input_embeddings().weight
    _, model, _, _ = trained.full
    head, encoder = model.heads[task], model.backbones["encoder"]
    decoders = [m for m in head.lm_head.modules()
                if isinstance(m, torch.nn.Linear) and m.out_features == head.vocab_size]
    assert len(decoders) == 1
    assert decoders[0].weight is encoder.get_input_embeddings().weight


def test_similarity_export_loads_in_sentence_transformers(trained):
    pooling = json.loads((trained.export / "similarity" / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True and pooling["pooling_mode_cls_token"] is False
    assert not (trained.export / "similarity" / "2_Dense").exists()
    hidden = trained.full[1].backbones["encoder"].config.hidden_size
    _check_sentence_transformer(trained, "similarity", hidden)


# ------------------------------------------------------------------------------------------ 2. pipeline


def test_text_classification_pipeline_gives_the_apps_labels(trained):
    from transformers import pipeline
    task = NAME["classification"]
    folder = trained.export / task
    labels = _trained_labels(trained, task)
    texts = [r["text"] for r in _rows("classification")]
    classify = pipeline("text-classification", model=str(folder), device="cpu")

    tokenizer = trained.full[2]["encoder"]
    app_probs = _app_output(trained, task, _inputs("classification", tokenizer, _rows("classification")))
    app_probs = app_probs.softmax(-1)
    top = classify(texts)
    assert [r["label"] for r in top] == [labels[i] for i in app_probs.argmax(-1).tolist()]
    _close(torch.tensor([r["score"] for r in top]), app_probs.max(-1).values)

    every = classify(texts, top_k=None)
    for row, probs in zip(every, app_probs, strict=True):
        assert sorted(r["label"] for r in row) == sorted(labels)
        for r in row:                              # each name carries its own probability: no label swap
            assert r["score"] == pytest.approx(float(probs[labels.index(r["label"])]), abs=ATOL)


# -------------------------------------------------------------------------------- 3. full-model round trip


def test_full_model_reloads_identically(trained):
    project1, model1, tokenizers1, labels1 = trained.full
    project2, model2, tokenizers2, labels2 = load_full_model(trained.export / "full")
    assert not model2.training
    assert to_dict(project2) == to_dict(project1) == to_dict(trained.project.with_absolute_paths())
    assert labels2 == labels1 == {n: info["labels"] for n, info in trained.first(RunStarted).tasks.items()}
    state1, state2 = model1.state_dict(), model2.state_dict()
    assert state1.keys() == state2.keys()
    assert all(torch.equal(state1[k], state2[k]) for k in state1)
    for kind in KINDS:
        if kind == "similarity":
            rows = _rows(kind)
            batch = _pair_batch(tokenizers2["encoder"], [r["sentence1"] for r in rows],
                                [r["sentence2"] for r in rows])
            with torch.no_grad():
                assert torch.equal(model1(NAME[kind], batch).logits, model2(NAME[kind], batch).logits)
            continue
        inputs = _inputs(kind, tokenizers2["encoder"], _rows(kind))
        out1 = _app_output(trained, NAME[kind], inputs)
        out2 = _app_output(Trained(trained.project, trained.run_dir, trained.events, trained.ended,
                                   (project2, model2, tokenizers2, labels2)), NAME[kind], inputs)
        for a, b in zip(*(o if isinstance(o, tuple) else (o,) for o in (out1, out2)), strict=True):
            assert torch.equal(a, b)


def test_full_model_encoder_is_the_one_in_every_task_export(trained):
    """The per-task folders and the full model were both written from the in-memory model after training."""
    from transformers import (
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )
    classes = {"classification": AutoModelForSequenceClassification,
               "multilabel": AutoModelForSequenceClassification,
               "regression": AutoModelForSequenceClassification,
               "token_classification": AutoModelForTokenClassification,
               "span_qa": AutoModelForQuestionAnswering, "masked_lm": AutoModelForMaskedLM, "similarity": AutoModel}
    encoder = trained.full[1].backbones["encoder"].state_dict()
    initial = AutoModel.from_pretrained(trained.project.backbones["encoder"].model).state_dict()
    shared = [k for k in encoder if not k.startswith("pooler.")]
    # Training moved the encoder away from its initial weights, so the comparison below means something.
    assert any(not torch.equal(encoder[k], initial[k]) for k in shared)
    for kind, cls in classes.items():
        exported = cls.from_pretrained(trained.export / NAME[kind]).base_model.state_dict()
        assert set(shared) <= set(exported), kind
        assert all(torch.equal(exported[k], encoder[k]) for k in shared), kind


def test_full_model_manifest(trained):
    manifest = json.loads((trained.export / "full" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == FULL_FORMAT
    assert manifest["step"] == trained.ended.step == 4
    started = trained.first(RunStarted).tasks
    assert manifest["tasks"] == {n: {"kind": info["kind"], "backbone": "encoder", "labels": info["labels"]}
                                 for n, info in started.items()}


def test_load_full_model_refuses_other_folders(trained, tmp_path):
    with pytest.raises(ExportError, match="manifest.json"):
        load_full_model(trained.export / NAME["classification"])
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "someone-else/9"}), encoding="utf-8")
    with pytest.raises(ExportError, match="unknown model format"):
        load_full_model(tmp_path)


# ------------------------------------------------------------------------------------- 4. folder contents


@pytest.mark.parametrize("kind", KINDS)
def test_task_folder_holds_weights_tokenizer_card_and_project(trained, kind):
    from transformers import AutoTokenizer
    task = NAME[kind]
    folder = trained.export / task
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
            "project.toml"} <= names
    assert [p for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES] == []
    if kind == "similarity":
        assert {"modules.json", "sentence_bert_config.json", "1_Pooling"} <= names

    # The exported tokenizer is the one the app trained with.
    texts = ["the film was very good", "alice lives in paris near the river"]
    assert AutoTokenizer.from_pretrained(folder)(texts)["input_ids"] == trained.full[2]["encoder"](texts)["input_ids"]

    card = (folder / "README.md").read_text(encoding="utf-8")
    header, body = card.split("\n---\n", 1)               # the Hub's metadata header, then the card
    assert header.startswith("---\n") and body.lstrip().startswith(f"# tiny: {task}\n")
    assert f"**{kind}**" in card
    metrics = trained.last(EvalDone).metrics[task]
    assert metrics
    for name, value in metrics.items():
        assert f"- {name}: {value:.4f}" in card
    labels = _trained_labels(trained, task)
    if labels:
        assert f"- labels: {', '.join(labels)}" in card

    project = load_project(folder / "project.toml")
    assert to_dict(project) == to_dict(trained.project.with_absolute_paths())
    assert project.task(task).head.kind == kind


def test_full_folder_contents(trained):
    full = trained.export / "full"
    assert {p.name for p in full.iterdir()} == {"backbones", "heads.safetensors", "manifest.json", "project.toml"}
    encoder = full / "backbones" / "encoder"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in encoder.iterdir()}
    assert [p for p in trained.export.rglob("*") if p.suffix in PICKLE_SUFFIXES] == []
    assert to_dict(load_project(full / "project.toml")) == to_dict(trained.project.with_absolute_paths())


# -------------------------------------------------------------------------------- 5. heads with no class


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
@pytest.mark.parametrize("kind", KINDS)
def test_default_heads_export_natively(kind, model_type):
    assert export_problem(TaskConfig(name="t", head=HeadConfig(kind=kind)), model_type, 32) == ""


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
@pytest.mark.parametrize("kind", list(PROBLEM_TYPE))
def test_explicit_native_settings_export(kind, model_type):
    head = HeadConfig(kind=kind, pooling="cls", hidden_layer=True, hidden_size=32, activation="tanh")
    assert export_problem(TaskConfig(name="t", head=head), model_type, 32) == ""


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
@pytest.mark.parametrize(("kind", "change", "option"), [
    ("classification", {"pooling": "mean"}, 'pooling = "cls"'),
    ("classification", {"hidden_layer": False}, "hidden_layer = true"),
    ("multilabel", {"hidden_size": 16}, "hidden_size = 0"),
    ("regression", {"activation": "relu"}, 'activation = "auto"'),
    ("token_classification", {"hidden_layer": True}, "hidden_layer = false"),
    ("span_qa", {"hidden_layer": True}, "hidden_layer = false"),
])
def test_non_native_heads_name_the_option_to_change(kind, change, option, model_type):
    message = export_problem(TaskConfig(name="t", head=HeadConfig(kind=kind, **change)), model_type, 32)
    assert option in message
    assert model_type in message


def test_native_activation_depends_on_the_architecture():
    head = HeadConfig(kind="classification", activation="tanh")
    assert export_problem(TaskConfig(name="t", head=head), "bert", 32) == ""
    assert 'activation = "auto"' in export_problem(TaskConfig(name="t", head=head), "electra", 32)


@pytest.mark.parametrize("model_type", ["gpt2", "deberta-v2"])
@pytest.mark.parametrize("kind", ["classification", "token_classification", "span_qa"])
def test_unsupported_model_type_is_named(kind, model_type):
    message = export_problem(TaskConfig(name="t", head=HeadConfig(kind=kind)), model_type, 32)
    assert model_type in message and kind in message and "not supported" in message


def test_similarity_exports_for_any_model_type():
    assert export_problem(TaskConfig(name="t", head=HeadConfig(kind="similarity")), "gpt2", 32) == ""


def test_run_skips_non_native_heads_and_exports_the_rest(odd):
    assert odd.ended.reason == "completed"
    assert odd.events[-1] == odd.ended
    message = odd.ended.message
    for kind, option in ODD_SKIPPED.items():
        assert f"not exported: {NAME[kind]}: " in message
        assert option in message
        assert not (odd.export / NAME[kind]).exists()
    assert "not exported: multilabel" not in message and "not exported: similarity" not in message
    exported = {"similarity", "multilabel", "full"}
    assert odd.last(ExportDone).folders == {n: str(odd.export / n) for n in exported}
    assert {p.name for p in odd.export.iterdir()} == exported
    assert (odd.export / "multilabel" / "model.safetensors").is_file()


def test_full_model_keeps_the_heads_that_were_not_exported(odd):
    project, model, _, labels = odd.full
    assert set(model.heads) == {NAME[k] for k in ODD_HEADS}
    assert model.heads["classification"].pooling == "mean"
    assert labels["token-classification"] == _trained_labels(odd, "token-classification")


def test_export_task_refuses_a_non_native_head_and_writes_nothing(odd, tmp_path):
    project, model, tokenizers, labels = odd.full
    task = project.task("classification")
    with pytest.raises(ExportError, match='task classification: .*pooling = "cls"'):
        export_task(tmp_path / "out", project, task, model, tokenizers["encoder"], "src", labels[task.name], {})
    assert not (tmp_path / "out").exists()


def test_similarity_with_a_dense_layer_exports_for_sentence_transformers(odd):
    dense = odd.export / "similarity" / "2_Dense"
    assert (dense / "model.safetensors").is_file()
    assert json.loads((dense / "config.json").read_text())["out_features"] == 16
    _check_sentence_transformer(odd, "similarity", 16)


def test_exported_project_files_point_at_the_real_model_and_data(odd):
    """The odd project uses paths relative to its own folder; each export's project.toml must still find them."""
    assert not Path(odd.project.backbones["encoder"].model).is_absolute()
    for folder in ("similarity", "multilabel", "full"):
        project = load_project(odd.export / folder / "project.toml")
        assert project.resolve(project.backbones["encoder"].model).resolve() == (odd.run_dir.parent / "model")
        for task in project.tasks:
            original = odd.project.resolve(odd.project.task(task.name).data.train).resolve()
            assert project.resolve(task.data.train).resolve() == original, (folder, task.name)
            assert original.is_file()


def test_a_task_named_full_does_not_collide_with_the_full_model(tmp_path_factory, torch_threads, tiny_bert):
    """A task exported to export/full would collide with the whole model's folder (FileExistsError after
    training): the name must be refused up front, or the two folders must differ."""
    base = tmp_path_factory.mktemp("export-full-name")
    raw = tiny.project_dict(tiny_bert, base / "data", ["classification"], train={"max_steps": 1})
    raw["tasks"][0]["name"] = "full"
    try:
        project = parse_project(raw, base)
    except ConfigError as e:
        assert "tasks.full.name" in str(e) and "reserved" in str(e)
        return
    events: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QARAC_GUI_DATA", str(tmp_path_factory.getbasetemp() / "app-data"))
        mp.setenv("QARAC_GUI_CACHE", str(tmp_path_factory.getbasetemp() / "app-cache"))
        ended = run(project, events.append, threading.Event(), run_dir=base / "run", min_log_interval=0)
    assert ended.reason == "completed"
    folders = [e for e in events if isinstance(e, ExportDone)][-1].folders
    assert len(set(folders.values())) == 2
    _, model, _, _ = load_full_model(Path(folders["full"]))
    assert set(model.heads) == {"full"}


# ------------------------------------------------------------------------------------- 6. destinations


def test_check_destination_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ExportError, match="not an empty folder") as info:
        check_destination(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert (tmp_path / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_check_destination_refuses_a_folder_holding_only_a_subfolder(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(ExportError, match="not an empty folder"):
        check_destination(tmp_path)


def test_check_destination_accepts_an_empty_or_missing_folder(tmp_path):
    assert check_destination(tmp_path) is None
    assert check_destination(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists()


def test_check_destination_refuses_a_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ExportError):
        check_destination(target)
