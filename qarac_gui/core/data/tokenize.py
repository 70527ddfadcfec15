"""Turning a task's rows into model inputs: batched, cached tokenisation and per-batch dynamic padding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from qarac_gui.core.data.load import DataError, feature_names, file_row, first_bad_value, is_held_out, split_labels
from qarac_gui.core.project.config import TaskConfig

# Columns kept beside the encoder inputs only for evaluation (span QA needs them to turn logits into text).
EVAL_ONLY = ("offset_mapping", "context", "answer_texts")


@dataclass
class TaskData:
    task: TaskConfig
    labels: list[str]
    train: Any                  # tokenised datasets.Dataset
    valid: Any | None
    pad_id: int
    mask_id: int | None
    vocab_size: int

    @property
    def name(self) -> str:
        return self.task.name

    def collate(self, rows: dict[str, list], seed: int = 0) -> dict[str, torch.Tensor]:
        """Pad a batch to its own longest sequence; masked-LM masks are drawn from `seed` (resumable)."""
        batch: dict[str, torch.Tensor] = {}
        for prefix in ("", "b_"):
            ids = rows.get(prefix + "input_ids")
            if ids is None:
                continue
            width = max(len(x) for x in ids)
            batch[prefix + "input_ids"] = _pad(ids, width, self.pad_id)
            batch[prefix + "attention_mask"] = _pad(rows[prefix + "attention_mask"], width, 0)
            if prefix + "token_type_ids" in rows:
                batch[prefix + "token_type_ids"] = _pad(rows[prefix + "token_type_ids"], width, 0)
        kind = self.task.head.kind
        if kind == "token_classification":
            batch["labels"] = _pad(rows["labels"], batch["input_ids"].shape[1], -100)
        elif kind == "span_qa":
            batch["start_positions"] = torch.tensor(rows["start_positions"])
            batch["end_positions"] = torch.tensor(rows["end_positions"])
        elif kind == "masked_lm":
            special = _pad(rows["special_tokens_mask"], batch["input_ids"].shape[1], 1).bool()
            batch["input_ids"], batch["labels"] = self._mask(batch["input_ids"], special, seed)
        elif kind == "classification":
            batch["labels"] = torch.tensor(rows["labels"], dtype=torch.long)
        else:
            batch["labels"] = torch.tensor(rows["labels"], dtype=torch.float)
        return batch

    def _mask(self, ids: torch.Tensor, special: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        # BERT's recipe: of the chosen tokens 80% become [MASK], 10% a random token, 10% stay.
        g = torch.Generator().manual_seed(seed)
        chosen = (torch.rand(ids.shape, generator=g) < self.task.head.mlm_probability) & ~special
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(ids.shape, generator=g)
        random_ids = torch.randint(self.vocab_size, ids.shape, generator=g)
        ids = torch.where(chosen & (roll < 0.8), torch.full_like(ids, self.mask_id), ids)
        ids = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, ids)
        return ids, labels


def _pad(seqs: list[list[int]], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def _prefixed(batch: Any, prefix: str) -> dict:
    return {prefix + k: v for k, v in batch.items()}


class BadRow(DataError):
    """A row the head cannot take, found while tokenising; `tokenize` names its row in the file."""

    def __init__(self, task: TaskConfig, position: int, problem: str) -> None:
        super().__init__(f"task {task.name}: row {position + 1}, {problem}")
        self.position, self.problem = position, problem


def make_encode_fn(task: TaskConfig, tokenizer: Any, labels: list[str], split: str,
                   declared: list[str] | None = None):
    """The batched map function (with indices) for one task kind; raises DataError naming the bad row's value.

    `declared`: the class names a dataset declares for its label column, whose integer values index them.
    """
    d, kind, max_len = task.data, task.head.kind, task.max_length
    index = {name: i for i, name in enumerate(labels)}

    def label_id(value: Any) -> int:
        if declared and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(declared):
            value = declared[value]
        key = str(value)
        if key not in index:
            raise DataError(f"task {task.name}: label {value!r} is not one of the task's labels "
                            f"({', '.join(labels)}); add it to head.labels or fix the row")
        return index[key]

    def encode(batch: dict, indices: list[int]) -> dict:
        # The same check as the preview's, so the run refuses exactly the rows the task report named.
        bad = first_bad_value(task, batch)
        if bad is not None:
            raise BadRow(task, indices[bad[0]], bad[1])
        if kind == "token_classification":
            return _encode_tags(task, tokenizer, batch, label_id)
        if kind == "span_qa":
            return _encode_span(task, tokenizer, batch, keep_eval=(split == "valid"))
        if kind == "similarity":
            out = _prefixed(tokenizer(batch[d.text], truncation=True, max_length=max_len), "")
            out.update(_prefixed(tokenizer(batch[d.text_pair], truncation=True, max_length=max_len), "b_"))
            out["labels"] = [_score(task, v, -1.0, 1.0) for v in batch[d.label]]
            return out
        pair = batch[d.text_pair] if d.text_pair else None
        out = dict(tokenizer(batch[d.text], pair, truncation=True, max_length=max_len,
                             return_special_tokens_mask=(kind == "masked_lm")))
        if kind == "classification":
            out["labels"] = [label_id(v) for v in batch[d.label]]
        elif kind == "multilabel":
            out["labels"] = [_multi_hot(split_labels(v, task.head.label_separator), label_id, len(labels))
                             for v in batch[d.label]]
        elif kind == "regression":
            out["labels"] = [_score(task, v) for v in batch[d.label]]
        return out
    return encode


def _multi_hot(names: list[str], label_id, n: int) -> list[float]:
    row = [0.0] * n
    for name in names:
        row[label_id(name)] = 1.0
    return row


def _score(task: TaskConfig, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise DataError(f"task {task.name}: column {task.data.label!r} must hold numbers, found {value!r}") from None
    if not math.isfinite(score) or not low <= score <= high:
        where = "" if math.isinf(low) else f" in [{low:g}, {high:g}]"
        raise DataError(f"task {task.name}: score {value!r} in column {task.data.label!r} must be a finite "
                        f"number{where}")
    return score


def _encode_tags(task: TaskConfig, tokenizer: Any, batch: dict, label_id) -> dict:
    words = batch[task.data.text]               # lists of words, as many as tags: checked by first_bad_value
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=task.max_length)
    out = dict(enc)
    out["labels"] = []
    for i, tags in enumerate(batch[task.data.label]):
        previous, row = None, []
        for word in enc.word_ids(i):
            # Only a word's first sub-token is labelled; the rest are ignored by the loss and the metric.
            row.append(-100 if word is None or word == previous else label_id(tags[word]))
            previous = word
        out["labels"].append(row)
    return out


def _encode_span(task: TaskConfig, tokenizer: Any, batch: dict, keep_eval: bool) -> dict:
    questions, contexts = batch[task.data.text], batch[task.data.text_pair]
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=task.max_length,
                    return_offsets_mapping=True)
    out = {k: v for k, v in enc.items() if k != "offset_mapping"}
    out["start_positions"], out["end_positions"] = [], []
    offsets_out, answer_texts = [], []
    for i, answers in enumerate(batch[task.data.label]):
        texts, starts = _answers(task, answers)
        seq = enc.sequence_ids(i)
        offsets = [o if s == 1 else None for o, s in zip(enc["offset_mapping"][i], seq)]
        start_tok = end_tok = 0               # points at the first token when the answer was cut off
        if texts:
            a_start = starts[0]
            a_end = a_start + len(texts[0])
            inside = [j for j, o in enumerate(offsets) if o is not None and o[0] < a_end and o[1] > a_start]
            if inside:
                start_tok, end_tok = inside[0], inside[-1]
        out["start_positions"].append(start_tok)
        out["end_positions"].append(end_tok)
        offsets_out.append([list(o) if o is not None else [-1, -1] for o in offsets])
        answer_texts.append(texts)
    if keep_eval:
        out["offset_mapping"], out["context"], out["answer_texts"] = offsets_out, contexts, answer_texts
    return out


def _answers(task: TaskConfig, value: Any) -> tuple[list[str], list[int]]:
    """SQuAD-style {"text": [...], "answer_start": [...]}, each text at its start in the context: checked by
    first_bad_value."""
    return list(value["text"]), [int(s) for s in value["answer_start"]]


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
