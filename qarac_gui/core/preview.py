"""What the GUI shows before a run: a base model's facts, a task's data as its head will see it, and what
stands in the way of starting."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qarac_gui.core.config import BackboneConfig, Project, TaskConfig, validate
from qarac_gui.core.errors import UserError
from qarac_gui.core.head_kinds import HEAD_KINDS

PREVIEW_ROWS = 20
LENGTH_SAMPLE = 1000           # rows tokenised to estimate truncation; enough for a share to within a few %


@dataclass(frozen=True)
class ModelInfo:
    spec: str
    source: str
    architecture: str            # as saved, e.g. BertForSequenceClassification
    model_type: str
    parameters: int
    hidden_size: int
    layers: int
    vocab_size: int
    max_positions: int
    removed: str                 # the head that will be dropped, "" when there is none


def describe_model(cfg: BackboneConfig, root: Path, cache_dir: str | None = None) -> tuple[ModelInfo, Any]:
    """Load the base model once to report what it is; returns (facts, its tokenizer)."""
    from qarac_gui.core.backbone import load_backbone
    loaded = load_backbone(cfg, root, cache_dir)
    return model_info(cfg.model, loaded), loaded.tokenizer


def model_info(spec: str, loaded: Any) -> ModelInfo:
    """The facts of a LoadedBackbone."""
    from qarac_gui.core.backbone import encoder_layers
    config = loaded.model.config
    return ModelInfo(
        spec=spec, source=loaded.source, architecture=loaded.architecture, model_type=config.model_type,
        parameters=sum(p.numel() for p in loaded.model.parameters()),
        hidden_size=int(getattr(config, "hidden_size", 0) or 0),
        layers=len(encoder_layers(loaded.model)) or int(getattr(config, "num_hidden_layers", 0) or 0),
        vocab_size=int(getattr(config, "vocab_size", 0) or 0),
        max_positions=int(getattr(config, "max_position_embeddings", 0) or 0),
        removed=loaded.removed)


@dataclass(frozen=True)
class TaskPreview:
    task: str
    columns: list[str] = field(default_factory=list)       # every column of the training data
    headers: list[str] = field(default_factory=list)       # the mapped columns, in the order the head reads them
    rows: list[list[str]] = field(default_factory=list)    # the first rows of those columns
    train_rows: int = 0
    valid_rows: int = 0
    labels: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    truncated_share: float | None = None                   # share of sampled rows longer than max_length
    errors: list[str] = field(default_factory=list)        # each one blocks Start
    warnings: list[str] = field(default_factory=list)
    token_lengths: list[int] = field(default_factory=list)  # tokens per sampled training row (for a histogram)
    max_length: int = 0


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def preview_task(project: Project, task: TaskConfig, tokenizer: Any = None, n: int = PREVIEW_ROWS,
                 cache_dir: str | None = None) -> TaskPreview:
    """Read a task's data the way a run will, and report what a user should fix or know before training."""
    from qarac_gui.core.data import check_columns, load_splits, load_train, required_columns
    try:
        raw = load_train(project, task, cache_dir)
    except UserError as e:
        return TaskPreview(task.name, errors=[str(e)])
    columns = list(raw.column_names)
    try:
        check_columns(task, raw, "training data")
        train, valid = load_splits(project, task, cache_dir, train=raw)
    except UserError as e:
        return TaskPreview(task.name, columns=columns, errors=[str(e)])
    headers = required_columns(task)
    # Rows and row numbers as they are in the file, not as the held-out split shuffled them.
    head_rows = raw.select(range(min(n, len(raw))))
    rows = [[_cell(head_rows[c][i]) for c in headers] for i in range(len(head_rows))]
    separate = task.data.validation or (task.data.hub and task.data.validation_split)
    errors, warnings = _check_values(task, raw, valid if separate else None)
    labels, counts = _labels(task, train, valid, errors)
    warnings += _balance_warnings(task, counts)
    warnings += _duplicate_warnings(task, raw, valid if separate else None)
    share, lengths = None, []
    if tokenizer is not None and not errors:
        lengths = _token_lengths(task, tokenizer, train)
        share = sum(1 for n in lengths if n > task.max_length) / max(1, len(lengths))
        if share > 0.05:
            warnings.append(f"task {task.name}: {share:.0%} of the sampled rows are longer than max_length "
                            f"{task.max_length} tokens and will be cut; raise max_length if the end matters")
    if len(train) < 8:
        warnings.append(f"task {task.name}: only {len(train)} training rows; results will be noisy")
    if valid is None or len(valid) == 0:
        warnings.append(f"task {task.name}: no validation data, so no metrics; set a validation file or fraction")
    return TaskPreview(task.name, columns, headers, rows, len(train), 0 if valid is None else len(valid),
                       labels, counts, share, errors, warnings, lengths, task.max_length)


def length_summary(preview: TaskPreview) -> str:
    """One line on the sampled token lengths, e.g. for a terminal; empty when none were measured."""
    lengths = sorted(preview.token_lengths)
    if not lengths:
        return ""

    def at(q: float) -> int:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))]
    return (f"task {preview.task}: tokens per row (of {len(lengths)} sampled): median {at(0.5)}, 95% up to "
            f"{at(0.95)}, longest {lengths[-1]}; {preview.truncated_share:.0%} longer than max_length "
            f"{preview.max_length}")


def _check_values(task: TaskConfig, train: Any, valid: Any) -> tuple[list[str], list[str]]:
    errors, warnings = [], []
    for what, ds in (("training data", train), ("validation data", valid)):
        if ds is None:
            continue
        texts = ds[task.data.text]
        empty = sum(1 for v in texts if v is None or (isinstance(v, str) and not v.strip()))
        if empty:
            warnings.append(f"task {task.name}: {empty} row(s) of the {what} have an empty {task.data.text!r}")
        if HEAD_KINDS[task.head.kind].label_role == "score":
            scores = ds[task.data.label]
            bad = _first_non_number(scores)
            if bad is not None:
                row, value = bad
                errors.append(f"task {task.name}: {what}, row {row + 1}, has {value!r} in {task.data.label!r}, "
                              f"but a {task.head.kind} head needs a number; fix the row or map another column")
            elif task.head.kind == "similarity":
                outside = next(((i, v) for i, v in enumerate(scores) if not -1 <= float(v) <= 1), None)
                if outside is not None:
                    low, high = min(map(float, scores)), max(map(float, scores))
                    errors.append(f"task {task.name}: {what}, row {outside[0] + 1}, has score {outside[1]!r}, but "
                                  "a similarity head learns a cosine in [-1, 1]; rescale the column (scores from "
                                  f"{low:g} to {high:g}: (score - {low:g}) / {(high - low) / 2:g} - 1)")
    return errors, warnings


def _duplicate_warnings(task: TaskConfig, train: Any, valid: Any) -> list[str]:
    """Rows repeated in the training data, and validation rows that are also training rows (optimistic metrics)."""
    columns = [c for c in (task.data.text, task.data.text_pair, task.data.label) if c]

    def keys(ds: Any) -> list[str]:
        cols = [ds[c] for c in columns if c in ds.column_names]
        return [repr(row) for row in zip(*cols)]
    out = []
    seen: dict[str, int] = {}
    repeated, first = 0, None
    for i, key in enumerate(keys(train)):
        if key in seen:
            repeated += 1
            first = first or (i, seen[key])
        else:
            seen[key] = i
    if repeated:
        out.append(f"task {task.name}: {repeated} training row(s) repeat an earlier one exactly (first: row "
                   f"{first[0] + 1} repeats row {first[1] + 1}); repeats weigh more in training, so remove them "
                   "unless that is intended")
    if valid is not None and len(valid):
        leaked = sum(1 for key in keys(valid) if key in seen)
        if leaked:
            out.append(f"task {task.name}: {leaked} validation row(s) also appear in the training data; the "
                       "validation metrics will look better than the model is")
    return out


def _first_non_number(values: list) -> tuple[int, Any] | None:
    for i, v in enumerate(values):
        try:
            if v is None or isinstance(v, bool) or not math.isfinite(float(v)):
                return i, v
        except (TypeError, ValueError):
            return i, v
    return None


def _labels(task: TaskConfig, train: Any, valid: Any, errors: list[str]) -> tuple[list[str], dict[str, int]]:
    from qarac_gui.core.data import infer_labels, labels_in
    kind = task.head.kind
    if kind not in ("classification", "multilabel", "token_classification"):
        return [], {}
    try:
        labels = infer_labels(task, train, valid)
    except (TypeError, ValueError) as e:
        errors.append(f"task {task.name}: labels in {task.data.label!r} cannot be read: {e}")
        return [], {}
    counts = Counter(str(v) for value in train[task.data.label] for v in labels_in(task, value))
    if kind == "classification" and len(labels) < 2:
        errors.append(f"task {task.name}: the training data has {len(labels)} label(s) in {task.data.label!r}; "
                      "a classifier needs at least two; map the right label column")
    seen = set(counts)
    if valid is not None:
        seen.update(str(v) for value in valid[task.data.label] for v in labels_in(task, value))
    unknown = sorted(seen - set(labels))
    if task.head.labels and unknown:
        errors.append(f"task {task.name}: labels {', '.join(unknown[:5])} are in the data but not in head.labels; "
                      "add them or clear head.labels to take them from the data")
    return labels, dict(counts.most_common())


def _balance_warnings(task: TaskConfig, counts: dict[str, int]) -> list[str]:
    if task.head.kind != "classification" or len(counts) < 2:
        return []
    top, low = max(counts.values()), min(counts.values())
    if low * 10 < top:
        rare = min(counts, key=counts.get)
        return [f"task {task.name}: classes are imbalanced ({rare!r}: {low} rows against {top} for the most "
                "common); accuracy may mislead, so watch macro-F1"]
    return []


def _token_lengths(task: TaskConfig, tokenizer: Any, train: Any) -> list[int]:
    kind = task.head.kind
    sample = train.select(range(min(LENGTH_SAMPLE, len(train))))
    first = sample[task.data.text]
    second = sample[task.data.text_pair] if task.data.text_pair else None
    if kind == "token_classification":
        enc = tokenizer([list(map(str, w or [])) for w in first], is_split_into_words=True)
    elif second is not None:
        enc = tokenizer([str(a or "") for a in first], [str(b or "") for b in second])
    else:
        enc = tokenizer([str(a or "") for a in first])
    return [len(ids) for ids in enc["input_ids"]]


def start_problems(project: Project, previews: dict[str, TaskPreview], model_error: str = "") -> list[str]:
    """Everything that blocks Start, each saying what to fix; empty when the run can start."""
    problems = list(validate(project))
    if model_error:
        problems.append(model_error)
    for task in project.tasks:
        preview = previews.get(task.name)
        if preview is not None:
            problems.extend(preview.errors)
    return problems


def head_parameters(project: Project, encoder: Any, labels: dict[str, list[str]]) -> dict[str, int]:
    """Parameters each task's head adds to the shared encoder, built exactly as a run builds them."""
    from qarac_gui.core.heads import build_head, own_parameters
    counts = {}
    for task in project.tasks:
        if task.head.kind not in HEAD_KINDS:
            continue
        n = len(labels.get(task.name) or task.head.labels) or 2
        counts[task.name] = own_parameters(build_head(task.head, encoder, n), encoder)
    return counts


def preflight(project: Project) -> tuple[list[str], list[str], list[str]]:
    """(errors, warnings, notes) of every task, read before a run starts: the checks the GUI shows in its report,
    and the notes a summary of token lengths."""
    from datasets.utils.logging import disable_progress_bar
    disable_progress_bar()              # the caller reports; datasets' own bars would garble a terminal
    tokenizers: dict[str, Any] = {}
    model_problems: list[str] = []
    for name, cfg in project.backbones.items():
        tokenizers[name], problem = _tokenizer_of(name, cfg, project.root)
        if problem:
            model_problems.append(problem)
    previews = {t.name: preview_task(project, t, tokenizers.get(t.backbone)) for t in project.tasks}
    warnings = [w for p in previews.values() for w in p.warnings]
    notes = [line for p in previews.values() if (line := length_summary(p))]
    return model_problems + start_problems(project, previews), warnings, notes


def _tokenizer_of(name: str, cfg: BackboneConfig, root: Path) -> tuple[Any, str]:
    """(the backbone's tokenizer alone, no weights, for the truncation check; a problem that stops the run before
    anything is written). The tokenizer is None when it cannot be read here: the run then says why."""
    from qarac_gui.core.backbone import resolve_source
    from qarac_gui.core.code_trust import remote_code_allowed
    try:    # where the model is and whether its code may run: cheap, and refused before a run folder exists
        source, local = resolve_source(cfg.model, root)
        trusted = remote_code_allowed(name, cfg.trust_remote_code, source, local, cfg.revision)
    except UserError as e:
        return None, str(e)
    try:
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(source, revision=cfg.revision or None, trust_remote_code=trusted), ""
    except Exception:
        return None, ""
