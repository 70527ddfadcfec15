"""Row filters a project file may hold (`label == 1`, `label != -1`, `split in ["a", "b"]`, joined with and, or,
not and brackets): a tiny grammar parsed here into a predicate. Nothing in a filter is ever evaluated as Python,
so a filter from a shared project can only compare columns with constants.

    filter     := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" filter ")" | comparison
    comparison := operand ("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                | operand ["not"] "in" "[" [constant ("," constant)*] "]"
    operand    := column | constant
    column     := a name of letters, digits and _ (not starting with a digit), or any name in `backquotes`
    constant   := a number, a 'string' or "string", true, false or null
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

from qarac_gui.core.errors import UserError

MAX_CHARS = 2000        # a filter is a line of a project file, not a program
MAX_DEPTH = 32          # nesting of brackets and not: deeper is not a filter anyone writes

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],])
""", re.VERBOSE)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


class FilterError(UserError, ValueError):
    """A filter outside the grammar, or one that cannot be applied to a row; the message says where and why."""


@dataclass(frozen=True)
class _Token:
    kind: str           # number, string, name, column, op, punct, keyword, end
    value: Any
    at: int             # character position, for messages


def _tokens(text: str) -> list[_Token]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise FilterError(f"filter {text!r}: unexpected {text[pos]!r} at character {pos + 1}; a filter compares "
                              "columns with numbers or 'text', e.g. label == 1")
        kind, raw = m.lastgroup, m.group()
        if kind == "number":
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
            out.append(_Token("number", value, pos))
        elif kind == "string":
            out.append(_Token("string", _unquote(raw[1:-1], text, pos), pos))
        elif kind == "quoted":
            out.append(_Token("column", raw[1:-1], pos))
        elif kind == "name":
            out.append(_Token("keyword" if raw.lower() in KEYWORDS else "column",
                              raw.lower() if raw.lower() in KEYWORDS else raw, pos))
        elif kind in ("op", "punct"):
            out.append(_Token(kind, raw, pos))
        pos = m.end()
    out.append(_Token("end", None, len(text)))
    return out


def _unquote(body: str, text: str, pos: int) -> str:
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise FilterError(f"filter {text!r}: unknown escape in the text at character {pos + i + 2}; use \\\\, "
                                  "\\', \\\", \\n or \\t")
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


Row = dict
Predicate = Callable[[Row], bool]


class _Parser:
    def __init__(self, text: str, columns: set[str] | None) -> None:
        self.text, self.columns = text, columns
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    def fail(self, expected: str) -> FilterError:
        token = self.tokens[self.i]
        found = "the end" if token.kind == "end" else repr(self.text[token.at:token.at + 20].split()[0])
        return FilterError(f"filter {self.text!r}: expected {expected} at character {token.at + 1}, found {found}")

    def peek(self, kind: str, value: Any = None) -> bool:
        t = self.tokens[self.i]
        return t.kind == kind and (value is None or t.value == value)

    def take(self, kind: str, value: Any = None, expected: str = "") -> _Token:
        if not self.peek(kind, value):
            raise self.fail(expected or repr(value) or kind)
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Predicate:
        if not self.text.strip():
            raise FilterError("filter: it is empty; write a condition such as label == 1, or remove the filter")
        predicate = self.or_()
        if not self.peek("end"):
            raise self.fail("'and', 'or' or the end of the filter")
        return predicate

    def or_(self) -> Predicate:
        parts = [self.and_()]
        while self.peek("keyword", "or"):
            self.i += 1
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def and_(self) -> Predicate:
        parts = [self.not_()]
        while self.peek("keyword", "and"):
            self.i += 1
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def not_(self) -> Predicate:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"filter {self.text!r}: nested more than {MAX_DEPTH} deep; write it flatter")
        try:
            if self.peek("keyword", "not"):
                self.i += 1
                inner = self.not_()
                return lambda row: not inner(row)
            if self.peek("punct", "("):
                self.i += 1
                inner = self.or_()
                self.take("punct", ")", "')'")
                return inner
            return self.comparison()
        finally:
            self.depth -= 1

    def operand(self) -> tuple[str, Any]:
        t = self.tokens[self.i]
        if t.kind == "column":
            if self.columns is not None and t.value not in self.columns:
                raise FilterError(f"filter {self.text!r}: no column {t.value!r} (columns: "
                                  f"{', '.join(sorted(self.columns))})")
            self.i += 1
            return "column", t.value
        return "constant", self.constant()

    def constant(self) -> Any:
        t = self.tokens[self.i]
        if t.kind in ("number", "string"):
            self.i += 1
            return t.value
        if t.kind == "keyword" and t.value in ("true", "false", "null"):
            self.i += 1
            return {"true": True, "false": False, "null": None}[t.value]
        raise self.fail("a column, a number, a 'text', true, false or null")

    def comparison(self) -> Predicate:
        left = self.operand()
        negate = False
        if self.peek("keyword", "not"):
            self.i += 1
            negate = True
            if not self.peek("keyword", "in"):
                raise self.fail("'in' after 'not'")
        if self.peek("keyword", "in"):
            self.i += 1
            self.take("punct", "[", "'[' to start the list")
            values = []
            if not self.peek("punct", "]"):
                values.append(self.constant())
                while self.peek("punct", ","):
                    self.i += 1
                    values.append(self.constant())
            self.take("punct", "]", "']' or ',' in the list")
            return _membership(left, values, negate)
        if not self.peek("op"):
            raise self.fail("a comparison (==, !=, <, <=, >, >=, in, not in)")
        op = self.take("op").value
        right = self.operand()
        if left[0] == "constant" and right[0] == "constant":
            raise FilterError(f"filter {self.text!r}: {op!r} compares two constants; name a column on one side")
        return _compare(left, op, right, self.text)


def _value(operand: tuple[str, Any], row: Row) -> Any:
    kind, v = operand
    return row.get(v) if kind == "column" else v


def _same(a: Any, b: Any) -> bool:
    # 1 == 1.0 == true in the data's own types would surprise nobody but bool-vs-number would: keep them apart.
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _membership(left: tuple[str, Any], values: list, negate: bool) -> Predicate:
    def test(row: Row) -> bool:
        v = _value(left, row)
        return any(_same(v, x) for x in values) != negate
    return test


def _compare(left: tuple[str, Any], op: str, right: tuple[str, Any], text: str) -> Predicate:
    compare = COMPARE[op]

    def test(row: Row) -> bool:
        a, b = _value(left, row), _value(right, row)
        if op == "==":
            return _same(a, b)
        if op == "!=":
            return not _same(a, b)
        if a is None or b is None:          # a missing value is neither above nor below anything
            return False
        numbers = (int, float)
        if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
            return bool(compare(a, b))
        if isinstance(a, str) and isinstance(b, str):
            return bool(compare(a, b))
        raise FilterError(f"filter {text!r}: cannot order {a!r} ({type(a).__name__}) against {b!r} "
                          f"({type(b).__name__}); compare numbers with numbers and text with text")
    return test


def compile_filter(text: str, columns: list[str] | set[str] | None = None) -> Predicate:
    """The filter as a predicate over a row (a dict of column -> value); FilterError for anything outside the
    grammar, or naming a column the data does not have (when `columns` is given)."""
    if not isinstance(text, str):
        raise FilterError(f"filter: expected text such as label == 1, got {text!r}")
    if len(text) > MAX_CHARS:
        raise FilterError(f"filter: {len(text)} characters is longer than a filter can be ({MAX_CHARS})")
    return _Parser(text, set(columns) if columns is not None else None).parse()


def filter_columns(text: str) -> list[str]:
    """The columns a filter reads, in the order it names them first (FilterError for text that is not made of
    the filter's words)."""
    return list(dict.fromkeys(t.value for t in _tokens(text) if t.kind == "column"))
