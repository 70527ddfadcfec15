"""The project file: dataclasses that mirror the TOML, strict loading, migrations and atomic saving."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qarac_gui.core.kinds import HEAD_KINDS
from qarac_gui.core.kinds.inputs import task_inputs
from qarac_gui.core.project.convert import ConfigError, build, shown, to_dict
from qarac_gui.core.project.keep import keep_problems
from qarac_gui.core.project.trackers import tracker_problems

CURRENT_VERSION = 3

MIXING = ("all_tasks", "proportional", "temperature", "uniform", "round_robin")
# How the tasks' gradients are combined: fixed weights, learnt weights, or a torchjd aggregator (AGGREGATORS)
BALANCINGS = ("weights", "uncertainty", "upgrad", "pcgrad", "mgda")
AGGREGATORS = ("upgrad", "pcgrad", "mgda")
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
    "constant_with_warmup", "inverse_sqrt", "exponential",
)
OPTIMIZERS = ("adamw", "nadam")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
POOLINGS = ("cls", "mean")
BACKBONE_ROLES = ("encoder", "decoder")
BACKBONE_POOLINGS = ("cls", "mean", "attention")
ADAPTERS = ("none", "lora")
ADAPTER_SCOPES = ("shared", "per_task")
ADAPTER_EXPORTS = ("merged", "separate")
ACTIVATIONS = ("auto", "tanh", "relu", "gelu")
FORMATS = ("auto", "csv", "tsv", "json", "jsonl", "parquet")
# Task names become folder names on export: keep them to characters that are safe on every file system.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")      # used with fullmatch
# Names Windows cannot give a folder, and the export folders of the whole multi-task model and of its backbones.
RESERVED_NAMES = {"con", "prn", "aux", "nul", "full", "backbones", *(f"com{i}" for i in range(1, 10)),
                  *(f"lpt{i}" for i in range(1, 10))}


@dataclass
class BackboneConfig:
    model: str = ""                 # Hub id, local folder (relative to the project file) or "package:<module>"
    revision: str = ""              # Hub branch, tag or commit; empty = the default branch
    trust_remote_code: bool = False
    allow_pickle: bool = False      # allow pytorch_model.bin weights when no safetensors exist
    freeze_embeddings: bool = False
    freeze_layers: int = 0          # freeze the bottom N transformer layers
    role: str = "encoder"           # encoder | decoder (loaded causally, with its LM head)
    # How the backbone's sentence vectors are made for heads that take named inputs (vector, decode); shared by
    # every task that embeds with this backbone. attention: learnt weights over the tokens.
    pooling: str = "mean"
    pooling_rank: int = 0           # attention pooling: rank of its two projections; 0: the hidden size
    # lora: train low-rank adapters (peft) and keep the backbone's own weights as they are; none: train the weights.
    adapter: str = "none"
    adapter_scope: str = "shared"   # shared: one adapter for every task | per_task: one each, switched per task
    lora_rank: int = 8
    lora_alpha: float = 16.0        # the adapter's output is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=list)   # layer names; empty: peft's default for the architecture


@dataclass
class HeadConfig:
    kind: str = "classification"
    labels: list[str] = field(default_factory=list)   # empty: inferred from the training data
    pooling: str | None = None       # cls | mean; default depends on the kind
    dropout: float = 0.1
    hidden_layer: bool | None = None  # a dense layer before the output; default depends on the kind
    hidden_size: int = 0             # 0: the backbone's hidden size
    activation: str = "auto"         # auto: the backbone architecture's own classifier activation
    threshold: float = 0.5           # multilabel decision threshold
    label_separator: str = ";"       # multilabel labels written in one text cell
    mlm_probability: float = 0.15
    left: str = ""                   # vector: an expression of named inputs, e.g. "q" or "p1 + p2"
    right: str = ""                  # vector: the expression compared with left
    compare: str = "cosine"          # vector: cosine (against the label column) | distance (to zero, no label)
    decoder: str = ""                # decode: the decoder backbone
    condition: str = ""              # decode: the expression of named inputs the decoder is conditioned on


@dataclass
class SourceConfig:
    """One source of a task's union: the texts of some columns of a file or a Hub dataset split."""
    train: str = ""                  # local file (relative to the project file); or
    hub: str = ""                    # a Hub dataset id
    hub_config: str = ""
    split: str = "train"             # the Hub split
    format: str = "auto"
    columns: list[str] = field(default_factory=list)   # the text columns taken
    filter: str = ""                 # rows kept before their texts are taken


@dataclass
class DataConfig:
    train: str = ""                  # local file (relative to the project file)
    hub: str = ""                    # or a Hub dataset id
    hub_config: str = ""
    train_split: str = "train"
    validation: str = ""             # local file; or
    validation_split: str = ""       # a split of the Hub dataset; or
    validation_fraction: float = 0.1  # held out from train with the project seed
    format: str = "auto"
    text: str = "text"               # text, question (span_qa) or tokens (token_classification)
    text_pair: str = ""              # second text, context (span_qa)
    label: str = "label"             # label, labels, score, tags or answers column
    limit: int = 0                   # use at most this many training rows (0: all)
    filter: str = ""                 # keep only the rows it holds for, e.g. label != -1 (core/project/filters.py)
    # Label cells (by their text, "0" for the integer 0) replaced after the filter; a value not in it is an error.
    label_map: dict[str, int | float | str] = field(default_factory=dict)
    # Instead of train/hub: the distinct texts of these sources' columns, in first-seen order, as one column named
    # by `text` (e.g. the sentences of several datasets for a reconstruction objective).
    union: list[SourceConfig] = field(default_factory=list)


@dataclass
class TaskConfig:
    name: str = ""
    head: HeadConfig = field(default_factory=HeadConfig)
    data: DataConfig = field(default_factory=DataConfig)
    backbone: str = "encoder"
    # Named inputs, each "backbone:column" (e.g. q = "question_encoder:question"), for heads over several texts
    # and backbones; empty: the task reads data.text (and data.text_pair) with its one backbone.
    inputs: dict[str, str] = field(default_factory=dict)
    weight: float = 1.0
    batch_size: int = 16
    max_length: int = 128
    # Evaluated only, never trained: measures what the shared backbone forgets (docs/forgetting.md)
    keep: bool = False

    @property
    def main_backbone(self) -> str:
        """The backbone whose tokenizer reads the task's rows in previews (the first input's, with named inputs)."""
        if self.inputs:
            return next(iter(self.inputs.values())).partition(":")[0].strip()
        return self.backbone


@dataclass
class OptimConfig:
    lr: float = 1e-5
    head_lr: float = 0.0             # 0: same as lr
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    optimizer: str = "adamw"         # adamw | nadam (decoupled weight decay, like AdamW's)
    layer_decay: float = 1.0         # lr multiplier per layer going down the encoder
    scheduler: str = "linear"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0        # used when warmup_steps is 0
    num_cycles: float = 0.0          # cosine: 0 -> half a cycle; cosine_with_restarts: 0 -> 1 cycle
    power: float = 1.0               # polynomial
    lr_end_ratio: float = 0.0        # polynomial: final lr as a fraction of the peak
    gamma: float = 0.999             # exponential: factor per step after warmup
    grad_clip: float = 1.0           # 0: off
    grad_accum: int = 1
    head_warmup_steps: int = 0       # train only the heads for this many steps, encoder frozen


@dataclass
class TrainConfig:
    mixing: str = "all_tasks"
    temperature: float = 2.0
    max_steps: int = 0               # optimiser steps; 0: use epochs
    epochs: float = 0.0              # epochs of epoch_task
    min_steps: int = 0               # with epochs: at least this many optimiser steps (small data: more epochs)
    epoch_task: str = ""             # empty: the largest task
    precision: str = "auto"
    device: str = "auto"
    seed: int = 42
    log_every: int = 10
    num_threads: int = 0             # CPU threads for torch; 0: torch's default
    skip_limit: int = 5              # steps in a row with a NaN/inf loss or gradient before the run stops; 0: never
    init_from: str = ""              # a multi-task model folder (export/full): start from its weights
    report_to: list[str] = field(default_factory=list)   # trackers that get a copy: tensorboard, mlflow, trackio
    # Batches of rows of similar length: far less padding. Off by default so that a file without the key trains
    # as it did before the key existed (the same seed, the same batches); see docs/training.md.
    group_by_length: bool = False
    # torch.compile the backbones, batches padded to multiples of 16 so it sees a handful of shapes
    compile: bool = False
    # weights | uncertainty (learnt per-task log-variances) | upgrad | pcgrad | mgda (torchjd); see docs/balancing.md
    balancing: str = "weights"
    balancing_lr: float = 0.01       # uncertainty: lr of the log-variances (at the model's 1e-5 they hardly move)


@dataclass
class EvalConfig:
    every: int = 0                   # steps; 0: only at the end
    metric: str = ""                 # "task/metric"; empty: the first task's main metric
    patience: int = 0                # evaluations without improvement before stopping; 0: off
    keep_best: bool = False          # export the weights of the best evaluation instead of the last step
    batch_size: int = 64
    task_patience: int = 0           # evaluations without improvement of a task's own metric before it stops; 0: off
    # A keep task's main metric this much worse than at step 0 (0.1: 10 %) raises the forgetting alert; 0: off
    forgetting_alert: float = 0.1
    forgetting_pause: bool = False   # pause the run when the forgetting alert fires


@dataclass
class CheckpointConfig:
    every: int = 0                   # steps; 0: only when the run stops or ends
    minutes: float = 10.0            # also one at least this often (a crash loses at most this much); 0: off
    keep: int = 1                    # resuming reads only the newest


@dataclass
class ExportConfig:
    tasks: list[str] = field(default_factory=list)   # empty: every task
    full_model: bool = True          # also write the whole multi-head model for reloading in the app
    # Backbones with LoRA adapters: merged into plain transformers weights, or the adapter alone (peft's format)
    adapter: str = "merged"


@dataclass
class Project:
    version: int = CURRENT_VERSION
    name: str = "project"
    backbones: dict[str, BackboneConfig] = field(default_factory=dict)
    tasks: list[TaskConfig] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    # Folder that relative paths are resolved against; not part of the file.
    root: Path = field(default=Path("."), metadata={"toml": False})

    def task(self, name: str) -> TaskConfig:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    def with_absolute_paths(self) -> Project:
        """A copy whose local model folders and data files are absolute paths, so that it replays from anywhere:
        a run folder, an export, a project saved into another folder, the autosave."""
        p = copy.deepcopy(self)
        for bb in p.backbones.values():
            if bb.model and not bb.model.startswith("package:") and self.resolve(bb.model).exists():
                bb.model = str(self.resolve(bb.model).resolve())
        for t in p.tasks:
            for key in ("train", "validation"):
                if getattr(t.data, key):
                    setattr(t.data, key, str(self.resolve(getattr(t.data, key)).resolve()))
            for source in t.data.union:
                if source.train:
                    source.train = str(self.resolve(source.train).resolve())
        return p

    def with_relative_paths(self, folder: Path) -> Project:
        """A copy for a project file in `folder`: local data files and model folders inside it are written relative
        to it, so the project moves with its folder; anything outside it keeps its absolute path."""
        p = self.with_absolute_paths()
        folder = Path(folder).resolve()

        def rel(path: str) -> str:
            if not path or not Path(path).is_absolute():
                return path
            try:
                return Path(path).relative_to(folder).as_posix()
            except ValueError:
                return path
        for bb in p.backbones.values():
            if not bb.model.startswith("package:"):
                bb.model = rel(bb.model)
        for t in p.tasks:
            t.data.train, t.data.validation = rel(t.data.train), rel(t.data.validation)
            for source in t.data.union:
                source.train = rel(source.train)
        p.root = folder
        return p

    def resolve(self, path: str) -> Path:
        p = Path(path)
        if path.startswith("~"):
            try:
                p = p.expanduser()
            except RuntimeError:        # no home folder known (or "~name" of no such user): a plain relative name
                pass
        return p if p.is_absolute() else (self.root / p)


def _v1_to_v2(raw: dict) -> dict:
    """Version 2 added keys (tasks.data.filter and label_map, optim.optimizer) whose defaults mean what a version 1
    file meant, and changed none: only the version number moves (migrate() sets it). A version 2 file is written
    so that an older app, which would refuse the new keys as unknown, says the file is newer instead."""
    return raw


def _v2_to_v3(raw: dict) -> dict:
    """Version 3 added train.min_steps, train.group_by_length and train.report_to, whose defaults (no minimum, random
    batches, no tracker) mean what a version 2 file meant: only the version number moves."""
    return raw


# Each entry upgrades a raw dict from version N to N + 1. Pure functions, so each one is unit-tested alone.
MIGRATIONS: dict[int, Any] = {1: _v1_to_v2, 2: _v2_to_v3}


def migrate(raw: dict) -> dict:
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"version: expected an integer (this app writes version {CURRENT_VERSION}), got {version!r}")
    if version > CURRENT_VERSION:
        raise ConfigError(f"version: the file is version {version}, newer than this app understands "
                          f"({CURRENT_VERSION}); update qarac_gui to open it")
    while version < CURRENT_VERSION:
        if version not in MIGRATIONS:
            raise ConfigError(f"version: no upgrade from version {version}")
        raw = MIGRATIONS[version](dict(raw))
        version += 1
        raw["version"] = version
    return raw


def parse_project(raw: dict, root: Path = Path("."), check: bool = True) -> Project:
    project = build(Project, migrate(raw), "")
    project.root = root
    problems = validate(project) if check else []
    if problems:
        raise ConfigError("\n".join(problems))
    return project


def load_project(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), check: bool = True) -> Project:
    """Read, migrate, apply `--set` overrides, and validate a project file.

    With check=False only the structure is enforced (unknown keys, types): the GUI opens an unfinished project
    and lists what is still missing instead of refusing it.
    """
    path = Path(path)
    check_regular_file(path, "project file", ConfigError, MAX_PROJECT_BYTES)
    try:
        text = path.read_bytes().decode("utf-8-sig")       # Notepad writes a byte-order mark
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{path}: no such project file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: its values nest too deeply to read (hundreds of brackets); this is not a "
                          "project file") from None
    try:
        raw = migrate(raw)
        for assignment in overrides:
            apply_override(raw, assignment)
        return parse_project(raw, path.resolve().parent, check)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


# A project file is a few kB; anything this large is something else, and reading it whole would cost its size.
MAX_PROJECT_BYTES = 16 * 2**20


def special_file_kind(mode: int) -> str:
    """What a path that is not a regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a file"


def check_regular_file(path: Path, what: str, error: type[Exception], max_bytes: int = 0) -> None:
    """Refuse, before opening it, a path that is not a plain file: a folder, or a FIFO or device (reading a FIFO
    waits forever for a writer, /dev/zero never ends)."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{path}: no such {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a folder, not a {what}; choose the file itself")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file ({special_file_kind(info.st_mode)}); choose a {what} saved on disk")
    if max_bytes and info.st_size > max_bytes:
        raise error(f"{path}: {info.st_size / 2**20:.0f} MB is far too large for a {what} "
                    f"(at most {max_bytes // 2**20} MB); is this the right file?")


def dumps_project(project: Project) -> str:
    import tomli_w
    return tomli_w.dumps(to_dict(project))


def save_project(project: Project, path: str | os.PathLike) -> None:
    """Write atomically: a crash mid-write leaves the old file intact."""
    path = Path(path)
    text = dumps_project(project)              # before touching the disk: a failure here writes nothing
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `--set key=value` to a raw project dict; tasks are addressed by name (tasks.NAME.field)."""
    key, sep, value_text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. optim.lr=3e-5")
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()          # a bare word is a string: --set train.device=cpu
    except RecursionError:
        raise ConfigError(f"--set {shown(key)}: the value nests too deeply to read") from None
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):         # tasks.NAME
            match = [t for t in node if isinstance(t, dict) and t.get("name") == part]
            if not match:
                raise ConfigError(f"--set {key}: no task named {part!r}")
            node = match[0]
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a table")
    if isinstance(node, list):
        raise ConfigError(f"--set {key}: name a field of a task, e.g. tasks.NAME.batch_size=8")
    node[parts[-1]] = value


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

