"""export/backbones: each backbone of the tasks over named inputs is a folder that loads without this app. The
encoders embed in sentence-transformers and through their own pooling.py exactly as the app does, and the decoder,
driven by its model card's code, writes the app's text from the same condition vectors.

Everything the folders are asked to do runs in a fresh Python process that never imports qarac_gui: the code
blocks of the model cards themselves, executed as they are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qarac_gui.core.kinds.layers import generate, sentence_vector
from qarac_gui.core.results.export import load_full_model

pytestmark = pytest.mark.slow

SENTENCES = ["alice sleeps", "the museum is in paris", "where is the tower of rome", "a dog runs"]
PREMISES = [("a cat sleeps", "bob is a cat"), ("a dog runs", "carol is a dog")]
CARD_TEXTS = ["a first sentence", "a second one"]             # what the encoder cards embed
USAGE_TEXT = "a text of column sentence"                       # what the decoder card's example reconstructs
ATOL = 1e-5

# Run in a fresh interpreter from the export folder: each card's code blocks, as written, then the objects they made.
STANDALONE = r'''
import contextlib, io, json, re, sys
from pathlib import Path
import torch

given = json.loads(Path(sys.argv[1]).read_text())
out = {}

def blocks(folder):
    return re.findall(r"^```python\n(.*?)^```", Path(folder, "README.md").read_text(), re.S | re.M)

for name in given["encoders"]:
    with_st, with_loader = blocks(f"backbones/{name}")
    ns = {}
    exec(with_st, ns)
    out[name] = {"card_st": ns["vectors"].tolist(),
                 "st": ns["model"].encode(given["sentences"], convert_to_tensor=True).tolist()}
    ns = {}
    exec(with_loader, ns)
    out[name]["card_loader"] = ns["vectors"].tolist()
    out[name]["loader"] = ns["pooling"].load(ns["folder"]).encode(given["sentences"]).tolist()
if given["decoder"]:
    generating, *usage = blocks(f"backbones/{given['decoder']}")
    ns = {}
    exec(generating, ns)
    out["texts"] = [ns["generate"](torch.tensor(v)) for v in given["conditions"]]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(usage[0], ns)
    out["usage"] = printed.getvalue().strip()
    out["decoder_class"] = type(ns["decoder"]).__name__
out["app_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "qarac_gui")
Path(sys.argv[2]).write_text(json.dumps(out))
'''


def _app_vectors(app, backbone: str, texts: list[str]) -> torch.Tensor:
    _, model, tokenizers, _ = app
    batch = {"x__" + k: v for k, v in tokenizers[backbone](texts, padding=True, return_tensors="pt").items()}
    with torch.no_grad():
        return sentence_vector(model, backbone, batch, "x__")


def _app_texts(app, vectors: torch.Tensor) -> list[str]:
    _, model, tokenizers, _ = app
    decoder = tokenizers["decoder"]
    ids = generate(model.backbones["decoder"], vectors, {decoder.sep_token_id, decoder.eos_token_id} - {None}, 23)
    return [decoder.decode(i, skip_special_tokens=True) for i in ids]


def _standalone(export: Path, tmp: Path, encoders: list[str], decoder: str = "", conditions=()) -> dict:
    given, result = tmp / "given.json", tmp / "result.json"
    given.write_text(json.dumps({"encoders": encoders, "decoder": decoder, "sentences": SENTENCES,
                                 "conditions": [v.tolist() for v in conditions]}))
    script = tmp / "standalone.py"
    script.write_text(STANDALONE)
    # sentence-transformers copies a folder's own code among transformers' dynamic modules before it runs it.
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp / "modules"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, str(script), str(given), str(result)], cwd=export, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(result.read_text())


def _close(actual, expected: torch.Tensor) -> None:
    torch.testing.assert_close(torch.tensor(actual, dtype=expected.dtype), expected, atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def recipe(recipe_run, tmp_path_factory):
    export = recipe_run / "export"
    app = load_full_model(export / "full")
    answer = _app_vectors(app, "answer_encoder", SENTENCES)
    p1 = _app_vectors(app, "answer_encoder", [a for a, _ in PREMISES])
    p2 = _app_vectors(app, "answer_encoder", [b for _, b in PREMISES])
    conditions = torch.cat([answer, p1 + p2])             # encode_decode's s, reasoning's p1 + p2
    ran = _standalone(export, tmp_path_factory.mktemp("standalone"), ["question_encoder", "answer_encoder"],
                      "decoder", conditions)
    return export, app, ran, conditions


def test_the_backbones_of_tasks_over_named_inputs_are_written_each_in_a_folder(recipe, recipe_run):
    export, _, _, _ = recipe
    # The vector and decode tasks have no head of their own: no task folder, their backbones instead.
    assert {p.name for p in export.iterdir()} == {"backbones", "full"}
    assert {p.name for p in (export / "backbones").iterdir()} == {"question_encoder", "answer_encoder", "decoder"}
    for name in ("question_encoder", "answer_encoder"):
        folder = export / "backbones" / name
        modules = json.loads((folder / "modules.json").read_text())
        assert [m["type"] for m in modules] == ["sentence_transformers.models.Transformer", "pooling.AttentionPooling"]
        assert (folder / "1_Pooling" / "model.safetensors").is_file() and (folder / "pooling.py").is_file()
        assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 24
        assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertModel"]
    decoder = export / "backbones" / "decoder"
    config = json.loads((decoder / "config.json").read_text())
    assert config["architectures"] == ["BertLMHeadModel"] and config["is_decoder"] is True
    card = (decoder / "README.md").read_text()
    assert "first input embedding" in card and "| `reasoning` | `p1 + p2` |" in card
    for folder in (export / "backbones").iterdir():
        assert (folder / "README.md").is_file() and (folder / "project.toml").is_file()
        assert (folder / "tokenizer.json").is_file()
    done = [json.loads(line) for line in (recipe_run / "events.jsonl").read_text().splitlines()]
    ended = next(e for e in done if e["event"] == "RunEnded")
    assert "not exported" not in ended["message"]
    exported = next(e for e in done if e["event"] == "ExportDone")
    assert set(exported["folders"]) == {"backbones", "full"}


def test_nothing_of_the_app_is_imported_to_use_the_folders(recipe):
    assert recipe[2]["app_modules"] == []


@pytest.mark.parametrize("name", ["question_encoder", "answer_encoder"])
def test_an_attention_pooled_encoder_embeds_outside_the_app_as_the_app_does(recipe, name):
    _, app, ran, _ = recipe
    expected = _app_vectors(app, name, SENTENCES)
    _close(ran[name]["st"], expected)                      # SentenceTransformer(folder, trust_remote_code=True)
    _close(ran[name]["loader"], expected)                  # the folder's pooling.py, plain transformers
    card = _app_vectors(app, name, CARD_TEXTS)
    _close(ran[name]["card_st"], card)
    _close(ran[name]["card_loader"], card)
    assert (expected - expected[0]).abs().max() > 1e-3     # the texts get different vectors: a real comparison


def test_sentence_transformers_runs_the_folders_pooling_only_when_trusted(recipe):
    from sentence_transformers import SentenceTransformer
    export = recipe[0]
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(export / "backbones" / "answer_encoder"), device="cpu")


def test_the_decoder_card_reproduces_the_apps_greedy_generation(recipe):
    _, app, ran, conditions = recipe
    assert ran["decoder_class"] == "BertLMHeadModel"       # AutoModelForCausalLM, as the card loads it
    assert ran["texts"] == _app_texts(app, conditions)
    # The card's own example: the answer encoder's folder gives the vector, the decoder writes it back.
    assert ran["usage"] == _app_texts(app, _app_vectors(app, "answer_encoder", [USAGE_TEXT]))[0]


def test_encoders_with_the_first_token_or_the_mean_use_sentence_transformers_own_pooling(pooled_run, tmp_path):
    export = pooled_run / "export"
    app = load_full_model(export / "full")
    for name, mode in (("question_encoder", "pooling_mode_cls_token"), ("answer_encoder", "pooling_mode_mean_tokens")):
        folder = export / "backbones" / name
        assert [m["type"] for m in json.loads((folder / "modules.json").read_text())] == [
            "sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling"]
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        assert pooling[mode] is True and sum(v is True for v in pooling.values()) == 1
        with_st = (folder / "README.md").read_text().split("```python")[1]
        assert "SentenceTransformer(folder)" in with_st and "trust_remote_code" not in with_st
    ran = _standalone(export, tmp_path, ["question_encoder", "answer_encoder"])
    assert ran["app_modules"] == []
    for name in ("question_encoder", "answer_encoder"):
        expected = _app_vectors(app, name, SENTENCES)
        _close(ran[name]["st"], expected)
        _close(ran[name]["loader"], expected)
