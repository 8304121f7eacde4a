"""Summary tables from a results folder: one row per learner configuration x task.

Per run: final-epoch test accuracy, training seconds, training FLOPs, peak memory and the
mean first/last-layer gradient-norm ratio over the sampled steps; then mean ± std over seeds.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from experiments.store import RunStore

FORMATS = ("text", "markdown", "latex", "csv")


def _varied_label(spec: dict[str, Any]) -> str:
    parts = []
    for key in spec.get("varied", []):
        section, name = key.split(".", 1)
        source = {"model": spec["model"], "params": spec["params"], "task": spec["task_params"]}[section]
        parts.append(f"{name}={source[name]}")
    return ", ".join(parts)


def per_run(store: RunStore) -> pd.DataFrame:
    """One row per completed run: identifiers and its final measurements."""
    metas = [m for m in store.metas() if m["status"] == "ok"]
    if not metas:
        return pd.DataFrame()
    metrics = store.metrics([m["run_id"] for m in metas])
    last_epoch = metrics.groupby("run_id")["epoch"].transform("max")
    final = metrics[(metrics["epoch"] == last_epoch) & (metrics["layer"] == "")]
    wide = final.pivot_table(index="run_id", columns=["split", "metric"], values="value", aggfunc="last")
    wide.columns = [f"{s}_{m}" for s, m in wide.columns]
    ratio = metrics[metrics["metric"] == "grad_norm_ratio"].groupby("run_id")["value"].mean().rename("grad_ratio")
    ids = pd.DataFrame([{
        "run_id": m["run_id"], "learner": m["spec"]["label"], "config": _varied_label(m["spec"]),
        "task": m["spec"]["task_label"], "seed": m["spec"]["seed_index"],
    } for m in metas]).set_index("run_id")
    return ids.join(wide).join(ratio).reset_index()


def summarize(store: RunStore) -> pd.DataFrame:
    """Mean and std over seeds per (learner, config, task), plus run and failure counts."""
    runs = per_run(store)
    failed = pd.DataFrame([{"learner": m["spec"]["label"], "config": _varied_label(m["spec"]),
                            "task": m["spec"]["task_label"]} for m in store.metas() if m["status"] != "ok"])
    if runs.empty:
        return pd.DataFrame()
    keys = ["learner", "config", "task"]
    columns = {"test_accuracy": "test_acc", "train_train_seconds": "train_s", "train_train_flops": "flops",
               "train_peak_memory_bytes": "peak_mem", "grad_ratio": "grad_ratio"}
    grouped = runs.groupby(keys, sort=False)
    out = grouped.size().rename("seeds").to_frame()
    for src, name in columns.items():
        if src in runs:
            out[f"{name}_mean"] = grouped[src].mean()
            out[f"{name}_std"] = grouped[src].std(ddof=1)
    out["failed"] = 0
    if not failed.empty:
        counts = failed.groupby(keys).size()
        out["failed"] = counts.reindex(out.index).fillna(0).astype(int)
    return out.reset_index()


def _pm(mean: float, std: float, fmt: str) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{mean:{fmt}} ± {std:{fmt}}" if not pd.isna(std) else f"{mean:{fmt}}"


def render(summary: pd.DataFrame, fmt: str) -> str:
    """The summary as text | markdown | latex | csv."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: allowed: {', '.join(FORMATS)}")
    if summary.empty:
        return "no completed runs"
    if fmt == "csv":
        return summary.to_csv(index=False)
    table = pd.DataFrame({
        "learner": summary["learner"] + summary["config"].map(lambda c: f" ({c})" if c else ""),
        "task": summary["task"],
        "seeds": summary["seeds"].astype(str) + summary["failed"].map(lambda f: f" ({f} failed)" if f else ""),
        "test acc": [_pm(m, s, ".3f") for m, s in zip(summary["test_acc_mean"], summary["test_acc_std"])],
        "train s": [_pm(m, s, ".1f") for m, s in zip(summary["train_s_mean"], summary["train_s_std"])],
        "GFLOPs": [f"{m / 1e9:.3g}" for m in summary["flops_mean"]],
        "peak MiB": [f"{m / 2**20:.2f}" for m in summary["peak_mem_mean"]],
        "grad ratio": [_pm(m, s, ".3g") for m, s in zip(summary.get("grad_ratio_mean", pd.Series([float("nan")] * len(summary))),
                                                         summary.get("grad_ratio_std", pd.Series([float("nan")] * len(summary))))],
    })
    if fmt == "markdown":
        return table.to_markdown(index=False)
    if fmt == "latex":
        return table.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1).to_latex(hrules=True).replace("±", r"$\pm$")
    return table.to_string(index=False)
