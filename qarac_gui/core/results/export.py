"""Export: a folder per task that plain `transformers` loads, plus the whole multi-head model for the app."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import torch

import qarac_gui
from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.base import pooling_of
from qarac_gui.core.model.adapters import ADAPTERS_FILE, adapter_of, adapter_state, plain_copy, uses_lora
from qarac_gui.core.model.heads import split_mlm_model
from qarac_gui.core.project.config import Project, TaskConfig, dumps_project

# Where each architecture's own head classes keep their layers ("{base}" is the base-model attribute), by the
# kinds' layout: sequence, token and qa heads; an lm head is the architecture's own and goes back as it came.
SEQ_CLS_LAYOUT = {
    "bert": ("{base}.pooler.dense", "classifier"),
    "roberta": ("classifier.dense", "classifier.out_proj"),
    "xlm-roberta": ("classifier.dense", "classifier.out_proj"),
    "camembert": ("classifier.dense", "classifier.out_proj"),
    "mpnet": ("classifier.dense", "classifier.out_proj"),
    "electra": ("classifier.dense", "classifier.out_proj"),
    "distilbert": ("pre_classifier", "classifier"),
}
TOKEN_LAYOUT = {t: "classifier" for t in SEQ_CLS_LAYOUT}
QA_LAYOUT = {t: "qa_outputs" for t in SEQ_CLS_LAYOUT}
LAYOUTS = {"sequence": SEQ_CLS_LAYOUT, "token": TOKEN_LAYOUT, "qa": QA_LAYOUT}
# peft's task type of each layout whose adapter can be written alone (the rest are written merged)
PEFT_TASK_TYPES = {"sequence": "SEQ_CLS", "token": "TOKEN_CLS", "qa": "QUESTION_ANS"}
FULL_FORMAT = "qarac_gui.multitask/1"
# The Hub's pipeline tag of each transformers class an export is written as (the widget and the search filter).
PIPELINE_TAGS = {"AutoModelForSequenceClassification": "text-classification",
                 "AutoModelForTokenClassification": "token-classification",
                 "AutoModelForQuestionAnswering": "question-answering", "AutoModelForMaskedLM": "fill-mask"}
SENTENCE_TAGS = ["sentence-transformers", "feature-extraction"]     # as the Hub tags sentence-transformers models
APP_TAGS = ["qarac-gui", "multi-task"]


class ExportError(UserError):
    pass


def export_problem(task: TaskConfig, model_type: str, hidden_size: int) -> str:
    """Why this head cannot be written as the architecture's own transformers class ("" when it can)."""
    kind = kind_of(task.head)
    if kind.layout in LAYOUTS and model_type not in LAYOUTS[kind.layout]:
        return f"exporting {kind.name} heads for {model_type} models is not supported yet"
    return kind.export_problem(task.head, model_type, hidden_size)


def _linear_layers(head: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in head.modules() if isinstance(m, torch.nn.Linear)]


def _head_names(kind: Any, model_type: str, base: str) -> tuple[str, ...]:
    """Where the architecture's own head class keeps the layers of a head of this kind."""
    names = LAYOUTS[kind.layout][model_type]
    return (names,) if isinstance(names, str) else tuple(n.format(base=base) for n in names)


def plain_backbone(project: Project, model: Any, backbone: str, task: str) -> Any:
    """The backbone as its own transformers class: with its LoRA adapter of the task merged in, when it has one."""
    encoder = model.backbones[backbone]
    return plain_copy(encoder, adapter_of(project, task, backbone)) if uses_lora(project, backbone) else encoder


def _native_model(task: TaskConfig, encoder: Any, head: torch.nn.Module, labels: list[str]) -> Any:
    import transformers
    kind = kind_of(task.head)
    config = type(encoder.config).from_dict(encoder.config.to_dict())
    config.architectures = None
    if labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    else:
        config.num_labels = kind.outputs(config.num_labels)
    if kind.problem_type:
        config.problem_type = kind.problem_type
    target = getattr(transformers, kind.auto_class).from_config(config)
    base = target.base_model_prefix
    wanted = set(target.state_dict())
    # The encoder's unused pooler goes only where the target class has one.
    state = {f"{base}.{k}": v for k, v in encoder.state_dict().items()
             if f"{base}.{k}" in wanted or not k.startswith("pooler.")}
    model_type = config.model_type
    if kind.layout == "lm":
        lm_name = next(n for n, m in target.named_children() if m is split_mlm_model(target))
        state.update({f"{lm_name}.{k}": v for k, v in head.lm_head.state_dict().items()})
    else:
        names = _head_names(kind, model_type, base)
        for name, layer in zip(names, _linear_layers(head), strict=True):
            state[f"{name}.weight"], state[f"{name}.bias"] = layer.weight, layer.bias
    result = target.load_state_dict(state, strict=False)
    missing = list(result.missing_keys)
    if missing or result.unexpected_keys:
        raise ExportError(f"task {task.name}: the export left weights unset ({missing[:4]}) or unused "
                          f"({result.unexpected_keys[:4]}); this architecture's layout is not supported")
    return target.eval()


def _write_similarity(folder: Path, task: TaskConfig, encoder: Any, head: Any) -> None:
    """The encoder plus sentence-transformers module configs (pooling, and the dense layer if any)."""
    encoder.save_pretrained(folder)
    hidden = encoder.config.hidden_size
    pooling = pooling_of(task.head)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    if isinstance(head.dense, torch.nn.Linear):
        from safetensors.torch import save_file
        dense = folder / "2_Dense"
        dense.mkdir()
        (dense / "config.json").write_text(json.dumps({
            "in_features": hidden, "out_features": head.dense.out_features, "bias": True,
            "activation_function": "torch.nn.modules.linear.Identity"}, indent=2))
        save_file({"linear.weight": head.dense.weight.detach().contiguous().cpu(),
                   "linear.bias": head.dense.bias.detach().contiguous().cpu()}, str(dense / "model.safetensors"))
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": task.max_length,
                                                                  "do_lower_case": False}, indent=2))


def base_model_name(project: Project, backbone: str) -> tuple[str, bool]:
    """How a model card names a backbone's base model, and whether that name is a Hub id: the Hub id, the model
    package's name, or a local folder's own name (a path of this machine means nothing to whoever reads the card)."""
    spec = project.backbones[backbone].model.strip()
    if spec.startswith("package:"):
        return spec.removeprefix("package:").strip(), False
    local = project.resolve(spec)
    if spec.startswith((".", "/", "~", "\\")) or Path(spec).is_absolute() or spec.count("/") > 1 or local.exists():
        return Path(os.path.normpath(local)).name or spec, False
    return spec, True


def described_base(project: Project, backbone: str) -> str:
    """The base model in words, for the card's text."""
    name, hub = base_model_name(project, backbone)
    spec, revision = project.backbones[backbone].model.strip(), project.backbones[backbone].revision
    if hub:
        return f"the Hub model `{name}`" + (f" (revision `{revision}`)" if revision else "")
    if spec.startswith("package:"):
        return f"the model of the installed package `{name}`"
    return f"the local model folder `{name}`"


def hub_datasets(tasks: list[TaskConfig]) -> list[str]:
    """The Hub dataset ids the tasks' rows came from (local files have none)."""
    ids = []
    for task in tasks:
        ids += [task.data.hub] if task.data.hub else []
        ids += [source.hub for source in task.data.union if source.hub]
    return list(dict.fromkeys(ids))


def card_header(project: Project, backbone: str, tasks: list[TaskConfig], *, library: str, pipeline: str,
                tags: list[str]) -> str:
    """The metadata block the Hub reads at the top of a README.md (written by huggingface_hub, so it stays in the
    Hub's format). base_model is set only for a Hub id: the Hub links it, and refuses names it does not know."""
    from huggingface_hub import ModelCardData
    name, hub = base_model_name(project, backbone)
    metrics = list(dict.fromkeys(m for t in tasks for m in kind_of(t.head).reported(t.head)))
    data = ModelCardData(base_model=name if hub else None, library_name=library, pipeline_tag=pipeline,
                         tags=list(dict.fromkeys(tags + APP_TAGS)), datasets=hub_datasets(tasks) or None,
                         metrics=metrics or None)
    return f"---\n{data.to_yaml()}\n---\n\n"


def write_card(path: Path, text: str) -> None:
    """Write a model card through huggingface_hub, which checks that its metadata block parses."""
    from huggingface_hub import ModelCard
    ModelCard(text).save(path)


def _together(project: Project, task: TaskConfig) -> str:
    """Which of the project's other tasks trained the same encoder, and how many trained others."""
    sharing = [t.name for t in project.tasks
               if t.name != task.name and task.main_backbone in kind_of(t.head).backbones(t)]
    elsewhere = len(project.tasks) - 1 - len(sharing)
    if not sharing and not elsewhere:
        return "It was the project's only task."
    text = (f"Its encoder was trained together with {_count(len(sharing), 'other task')} of the project "
            f"({', '.join(f'`{n}`' for n in sharing)})" if sharing else "No other task trained its encoder")
    if elsewhere:
        text += f"; {_count(elsewhere, 'more task')} trained other backbones"
    return text + "."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _lora_line(project: Project, task: TaskConfig, alone: bool) -> list[str]:
    b = project.backbones[task.main_backbone]
    if b.adapter != "lora":
        return []
    how = "written alone in peft's format" if alone else "merged into these weights"
    own = "its own adapter" if b.adapter_scope == "per_task" else "one adapter shared by the tasks"
    return [f"- LoRA (peft): rank {b.lora_rank}, alpha {b.lora_alpha:g}, dropout {b.lora_dropout:g}, {own}; the "
            f"base model's weights were not trained; the adapter is {how}"]


def _adapter_usage(task: TaskConfig, labels: list[str], base: str) -> list[str]:
    kind = kind_of(task.head)
    size = f", num_labels={len(labels)}" if labels else ""
    return ["", "## Loading", "", "The adapter goes onto its base model with peft; the head's layers are saved whole "
            "beside it.", "", "```python", "from peft import PeftModel",
            f"from transformers import {kind.auto_class}, AutoTokenizer", "",
            f"base = {kind.auto_class}.from_pretrained({base!r}{size})",
            "model = PeftModel.from_pretrained(base, FOLDER)      # this folder",
            "tokenizer = AutoTokenizer.from_pretrained(FOLDER)", "```",
            "", "`model.merge_and_unload()` gives a plain transformers model with the adapter merged in."]


def _model_card(project: Project, task: TaskConfig, labels: list[str], metrics: dict, alone_on: str = "") -> str:
    o, d = project.optim, task.data
    kind = kind_of(task.head)
    data = d.hub + (f" ({d.hub_config})" if d.hub_config else "") if d.hub else Path(d.train).name
    if kind.export_as == "sentence_transformers":
        header = card_header(project, task.main_backbone, [task], library="sentence-transformers",
                             pipeline="sentence-similarity", tags=SENTENCE_TAGS + [kind.name])
    else:
        header = card_header(project, task.main_backbone, [task], library="transformers",
                             pipeline=PIPELINE_TAGS[kind.auto_class], tags=[kind.name.replace("_", "-")])
    lines = [f"# {project.name}: {task.name}", "",
             f"Fine-tuned with qarac_gui {qarac_gui.__version__} from {described_base(project, task.main_backbone)} "
             f"as a **{task.head.kind}** task.", _together(project, task), "",
             "## Training", "", f"- data: {data}, text column `{d.text}`"
             + (f", pair column `{d.text_pair}`" if d.text_pair else "") + f", target column `{d.label}`",
             f"- optimiser: {'NAdam' if o.optimizer == 'nadam' else 'AdamW'}, lr {o.lr:g}, scheduler {o.scheduler}, "
             f"weight decay {o.weight_decay:g}",
             f"- mixing: {project.train.mixing}; batch size {task.batch_size}; max length {task.max_length}",
             f"- loss weight {task.weight:g}"] + _lora_line(project, task, bool(alone_on))
    if labels:
        lines.append(f"- labels: {', '.join(labels)}")
    lines += ["", "## Validation metrics", ""]
    lines += [f"- {k}: {v:.4f}" for k, v in sorted(metrics.items())] or ["- (no validation data)"]
    if alone_on:
        lines += _adapter_usage(task, labels, alone_on)
    lines += ["", "The project file that produced this model is `project.toml` in this folder."]
    return header + "\n".join(lines) + "\n"


def share_modes(folder: Path) -> None:
    """Give every file and folder under `folder` the mode a new one gets here (what the umask allows).

    safetensors and atomic temporary files are created private (0600); an export is made to be copied, shared and
    served like any other file, so one file readable only by its owner in a folder of readable ones is a trap."""
    file_mode, dir_mode = _plain_modes(folder)
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            os.chmod(path, dir_mode)
        elif path.is_file():
            os.chmod(path, dir_mode if path.stat().st_mode & 0o111 else file_mode)


def _plain_modes(folder: Path) -> tuple[int, int]:
    """(file, folder) modes that new ones get in `folder`: made and read back, since asking the process for its
    umask means changing it for every thread for a moment, and a default ACL of the folder counts too."""
    probe = folder / f".mode-probe-{os.getpid()}-{threading.get_ident()}"
    os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        file_mode = stat.S_IMODE(probe.stat().st_mode)
    finally:
        probe.unlink()
    probe.mkdir(0o777)
    try:
        dir_mode = stat.S_IMODE(probe.stat().st_mode)
    finally:
        probe.rmdir()
    return file_mode, dir_mode


def export_task(folder: Path, project: Project, task: TaskConfig, model: Any, tokenizer: Any, source: str,
                labels: list[str], metrics: dict) -> Path:
    """The task's folder. The card names the base model as the project gives it, not `source` (the folder the
    model was loaded from, which may be a path of this machine only)."""
    encoder = model.backbones[task.main_backbone]
    head = model.heads[task.name]
    problem = export_problem(task, encoder.config.model_type, encoder.config.hidden_size)
    if problem:
        raise ExportError(f"task {task.name}: {problem}")
    folder.mkdir(parents=True)
    kind = kind_of(task.head)
    # An adapter alone in peft's format needs a peft task type; the other kinds are written merged.
    alone = (uses_lora(project, task.main_backbone) and project.export.adapter == "separate"
             and kind.export_as == "native" and kind.layout in PEFT_TASK_TYPES)
    base = _adapter_base(project, task.main_backbone, source) if alone else ""
    if kind.export_as == "sentence_transformers":
        _write_similarity(folder, task, plain_backbone(project, model, task.main_backbone, task.name), head)
    elif alone:
        _write_adapter(folder, project, task, model, labels, base)
    else:
        _native_model(task, plain_backbone(project, model, task.main_backbone, task.name), head,
                      labels).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_card(folder / "README.md", _model_card(project, task, labels, metrics, base))
    (folder / "project.toml").write_text(dumps_project(project), encoding="utf-8")
    share_modes(folder)
    return folder


def _adapter_base(project: Project, backbone: str, source: str) -> str:
    """The base model an adapter alone goes onto: the backbone of train.init_from when the run started from one,
    else the model the run loaded (a Hub id, or a folder of this machine)."""
    if project.train.init_from:
        return str(project.resolve(project.train.init_from) / "backbones" / backbone)
    return source


def _write_adapter(folder: Path, project: Project, task: TaskConfig, model: Any, labels: list[str],
                   base_model: str) -> None:
    """The task's LoRA adapter and its head, in peft's format (PeftModel.from_pretrained on the base model)."""
    from qarac_gui.core.model.adapters import standalone_adapter
    encoder = model.backbones[task.main_backbone]
    kind = kind_of(task.head)
    native = _native_model(task, plain_copy(encoder, None), model.heads[task.name], labels)
    names = list(_head_names(kind, encoder.config.model_type, native.base_model_prefix))
    wrapped = standalone_adapter(native, encoder, adapter_of(project, task.name, task.main_backbone),
                                 project.backbones[task.main_backbone], PEFT_TASK_TYPES[kind.layout], names,
                                 base_model)
    wrapped.save_pretrained(folder)


def export_full(folder: Path, project: Project, model: Any, tokenizers: dict[str, Any],
                labels: dict[str, list[str]], step: int) -> Path:
    """Every backbone and head, to reload in the app and keep training or predicting."""
    from safetensors.torch import save_file, save_model
    folder.mkdir(parents=True)
    for name, encoder in model.backbones.items():
        # A backbone with adapters is written with its base weights, its adapters beside the heads.
        plain = plain_copy(encoder, None) if uses_lora(project, name) else encoder
        plain.save_pretrained(folder / "backbones" / name)
        tokenizers[name].save_pretrained(folder / "backbones" / name)
    adapters = adapter_state(model)
    if adapters:
        save_file(adapters, str(folder / ADAPTERS_FILE))
    save_model(model.heads, str(folder / "heads.safetensors"))
    if len(model.poolers):
        save_model(model.poolers, str(folder / "poolers.safetensors"))
    (folder / "project.toml").write_text(dumps_project(project), encoding="utf-8")
    manifest = {"format": FULL_FORMAT, "app_version": qarac_gui.__version__, "step": step,
                "tasks": {t.name: {"kind": t.head.kind, "backbone": t.main_backbone, "labels": labels.get(t.name, [])}
                          for t in project.tasks}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    share_modes(folder)
    return folder


def load_full_model(folder: Path) -> tuple[Project, Any, dict[str, Any], dict[str, list[str]]]:
    """(project, model, tokenizers, labels) from a folder written by export_full."""
    from safetensors.torch import load_model
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from qarac_gui.core.model.multitask import MultiTaskModel
    from qarac_gui.core.project.config import load_project
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ExportError(f"{folder} is not a multi-task model folder (no readable manifest.json)") from None
    if manifest.get("format") != FULL_FORMAT:
        raise ExportError(f"{folder}: unknown model format {manifest.get('format')!r}")
    project = load_project(folder / "project.toml")
    backbones, tokenizers = {}, {}
    for name, cfg in project.backbones.items():
        path = folder / "backbones" / name
        model_class = AutoModelForCausalLM if cfg.role == "decoder" else AutoModel
        backbones[name] = model_class.from_pretrained(path, use_safetensors=True)
        tokenizers[name] = AutoTokenizer.from_pretrained(path)
    labels = {name: info["labels"] for name, info in manifest["tasks"].items()}
    model = MultiTaskModel(project, backbones, {n: len(v) for n, v in labels.items()})
    if any(cfg.adapter == "lora" for cfg in project.backbones.values()):
        from safetensors.torch import load_file

        from qarac_gui.core.model.adapters import apply_adapters, load_adapter_state
        apply_adapters(project, model, init_from=False)
        load_adapter_state(model, load_file(folder / ADAPTERS_FILE), str(folder / ADAPTERS_FILE))
    load_model(model.heads, str(folder / "heads.safetensors"))
    if len(model.poolers):
        load_model(model.poolers, str(folder / "poolers.safetensors"))
    return project, model.eval(), tokenizers, labels


def check_destination(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ExportError(f"{folder} is not an empty folder; choose an empty or new folder so nothing is "
                          "overwritten")

