"""Reading a task's rows through `datasets`: local files or a Hub dataset, its validation split, its labels."""

from __future__ import annotations

import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from qarac_gui.core.errors import DataError
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.cells import value_kind
from qarac_gui.core.project.config import Project, TaskConfig, special_file_kind

EXTENSION_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".jsonl": "jsonl",
                     ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    fmt = EXTENSION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path.name}: cannot tell the format from the extension; use .csv, .tsv, .json, .jsonl "
                        "or .parquet, or set data.format")
    return fmt


def check_data_file(path: Path) -> None:
    """Refuse what is not a regular file before anything opens it: opening a FIFO waits forever for a writer, and
    a device such as /dev/zero never ends, so a reader would fill the memory."""
    try:
        mode = path.stat().st_mode          # follows links: a link to a data file is a data file
    except (FileNotFoundError, ValueError):     # ValueError: a NUL in the name, which no file can have
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: not a regular file (a folder); choose a data file in it, or give the folder as "
                        "a Hub dataset (data.hub) to read its splits")
    raise DataError(f"{path}: not a regular file ({special_file_kind(mode)}); choose a data file (CSV, TSV, JSON, "
                    "JSON Lines or Parquet) saved on disk")


def load_path(path: Path, declared: str, cache_dir: str | None) -> Any:
    """A data file's rows; what is not a regular file is refused first, since /dev/zero has no extension to judge."""
    check_data_file(path)
    return load_file(path, file_format(path, declared), cache_dir)


def load_file(path: Path, fmt: str, cache_dir: str | None) -> Any:
    from datasets import load_dataset
    check_data_file(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; choose a file with a header row and data rows under it")
    builder, kwargs = {"csv": ("csv", {}), "tsv": ("csv", {"delimiter": "\t"}), "json": ("json", {}),
                       "jsonl": ("json", {}), "parquet": ("parquet", {})}[fmt]
    if fmt in ("json", "jsonl"):
        _refuse_json_that_crashes_the_reader(path, fmt)
    try:
        return load_dataset(builder, data_files=_literal(path, cache_dir), split="train", cache_dir=cache_dir,
                            **kwargs)
    except Exception as e:          # datasets wraps parser errors in many types; the message is what matters
        _close_leaked_files()
        chain = _chain(e)
        if any(isinstance(c, UnicodeDecodeError) for c in chain):
            raise DataError(f"{path}: {_where_not_utf8(path)}is not UTF-8 text; save the file as UTF-8 (in most "
                            "editors: Save as, encoding UTF-8)") from e
        if any("corresponds to no data" in str(c) for c in chain):
            raise DataError(f"{path}: the file has no rows (only a header); add data rows") from e
        raise DataError(f"{path}: could not be read as {fmt.upper()}: {_first_line(e)}") from e


def _literal(path: Path, cache_dir: str | None) -> str:
    """The path as datasets should read it. datasets treats data_files as glob patterns and URLs ("a?b.csv" would
    also match "axb.csv"; "::" and "$" mean more), so a name with such characters is read through a link with a
    plain name, kept in the cache so the parsed copy is reused."""
    text = str(path)
    if not any(c in path.name for c in "*?[]$") and "::" not in text:
        return text
    import hashlib
    base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "qarac_gui"
    folder = base / "links" / hashlib.sha256(text.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / f"data{path.suffix if path.suffix.isascii() and path.suffix.isprintable() else ''}"
    if not (link.is_symlink() and os.readlink(link) == text):
        link.unlink(missing_ok=True)
        try:
            link.symlink_to(path)
        except OSError:             # no symlinks allowed (Windows without the privilege): a copy
            shutil.copyfile(path, link)
    return str(link)


def _refuse_json_that_crashes_the_reader(path: Path, fmt: str) -> None:
    """pyarrow's JSON reader can crash the whole process (a segfault, not an exception) on input that is not a
    table: a bare null where a row should be, values nested thousands deep, and other shapes found by fuzzing.
    So every row is read with Python's json first, and the file is refused, naming the line, unless each row is
    an object: JSON Lines, one object per line, or one JSON array of objects (or an object of columns)."""
    text = path.read_bytes()
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:]
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return                      # load_file's own message names the line of the first bad byte
    lines = [(n, line) for n, line in enumerate(decoded.splitlines(), 1) if line.strip()]
    if not lines:
        raise DataError(f"{path}: the file has no rows; add one JSON object per line")
    first = lines[0][1].lstrip()
    if not first.startswith("{") or (len(lines) > 1 and not lines[1][1].lstrip().startswith("{")):
        whole = _parse(path, decoded, 1, fmt)
        rows = whole if isinstance(whole, list) else None
        if isinstance(whole, dict) and all(isinstance(v, list) for v in whole.values()):
            return                  # columns: {"text": [...], "label": [...]}
        if rows is None:
            raise DataError(f"{path}: holds {value_kind(whole)}, not rows; write one JSON object per line, or a JSON "
                            "array of objects")
        bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
        if bad is not None:
            raise DataError(f"{path}: item {bad + 1} of the array is {value_kind(rows[bad])}, not an object with the "
                            "columns")
        return
    for n, line in lines:
        row = _parse(path, line, n, fmt)
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {n} is {value_kind(row)}, not an object with the columns; each line must be "
                            "one row, e.g. {\"text\": \"...\", \"label\": \"...\"}")


def _parse(path: Path, text: str, line: int, fmt: str) -> Any:
    import json
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: could not be read as {fmt.upper()}: line {line + e.lineno - 1}: {e.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: line {line} nests values too deeply; this is not table data") from None


def _close_leaked_files() -> None:
    # datasets' CSV reader leaves its file open when parsing fails; collecting closes it now (on Windows an open
    # file stays locked), without the ResourceWarning that would otherwise surface at some later moment.
    import gc
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _where_not_utf8(path: Path) -> str:
    """ "line N (byte M) " of the first byte that is not UTF-8, read in blocks (files can be large)."""
    import codecs
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, offset = 1, 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                line += block[:e.start].count(b"\n")
                return f"line {line} (byte {offset + e.start + 1}) "
            line += block.count(b"\n")
            offset += len(block)
    return ""


def _chain(e: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _first_line(e: Exception) -> str:
    cause = e.__cause__ or e.__context__
    text = str(e).strip() or str(cause or type(e).__name__)
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text = f"{text} ({str(cause).strip().splitlines()[0]})"
    return text.splitlines()[0]


def load_hub(task: TaskConfig, split: str, cache_dir: str | None, repo: str = "", config: str = "") -> Any:
    """A split of the task's Hub dataset (or of `repo` with `config`, a source of its union)."""
    from datasets import load_dataset
    repo, config = (repo, config) if repo else (task.data.hub, task.data.hub_config)
    try:
        return load_dataset(repo, config or None, split=split, cache_dir=cache_dir)
    except Exception as e:
        raise DataError(f"task {task.name}: Hub dataset {repo!r} (config {config or 'default'}, split "
                        f"{split!r}) could not be loaded: {_first_line(e)}") from e


def load_train(project: Project, task: TaskConfig, cache_dir: str | None = None, adapt: bool = True) -> Any:
    """The training rows, through the task's filter and label map (adapt=False: as stored), before any validation
    split or row limit."""
    d = task.data
    if d.union:
        from qarac_gui.core.data.adapters import union_rows
        train = union_rows(project, task, cache_dir)
    elif d.hub:
        train = load_hub(task, d.train_split, cache_dir)
    elif not d.train:
        raise DataError(f"task {task.name}: choose a training data file or a Hub dataset")
    else:
        train = load_path(project.resolve(d.train), d.format, cache_dir)
    return _adapted(task, train, "training data") if adapt else train


def _adapted(task: TaskConfig, ds: Any, what: str) -> Any:
    """The rows through data.filter and data.label_map, once their columns are known to be there."""
    from qarac_gui.core.data.adapters import adapt_rows  # imported here: adapters builds on this module's errors
    check_columns(task, ds, what)
    return adapt_rows(task, ds, what)


def load_splits(project: Project, task: TaskConfig, cache_dir: str | None = None,
                train: Any = None) -> tuple[Any, Any]:
    """(train, validation) datasets of rows through the task's filter and label map; validation is None when there
    is none and none is held out. Rows held out for validation are drawn from the rows the filter kept.

    `train`: the rows load_train() already read, so a caller that needed them first does not read them twice.
    """
    d = task.data
    if train is None:
        train = load_train(project, task, cache_dir)
    if d.hub:
        valid = load_hub(task, d.validation_split, cache_dir) if d.validation_split else None
    else:
        valid = None
        if d.validation:
            valid = load_path(project.resolve(d.validation), d.format, cache_dir)
    check_columns(task, train, "training data")
    if valid is not None:
        valid = _adapted(task, valid, "validation data")
    if valid is None and d.validation_fraction > 0:
        held_out = math.ceil(d.validation_fraction * len(train))        # how datasets rounds a fraction
        if len(train) < 2 or held_out >= len(train):
            raise DataError(f"task {task.name}: holding out {d.validation_fraction:g} of {len(train)} training "
                            "row(s) for validation leaves none to train on; lower validation_fraction, give a "
                            "validation file, or add rows")
        parts = train.train_test_split(test_size=d.validation_fraction, seed=project.train.seed, shuffle=True)
        train, valid = parts["train"], parts["test"]
    if d.limit:
        train = train.select(range(min(d.limit, len(train))))
    if len(train) == 0:
        raise DataError(f"task {task.name}: the training data has no rows")
    return train, valid


def required_columns(task: TaskConfig) -> list[str]:
    return kind_of(task.head).columns(task)


def check_columns(task: TaskConfig, ds: Any, what: str) -> None:
    missing = [c for c in required_columns(task) if c not in ds.column_names]
    if missing:
        raise DataError(f"task {task.name}: the {what} has no column {', '.join(map(repr, missing))} "
                        f"(columns: {', '.join(ds.column_names)}); map the columns in the task's data settings")


def feature_names(ds: Any, column: str) -> list[str] | None:
    """Label names a Hub dataset declares (ClassLabel, or a list of ClassLabel for tags)."""
    feature = ds.features.get(column)
    for _ in range(2):
        if hasattr(feature, "names"):
            return list(feature.names)
        feature = getattr(feature, "feature", None)
        if isinstance(feature, list) and feature:
            feature = feature[0]
    return None


def labels_in(task: TaskConfig, value: Any) -> list:
    """The labels one row's label cell holds, as the task's kind reads it (a class, a list, a tag per word)."""
    return kind_of(task.head).labels_in(task, value)


def first_bad_value(task: TaskConfig, columns: dict[str, list]) -> tuple[int, str] | None:
    """(position, what is wrong) of the first row whose cells the head cannot take, e.g. "has no text in 'text'
    ...; fill it in or remove the row"; None when all can be used. `columns`: the task's columns, as lists.

    The preview and the tokenising both ask this, so a run refuses exactly the rows the report named, and a cell
    the tokenizer would choke on (a TypeError, naming nothing) is named with its row and column first.
    """
    found = [f for f in kind_of(task.head).bad_cells(task, columns) if f is not None]
    return min(found, key=lambda f: f[0]) if found else None


def file_row(ds: Any, position: int) -> int:
    """The 1-based row, in its file (or Hub split), of the row at `position` of `ds`. A held-out split, or a limit
    on one, is a view that datasets keeps as indices into the file's table (the private `_indices`; without it
    the position is the row)."""
    indices = getattr(ds, "_indices", None)
    if indices is not None:
        position = indices.column(0)[position].as_py()
    return position + 1


def is_held_out(task: TaskConfig) -> bool:
    """Whether the task's validation rows are held out of its training data (it names no validation file or split
    of their own). Asked of the task, not of the rows: a filtered file is a view of its table too."""
    d = task.data
    return not (d.validation_split if d.hub else d.validation)


def header_warnings(project: Project, task: TaskConfig) -> list[str]:
    """Columns that a CSV or TSV header names more than once. The reader (pandas) keeps the first under the name
    and silently renames the others to NAME.1, NAME.2, ..., so the task may read a column the user did not mean."""
    d = task.data
    out = []
    for name in ([] if d.hub else [d.train, d.validation]):
        if not name:
            continue
        path = project.resolve(name)
        try:
            fmt = file_format(path, d.format)
        except DataError:
            continue
        if fmt not in ("csv", "tsv") or not path.is_file():
            continue
        header = _header(path, "\t" if fmt == "tsv" else ",")
        seen: dict[str, int] = {}
        for column in header:
            seen[column] = seen.get(column, 0) + 1
        for column, n in seen.items():
            if n > 1 and column.strip():
                out.append(f"task {task.name}: the header of {path} has {n} columns named {column!r}; only the first "
                           f"is read as {column!r} (the reader renames the others to {column + '.1'!r} and on); give "
                           "each column its own name")
    return out


def _header(path: Path, delimiter: str) -> list[str]:
    import csv
    import io
    with open(path, "rb") as f:
        head = f.read(1 << 16)      # a header longer than this is not one a person wrote
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    try:
        return next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    except csv.Error:
        return []


def infer_labels(task: TaskConfig, train: Any, valid: Any) -> list[str]:
    """The label names of a task whose kind has classes: given, declared by the dataset, or seen in the data."""
    kind = kind_of(task.head)
    if not kind.has_classes:
        return []
    if task.head.labels:
        return list(task.head.labels)
    declared = feature_names(train, task.data.label)
    if declared:
        return declared
    seen: set = set()
    for ds in (train, valid):
        if ds is None:
            continue
        for value in ds[task.data.label]:
            seen.update(kind.labels_in(task, value))
    return kind.order_labels(seen)
