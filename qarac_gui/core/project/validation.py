"""Checking a project's meaning: every problem of a structurally valid project, each naming its key."""

from __future__ import annotations

import importlib.util
import os

from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.kinds.inputs import task_inputs
from qarac_gui.core.project.config import (
    ACTIVATIONS,
    ADAPTER_EXPORTS,
    ADAPTER_SCOPES,
    ADAPTERS,
    AGGREGATORS,
    BACKBONE_POOLINGS,
    BACKBONE_ROLES,
    BALANCINGS,
    DEVICES,
    FORMATS,
    MIXING,
    NAME_PATTERN,
    OPTIMIZERS,
    POOLINGS,
    PRECISIONS,
    RESERVED_NAMES,
    SCHEDULERS,
    BackboneConfig,
    Project,
    TaskConfig,
)
from qarac_gui.core.project.convert import shown
from qarac_gui.core.project.keep import keep_problems
from qarac_gui.core.project.trackers import tracker_problems


def _check_choice(problems: list[str], where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        problems.append(f"{where}: {value!r} is not one of {', '.join(choices)}")


def _union_problems(w: str, t: TaskConfig) -> list[str]:
    from qarac_gui.core.project.filters import FilterError, compile_filter
    d, problems = t.data, []
    if d.train or d.hub:
        problems.append(f"{w}.data.union: the union is the training data; remove train and hub, or the union")
    if d.validation or d.validation_split:
        problems.append(f"{w}.data.union: a union holds out its validation rows with validation_fraction; remove "
                        "validation and validation_split")
    kind = HEAD_KINDS.get(t.head.kind)
    try:
        others = [c for c in kind.columns(t) if c != d.text] if kind else []
    except ValueError:
        others = []                 # the inputs' own check names what is wrong with them
    if others:
        problems.append(f"{w}.data.union: a union makes one column of texts, {d.text!r}, and a {t.head.kind} task "
                        f"also reads {', '.join(map(repr, others))}; use a union for a task that reads texts alone, "
                        "such as masked_lm, or give the task one file or Hub dataset")
    for i, source in enumerate(d.union):
        where = f"{w}.data.union[{i}]"
        if bool(source.train) == bool(source.hub):
            problems.append(f"{where}: give either train (a local file) or hub (a Hub dataset id)")
        if not source.columns:
            problems.append(f"{where}.columns: name the text columns to take, e.g. columns = [\"premise\"]")
        _check_choice(problems, f"{where}.format", source.format, FORMATS)
        if source.filter:
            try:
                compile_filter(source.filter)
            except FilterError as e:
                problems.append(f"{where}.filter: {str(e).removeprefix('filter').lstrip(': ')}")
    return problems


def _adapter_problems(w: str, t: TaskConfig) -> list[str]:
    """A task's row filter (its grammar here; its columns when the data is read) and label map."""
    from qarac_gui.core.project.filters import FilterError, compile_filter
    d, problems = t.data, []
    if d.filter:
        try:
            compile_filter(d.filter)
        except FilterError as e:
            problems.append(f"{w}.data.filter: {str(e).removeprefix('filter').lstrip(': ')}")
    if d.label_map:
        if t.head.kind in HEAD_KINDS and not HEAD_KINDS[t.head.kind].maps_labels:
            problems.append(f"{w}.data.label_map: a {t.head.kind} task has no labels to map; remove label_map")
        texts = [isinstance(v, str) for v in d.label_map.values()]
        if any(texts) and not all(texts):
            problems.append(f"{w}.data.label_map: mixes numbers and text; map every key to a number, or every key "
                            "to a text, so that the label column holds one type")
        big = next((k for k, v in d.label_map.items() if isinstance(v, int) and not -2**63 <= v < 2**63), None)
        if big is not None:
            problems.append(f"{w}.data.label_map: the value of {big!r} is beyond the 64-bit integers a label column "
                            "holds; use a smaller number")
    return problems


def validate(p: Project) -> list[str]:
    """Every semantic problem of a structurally valid project, each naming its key."""
    from qarac_gui.core.project.limits import MAX_SEED
    problems: list[str] = []
    if not p.backbones:
        problems.append("backbones: define at least one, e.g. [backbones.encoder] model = \"bert-base-uncased\"")
    for name, bb in p.backbones.items():
        if not NAME_PATTERN.fullmatch(name):
            problems.append(f"backbones.{shown(name)}: use letters, digits, '-' and '_' only")
        if not bb.model.strip():
            problems.append(f"backbones.{shown(name)}.model: give a Hub id, a local folder or package:<module>")
        if bb.freeze_layers < 0:
            problems.append(f"backbones.{shown(name)}.freeze_layers: must be 0 or more")
        _check_choice(problems, f"backbones.{shown(name)}.role", bb.role, BACKBONE_ROLES)
        _check_choice(problems, f"backbones.{shown(name)}.pooling", bb.pooling, BACKBONE_POOLINGS)
        if bb.pooling_rank < 0:
            problems.append(f"backbones.{shown(name)}.pooling_rank: must be 0 (the hidden size) or more")
        problems += _lora_problems(f"backbones.{shown(name)}", bb)
    if not p.tasks:
        problems.append("tasks: add at least one [[tasks]] table")
    seen: set[str] = set()
    for i, t in enumerate(p.tasks):
        w = f"tasks[{i}]" if not t.name else f"tasks.{shown(t.name)}"
        if not NAME_PATTERN.fullmatch(t.name):
            problems.append(f"{w}.name: {t.name!r} must start with a letter or digit and use only letters, "
                            "digits, '-' and '_' (it becomes a folder name on export)")
        elif t.name.lower() in RESERVED_NAMES:
            problems.append(f"{w}.name: {t.name!r} is reserved (a device name on Windows, or an export folder of "
                            "the whole multi-task model or its backbones); choose another name")
        elif t.name.lower() in seen:
            problems.append(f"{w}.name: two tasks are named {t.name!r}; task names must be unique")
        seen.add(t.name.lower())
        if t.inputs:
            problems += _input_problems(w, t, p)
        elif t.backbone not in p.backbones:
            problems.append(f"{w}.backbone: no backbone named {t.backbone!r} (have: {', '.join(p.backbones)})")
        elif p.backbones[t.backbone].role != "encoder":
            problems.append(f"{w}.backbone: {t.backbone!r} is a decoder; a {t.head.kind} head reads an encoder")
        _check_choice(problems, f"{w}.head.kind", t.head.kind, tuple(HEAD_KINDS))
        if t.head.pooling is not None:
            _check_choice(problems, f"{w}.head.pooling", t.head.pooling, POOLINGS)
        _check_choice(problems, f"{w}.head.activation", t.head.activation, ACTIVATIONS)
        _check_choice(problems, f"{w}.data.format", t.data.format, FORMATS)
        if t.head.hidden_size < 0:
            problems.append(f"{w}.head.hidden_size: must be 0 (the encoder's width) or more")
        if not 0 <= t.head.dropout < 1:
            problems.append(f"{w}.head.dropout: must be in [0, 1)")
        if not 0 < t.head.mlm_probability < 1:
            problems.append(f"{w}.head.mlm_probability: must be between 0 and 1")
        if len(set(t.head.labels)) != len(t.head.labels):
            problems.append(f"{w}.head.labels: a label is listed twice")
        if t.data.union:
            problems += _union_problems(w, t)
        elif bool(t.data.train) == bool(t.data.hub):
            problems.append(f"{w}.data: give either train (a local file) or hub (a Hub dataset id)")
        if t.data.hub and t.data.validation:
            problems.append(f"{w}.data.validation: a Hub dataset takes its validation from validation_split")
        if t.data.limit < 0:
            problems.append(f"{w}.data.limit: must be 0 (all rows) or more")
        if not 0 <= t.data.validation_fraction < 1:
            problems.append(f"{w}.data.validation_fraction: must be in [0, 1)")
        problems += _adapter_problems(w, t)
        if not t.data.text:
            problems.append(f"{w}.data.text: name the text column")
        if t.head.kind in HEAD_KINDS:
            problems += HEAD_KINDS[t.head.kind].problems(w, t, p)
        for key in ("batch_size", "max_length"):
            if getattr(t, key) < 1:
                problems.append(f"{w}.{key}: must be at least 1")
        if t.max_length < 8:
            problems.append(f"{w}.max_length: must be at least 8 tokens")
        if t.weight < 0:
            problems.append(f"{w}.weight: must be 0 or more")
    o = p.optim
    _check_choice(problems, "optim.scheduler", o.scheduler, SCHEDULERS)
    _check_choice(problems, "optim.optimizer", o.optimizer, OPTIMIZERS)
    if o.lr <= 0:
        problems.append("optim.lr: must be above 0")
    if o.head_lr < 0:
        problems.append("optim.head_lr: must be 0 (same as lr) or above")
    if not 0 < o.layer_decay <= 1:
        problems.append("optim.layer_decay: must be in (0, 1]")
    if o.grad_accum < 1:
        problems.append("optim.grad_accum: must be at least 1")
    if o.warmup_steps < 0 or not 0 <= o.warmup_ratio < 1:
        problems.append("optim.warmup_steps / warmup_ratio: steps must be 0 or more and the ratio in [0, 1)")
    if not 0 < o.gamma <= 1:
        problems.append("optim.gamma: must be in (0, 1]")
    for key in ("beta1", "beta2"):
        if not 0 <= getattr(o, key) < 1:
            problems.append(f"optim.{key}: must be in [0, 1)")
    if o.eps <= 0:
        problems.append("optim.eps: must be above 0")
    tr = p.train
    _check_choice(problems, "train.mixing", tr.mixing, MIXING)
    _check_choice(problems, "train.precision", tr.precision, PRECISIONS)
    _check_choice(problems, "train.device", tr.device, DEVICES)
    if tr.max_steps < 0 or tr.epochs < 0 or (tr.max_steps == 0 and tr.epochs == 0):
        problems.append("train: set train.max_steps (optimiser steps) or train.epochs above 0")
    if tr.min_steps < 0:
        problems.append("train.min_steps: must be 0 (no minimum) or more")
    problems += tracker_problems(tr.report_to)
    if tr.epoch_task and tr.epoch_task not in {t.name for t in p.tasks}:
        problems.append(f"train.epoch_task: no task named {tr.epoch_task!r}")
    if not 0 <= tr.seed <= MAX_SEED:
        problems.append(f"train.seed: {tr.seed} is outside 0..{MAX_SEED}, the seeds numpy's and torch's random "
                        "generators take; choose a seed in that range")
    if tr.temperature <= 0:
        problems.append("train.temperature: must be above 0")
    problems += _balancing_problems(p)
    if tr.log_every < 1:
        problems.append("train.log_every: must be at least 1")
    if p.eval.metric and "/" not in p.eval.metric:
        problems.append("eval.metric: write it as TASK/METRIC, e.g. sentiment/accuracy")
    elif p.eval.metric and p.eval.metric.split("/")[0] not in {t.name for t in p.tasks}:
        problems.append(f"eval.metric: no task named {p.eval.metric.split('/')[0]!r}")
    if p.checkpoint.minutes < 0:
        problems.append("checkpoint.minutes: must be 0 (off) or more")
    if p.checkpoint.keep < 1:
        problems.append("checkpoint.keep: must be at least 1")
    for key, value in (("eval.every", p.eval.every), ("eval.patience", p.eval.patience),
                       ("checkpoint.every", p.checkpoint.every), ("train.num_threads", tr.num_threads),
                       ("train.skip_limit", tr.skip_limit), ("eval.task_patience", p.eval.task_patience)):
        if value < 0:
            problems.append(f"{key}: must be 0 (off) or more")
    if p.eval.task_patience > 0 and not p.eval.every:
        problems.append("eval.task_patience: tasks are judged at each evaluation, and eval.every = 0 evaluates only "
                        "at the end; set eval.every to a number of steps, or task_patience to 0")
    if p.eval.batch_size < 1:
        problems.append("eval.batch_size: must be at least 1")
    if not p.name.strip():
        problems.append("name: give the project a name")
    for name in p.export.tasks:
        if name not in {t.name for t in p.tasks}:
            problems.append(f"export.tasks: no task named {name!r}")
    _check_choice(problems, "export.adapter", p.export.adapter, ADAPTER_EXPORTS)
    problems += _bound_problems(p)
    problems += keep_problems(p)
    return problems


def _balancing_problems(p: Project) -> list[str]:
    tr, problems = p.train, []
    _check_choice(problems, "train.balancing", tr.balancing, BALANCINGS)
    if tr.balancing_lr <= 0:
        problems.append("train.balancing_lr: must be above 0")
    if tr.balancing not in AGGREGATORS:
        return problems
    if tr.mixing != "all_tasks":
        problems.append(f"train.balancing: {tr.balancing!r} combines the gradients of every task at each step, and "
                        f"{tr.mixing} mixing trains one task per step; set train.mixing = \"all_tasks\", or use "
                        "balancing \"weights\" or \"uncertainty\"")
    needed = ("torchjd", "qpsolvers", "quadprog") if tr.balancing == "upgrad" else ("torchjd",)
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        extra = "[quadprog-projector]" if tr.balancing == "upgrad" else ""
        problems.append(f"train.balancing: {tr.balancing!r} needs the torchjd library"
                        f"{' with its quadprog solver' if extra else ''} (missing: {', '.join(missing)}); "
                        f"pip install 'torchjd{extra}>=0.18'   (or: pip install 'qarac-gui[balancing]')")
    return problems


def _lora_problems(w: str, bb: BackboneConfig) -> list[str]:
    problems: list[str] = []
    _check_choice(problems, f"{w}.adapter", bb.adapter, ADAPTERS)
    _check_choice(problems, f"{w}.adapter_scope", bb.adapter_scope, ADAPTER_SCOPES)
    if bb.lora_rank < 1:
        problems.append(f"{w}.lora_rank: must be at least 1")
    if bb.lora_alpha <= 0:
        problems.append(f"{w}.lora_alpha: must be above 0")
    if not 0 <= bb.lora_dropout < 1:
        problems.append(f"{w}.lora_dropout: must be in [0, 1)")
    if any(not t.strip() for t in bb.lora_targets):
        problems.append(f"{w}.lora_targets: an empty layer name; name layers like \"query\", or leave the list empty")
    if bb.adapter == "lora" and importlib.util.find_spec("peft") is None:
        problems.append(f"{w}.adapter: \"lora\" needs the peft library: pip install peft   (or: pip install "
                        "'qarac-gui[peft]')")
    return problems


def _input_problems(w: str, t: TaskConfig, p: Project) -> list[str]:
    try:
        inputs = task_inputs(t)
    except ValueError as e:
        return [f"{w}.{e}"]
    problems = []
    for name, (backbone, _) in inputs.items():
        if not NAME_PATTERN.fullmatch(name) or not name.isidentifier():
            problems.append(f"{w}.inputs.{shown(name)}: use letters, digits and '_' for an input's name")
        if backbone not in p.backbones:
            problems.append(f"{w}.inputs.{shown(name)}: no backbone named {backbone!r} (have: "
                            f"{', '.join(p.backbones)})")
        elif p.backbones[backbone].role != "encoder":
            problems.append(f"{w}.inputs.{shown(name)}: {backbone!r} is a decoder; inputs are read by encoders")
    return problems


def _bound_problems(p: Project) -> list[str]:
    """Values too large for the libraries or the memory to take, refused before they crash a run half-way."""
    from qarac_gui.core.project import limits as lim
    longest = f"the longest run this app plans is {lim.MAX_STEPS} optimiser steps"
    rows = "rows per batch: more than any device's memory holds"
    bounds = []
    for i, t in enumerate(p.tasks):
        w = f"tasks[{i}]" if not t.name else f"tasks.{shown(t.name)}"
        bounds += [
            (f"{w}.batch_size", t.batch_size, lim.MAX_BATCH, rows + "; optim.grad_accum makes a larger effective one"),
            (f"{w}.max_length", t.max_length, lim.MAX_LENGTH, "tokens per row, beyond every encoder's context; the "
             "model's own limit is checked when it loads"),
            (f"{w}.head.hidden_size", t.head.hidden_size, lim.MAX_HIDDEN, "the head's hidden layer is allocated at "
             "once, and the widest encoders are 16384 wide; 0 uses the encoder's width"),
        ]
    for name, bb in p.backbones.items():
        bounds.append((f"backbones.{shown(name)}.lora_rank", bb.lora_rank, lim.MAX_HIDDEN, "an adapter's rank is at "
                       "most the layer's width (the widest encoders are 16384 wide); 8 or 16 is usual"))
    tr = p.train
    bounds += [
        ("train.max_steps", tr.max_steps, lim.MAX_STEPS, "the longest run this app plans: months of training even "
         "at tens of steps a second"),
        ("train.epochs", tr.epochs, lim.MAX_STEPS, longest),
        ("train.min_steps", tr.min_steps, lim.MAX_STEPS, longest),
        ("train.num_threads", tr.num_threads, lim.MAX_THREADS, "more CPU threads than any computer has; this one "
         f"has {os.cpu_count()} cores, and 0 lets torch choose"),
        ("train.log_every", tr.log_every, lim.MAX_STEPS, longest),
        ("optim.warmup_steps", p.optim.warmup_steps, lim.MAX_STEPS, longest),
        ("optim.head_warmup_steps", p.optim.head_warmup_steps, lim.MAX_STEPS, longest),
        ("optim.grad_accum", p.optim.grad_accum, lim.MAX_ACCUM, "micro-batches per optimiser step, all drawn before "
         "the step; a larger batch_size makes fewer of them"),
        ("eval.every", p.eval.every, lim.MAX_STEPS, longest + "; 0 validates at the end only"),
        ("eval.batch_size", p.eval.batch_size, lim.MAX_BATCH, rows),
        ("checkpoint.every", p.checkpoint.every, lim.MAX_STEPS, longest + "; 0 saves when the run stops or ends"),
        ("checkpoint.keep", p.checkpoint.keep, lim.MAX_KEEP, "each one is a whole copy of the model and the "
         "optimiser's state"),
    ]
    return lim.bound_problems(bounds)

