"""Turning a task's rows into model inputs: batched, cached tokenisation and per-batch dynamic padding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from qarac_gui.core.data.load import DataError, feature_names, file_row, first_bad_value, is_held_out
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.layers import pad
from qarac_gui.core.project.config import TaskConfig


@dataclass
class TaskData:
    task: TaskConfig
    labels: list[str]
    train: Any                  # tokenised datasets.Dataset
    valid: Any | None
    pad_id: int
    mask_id: int | None
    vocab_size: int
    pad_ids: dict[str, int] = field(default_factory=dict)   # by input prefix, where tokenizers differ
    pad_multiple: int = 1       # batches padded to a multiple of this many tokens (compiled runs: few shapes)

    @property
    def name(self) -> str:
        return self.task.name

    def collate(self, rows: dict[str, list], seed: int = 0) -> dict[str, torch.Tensor]:
        """Pad a batch to its own longest sequence, each tokenised input (by its column prefix) with its own
        tokenizer's padding; the kind adds its labels (masked-LM masks drawn from `seed`, so a resumed run draws
        the same ones)."""
        batch: dict[str, torch.Tensor] = {}
        kind = kind_of(self.task.head)
        for prefix in (k[:-len("input_ids")] for k in rows if k.endswith("input_ids")):
            ids = rows[prefix + "input_ids"]
            width = max(len(x) for x in ids)
            if self.pad_multiple > 1:   # never past what a row may hold: the model's positions end there
                bucket = -(-width // self.pad_multiple) * self.pad_multiple
                width = max(width, min(bucket, kind.longest(self.task, prefix)))
            batch[prefix + "input_ids"] = pad(ids, width, self.pad_ids.get(prefix, self.pad_id))
            batch[prefix + "attention_mask"] = pad(rows[prefix + "attention_mask"], width, 0)
            if prefix + "token_type_ids" in rows:
                batch[prefix + "token_type_ids"] = pad(rows[prefix + "token_type_ids"], width, 0)
        kind.collate(self, rows, batch, seed)
        return batch


class BadRow(DataError):
    """A row the head cannot take, found while tokenising; `tokenize` names its row in the file."""

    def __init__(self, task: TaskConfig, position: int, problem: str) -> None:
        super().__init__(f"task {task.name}: row {position + 1}, {problem}")
        self.position, self.problem = position, problem


class LabelIds:
    """A label's id among the task's labels; `declared`: the class names a dataset declares for its label column,
    whose integer values index them."""

    def __init__(self, task: TaskConfig, labels: list[str], declared: list[str] | None) -> None:
        self.task, self.labels, self.declared = task, labels, declared
        self.index = {name: i for i, name in enumerate(labels)}
        self.count = len(labels)

    def __call__(self, value: Any) -> int:
        declared = self.declared
        if declared and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(declared):
            value = declared[value]
        key = str(value)
        if key not in self.index:
            raise DataError(f"task {self.task.name}: label {value!r} is not one of the task's labels "
                            f"({', '.join(self.labels)}); add it to head.labels or fix the row")
        return self.index[key]


def make_encode_fn(task: TaskConfig, tokenizer: Any, labels: list[str], split: str,
                   declared: list[str] | None = None):
    """The batched map function (with indices) for the task's kind; raises DataError naming the bad row's value."""
    kind, label_id = kind_of(task.head), LabelIds(task, labels, declared)

    def encode(batch: dict, indices: list[int]) -> dict:
        # The same check as the preview's, so the run refuses exactly the rows the task report named.
        bad = first_bad_value(task, batch)
        if bad is not None:
            raise BadRow(task, indices[bad[0]], bad[1])
        return kind.encode(task, tokenizer, batch, label_id, split)
    return encode


def tokenize(task: TaskConfig, tokenizer: Any, labels: list[str], ds: Any, split: str) -> Any:
    """Tokenise a split once; `datasets` caches the result by fingerprint, so a rerun reads it from disk."""
    encode = make_encode_fn(task, tokenizer, labels, split, feature_names(ds, task.data.label))
    try:
        return ds.map(encode, batched=True, with_indices=True, remove_columns=ds.column_names,
                      desc=f"Tokenising {task.name} ({split})")
    except Exception as e:
        inner = e
        while not isinstance(inner, DataError) and (inner.__cause__ or inner.__context__):
            inner = inner.__cause__ or inner.__context__
        if isinstance(inner, BadRow):
            # Rows are named as in the file, as the preview names them; held-out rows are rows of the training file.
            what = "validation data" if split == "valid" and not is_held_out(task) else "training data"
            raise DataError(f"task {task.name}: {what}, row {file_row(ds, inner.position)}, {inner.problem}") from None
        if isinstance(inner, DataError):
            raise inner from None
        raise DataError(f"task {task.name}: tokenising the {split} data failed: {e}") from e
