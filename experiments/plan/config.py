"""Typed configuration from plain dicts (TOML), with errors that name the value and what is allowed.

Every configurable thing is a frozen dataclass with type hints and defaults (a learner's
``Params``, a task's ``Params``, ``ModelSpec``, ``Budget``, ``Schedule``). ``build`` checks
keys and types before any run starts, then the values' declared checks (``learners.params``:
ranges, finite floats, choices); ``grid`` expands lists into a Cartesian product.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from bpbench.learners.params import check_params


class ConfigError(ValueError):
    """Bad study input; the message names the offending value and what is allowed."""


def fields_of(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a dataclass."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_sequence_type(tp: Any) -> bool:
    return get_origin(tp) in (tuple, list)


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if _is_sequence_type(tp):
        return f"list of {_describe(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against type ``tp`` (int widens to float, list to tuple)."""
    origin = get_origin(tp)
    if tp is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in get_args(tp):
            return value
    elif origin in (Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
    elif _is_sequence_type(tp):
        if isinstance(value, (list, tuple)):
            inner = get_args(tp)[0]
            return tuple(coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"{where}: unsupported field type {tp!r}")
    raise ConfigError(f"{where} = {value!r}: expected {_describe(tp)}")


def build(cls: type, raw: dict[str, Any], where: str) -> Any:
    """An instance of dataclass ``cls`` from ``raw``; unknown keys, wrong types and bad values raise."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} = {raw!r}: expected a table of keys")
    fields = fields_of(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; allowed: {', '.join(sorted(fields))}")
    values = {k: coerce(v, fields[k], f"{where}.{k}") for k, v in raw.items()}
    try:
        built = cls(**values)
        # the declared checks (learners.params) again, for a dataclass that does not run them itself
        # (a plugin's, a budget): ranges, finite floats, Literal choices; same one-line message
        check_params(built)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return built


def grid(cls: type, raw: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """Expand ``raw`` into one dict per grid point.

    A list given for a scalar field is a grid axis; for a list-typed field (such as
    ``hidden``) a list of lists is. Order: the Cartesian product in key order.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} = {raw!r}: expected a table of keys")
    fields = fields_of(cls)
    axes: list[list[tuple[str, Any]]] = []
    for key, value in raw.items():
        tp = fields.get(key)
        is_axis = isinstance(value, list) and (
            tp is None or not _is_sequence_type(tp) or (len(value) > 0 and all(isinstance(v, list) for v in value))
        )
        if is_axis and tp is not None:
            if not value:
                raise ConfigError(f"{where}.{key} = []: a grid needs at least one value")
            axes.append([(key, v) for v in value])
        else:
            axes.append([(key, value)])
    return [dict(point) for point in itertools.product(*axes)]


def to_plain(obj: Any) -> Any:
    """A dataclass (or nested values) as JSON-ready builtins (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


__all__ = ["ConfigError", "build", "coerce", "fields_of", "grid", "to_plain"]
