"""The measurement catalog (plan/catalog.py) and the learner display catalog (report/learner_styles.py):
one record is all a measurement or a learner's look needs; the projection coefficient, the ratio
over trained layers and the undefined p-value they carry."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from bpbench.experiments.plan import catalog
from bpbench.experiments.plan.catalog import Measure
from bpbench.experiments.report import learner_styles
from bpbench.experiments.report.render import display_frame, render
from bpbench.experiments.report.stats import NO_SPREAD, welch_p
from bpbench.experiments.report.summary import summarize_runs
from bpbench.experiments.run.probes import gradient_alignment, gradient_projection, norm_ratio
from bpbench.experiments.store import records
from bpbench.learners.base import NotMeasurable


def _rows(run_id: str, acc: float) -> list[dict]:
    base = {"run_id": run_id, "epoch": 1, "step": 10, "layer": ""}
    return [{**base, "split": split, "metric": "accuracy", "value": acc} for split in ("train", "val", "test")]


def _runs(measures: pd.DataFrame, learner: str) -> pd.DataFrame:
    return measures.reset_index().assign(
        learner=learner, learner_name=learner, config="", task="digits", budget="1 ep", stopped_by="epochs"
    )


def test_every_table_measure_is_a_column_and_every_note_is_in_the_note() -> None:
    data = pd.DataFrame(_rows("a", 0.9) + _rows("b", 0.8))
    text = render(summarize_runs(_runs(records.measures(data), "backprop")), "text")
    header = text.splitlines()[0]
    for measure in catalog.shown():
        assert measure.header in header, measure.name
        if measure.note:
            assert measure.note.split(":")[0] + ":" in text.split("\n\n")[-1], measure.name


def test_a_new_catalog_record_reaches_the_records_the_table_and_its_note(monkeypatch: pytest.MonkeyPatch) -> None:
    double = Measure(
        "double_acc",
        "double_test_accuracy",
        "evaluation",
        ("accuracy",),
        lambda rows, last: 2 * last["test_accuracy"],
        "2x test acc",
        ".2f",
        note="2x test acc: twice the test accuracy, a test's measure.",
    )
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, double))
    rows = pd.DataFrame(_rows("a", 0.25))
    assert records.measures(rows).loc["a", "double_acc"] == 0.5
    stored = records.record(rows)
    assert stored is not None and stored["values"]["double_test_accuracy"] == 0.5
    assert records.from_record({"measures": stored})["double_acc"] == 0.5
    summary = summarize_runs(_runs(records.measures(rows), "backprop"))
    assert display_frame(summary)["2x test acc"].tolist() == ["0.50"]
    text = render(summary, "text")
    assert "2x test acc" in text.splitlines()[0]
    assert "2x test acc: twice the test accuracy, a test's measure." in text
    monkeypatch.undo()
    assert "2x test acc" not in render(summarize_runs(_runs(records.measures(rows), "backprop")), "text")


def test_projection_coefficient_measures_scale_where_the_cosine_cannot() -> None:
    g = {"fc1": torch.tensor([3.0, 4.0]), "out": torch.tensor([1.0, -2.0]), "fc2": torch.tensor([1.0, 1.0])}
    u = {"fc1": 0.17 * g["fc1"], "out": g["out"].clone(), "fc2": torch.zeros(2)}
    projection, missing = gradient_projection(u, g)
    cosine, cos_missing = gradient_alignment(u, g)
    assert projection == pytest.approx({"fc1": 0.17, "out": 1.0, "fc2": 0.0}, abs=1e-12) and not missing
    assert cosine == pytest.approx({"fc1": 1.0, "out": 1.0}) and "update signal is exactly 0" in cos_missing["fc2"]
    orthogonal, _ = gradient_projection({"fc1": torch.tensor([-4.0, 3.0])}, {"fc1": g["fc1"]})
    assert orthogonal["fc1"] == 0.0
    _, undefined = gradient_projection({"fc1": g["fc1"]}, {"fc1": torch.zeros(2)})
    assert undefined == {"fc1": "layer fc1: projection undefined, the true gradient is exactly 0"}


def test_norm_ratio_is_over_the_layers_the_rule_trains() -> None:
    order = ["fc1", "fc2", "out"]
    assert norm_ratio({"fc1": 6.0, "fc2": 1.0, "out": 0.0}, order) == 6.0  # an unused readout left out
    assert norm_ratio({"fc1": 6.0, "fc2": 1.0, "out": 2.0}, order) == 3.0
    assert norm_ratio({"fc2": 1.0, "out": 4.0}, order) == 0.25  # a frozen first layer left out
    with pytest.raises(NotMeasurable, match=r"fewer than two layers .* fc1, out"):
        norm_ratio({"fc1": 0.0, "fc2": 1.0}, order)
    with pytest.raises(NotMeasurable, match="1 by definition"):
        norm_ratio({"out": 1.0}, ["out"])


def test_two_groups_without_spread_get_no_p_value_and_the_table_says_why() -> None:
    assert math.isnan(welch_p([0.9, 0.9, 0.9], [0.8, 0.8, 0.8]))
    assert math.isnan(welch_p([0.9, 0.9], [0.9, 0.9]))
    assert welch_p([0.9, 0.9, 0.9], [0.8, 0.81, 0.79]) < 0.01  # one spread: the test is defined
    data = pd.DataFrame([r for i in range(3) for r in _rows(f"bp{i}", 0.9)])
    flat = pd.DataFrame([r for i in range(3) for r in _rows(f"fa{i}", 0.8)])
    runs = pd.concat([_runs(records.measures(data), "backprop"), _runs(records.measures(flat), "fa")])
    text = render(summarize_runs(runs), "text")
    fa_line = next(line for line in text.splitlines() if line.startswith("fa"))
    assert "0.0" not in fa_line.split("0.800")[1].split()[0] and "n/a" in fa_line
    assert f"p n/a for fa on digits: {NO_SPREAD} (not p = 0)." in text


def test_builtin_learners_have_distinct_colours_and_markers() -> None:
    styles = learner_styles.STYLES
    assert len(styles) == 13 and len({s.colour for s in styles.values()}) == 13
    assert len({s.marker for s in styles.values()}) == 13
    assert not set(learner_styles.SPARE_COLOURS) & {s.colour for s in styles.values()}


def test_a_plugin_gets_a_stable_look_never_a_builtins() -> None:
    builtins = [(name, name) for name in learner_styles.ORDER]
    alone = learner_styles.assign([("kolen_pollack", "kolen_pollack")])
    crowded = learner_styles.assign([*builtins, ("kolen_pollack", "kolen_pollack"), ("zeta", "zeta")])
    assert alone["kolen_pollack"] == crowded["kolen_pollack"]  # the same in every figure
    taken_colours = {s.colour for s in learner_styles.STYLES.values()}
    taken_markers = {s.marker for s in learner_styles.STYLES.values()}
    for label in ("kolen_pollack", "zeta"):
        colour, marker = crowded[label]
        assert colour not in taken_colours and marker not in taken_markers, label
    assert crowded["kolen_pollack"] != crowded["zeta"]
    assert len({colour for colour, _ in crowded.values()}) == len(crowded)
    # a second label of a built-in learner: the learner's look when free, else a spare one
    assert learner_styles.assign([("bp_sgd", "backprop")])["bp_sgd"] == (("colorblind", 0), "o")
    shared = learner_styles.assign([("backprop", "backprop"), ("bp_sgd", "backprop")])
    assert shared["bp_sgd"][0] in learner_styles.SPARE_COLOURS


def test_spare_markers_are_filled_like_the_built_ins() -> None:
    """seaborn refuses a legend mixing filled and line-art markers (a plugin label beside built-ins
    crashed the sensitivity figure of the tuned study): every marker handed out is filled."""
    from matplotlib.markers import MarkerStyle

    from bpbench.experiments.report import learner_styles

    markers = [s.marker for s in learner_styles.STYLES.values()] + list(learner_styles.SPARE_MARKERS)
    assert all(MarkerStyle(m).is_filled() for m in markers)
    assert len({str(m) for m in markers}) == len(markers)
