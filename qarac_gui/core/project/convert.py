"""Strict conversion between plain dicts (parsed TOML) and the config dataclasses."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, get_args, get_origin

from qarac_gui.core.errors import UserError


class ConfigError(UserError, ValueError):
    """A problem in a project file; the message names the key and says how to fix it."""


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (list, tuple):
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a table"
    return _TYPE_WORDS.get(tp, str(tp))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        for option in options[:-1]:          # int | float | str: the first type that takes the value
            try:
                return _convert(option, value, where)
            except ConfigError:
                pass
        try:
            return _convert(options[-1], value, where)
        except ConfigError:
            if len(options) == 1:
                raise
        words = dict.fromkeys("a number" if o in (int, float) else _describe(o) for o in options)
        raise ConfigError(f"{where}: expected {' or '.join(words)}, got {value!r}") from None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = get_args(tp)
        name = where.rsplit(".", 1)[-1]
        return [_convert(item, v, _item_where(where, name, i, v)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        _, item = get_args(tp)
        return {k: _convert(item, v, f"{where}.{shown(k)}") for k, v in value.items()}
    if tp is float:
        # TOML writes 1 for 1.0 often enough that an integer must be accepted where a number is expected.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                raise ConfigError(f"{where}: the number has {len(str(value))} digits, far too large") from None
            if not math.isfinite(number):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return number
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")


def shown(name: Any) -> str:
    """A key or name as it goes into a message: quoted when it holds line breaks or other unprintable characters,
    so a message stays one readable line per problem."""
    text = str(name)
    return text if text.isprintable() else repr(text)


def _item_where(where: str, name: str, index: int, value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]:
        return f"{where}.{shown(value['name'])}"
    return f"{where}[{index}]"


def build(cls: type, raw: dict, where: str = "") -> Any:
    """Make a `cls` from `raw`, rejecting unknown keys and wrong types with the dotted key in the message."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("toml", True)}
    kwargs = {}
    for key, value in raw.items():
        at = f"{where}.{shown(key)}" if where else shown(key)
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(fields)})"
            raise ConfigError(f"{at}: unknown key{hint}")
        kwargs[key] = _convert(hints[key], value, at)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict for TOML: None values (TOML has no null) and non-file fields are left out."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("toml", True) and value is not None:
                out[f.name] = to_dict(value)
        return out
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
