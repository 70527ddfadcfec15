"""What the GUI shows before a run: a base model's facts, a task's data as its head will see it, and what
stands in the way of starting."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.project.config import Project, TaskConfig, validate

PREVIEW_ROWS = 20
LENGTH_SAMPLE = 1000           # rows tokenised to estimate truncation; enough for a share to within a few %
LENGTH_BOUND = 2               # rows are counted up to this many times max_length tokens
CHARS_PER_TOKEN = 32           # more characters than one token of a usual vocabulary spans


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
    filter_kept: int = 0            # training rows data.filter kept, before the held-out split and the limit
    filter_read: int = 0            # training rows before it; 0: the task has no filter


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def preview_task(project: Project, task: TaskConfig, tokenizer: Any = None, n: int = PREVIEW_ROWS,
                 cache_dir: str | None = None) -> TaskPreview:
    """Read a task's data the way a run will, and report what a user should fix or know before training."""
    from qarac_gui.core.data.adapters import adapt_rows
    from qarac_gui.core.data.load import check_columns, header_warnings, load_splits, load_train, required_columns
    try:
        raw = load_train(project, task, cache_dir, adapt=False)     # its columns, even when the filter is wrong
    except UserError as e:          # a file names itself, not the task: with several tasks, say whose it is
        said = str(e) if str(e).startswith((f"task {task.name}:", f"tasks.{task.name}")) else f"task {task.name}: {e}"
        return TaskPreview(task.name, errors=[said])
    columns = list(raw.column_names)
    if any(p.startswith("train.seed:") for p in validate(project)) or not 0 <= task.data.validation_fraction < 1:
        # The held-out split needs a valid seed and fraction; Start is already blocked by that same problem.
        return TaskPreview(task.name, columns=columns)
    try:
        check_columns(task, raw, "training data")
        adapted = adapt_rows(task, raw, "training data")
        train, valid = load_splits(project, task, cache_dir, train=adapted)
    except UserError as e:
        return TaskPreview(task.name, columns=columns, errors=[str(e)])
    headers = required_columns(task)
    # Rows as the filter and the label map leave them, in the file's order, not as the held-out split shuffled them.
    head_rows = adapted.select(range(min(n, len(adapted))))
    rows = [[_cell(head_rows[c][i]) for c in headers] for i in range(len(head_rows))]
    separate = task.data.validation or (task.data.hub and task.data.validation_split)
    errors, warnings = _check_values(task, adapted, valid if separate else None)
    labels, counts = _labels(task, train, valid, errors)
    warnings += _label_warnings(task, counts, valid)
    warnings += header_warnings(project, task)
    warnings += _balance_warnings(task, counts)
    warnings += _duplicate_warnings(task, adapted, valid if separate else None)
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
    elif len(valid) < FEW_VALIDATION_ROWS:
        where = ("give a larger validation file" if separate else
                 f"raise data.validation_fraction (to {_share_for(len(train) + len(valid))} for "
                 f"{FEW_VALIDATION_ROWS} rows) or give a validation file")
        one = f"{1 / len(valid):.0%}"
        weight = (f"one row moves accuracy by {one}" if kind_of(task.head).main(task.head) == "accuracy"
                  else f"one row is {one} of them")       # a correlation or an F1 moves by no fixed step
        warnings.append(f"task {task.name}: {len(valid)} {SMALL_VALIDATION} ({weight}); {where}")
    return TaskPreview(task.name, columns, headers, rows, len(train), 0 if valid is None else len(valid),
                       labels, counts, share, errors, warnings, lengths, task.max_length,
                       len(adapted) if task.data.filter else 0, len(raw) if task.data.filter else 0)


# Fewer validation rows than this measure little: one row moves accuracy by more than 5 %.
FEW_VALIDATION_ROWS = 20
SMALL_VALIDATION = "validation rows are too few to measure"


def _share_for(rows: int) -> str:
    """The held-out share that gives FEW_VALIDATION_ROWS of `rows`, rounded up to a hundredth (at most 0.5)."""
    return f"{min(0.5, math.ceil(100 * FEW_VALIDATION_ROWS / max(1, rows)) / 100):g}"


# Column names that hold what a head learns, in files made for training.
LABEL_NAMES = {"label", "labels", "score", "target", "class", "category", "sentiment", "y", "rating", "stars",
               "tag", "tags"}


def two_column_mapping(task: TaskConfig, columns: list[str]) -> tuple[str, str] | None:
    """(text, label) for a file of exactly two columns that the task's columns do not name: the one named like a
    label (label, score, sentiment, …) is the label, else the second; None when there is nothing to map."""
    kind = kind_of(task.head)
    if (len(columns) != 2 or kind.takes_inputs or kind.words_input or task.data.text_pair
            or not kind.label_role_for(task.head) or kind.needs_pair):
        return None
    if task.data.text in columns and task.data.label in columns:
        return None
    named = [c for c in columns if c.strip().lower() in LABEL_NAMES]
    label = named[0] if len(named) == 1 else columns[1]
    text = columns[0] if label == columns[1] else columns[1]
    return text, label


def filter_summary(preview: TaskPreview) -> str:
    """One line on what the task's filter kept, e.g. for a terminal; empty when the task has none."""
    if not preview.filter_read:
        return ""
    return (f"task {preview.task}: data.filter kept {preview.filter_kept} of the {preview.filter_read} rows of the "
            "training data")


def length_summary(preview: TaskPreview) -> str:
    """One line on the sampled token lengths, e.g. for a terminal; empty when none were measured."""
    lengths = sorted(preview.token_lengths)
    if not lengths:
        return ""

    def at(q: float) -> int:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))]
    bound = LENGTH_BOUND * preview.max_length
    longest = f"{bound} or more" if preview.max_length and lengths[-1] >= bound else str(lengths[-1])
    return (f"task {preview.task}: tokens per row (of {len(lengths)} sampled): median {at(0.5)}, 95% up to "
            f"{at(0.95)}, longest {longest}; {preview.truncated_share:.0%} longer than max_length "
            f"{preview.max_length}")


def _check_values(task: TaskConfig, train: Any, valid: Any) -> tuple[list[str], list[str]]:
    from qarac_gui.core.data.load import file_row, first_bad_value, required_columns
    errors, warnings = [], []
    for what, ds in (("training data", train), ("validation data", valid)):
        if ds is None:
            continue
        bad = first_bad_value(task, {c: ds[c] for c in required_columns(task)})
        if bad is not None:         # the same check refuses the row when the run tokenises it
            errors.append(f"task {task.name}: {what}, row {file_row(ds, bad[0])}, {bad[1]}")
        kind = kind_of(task.head)
        for column in kind.text_columns(task)[:1 if not kind.takes_inputs else None]:
            empty = sum(1 for v in ds[column] if isinstance(v, str) and not v.strip())   # no text at all: an error
            if empty:
                warnings.append(f"task {task.name}: {empty} row(s) of the {what} have an empty {column!r}")
        if kind.label_role_for(task.head) == "score":
            scores = ds[task.data.label]
            bad = _first_non_number(scores)
            if bad is not None:
                row, value = bad
                errors.append(f"task {task.name}: {what}, row {file_row(ds, row)}, has {value!r} in "
                              f"{task.data.label!r}, but a {task.head.kind} head needs a number; fix the row or map "
                              "another column")
            elif kind.score_range is not None:
                low_end, high_end = kind.score_range
                outside = next(((i, v) for i, v in enumerate(scores) if not low_end <= float(v) <= high_end), None)
                if outside is not None:
                    low, high = min(map(float, scores)), max(map(float, scores))
                    errors.append(f"task {task.name}: {what}, row {file_row(ds, outside[0])}, has score "
                                  f"{outside[1]!r}, but a {task.head.kind} head learns a cosine in [{low_end:g}, "
                                  f"{high_end:g}]; rescale the column (scores from {low:g} to {high:g}: (score - "
                                  f"{low:g}) / {(high - low) / (high_end - low_end):g} "
                                  f"{'-' if low_end < 0 else '+'} {abs(low_end):g})")
    return errors, warnings


def _duplicate_warnings(task: TaskConfig, train: Any, valid: Any) -> list[str]:
    """Rows repeated in the training data, and validation rows that are also training rows (optimistic metrics)."""
    from qarac_gui.core.data.load import file_row
    columns = kind_of(task.head).columns(task)

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
                   f"{file_row(train, first[0])} repeats row {file_row(train, first[1])}); repeats weigh more in "
                   "training, so remove them unless that is intended")
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
    from qarac_gui.core.data.load import infer_labels, labels_in
    kind = kind_of(task.head)
    if not kind.has_classes:
        return [], {}
    try:
        labels = infer_labels(task, train, valid)
    except (TypeError, ValueError) as e:
        errors.append(f"task {task.name}: labels in {task.data.label!r} cannot be read: {e}")
        return [], {}
    counts = Counter(str(v) for value in train[task.data.label] for v in labels_in(task, value))
    if kind.single_label and len(labels) < 2:
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


def _label_warnings(task: TaskConfig, counts: dict[str, int], valid: Any) -> list[str]:
    """Label mistakes that train without an error, but not as meant: classes the training data never shows,
    names that differ only in case or spaces (different classes to the head), and empty names."""
    from qarac_gui.core.data.load import labels_in
    if not kind_of(task.head).has_classes or not counts:
        return []                   # counts is empty when the labels could not be read: an error says so
    try:
        in_valid = set() if valid is None else {str(v) for value in valid[task.data.label]
                                                for v in labels_in(task, value)}
    except (TypeError, ValueError):
        return []
    out = []
    listed = set(task.head.labels)
    # A validation label outside head.labels is an error of its own (_labels); here: ones training never shows.
    unseen = sorted(v for v in in_valid - set(counts) if not listed or v in listed)
    if unseen:
        out.append(f"task {task.name}: label(s) {_names(unseen)} appear only in the validation data, never in "
                   "training; the model cannot learn them, so those rows count as mistakes in the metrics; add "
                   "training rows with them or fix the labels")
    names = set(counts) | in_valid | listed
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        if name.strip():
            groups.setdefault(name.strip().casefold(), []).append(name)
    for group in [g for g in groups.values() if len(g) > 1][:5]:
        out.append(f"task {task.name}: labels {_names(group, 'and')} differ only in upper/lower case or "
                   "surrounding spaces, so they are trained as different classes; write each label one way")
    empty = sorted(name for name in names if not name.strip())
    if empty:
        out.append(f"task {task.name}: the label{'s' if len(empty) > 1 else ''} {_names(empty, 'and')} (empty) "
                   f"{'are' if len(empty) > 1 else 'is'} in the data of {task.data.label!r}, and would be trained "
                   "as a class of its own; fill in the labels or remove those rows")
    return out


def _names(names: list[str], last: str = "") -> str:
    shown = [repr(n) for n in names[:5]] + ([f"{len(names) - 5} more"] if len(names) > 5 else [])
    if not last or len(shown) < 2:
        return ", ".join(shown)
    return f"{', '.join(shown[:-1])} {last} {shown[-1]}"


def _balance_warnings(task: TaskConfig, counts: dict[str, int]) -> list[str]:
    if not kind_of(task.head).single_label or len(counts) < 2:
        return []
    top, low = max(counts.values()), min(counts.values())
    if low * 10 < top:
        rare = min(counts, key=counts.get)
        return [f"task {task.name}: classes are imbalanced ({rare!r}: {low} rows against {top} for the most "
                "common); accuracy may mislead, so watch macro-F1"]
    return []


def _token_lengths(task: TaskConfig, tokenizer: Any, train: Any) -> list[int]:
    """Tokens per sampled row, counted up to LENGTH_BOUND times max_length.

    A tokenizer normalises and splits a whole text before it truncates, in memory that grows with the text (a 20 MB
    cell took 3.7 GB). So each text is first cut to CHARS_PER_TOKEN characters per token of the bound, more than
    that many tokens span in a usual vocabulary, and then counted with truncation at the bound: rows within it are
    counted exactly, and a longer row still counts as longer than max_length (as the bound, "or more").
    """
    bound = LENGTH_BOUND * task.max_length
    chars = bound * CHARS_PER_TOKEN
    sample = train.select(range(min(LENGTH_SAMPLE, len(train))))
    kind = kind_of(task.head)
    if kind.takes_inputs:           # each input is tokenised alone: a row is as long as its longest input
        counts = [tokenizer([str(a or "")[:chars] for a in sample[c]], truncation=True, max_length=bound)["input_ids"]
                  for c in kind.text_columns(task)]
        return [max(len(ids) for ids in row) for row in zip(*counts)]
    first = sample[task.data.text]
    second = sample[task.data.text_pair] if task.data.text_pair else None
    cut = {"truncation": True, "max_length": bound}
    if kind.words_input:
        enc = tokenizer([_first_words(w, chars) for w in first], is_split_into_words=True, **cut)
    elif second is not None:
        enc = tokenizer([str(a or "")[:chars] for a in first], [str(b or "")[:chars] for b in second], **cut)
    else:
        enc = tokenizer([str(a or "")[:chars] for a in first], **cut)
    return [len(ids) for ids in enc["input_ids"]]


def _first_words(words: Any, chars: int) -> list[str]:
    """The words of a row up to `chars` characters in all (each word counting at least one)."""
    out, used = [], 0
    for word in words or []:
        if used >= chars:
            break
        word = str(word)[:chars - used]
        out.append(word)
        used += max(1, len(word))
    return out


def start_problems(project: Project, previews: dict[str, TaskPreview], model_error: str = "") -> list[str]:
    """Everything that blocks Start, each saying what to fix; empty when the run can start."""
    problems = list(validate(project))
    if model_error:
        problems.append(model_error)
    for task in project.tasks:
        preview = previews.get(task.name)
        # a task whose data settings are wrong already has its problem above; what reading them found says it again
        said = any(p.startswith((f"tasks.{task.name}.data:", f"tasks.{task.name}.data.")) for p in problems)
        if preview is not None and not said:
            problems.extend(preview.errors)
    return problems
