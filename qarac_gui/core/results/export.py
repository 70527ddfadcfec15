"""Export: a folder per task that plain `transformers` loads, plus the whole multi-head model for the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import qarac_gui
from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.base import pooling_of
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
FULL_FORMAT = "qarac_gui.multitask/1"


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
        names = LAYOUTS[kind.layout][model_type]
        names = (names,) if isinstance(names, str) else tuple(n.format(base=base) for n in names)
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


def _model_card(project: Project, task: TaskConfig, source: str, labels: list[str], metrics: dict) -> str:
    o, d = project.optim, task.data
    data = d.hub + (f" ({d.hub_config})" if d.hub_config else "") if d.hub else Path(d.train).name
    lines = [f"# {project.name}: {task.name}", "",
             f"Fine-tuned with qarac_gui {qarac_gui.__version__} from `{source}` as a **{task.head.kind}** task,",
             f"trained together with {len(project.tasks) - 1} other task(s) on one shared encoder.", "",
             "## Training", "", f"- data: {data}, text column `{d.text}`"
             + (f", pair column `{d.text_pair}`" if d.text_pair else "") + f", target column `{d.label}`",
             f"- optimiser: {'NAdam' if o.optimizer == 'nadam' else 'AdamW'}, lr {o.lr:g}, scheduler {o.scheduler}, "
             f"weight decay {o.weight_decay:g}",
             f"- mixing: {project.train.mixing}; batch size {task.batch_size}; max length {task.max_length}",
             f"- loss weight {task.weight:g}"]
    if labels:
        lines.append(f"- labels: {', '.join(labels)}")
    lines += ["", "## Validation metrics", ""]
    lines += [f"- {k}: {v:.4f}" for k, v in sorted(metrics.items())] or ["- (no validation data)"]
    lines += ["", "The project file that produced this model is `project.toml` in this folder."]
    return "\n".join(lines) + "\n"


def export_task(folder: Path, project: Project, task: TaskConfig, model: Any, tokenizer: Any, source: str,
                labels: list[str], metrics: dict) -> Path:
    encoder = model.backbones[task.main_backbone]
    head = model.heads[task.name]
    problem = export_problem(task, encoder.config.model_type, encoder.config.hidden_size)
    if problem:
        raise ExportError(f"task {task.name}: {problem}")
    folder.mkdir(parents=True)
    if kind_of(task.head).export_as == "sentence_transformers":
        _write_similarity(folder, task, encoder, head)
    else:
        _native_model(task, encoder, head, labels).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(_model_card(project, task, source, labels, metrics), encoding="utf-8")
    (folder / "project.toml").write_text(dumps_project(project), encoding="utf-8")
    return folder


def export_full(folder: Path, project: Project, model: Any, tokenizers: dict[str, Any],
                labels: dict[str, list[str]], step: int) -> Path:
    """Every backbone and head, to reload in the app and keep training or predicting."""
    from safetensors.torch import save_model
    folder.mkdir(parents=True)
    for name, encoder in model.backbones.items():
        encoder.save_pretrained(folder / "backbones" / name)
        tokenizers[name].save_pretrained(folder / "backbones" / name)
    save_model(model.heads, str(folder / "heads.safetensors"))
    if len(model.poolers):
        save_model(model.poolers, str(folder / "poolers.safetensors"))
    (folder / "project.toml").write_text(dumps_project(project), encoding="utf-8")
    manifest = {"format": FULL_FORMAT, "app_version": qarac_gui.__version__, "step": step,
                "tasks": {t.name: {"kind": t.head.kind, "backbone": t.main_backbone, "labels": labels.get(t.name, [])}
                          for t in project.tasks}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
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
    load_model(model.heads, str(folder / "heads.safetensors"))
    if len(model.poolers):
        load_model(model.poolers, str(folder / "poolers.safetensors"))
    return project, model.eval(), tokenizers, labels


def check_destination(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ExportError(f"{folder} is not an empty folder; choose an empty or new folder so nothing is "
                          "overwritten")

