"""Option checks declared once: a ``Range`` on a dataclass field, read by ``check_params``.

A parameter dataclass declares each numeric option's allowed interval beside its default::

    @dataclass(frozen=True)
    class MyParams:
        lr: float = param(1e-3, gt=0)                  # lr > 0
        momentum: float = param(0.9, ge=0, lt=1)       # 0 <= momentum < 1
        elites: int = param(1, ge=0, lt="population")  # a bound may name another field
        scale: float | None = param(None, gt=0, unset="the layer width")  # None allowed
        population: int = param(64, ge=2)

        def __post_init__(self) -> None:
            check_params(self)

``check_params(obj)`` raises ``ValueError`` with one line naming the first offending value
and what is allowed, for any field of ``obj`` that is outside its ``Range``, a float that is
not finite (NaN, inf), or not one of the choices of its ``Literal[...]`` type. The study's
config builder (``experiments.plan.config.build``) calls it on everything it builds, so a
dataclass that does not call it itself is still checked when a study sets it.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

RANGE = "bpbench.range"  # the field-metadata key of a ``Range``

Bound = float | str | None  # a number, or the name of another field whose value is the bound
OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class Range:
    """Allowed values of one numeric option: any of ``gt`` (>), ``ge`` (>=), ``lt`` (<), ``le`` (<=).

    A bound is a number or another field's name (e.g. ``lt="population"``). ``unset``: when
    given, None is allowed too and means this (said in the message, e.g. "the layer width").
    """

    gt: Bound = None
    ge: Bound = None
    lt: Bound = None
    le: Bound = None
    unset: str | None = None

    def bounds(self, obj: Any) -> list[tuple[str, float, str]]:
        """(operator, bound value, how the bound reads) for each bound given, lower bounds first."""
        out = []
        for op, bound in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le)):
            if isinstance(bound, str):
                value = getattr(obj, bound)
                out.append((op, value, f"{bound} ({value})"))
            elif bound is not None:
                out.append((op, bound, f"{bound:g}"))
        return out

    def allows(self, value: float, obj: Any) -> bool:
        """Whether ``value`` satisfies every bound (NaN satisfies none)."""
        return all(OPERATORS[op](value, bound) for op, bound, _ in self.bounds(obj))

    def describe(self, name: str, obj: Any, integer: bool, finite: bool = False) -> str:
        """What is allowed, as the message says it: "must be > 0", "allowed is 0 <= momentum < 1"."""
        bounds = self.bounds(obj)
        lower = [(op, text) for op, _, text in bounds if op in (">", ">=")]
        upper = [(op, text) for op, _, text in bounds if op in ("<", "<=")]
        if lower and upper:
            flipped = {">": "<", ">=": "<="}[lower[0][0]]
            text = f"allowed is {lower[0][1]} {flipped} {name} {upper[0][0]} {upper[0][1]}"
        else:
            what = "an integer " if integer else "a finite number " if finite else ""
            text = "must be " + what + " and ".join(f"{op} {bound}" for op, bound in lower + upper)
        return text + (f" (or leave it unset for {self.unset})" if self.unset else "")


def param(
    default: Any, *, gt: Bound = None, ge: Bound = None, lt: Bound = None, le: Bound = None, unset: str | None = None
) -> Any:
    """A dataclass field with ``default`` whose values must lie in the ``Range`` the bounds give."""
    return dataclasses.field(default=default, metadata={RANGE: Range(gt, ge, lt, le, unset)})


_FIELDS: dict[type, tuple[tuple[str, Any, Range | None], ...]] = {}


def _field_types(cls: type) -> tuple[tuple[str, Any, Range | None], ...]:
    """(name, resolved type, its Range or None) of each field of dataclass ``cls``, in order (kept per class)."""
    if cls not in _FIELDS:
        hints = get_type_hints(cls)
        _FIELDS[cls] = tuple((f.name, hints[f.name], f.metadata.get(RANGE)) for f in dataclasses.fields(cls))
    return _FIELDS[cls]


def choices_of(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal[...]`` type (or ``Literal[...] | None``); None for other types."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    if get_origin(tp) in (Union, types.UnionType):
        found = [choices_of(arg) for arg in get_args(tp) if arg is not type(None)]
        if len(found) == 1 and found[0] is not None:
            return (*found[0], *((None,) if type(None) in get_args(tp) else ()))
    return None


def check_value(name: str, value: Any, tp: Any, rule: Range | None, obj: Any) -> None:
    """Raise ValueError (one line: ``name = value: what is allowed``) if ``value`` breaks a rule of its field."""
    choices = choices_of(tp)
    if choices is not None and value not in choices:
        raise ValueError(f"{name} = {value!r}: allowed are {', '.join(map(repr, choices))}")
    if value is None or isinstance(value, bool):
        if value is None and rule is not None and rule.unset is None and choices is None and tp is not type(None):
            raise ValueError(f"{name} = None: {rule.describe(name, obj, integer=False)}")
        return
    if rule is not None and not isinstance(value, (int, float)):
        raise ValueError(f"{name} = {value!r}: expected a number; {rule.describe(name, obj, integer=False)}")
    integer = isinstance(value, int)
    if isinstance(value, float) and not math.isfinite(value):
        allowed = rule.describe(name, obj, integer=False, finite=True) if rule else "must be a finite number"
        raise ValueError(f"{name} = {value}: {allowed}")
    if rule is not None and not rule.allows(value, obj):
        raise ValueError(f"{name} = {value!r}: {rule.describe(name, obj, integer)}")


def check_params(obj: Any) -> None:
    """Check every field of dataclass instance ``obj`` (declaration order; the first offence raises ValueError)."""
    for name, tp, rule in _field_types(type(obj)):
        check_value(name, getattr(obj, name), tp, rule, obj)


__all__ = ["RANGE", "Range", "check_params", "check_value", "choices_of", "param"]
