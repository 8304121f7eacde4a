"""Numbers quoted in the README, docs and study headers agree with the committed tables they quote
(scripts/check_quotes.py; ``python -m scripts.check_quotes`` lists and ``--fix`` rewrites mismatches)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_quotes", ROOT / "scripts" / "check_quotes.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_quotes"] = module
    spec.loader.exec_module(module)
    return module


def test_every_quoted_number_matches_its_table() -> None:
    checker = _checker()
    found, bad = checker.check(ROOT)
    assert len(found) >= 30, "the mark-up was lost: too few quoted numbers found"
    assert {q.path.name for q in found} >= {"README.md", "findings.md", "vanishing.toml"}
    assert not bad, (
        "quoted numbers that disagree with their tables (fix: python -m scripts.check_quotes --fix):\n"
        + "\n".join(map(str, bad))
    )


def test_a_wrong_number_is_named_and_fixed(tmp_path: Path) -> None:
    checker = _checker()
    (tmp_path / "docs").mkdir()
    shutil.copytree(
        ROOT / "results" / "vanishing", tmp_path / "results" / "vanishing", ignore=shutil.ignore_patterns("figures")
    )
    spec = "vanishing/table.csv learner=dfa,config=hidden=4x64;activation=relu;batchnorm=False,task=digits"
    table = pd.read_csv(ROOT / "results" / "vanishing" / "table.csv")
    row = table[(table["learner"] == "dfa") & (table["task"] == "digits")]
    row = row[row["config"] == "hidden=4x64, activation=relu, batchnorm=False"].iloc[0]
    ratio, acc = f"{row['grad_ratio_mean']:.4f}", f"{row['test_acc_mean']:.2f}".removeprefix("0")
    (tmp_path / "README.md").write_text(  # two numbers wrong by construction (the table's are < 0.9)
        f"ratio 0.9000<!-- q {spec} grad_ratio_mean --> at 4, accuracy .99<!-- q {spec} test_acc_mean -->, "
        "9<!-- q vanishing/metadata.json - runs_failed --> failed, "
        "x 1<!-- q vanishing/table.csv learner=nope,task=digits seeds -->\n"
    )
    found, bad = checker.check(tmp_path)
    assert len(found) == 4
    assert [(m.quote.number, m.found) for m in bad[:2]] == [("0.9000", ratio), (".99", acc)]
    assert bad[2].found.startswith("unreadable: 0 rows") and len(bad) == 3
    assert checker.fix(bad) == 2
    text = (tmp_path / "README.md").read_text()
    assert f"ratio {ratio}<!--" in text and f"accuracy {acc}<!--" in text
    assert len(checker.check(tmp_path)[1]) == 1  # only the unreadable quote is left


def test_table_excerpts_equal_their_tables_and_a_stale_one_is_rewritten(tmp_path: Path) -> None:
    checker = _checker()
    excerpts = [e for path in checker.documents(ROOT) for e in checker.table_excerpts.excerpts(path)]
    assert any(e.path.name == "README.md" for e in excerpts), "the README's table excerpt lost its mark-up"
    assert not checker.check_excerpts(ROOT), "stale table excerpts (fix: python -m scripts.check_quotes --fix)"
    (tmp_path / "docs").mkdir()
    shutil.copytree(
        ROOT / "results" / "quick", tmp_path / "results" / "quick", ignore=shutil.ignore_patterns("figures")
    )
    spec = "quick/table.md task=fsdd columns=learner|test acc|verdict"
    right = checker.table_excerpts.render(spec, tmp_path / "results")
    assert right.count("\n") == 2 + 8 and "| backprop | 0." in right  # header, rule, 8 learners on fsdd
    table = pd.read_csv(ROOT / "results" / "quick" / "table.csv")
    fa = table[(table["learner"] == "fa") & (table["task"] == "fsdd")].iloc[0]
    assert f"| fa | {fa['test_acc_mean']:.3f} [" in right
    stale = right.replace("| fa | 0.", "| fa | 1.", 1)
    (tmp_path / "README.md").write_text(f"x\n<!-- excerpt {spec} -->\n{stale}<!-- /excerpt -->\ny\n")
    bad = checker.check_excerpts(tmp_path)
    assert list(bad) == [tmp_path / "README.md"]
    checker.table_excerpts.rewrite(tmp_path / "README.md", bad[tmp_path / "README.md"])
    assert (tmp_path / "README.md").read_text() == f"x\n<!-- excerpt {spec} -->\n{right}<!-- /excerpt -->\ny\n"
