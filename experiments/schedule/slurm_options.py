"""What a Slurm job array asks for, from ``--slurm KEY=VALUE`` flags over a study's ``[slurm]`` table.

Keys: ``partition`` (default: the cluster's default partition), ``time`` (minutes per run; default:
the longest run timeout, rounded up, plus ``STARTUP_MIN``), ``cpus`` (per run; default: ``--threads``
or 1), ``mem_gb`` (per run; default: the partition's), ``gpus`` (per run; default 0). Checked here,
before anything is submitted (a ValueError naming the key and what is allowed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STARTUP_MIN = 5  # minutes added to the longest run timeout for a job's start-up (Python, torch, data)


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time: int | None = None  # minutes
    cpus: int | None = None
    mem_gb: float | None = None
    gpus: int = 0


KINDS: dict[str, type] = {"partition": str, "time": int, "cpus": int, "mem_gb": float, "gpus": int}
WORDS = {str: "non-empty string", int: "whole number", float: "number"}


def _value(key: str, value: Any) -> Any:
    kind = KINDS[key]
    if isinstance(value, str) and kind is not str:
        try:
            value = kind(value)
        except ValueError:
            raise ValueError(f"slurm.{key} = {value!r}: expected a {WORDS[kind]}") from None
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"slurm.{key} = {value!r}: expected a non-empty string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ValueError(f"slurm.{key} = {value!r}: expected a {WORDS[kind]}")
    if value < (0 if key == "gpus" else 1) or (key == "mem_gb" and value <= 0):
        raise ValueError(f"slurm.{key} = {value!r}: must be {'>= 0' if key == 'gpus' else '> 0'}")
    return kind(value)


def slurm_options(table: Any, flags: Mapping[str, Any] | Sequence[str] | None) -> SlurmOptions:
    """The options of a study's ``[slurm]`` table, overridden by ``flags`` ("KEY=VALUE" items or a mapping)."""
    if table is not None and not isinstance(table, dict):
        raise ValueError(f"slurm = {table!r}: expected a table, e.g. [slurm] partition = 'gpu'")
    merged: dict[str, Any] = dict(table or {})
    if isinstance(flags, Mapping):
        merged.update(flags)
    else:
        for item in flags or []:
            key, sep, value = str(item).partition("=")
            if not sep:
                raise ValueError(f"--slurm {item!r}: expected KEY=VALUE, KEY one of {', '.join(KINDS)}")
            merged[key.strip()] = value.strip()
    unknown = sorted(set(merged) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown slurm option {unknown[0]!r}; allowed: {', '.join(KINDS)}")
    return SlurmOptions(**{key: _value(key, value) for key, value in merged.items()})
