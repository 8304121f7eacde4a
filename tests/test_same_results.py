"""The speed work of issue 14 left results unchanged: a tiny study of every built-in learner gives
the rows it gave before (``tests/golden.py``, made with commit 126566f), exactly, apart from the
documented changes listed in ``CHANGED``."""
from __future__ import annotations

import json
from typing import Any

import pytest

from golden import GOLDEN, collect, environment

ALL = {"backprop", "backprop_sgd", "fa", "fa_wd", "dfa", "sign_symmetry", "snn_bptt", "snn_bptt_rate", "snn_dfa", "es", "ga", "ga_cross", "cmaes"}
TRAIN_SUBSET = ("train accuracy and loss are measured on a fixed stratified subset of the training split as large "
                "as the test split; tests/test_measurements.py checks them against that subset")
# (split, metric) -> (the run labels whose values of it changed, why)
CHANGED: dict[tuple[str, str], tuple[set[str], str]] = {
    ("train", "peak_memory_bytes"): (
        ALL - {"es", "cmaes", "backprop_sgd"},
        "the step holds fewer temporaries: Adam updates all tensors at once (foreach); the spiking time loop steps the LIF update itself; ga writes its next generation "
        "into one matrix (no per-child clones, no stacking)"),
    ("train", "accuracy"): (ALL, TRAIN_SUBSET),
    ("train", "loss"): (ALL, TRAIN_SUBSET),
}


def test_tiny_study_gives_the_golden_results() -> None:
    golden = json.loads(GOLDEN.read_text())
    if golden["environment"] != environment():
        pytest.skip(f"golden results were made on {golden['environment']}, this is {environment()}: "
                    "float results differ between torch builds and CPU instruction sets")
    now = collect()
    assert sorted(now) == sorted(golden["runs"])
    for run, rows in golden["runs"].items():
        label = run.split("/")[0]

        def keyed(table: list[list[Any]]) -> dict[tuple[Any, ...], float]:
            return {tuple(r[:5]): r[5] for r in table if label not in CHANGED.get((r[2], r[3]), (set(), ""))[0]}
        expected, got = keyed(rows), keyed(now[run])
        assert got.keys() == expected.keys(), f"{run}: rows differ: {sorted(set(got) ^ set(expected))[:5]}"
        diff = [(k, expected[k], got[k]) for k in expected if got[k] != expected[k]]
        assert not diff, f"{run}: {len(diff)} value(s) differ, e.g. {diff[:3]}"
        if label in CHANGED[("train", "peak_memory_bytes")][0]:  # "fewer temporaries": never more
            old, new = ([r[5] for r in table if r[3] == "peak_memory_bytes"] for table in (rows, now[run]))
            assert len(new) == 1 and new[0] <= old[0], f"{run}: peak memory {old} -> {new}"
