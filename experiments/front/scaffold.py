"""``bpbench new learner|task NAME``: write a ready plugin package from the templates.

The package (default folder ./NAME)::

    pyproject.toml          distribution bpbench-NAME, the entry point registering NAME
    README.md
    bpbench_NAME/NAME.py    the learner (backprop on the ``setup`` contract, with backprop's optimizer
                            options and the optional hooks as commented stubs) or task (synthetic data)
    tests/test_NAME.py      bpbench check --options (the contract, learning above chance, every
                            option acting), and 1-epoch studies through bpbench.run

``pip install -e "DIR[test]" && pytest DIR`` passes as written. Templates are package data in
``experiments/front/templates``; ``tests/test_scaffold.py`` checks the learner template agrees
with ``learners/backprop.py`` (same weights step by step) and stubs every optional hook of
``learners/base.py``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import LEARNER_GROUP, TASK_GROUP, find_provider

KINDS = {"learner": LEARNER_GROUP, "task": TASK_GROUP}
USAGE = {
    "learner": "    [learners.${name}]\n"
    '    optimizer = "sgd"   # or "adam"; with lr, momentum, weight_decay, batch_size\n'
    "    lr = 0.05",
    "task": "    [tasks.${name}]\n    noise = 1.0",
}


def _files(kind: str) -> dict[str, str]:
    """Output path (a Template) -> template file name."""
    return {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        "${package}/__init__.py": "init.py.tmpl",
        "${package}/${name}.py": f"{kind}.py.tmpl",
        "tests/test_${name}.py": f"test_{kind}.py.tmpl",
    }


def template_values(kind: str, name: str) -> dict[str, str]:
    """The names a package for ``name`` uses (distribution, import package, class, ...)."""
    if kind not in KINDS:
        raise ConfigError(f"kind = {kind!r}: allowed: {', '.join(KINDS)}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(
            f"name = {name!r}: expected a lowercase Python identifier such as my_rule "
            "(letters, digits, underscores; starting with a letter)"
        )
    taken = find_provider(KINDS[kind], name)
    if taken["target"] is not None:
        raise ConfigError(
            f"{kind} {name!r} is already registered (by {taken['distribution']}: {taken['target']}); "
            "choose another name"
        )
    values = {
        "kind": kind,
        "name": name,
        "group": KINDS[kind],
        "package": f"bpbench_{name}",
        "distribution": "bpbench-" + name.replace("_", "-"),
        "class_name": "".join(part.capitalize() for part in name.split("_") if part),
        "description": f"The {name} {kind} for bpbench.",
    }
    values["usage"] = Template(USAGE[kind]).substitute(values)
    return values


def new_package(kind: str, name: str, folder: Path | None = None) -> Path:
    """Write the plugin package for ``kind`` ("learner" | "task") ``name`` into ``folder``
    (default ./NAME, which must not exist or be empty); returns the folder."""
    values = template_values(kind, name)
    folder = Path(folder) if folder is not None else Path(name)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"--dir {str(folder)!r} exists and is not an empty folder; choose a new one")
    templates = resources.files("bpbench.experiments.front") / "templates"
    for target, source in _files(kind).items():
        path = folder / Template(target).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template((templates / source).read_text()).substitute(values))
    return folder
