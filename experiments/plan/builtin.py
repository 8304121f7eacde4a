"""Where study files are and how they are read: no torch, so ``bpbench list`` stays fast."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from bpbench.experiments.plan.config import ConfigError


def builtin_studies() -> dict[str, Path]:
    """Name -> path of every study shipped in ``experiments/studies``."""
    folder = resources.files("bpbench.experiments.plan") / "studies"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study file {path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(
            f"study file {path}: nested too deeply to read (tables or arrays within each other "
            "thousands of levels deep)"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"study file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
