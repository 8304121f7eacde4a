"""The HTML report of a tiny real study: self-contained, and rendered by headless Chromium
with its summary table and every figure decoded (natural width > 0)."""

from __future__ import annotations

import base64
import re
import subprocess
from html import unescape
from pathlib import Path

import pytest
from scipy import stats

from apt_tools import require
from bpbench.experiments.front.cli import main
from bpbench.experiments.report.summary import per_run
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from helpers import run_tiny_study

STUDY = """
description = "tiny report study: backprop on digits at two learning rates"
seeds = 2
tasks = ["digits"]
[model]
hidden = [16]
[budget]
epochs = 2
[schedule]
health_every = 5
[learners.backprop]
lr = [0.003, 0.03]
"""
# Run after the page loads: record each image's decoded width and the table's row count in the DOM.
PROBE = """<script>window.addEventListener("load", () => {
  for (const img of document.images) img.setAttribute("data-natural-width", img.naturalWidth);
  const rows = document.querySelectorAll("table.results tbody tr").length;
  document.body.setAttribute("data-table-rows", rows);
});</script>"""
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    assert main(["report", str(run_tiny_study(root, STUDY)), "--out", str(root / "report.html")]) == 0
    return root / "report.html"


def test_report_is_self_contained(report: Path) -> None:
    html = report.read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", html), "the report references an outside file"
    sources = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', html)
    assert {name for name, _ in sources} >= {"curves_epochs", "accuracy_vs_flops", "lr_sensitivity", "alignment_digits"}
    for name, payload in sources:
        assert base64.b64decode(payload)[:8] == b"\x89PNG\r\n\x1a\n", name
    text = unescape(html)
    assert "tiny report study" in text and "Where the runs ran" in text and '"torch": "2.13' in text


@pytest.mark.timeout(1800)  # may install Debian's chromium first (apt_tools.require)
def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    chromium = require("chromium", "chromium")
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    n_images = report.read_text().count("<img ")
    assert n_images >= 4 and len(widths) == n_images and min(widths) > 0, widths
    assert 'data-table-rows="2"' in dom  # backprop at two learning rates on one task
    table = re.search(r"<table.*?</table>", dom, flags=re.S).group(0)
    row = next(r for r in re.findall(r"<tr>.*?</tr>", table, flags=re.S) if "backprop (lr=0.03)" in r)
    assert expected_accuracy_cell(report.parent / "out", "lr=0.03") in row


def expected_accuracy_cell(results: Path, config: str) -> str:
    """The table's test-accuracy cell of backprop ``config``, recomputed from the stored runs with scipy."""
    runs = per_run(RunTable.read(RunStore(results)).tidy())
    acc = runs.loc[(runs["learner"] == "backprop") & (runs["config"] == config), "test_acc"].to_numpy()
    low, high = stats.t.interval(0.95, acc.size - 1, acc.mean(), stats.sem(acc))  # clipped to [0, 1]
    return f"{acc.mean():.3f} [{max(0.0, low):.3f}, {min(1.0, high):.3f}]"


def test_report_table_holds_the_computed_accuracy(report: Path) -> None:
    html = unescape(report.read_text())
    for config in ("lr=0.003", "lr=0.03"):
        row = next(r for r in re.findall(r"<tr>.*?</tr>", html, flags=re.S) if f"backprop ({config})" in r)
        assert expected_accuracy_cell(report.parent / "out", config) in row, row
