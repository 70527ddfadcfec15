"""The project file: dataclasses that mirror the TOML, strict loading, migrations and atomic saving."""

from __future__ import annotations

import copy
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qarac_gui.core.project.convert import ConfigError, build, shown, to_dict

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


# Loading checks a project with it; importers of validate from here keep working
from qarac_gui.core.project.validation import validate  # noqa: E402
