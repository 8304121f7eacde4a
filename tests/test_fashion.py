"""The `fashion` study end to end on a 2,000-image, 1-epoch slice, and the script that puts
its results beside BioTorch's published LeNet table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from bpbench.experiments.front.cli import main
from bpbench.experiments.report.summary import per_run
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from bpbench.tasks.idx import FashionMnist, IdxParams
from helpers import REPO

_spec = importlib.util.spec_from_file_location("fashion_table", REPO / "scripts" / "fashion_table.py")
fashion_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fashion_table)  # a script in scripts/, not part of the package
_spec = importlib.util.spec_from_file_location("reference_results", REPO / "scripts" / "reference_results.py")
reference_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_results)
errors, gaps, report, side_by_side, targets = (
    fashion_table.errors,
    fashion_table.gaps,
    fashion_table.report,
    fashion_table.side_by_side,
    fashion_table.targets,
)

SLICE = [
    "seeds=1",
    "budget.epochs=1",
    "tasks.fashion_mnist.train_fraction=0.02977",
    "tasks.fashion_mnist.val_fraction=0.02",
    "tasks.fashion_mnist.test_fraction=0.02",
]


@pytest.mark.skipif(
    not Path(FashionMnist.default_path).is_dir(),
    reason=f"Fashion-MNIST files not in {FashionMnist.default_path} (Debian's dataset-fashion-mnist)",
)
def test_fashion_study_slice_runs_end_to_end(tmp_path: Path) -> None:
    FashionMnist().check(IdxParams())
    out = tmp_path / "fashion"
    sets = [arg for s in SLICE for arg in ("--set", s)]
    assert main(["run", "fashion", "--out", str(out), "--executor", "inline", *sets]) == 0
    runs = per_run(RunTable.read(RunStore(out)).tidy())
    newer = ["pc", "ff", "backprop_tanh", "dtp", "dtp", "fwd_grad_weight", "fwd_grad_activity"]  # dtp: 2 variants
    assert sorted(zip(runs["learner"], runs["arch"])) == sorted(
        [(rule, arch) for rule in ("backprop", "fa", "dfa", "sign_symmetry") for arch in ("lenet", "mlp")]
        + [("brsf", "lenet"), ("frsf", "lenet")]
        + [(rule, "mlp") for rule in newer]
    )
    assert (runs["samples"] == 2000).all()  # one epoch of the 2,000-image slice
    assert runs["test_acc"].between(0, 1).all()
    # 16 steps: backprop and sign symmetry are well above chance (0.1) on both nets already
    assert (runs[runs["learner"].isin(["backprop", "sign_symmetry"])]["test_acc"] > 0.3).all()
    text = report(out)
    assert "| backprop" in text and "9.20" in text and "13.06" in text and "17 runs completed, 0 failed" in text
    assert "| dtp (penultimate=gradient)" in text and "| dtp (penultimate=target)" in text
    assert "| brsf (brSF)" in text and "10.02" in text and "| frsf (frSF)" in text and "not in bpbench" not in text
    # published as under results/: the same tables from runs.csv alone, without the run folders
    published = tmp_path / "published"
    published.mkdir()
    store = RunStore(out)
    reference_results.runs_table(store, store.metas()).to_csv(published / "runs.csv", index=False)
    assert report(published).split("runs completed")[0] == text.split("runs completed")[0]


def fake_runs(accuracies: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"learner": rule, "arch": arch, "test_acc": a} for (rule, arch), values in accuracies.items() for a in values]
    )


def test_table_arithmetic_on_known_values() -> None:
    err = errors(
        fake_runs(
            {
                ("backprop", "lenet"): [0.91, 0.90, 0.92],
                ("backprop", "mlp"): [0.89, 0.89, 0.89],
                ("fa", "lenet"): [0.85, 0.86, 0.80],
                ("fa", "mlp"): [0.88, 0.88, 0.88],
                ("sign_symmetry", "lenet"): [0.90, 0.90, 0.90],
            }
        )
    )
    fa_lenet = err[(err["learner"] == "fa") & (err["arch"] == "lenet")].iloc[0]
    assert fa_lenet["median"] == pytest.approx(15.0) and fa_lenet["low"] == pytest.approx(14.0)
    side = side_by_side(err).set_index("rule")
    assert side.loc["backprop", "ours - BioTorch"] == "-0.20"  # 9.00 against 9.2
    assert side.loc["dfa", "ours LeNet (median [range])"] == "n/a"
    gap = gaps(err).set_index("rule")
    assert gap.loc["fa", "gap to backprop, LeNet"] == "+6.00" and gap.loc["fa", "gap to backprop, MLP"] == "+1.00"
    assert gap.loc["fa", "LeNet gap - MLP gap"] == "+5.00"
    verdicts = {t: holds for t, holds, _ in targets(err)}
    assert verdicts["backprop LeNet test accuracy >= .90"] is True
    assert verdicts["sign_symmetry within 1.5 points of backprop on LeNet"] is True
    assert verdicts["fa LeNet >= .84 and below backprop"] is True
    assert verdicts["fa: gap to backprop larger on LeNet than on MLP"] is True
    assert verdicts["dfa LeNet >= .84 and below backprop"] is None  # not run


def test_variants_of_one_learner_are_separate_rules() -> None:
    runs = pd.DataFrame(
        [
            {"learner": "dtp", "config": f"penultimate={variant}", "arch": "mlp", "test_acc": acc}
            for variant, acc in (("gradient", 0.80), ("gradient", 0.82), ("target", 0.70))
        ]
        + [{"learner": "backprop", "config": "arch=mlp", "arch": "mlp", "test_acc": 0.9}]
    )
    err = errors(runs).set_index("learner")
    assert err.loc["dtp (penultimate=gradient)", "median"] == pytest.approx(19.0)
    assert err.loc["dtp (penultimate=target)", "seeds"] == 1 and err.loc["backprop", "median"] == pytest.approx(10.0)


def test_the_docs_fashion_table_is_the_scripts_output_on_the_committed_run() -> None:
    """docs/fashion.md's table block is exactly what ``python -m scripts.fashion_table results/fashion``
    prints, so the published comparison with BioTorch cannot drift from the committed runs."""
    text = (REPO / "docs" / "fashion.md").read_text()
    start = text.index("<!-- fashion-table")
    start = text.index("-->\n", start) + len("-->\n")
    block = text[start : text.index("<!-- /fashion-table -->")]
    assert block.strip() == report(REPO / "results" / "fashion").strip()


def test_interaction_is_the_difference_of_gaps_with_a_welch_interval() -> None:
    """fa loses 5 points more on LeNet: (15 - 9) - (11 - 10) = 5 error points; its Welch-Satterthwaite
    interval from the four groups' variances; a rule run on one net only has no row."""
    from scipy import stats

    runs = fake_runs(
        {
            ("backprop", "lenet"): [0.91, 0.90, 0.92],
            ("backprop", "mlp"): [0.89, 0.90, 0.91],
            ("fa", "lenet"): [0.86, 0.85, 0.84],
            ("fa", "mlp"): [0.88, 0.89, 0.90],
            ("brsf", "lenet"): [0.90, 0.89, 0.91],
        }
    )
    row = fashion_table.interactions(runs).set_index("rule").loc["fa"]
    se = (4 * (1.0**2) / 3) ** 0.5  # each group's sd is 1 error point
    half = stats.t.ppf(0.975, 8) * se  # Welch-Satterthwaite df: 4 equal groups of 3 -> 8
    assert row["LeNet gap - MLP gap (mean, points)"] == f"+5.00 [{5 - half:+.2f}, {5 + half:+.2f}]"
    assert float(row["p (Welch-Satterthwaite)"]) == pytest.approx(2 * stats.t.sf(5 / se, 8), rel=0.05)
    assert list(fashion_table.interactions(runs)["rule"]) == ["fa"]
