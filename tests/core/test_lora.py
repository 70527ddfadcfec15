"""Tests for LoRA adapters (qarac_gui.core.model.adapters and their exports): one adapter shared by two tasks, or
one per task; only adapters and heads in the optimiser; merged and adapter-alone exports that give the app's logits;
resume that ends bit-identical to a run never stopped.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import tiny
import torch
from module_runs import Trained, train_run

pytest.importorskip("peft")

from qarac_gui.core.events import RunStarted  # noqa: E402
from qarac_gui.core.model.adapters import SHARED, apply_adapters, lora_layers  # noqa: E402
from qarac_gui.core.model.multitask import MultiTaskModel, apply_freezing  # noqa: E402
from qarac_gui.core.project.config import Project, parse_project, validate  # noqa: E402
from qarac_gui.core.project.convert import ConfigError  # noqa: E402

KINDS = ["classification", "token_classification"]
TASKS = [k.replace("_", "-") for k in KINDS]          # tiny.project_dict's task names
AUTO = {"classification": "AutoModelForSequenceClassification",
        "token_classification": "AutoModelForTokenClassification"}
STEPS, STOP_AT = 6, 3
ATOL = RTOL = 1e-5


def _raw(model: Path, data: Path, scope: str, **lora) -> dict:
    raw = tiny.project_dict(model, data, KINDS, train={"max_steps": STEPS, "log_every": 1, "num_threads": 1})
    raw["backbones"]["encoder"] |= {"adapter": "lora", "adapter_scope": scope, "lora_rank": 4, **lora}
    return raw


def _train(tmp_path_factory, project: Project, run_dir: Path, stop_at: int | None = None,
           resume: bool = False) -> Trained:
    return train_run(tmp_path_factory, project, run_dir, stop_at, resume)


def _build(project: Project, labels: dict[str, list[str]]) -> tuple[MultiTaskModel, Any]:
    """The model as the run's setup builds it: backbones, heads, freezing, adapters."""
    from qarac_gui.core.model.backbone import load_backbone
    loaded = load_backbone(project.backbones["encoder"], project.root)
    torch.manual_seed(0)
    model = MultiTaskModel(project, {"encoder": loaded.model}, {n: len(v) for n, v in labels.items()})
    apply_freezing(project, model)
    apply_adapters(project, model)
    return model, loaded.tokenizer


def _labels(trained: Trained) -> dict[str, list[str]]:
    return {n: info["labels"] for n, info in _started(trained).tasks.items()}


def _started(trained: Trained) -> RunStarted:
    return next(e for e in trained.events if isinstance(e, RunStarted))


def _in_app(trained: Trained) -> tuple[MultiTaskModel, Any]:
    """The trained model as the app holds it: built as the run builds it, with the final checkpoint's tensors."""
    from safetensors.torch import load_model

    from qarac_gui.core.training.checkpoint import latest_checkpoint
    model, tokenizer = _build(trained.project, _labels(trained))
    path, _ = latest_checkpoint(trained.run_dir / "checkpoints")
    load_model(model, str(path / "model.safetensors"))
    return model.eval(), tokenizer


def _inputs(kind: str, tokenizer: Any) -> dict[str, torch.Tensor]:
    rows = tiny._rows(kind, 6, random.Random(99))
    if kind == "token_classification":
        return dict(tokenizer([r["tokens"] for r in rows], is_split_into_words=True, padding=True,
                              return_tensors="pt"))
    return dict(tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt"))


def _app_logits(model: MultiTaskModel, kind: str, inputs: dict) -> torch.Tensor:
    batch = dict(inputs)
    ids = batch["input_ids"]
    batch["labels"] = torch.zeros(len(ids), dtype=torch.long) if kind == "classification" else torch.zeros_like(ids)
    with torch.no_grad():
        return model(kind.replace("_", "-"), batch).logits


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny.make_model_folder(tmp_path_factory.mktemp("lora-model") / "bert", "bert")


@pytest.fixture(scope="module", params=["shared", "per_task"])
def lora_run(request, tmp_path_factory, tiny_model) -> Trained:
    base = tmp_path_factory.mktemp(f"lora-{request.param}")
    project = parse_project(_raw(tiny_model, base / "data", request.param), base)
    trained = _train(tmp_path_factory, project, base / "run")
    assert trained.ended.reason == "completed", trained.ended.message
    return trained


# --------------------------------------------------------------------------------------------- the project file


def test_old_projects_train_without_adapters_and_bad_values_are_named(tmp_path, tiny_model):
    raw = tiny.project_dict(tiny_model, tmp_path / "data", KINDS)
    project = parse_project(raw, tmp_path)
    assert project.backbones["encoder"].adapter == "none" and project.export.adapter == "merged"
    raw["backbones"]["encoder"] |= {"adapter": "qlora", "adapter_scope": "each", "lora_rank": 0,
                                    "lora_dropout": 1.0, "lora_targets": [" "]}
    raw["export"] = {"adapter": "both"}
    with pytest.raises(ConfigError) as e:
        parse_project(raw, tmp_path)
    for key in ("backbones.encoder.adapter:", "backbones.encoder.adapter_scope:", "backbones.encoder.lora_rank:",
                "backbones.encoder.lora_dropout:", "backbones.encoder.lora_targets:", "export.adapter:"):
        assert key in str(e.value)


def test_targets_the_model_lacks_are_a_clear_error(tmp_path, tiny_model):
    from qarac_gui.core.errors import UserError
    project = parse_project(_raw(tiny_model, tmp_path / "data", "shared", lora_targets=["q_proj"]), tmp_path)
    with pytest.raises(UserError, match=r"backbones\.encoder\.lora_targets: .*e\.g\. .*query"):
        _build(project, {"classification": ["neg", "pos"], "token-classification": ["B-LOC", "B-PER", "O"]})


# --------------------------------------------------------------------------------------- the model and optimiser


@pytest.mark.parametrize("scope", ["shared", "per_task"])
def test_optimiser_holds_only_adapters_and_heads(tmp_path, tiny_model, scope):
    from qarac_gui.core.training.setup import make_optimizer
    project = parse_project(_raw(tiny_model, tmp_path / "data", scope), tmp_path)
    model, _ = _build(project, {"classification": ["neg", "pos"], "token-classification": ["B-LOC", "B-PER", "O"]})
    encoder = model.backbones["encoder"]
    layers = lora_layers(encoder)
    assert {n.rsplit(".", 1)[1] for n in layers} == {"query", "value"}      # peft's default for BERT
    names = set(layers["encoder.layer.0.attention.self.query"].lora_A)
    assert names == ({SHARED} if scope == "shared" else set(TASKS))
    adapters = {id(p) for n, p in encoder.named_parameters() if ".lora_" in n}
    heads = {id(p) for p in model.heads.parameters()}
    optimiser = make_optimizer(project, model, torch.device("cpu"))
    held = {id(p) for g in optimiser.param_groups for p in g["params"]}
    assert held == adapters | heads
    base = [n for n, p in encoder.named_parameters() if ".lora_" not in n]
    assert base and not any(p.requires_grad for n, p in encoder.named_parameters() if n in base)
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in optimiser.param_groups for p in g["params"]) < total / 5


def test_frozen_layers_keep_their_adapters_frozen(tmp_path, tiny_model):
    from qarac_gui.core.training.setup import make_optimizer
    raw = _raw(tiny_model, tmp_path / "data", "shared")
    raw["backbones"]["encoder"]["freeze_layers"] = 1
    project = parse_project(raw, tmp_path)
    model, _ = _build(project, {"classification": ["neg", "pos"], "token-classification": ["B-LOC", "B-PER", "O"]})
    optimiser = make_optimizer(project, model, torch.device("cpu"))
    held = {id(p) for g in optimiser.param_groups for p in g["params"]}
    adapters = {n: id(p) for n, p in model.backbones["encoder"].named_parameters() if ".lora_" in n}
    assert {n for n, i in adapters.items() if i in held} == {n for n in adapters if ".layer.1." in n}


def test_each_task_trains_its_own_adapter(tmp_path, tiny_model):
    project = parse_project(_raw(tiny_model, tmp_path / "data", "per_task"), tmp_path)
    model, tokenizer = _build(project, {"classification": ["neg", "pos"],
                                        "token-classification": ["B-LOC", "B-PER", "O"]})
    query = model.backbones["encoder"].get_submodule("encoder.layer.1.attention.self.query")
    for kind, task in zip(KINDS, TASKS):
        other = next(t for t in TASKS if t != task)
        model.zero_grad(set_to_none=True)
        batch = _inputs(kind, tokenizer)
        batch["labels"] = (torch.zeros(len(batch["input_ids"]), dtype=torch.long) if kind == "classification"
                           else torch.zeros_like(batch["input_ids"]))
        model(task, batch).loss.backward()
        assert query.active_adapters == [task]
        assert query.lora_A[task].weight.grad is not None and query.lora_A[other].weight.grad is None
        # The waiting adapter keeps its place in the optimiser: switching does not freeze it.
        assert query.lora_A[other].weight.requires_grad


# ----------------------------------------------------------------------------------------------- a real run


def test_run_trains_the_adapters_and_leaves_the_base_weights(lora_run, tiny_model):
    from safetensors.torch import load_file
    started = _started(lora_run)
    assert started.trainable_params < started.encoder_params / 5
    model, _ = _in_app(lora_run)
    encoder = model.backbones["encoder"]
    base = load_file(tiny_model / "model.safetensors")
    for name, layer in lora_layers(encoder).items():
        for adapter in layer.lora_B:
            assert layer.lora_B[adapter].weight.abs().sum() > 0, f"{name}: adapter {adapter} never trained"
        assert torch.equal(layer.get_base_layer().weight, base[f"{name}.weight"])
    assert torch.equal(encoder.embeddings.word_embeddings.weight, base["embeddings.word_embeddings.weight"])


@pytest.mark.parametrize("kind", KINDS)
def test_merged_export_gives_the_apps_logits(lora_run, kind):
    import transformers
    model, tokenizer = _in_app(lora_run)
    folder = lora_run.run_dir / "export" / kind.replace("_", "-")
    assert not (folder / "adapter_config.json").exists()
    hf = getattr(transformers, AUTO[kind]).from_pretrained(folder).eval()
    assert not any("lora" in k for k in hf.state_dict())
    inputs = _inputs(kind, tokenizer)
    with torch.no_grad():
        _close(hf(**inputs).logits, _app_logits(model, kind, inputs))
    assert "merged into these weights" in (folder / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")   # inside peft
def test_adapter_alone_loads_with_peft_and_gives_the_apps_logits(lora_run, tiny_model, kind, tmp_path):
    import transformers
    from peft import PeftModel

    from qarac_gui.core.results.export import export_task
    model, tokenizer = _in_app(lora_run)
    project = copy.deepcopy(lora_run.project)
    project.export.adapter = "separate"
    task = project.task(kind.replace("_", "-"))
    labels = _labels(lora_run)[task.name]
    folder = export_task(tmp_path / task.name, project, task, model, tokenizer, str(tiny_model), labels, {})
    assert (folder / "adapter_config.json").is_file() and not (folder / "config.json").exists()
    base = getattr(transformers, AUTO[kind]).from_pretrained(tiny_model, num_labels=len(labels))
    loaded = PeftModel.from_pretrained(base, folder).eval()
    inputs = _inputs(kind, tokenizer)
    with torch.no_grad():
        _close(loaded(**inputs).logits, _app_logits(model, kind, inputs))
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "PeftModel.from_pretrained" in card and "written alone" in card


def test_full_export_reloads_with_its_adapters(lora_run):
    from qarac_gui.core.results.export import load_full_model
    model, tokenizer = _in_app(lora_run)
    _, full, _, _ = load_full_model(lora_run.run_dir / "export" / "full")
    assert lora_layers(full.backbones["encoder"])
    for kind in KINDS:
        inputs = _inputs(kind, tokenizer)
        torch.testing.assert_close(_app_logits(full, kind, inputs), _app_logits(model, kind, inputs), atol=0, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["shared", "per_task"])
def test_resume_ends_bit_identical_to_a_run_never_stopped(tmp_path_factory, tiny_model, scope):
    from safetensors.torch import load_file

    from qarac_gui.core.training.checkpoint import latest_checkpoint
    base = tmp_path_factory.mktemp(f"lora-resume-{scope}")
    project = parse_project(_raw(tiny_model, base / "data", scope), base)
    straight = _train(tmp_path_factory, project, base / "straight")
    first = _train(tmp_path_factory, project, base / "resumed", stop_at=STOP_AT)
    assert first.ended.reason == "stopped" and first.ended.step == STOP_AT
    second = _train(tmp_path_factory, project, base / "resumed", resume=True)
    assert straight.ended.reason == second.ended.reason == "completed"
    assert _started(second).start_step == STOP_AT
    a = load_file(latest_checkpoint(straight.run_dir / "checkpoints")[0] / "model.safetensors")
    b = load_file(latest_checkpoint(second.run_dir / "checkpoints")[0] / "model.safetensors")
    assert a.keys() == b.keys() and any(".lora_" in k for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_validation_names_a_missing_peft(monkeypatch, tmp_path, tiny_model):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    project = parse_project(_raw(tiny_model, tmp_path / "data", "shared"), tmp_path, check=False)
    assert any("pip install peft" in p for p in validate(project))
