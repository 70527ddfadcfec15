"""A task's row filter and label map (`data.filter`, `data.label_map`) applied to its rows as they are read."""

from __future__ import annotations

from typing import Any

from qarac_gui.core.data.load import DataError, file_row
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.project.config import TaskConfig
from qarac_gui.core.project.filters import FilterError, compile_filter, filter_columns

KEEP = "__qarac_keep__"         # a column of the filter's verdicts while the labels are mapped; dropped after


class _BadRow(Exception):
    """Raised inside datasets' filter or map, which know positions only: the caller names the row in the file."""

    def __init__(self, position: int, problem: str) -> None:
        super().__init__(problem)
        self.position, self.problem = position, problem


def adapt_rows(task: TaskConfig, ds: Any, what: str) -> Any:
    """`ds` with only the rows `data.filter` keeps and its labels replaced by `data.label_map`.

    Rows keep their place in the file: the filter leaves a view (indices) of the table, so errors downstream still
    name rows as they are in the file. `what`: "training data" or "validation data", for messages.
    """
    d = task.data
    if not d.filter and not d.label_map:
        return ds
    where = f"task {task.name}: {what}"
    missing = [c for c in filter_columns(d.filter) if c not in ds.column_names] if d.filter else []
    if missing:
        raise DataError(f"{where} has no column {missing[0]!r}, which data.filter names (columns: "
                        f"{', '.join(ds.column_names)}); name a column of the data in the filter")
    if d.label_map and d.label not in ds.column_names:
        raise DataError(f"{where} has no column {d.label!r} for data.label_map to map (columns: "
                        f"{', '.join(ds.column_names)}); set data.label to the label column")
    before = len(ds)
    if not d.label_map:
        try:
            ds = filter_rows(ds, d.filter, where)
        except FilterError as e:
            raise DataError(str(e)) from None
    else:
        ds = _map_labels(task, ds, where)
        if d.filter:
            ds = ds.filter(_kept, batched=True, input_columns=KEEP, desc=f"Filtering {task.name}")
            ds = ds.remove_columns(KEEP)
    if d.filter and len(ds) == 0:
        raise DataError(f"{where}: data.filter {d.filter!r} keeps none of its {before} rows; loosen the filter or "
                        "check the values in its columns")
    return ds


def _kept(flags: list[bool]) -> list[bool]:
    return flags


def filter_rows(ds: Any, text: str, where: str) -> Any:
    """A datasets.Dataset with only the rows the filter keeps (a view; the table is not copied); FilterError names
    the first row, as it is in the file, that the filter could not judge."""
    predicate = compile_filter(text, ds.column_names)
    names = filter_columns(text) or ds.column_names[:1]      # `1 in [1]` reads no column, but filter needs one

    def keep(*columns_and_indices: list) -> list[bool]:
        *columns, indices = columns_and_indices
        return [_judge(predicate, dict(zip(names, row)), index) for row, index in zip(zip(*columns), indices)]
    try:
        return ds.filter(keep, batched=True, with_indices=True, input_columns=names, desc="Filtering")
    except Exception as e:
        bad = _bad_row(e)
        if bad is None:
            raise
        raise FilterError(f"{where}, row {file_row(ds, bad.position)}: {bad.problem}") from None


def _judge(predicate: Any, row: dict, index: int) -> bool:
    try:
        return predicate(row)
    except FilterError as e:
        raise _BadRow(index, str(e)) from None


def _bad_row(e: BaseException) -> _BadRow | None:
    """The _BadRow behind an error datasets raised (it may wrap what the function raised)."""
    seen = []
    while e is not None and e not in seen:
        if isinstance(e, _BadRow):
            return e
        seen.append(e)
        e = e.__cause__ or e.__context__
    return None


def _map_labels(task: TaskConfig, ds: Any, where: str) -> Any:
    """The label column with each label replaced (and the filter's verdicts in KEEP when there is a filter).

    Rows the filter drops are not mapped: their label becomes empty, so that a value the map does not know is an
    error only where the row is kept. The column is written anew, so a declared ClassLabel (whose names the map
    has just made wrong) gives way to the mapped values.
    """
    d = task.data
    mapping, column = _one_type(d.label_map), d.label
    predicate = compile_filter(d.filter, ds.column_names) if d.filter else None
    names = list(dict.fromkeys([column, *(filter_columns(d.filter) if d.filter else [])]))
    # A cell of several labels joined by the separator (multi-label text cells) is mapped label by label.
    separator = task.head.label_separator if kind_of(task.head).label_role == "labels" else None
    keys = f"{', '.join(map(repr, list(mapping)[:10]))}{', ...' if len(mapping) > 10 else ''}"

    def one(value: Any, index: int) -> Any:
        if value is None:
            return None             # an empty cell stays empty; the checks of the rows name it in their words
        for key in _keys(value):
            if key in mapping:
                return mapping[key]
        raise _BadRow(index, f"{column!r} holds {_shown(value)}, which data.label_map has no key for (keys: "
                             f"{keys}); add it, or drop such rows with data.filter")

    def cell(value: Any, index: int) -> Any:
        if isinstance(value, (list, tuple)):            # tags, or a list of labels: each one
            return [one(v, index) for v in value]
        if separator is not None and isinstance(value, str):     # "a;b": each label between the separators
            return separator.join(str(one(v.strip(), index)) for v in value.split(separator) if v.strip())
        return one(value, index)

    def fn(*columns_and_indices: list) -> dict:
        *columns, indices = columns_and_indices
        rows = [dict(zip(names, row)) for row in zip(*columns)]
        kept = [True] * len(rows) if predicate is None else [_judge(predicate, row, i)
                                                             for row, i in zip(rows, indices)]
        out = {column: [cell(row[column], i) if k else None for row, i, k in zip(rows, indices, kept)]}
        if predicate is not None:
            out[KEEP] = kept
        return out
    try:
        return ds.map(fn, batched=True, with_indices=True, input_columns=names, remove_columns=[column],
                      features=_mapped_features(ds, column, mapping, separator, predicate is not None),
                      desc=f"Mapping labels of {task.name}")
    except Exception as e:
        bad = _bad_row(e)
        if bad is None:
            raise
        raise DataError(f"{where}, row {file_row(ds, bad.position)}: {bad.problem}") from None


def _one_type(mapping: dict) -> dict:
    """The map with its numbers all floats when any is one, so every batch of the column has the same type."""
    if any(isinstance(v, float) for v in mapping.values()):
        return {k: v if isinstance(v, str) else float(v) for k, v in mapping.items()}
    return dict(mapping)


def _mapped_features(ds: Any, column: str, mapping: dict, separator: str | None, keep: bool) -> Any:
    """The columns after the map, declared rather than inferred per batch: a batch whose rows the filter all drops
    holds only empty labels, which alone would say nothing of the column's type."""
    from datasets import List, Value
    values = list(mapping.values())
    kind = "string" if isinstance(values[0], str) else "float64" if isinstance(values[0], float) else "int64"
    before = ds.features[column]
    features = ds.features.copy()
    del features[column]
    if hasattr(before, "feature"):                      # a list per row: tags, labels
        features[column] = List(Value(kind))
    elif separator is not None and getattr(before, "dtype", "") in ("string", "large_string"):
        features[column] = Value("string")              # "a;b" stays text, with each label mapped
    else:
        features[column] = Value(kind)
    if keep:
        features[KEEP] = Value("bool")
    return features


def _keys(value: Any) -> list[str]:
    """The label_map keys a cell matches: its text, so the integer 0 is "0"; a whole number read as a float (a
    CSV column with an empty cell) matches "1" as well as "1.0"; true and false as TOML writes them."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, float) and value.is_integer():
        return [str(int(value)), str(value)]
    return [str(value)]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def union_rows(project: Any, task: TaskConfig, cache_dir: str | None) -> Any:
    """The distinct texts of the union's sources (each source's rows through its own filter), in first-seen
    order, as one column named data.text."""
    from datasets import Dataset

    from qarac_gui.core.data.load import load_hub, load_path
    d, seen = task.data, {}
    for i, source in enumerate(d.union):
        where = f"task {task.name}: data.union[{i}] ({source.hub or source.train})"
        ds = (load_hub(task, source.split, cache_dir, source.hub, source.hub_config) if source.hub
              else load_path(project.resolve(source.train), source.format, cache_dir))
        missing = [c for c in source.columns if c not in ds.column_names]
        if missing:
            raise DataError(f"{where} has no column {missing[0]!r} (columns: {', '.join(ds.column_names)}); name "
                            "its text columns in columns")
        if source.filter:
            try:
                ds = filter_rows(ds, source.filter, where)
            except FilterError as e:
                raise DataError(str(e)) from None
        for position, row in enumerate(zip(*(ds[c] for c in source.columns))):     # row by row, its columns in turn
            for column, value in zip(source.columns, row):
                if not isinstance(value, str):
                    raise DataError(f"{where}, row {file_row(ds, position)}: {column!r} holds {value!r}, not text; "
                                    "take only text columns into a union")
                seen.setdefault(value, None)
    if not seen:
        raise DataError(f"task {task.name}: data.union gathered no text; check its sources and filters")
    return Dataset.from_dict({d.text: list(seen)})
