"""Several encoders and a decoder trained together on four objectives, through the general mechanism: named
inputs read by backbones of roles encoder and decoder, attention pooling owned by the backbone, vector and
decode heads."""

from __future__ import annotations

import threading

import pytest
import torch
from recipe_data import recipe_project, write_recipe_data

from qarac_gui.core.events import RunStarted, StepLogged
from qarac_gui.core.project.config import ConfigError, parse_project

SENTENCES = ["alice sleeps", "the museum is in paris", "where is the tower of rome"]


def _vectors_and_text(model, tokenizers, sentences):
    """Sentence vectors of the answer encoder, and the decoder's greedy reconstruction of each sentence."""
    from qarac_gui.core.kinds.layers import generate, sentence_vector
    tok = tokenizers["answer_encoder"]
    enc = tok(sentences, padding=True, return_tensors="pt")
    batch = {"s__" + k: v for k, v in enc.items()}
    model.eval()
    with torch.no_grad():
        vectors = sentence_vector(model, "answer_encoder", batch, "s__")
        dec = tokenizers["decoder"]
        ids = generate(model.backbones["decoder"], vectors, {dec.sep_token_id, dec.eos_token_id} - {None}, 12)
    return vectors, [dec.decode(i, skip_special_tokens=True) for i in ids]


@pytest.mark.slow
def test_four_objectives_train_together_export_and_reload_to_the_same_vectors_and_text(tmp_path, tiny_bert,
                                                                                      monkeypatch):
    raw = recipe_project(tiny_bert, write_recipe_data(tmp_path / "data"), steps=40)
    project = parse_project(raw, tmp_path)
    from qarac_gui.core.results import export as export_module
    seen = {}
    real_export_full = export_module.export_full

    def export_full(folder, project, model, tokenizers, labels, step):
        seen["before"] = _vectors_and_text(model, tokenizers, SENTENCES)     # the trained model, in memory
        return real_export_full(folder, project, model, tokenizers, labels, step)
    monkeypatch.setattr(export_module, "export_full", export_full)

    from qarac_gui.core import run as run_module
    events = []
    ended = run_module.run(project, events.append, threading.Event(), run_dir=tmp_path / "run", min_log_interval=0.0)
    assert ended.reason == "completed", ended.message
    started = next(e for e in events if isinstance(e, RunStarted))
    assert set(started.tasks) == {"encode_decode", "question_answering", "reasoning", "consistency"}

    steps = [e for e in events if isinstance(e, StepLogged)]
    assert len(steps) == 40 and all(len(e.task_losses) == 4 for e in steps)      # all four, every step
    for task in started.tasks:
        losses = [e.task_losses[task] for e in steps]
        first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
        assert last < first * 0.9, (task, first, last)

    from qarac_gui.core.results.export import load_full_model
    _, model, tokenizers, _ = load_full_model(tmp_path / "run" / "export" / "full")
    vectors, text = _vectors_and_text(model, tokenizers, SENTENCES)
    before_vectors, before_text = seen["before"]
    assert torch.allclose(vectors, before_vectors, atol=1e-5, rtol=0)
    assert text == before_text


def test_the_graph_is_checked_in_words(tmp_path, tiny_bert):
    raw = recipe_project(tiny_bert, write_recipe_data(tmp_path / "data"))
    parse_project(raw, tmp_path)            # as written, it is valid
    raw["tasks"][1]["head"]["right"] = "a + answer"
    raw["tasks"][2]["head"]["decoder"] = "answer_encoder"
    raw["tasks"][3]["inputs"]["s2"] = "hypothesis"
    raw["tasks"][0]["head"]["condition"] = "s +"
    raw["backbones"]["decoder"]["pooling"] = "max"
    with pytest.raises(ConfigError) as e:
        parse_project(raw, tmp_path)
    lines = str(e.value).splitlines()
    assert "tasks.question_answering.head.right: no input named 'answer' (inputs: a, q)" in lines
    assert any(line.startswith("tasks.reasoning.head.decoder: backbone 'answer_encoder' is an encoder")
               for line in lines)
    assert any(line.startswith("tasks.consistency.inputs.s2: 'hypothesis' must be \"backbone:column\"")
               for line in lines)
    assert any(line.startswith("tasks.encode_decode.head.condition: 's +': expected input names joined by + or -")
               for line in lines)
    assert any(line.startswith("backbones.decoder.pooling:") for line in lines)


@pytest.mark.slow
def test_the_qarac_preset_trains_once_its_hub_sources_are_swapped_for_local_stand_ins(tmp_path, tiny_bert):
    from qarac_gui.core import paths
    from qarac_gui.core.project.config import load_project
    project = load_project(paths.resource_path("presets", "qarac.toml")).with_absolute_paths()
    data = write_recipe_data(tmp_path / "data")
    stand_ins = {"microsoft/wiki_qa": data["wiki_qa"], "stanfordnlp/snli": data["snli"]}
    for backbone in project.backbones.values():
        backbone.model = str(tiny_bert)
    for task in project.tasks:
        task.max_length, task.batch_size = 24, 8
        for source in [task.data, *task.data.union]:
            if source.hub:
                source.train, source.hub = str(stand_ins[source.hub]), ""
        if task.data.validation_split:
            task.data.validation_split, task.data.validation_fraction = "", 0.2
    project.train.max_steps, project.train.log_every, project.eval.every, project.checkpoint.every = 4, 1, 0, 0
    project.optim.warmup_steps = 0
    from qarac_gui.core.project.config import validate
    assert validate(project) == []

    from qarac_gui.core import run as run_module
    events = []
    ended = run_module.run(project, events.append, threading.Event(), run_dir=tmp_path / "run", min_log_interval=0.0)
    assert ended.reason == "completed", ended.message
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert [sorted(e.task_losses) for e in steps] == [sorted(t.name for t in project.tasks)] * 4
