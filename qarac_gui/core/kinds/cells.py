"""Checks of single cells that several head kinds share: is it text, a list of words, SQuAD-style answers, a
number; each gives the words that name what is wrong (None when the cell is fine)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from qarac_gui.core.errors import DataError

if TYPE_CHECKING:
    from qarac_gui.core.project.config import TaskConfig


def value_kind(value: Any) -> str:
    return {type(None): "null", bool: "true or false", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def split_labels(value: Any, separator: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [s.strip() for s in str(value).split(separator) if s.strip()]


def short(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def first_where(values, problem) -> tuple[int, str] | None:
    for i, value in enumerate(values):
        text = problem(value)
        if text:
            return i, text
    return None


def text_problem(value: Any, column: str) -> str | None:
    if isinstance(value, str):
        return None
    if value is None:
        return f"has no text in {column!r} (null or an empty cell); fill it in or remove the row"
    return (f"has {short(value)} ({value_kind(value)}) in {column!r}, not text; map the column that holds the text, or "
            "write the value as a quoted string")


def words_problem(value: Any, column: str) -> str | None:
    if value is None:
        return f"has no words in {column!r} (null or an empty cell); fill it in or remove the row"
    if not isinstance(value, (list, tuple)):
        return (f"has {short(value)} in {column!r}, but a token classification head needs a list of words per "
                'row, e.g. ["alice", "lives", "here"], in JSON Lines, JSON or Parquet')
    bad = next((j for j, w in enumerate(value) if not isinstance(w, str)), None)
    if bad is not None:
        return f"has {short(value[bad])} as word {bad + 1} in {column!r}; every word must be text"
    return None


def tags_problem(task: TaskConfig, words: Any, tags: Any) -> str | None:
    if not isinstance(words, (list, tuple)):
        return None                 # the words' own problem is named
    if tags is not None and not isinstance(tags, (list, tuple)):
        return (f"has {short(tags)} in {task.data.label!r}, but a token classification head needs a list of tags "
                "per row, one per word")
    n = len(tags or ())
    if n != len(words):
        return (f"has {len(words)} words in {task.data.text!r} but {n} tags in {task.data.label!r}; give exactly "
                "one tag per word")
    return None


SQUAD_FORM = 'span QA answers are {"text": [...], "answer_start": [...]}, SQuAD style'
OFFSET_IS = "answer_start is the 0-based character offset of the answer in the context"


def answer_problem(context: Any, value: Any, column: str) -> str | None:
    """What is wrong with one row's answers: each text must stand in the context at its answer_start, or the head
    would be trained toward whatever tokens are there (no error, just a worse model)."""
    if not isinstance(context, str):
        return None                 # the context's own problem is named
    texts = value.get("text") if isinstance(value, dict) else None
    starts = value.get("answer_start") if isinstance(value, dict) else None
    if not isinstance(texts, (list, tuple)) or not isinstance(starts, (list, tuple)):
        return f"has {short(value)} in {column!r}, but {SQUAD_FORM}"
    if len(texts) != len(starts):
        return (f"has {len(texts)} answer text(s) but {len(starts)} answer_start value(s) in {column!r}; give one "
                "answer_start per answer text")
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text:
            return (f"has an empty answer text in {column!r}; give the answer as it is written in the context, or "
                    "no answer at all: {\"text\": [], \"answer_start\": []}") if text in ("", None) else (
                    f"has answer text {short(text)} ({value_kind(text)}) in {column!r}; an answer is text")
        if isinstance(start, bool) or not (isinstance(start, int) or (isinstance(start, float) and start.is_integer())):
            return f"has answer_start {short(start)}, not a whole number, in {column!r}; {OFFSET_IS}"
        start = int(start)
        if start < 0 or start + len(text) > len(context):
            return (f"has answer_start {start} for {short(text)}, outside its context of {len(context)} characters; "
                    f"{OFFSET_IS}")
        there = context[start:start + len(text)]
        if there != text:
            at = context.find(text)
            where = f"it first occurs at {at}" if at >= 0 else f"{short(text)} is not in the context"
            return (f"has answer {short(text)} at answer_start {start}, but the context there reads {short(there)} "
                    f"({where}); {OFFSET_IS}")
    return None


def score(task: TaskConfig, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"task {task.name}: column {task.data.label!r} must hold numbers, found {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        where = "" if math.isinf(low) else f" in [{low:g}, {high:g}]"
        raise DataError(f"task {task.name}: score {value!r} in column {task.data.label!r} must be a finite "
                        f"number{where}")
    return number
