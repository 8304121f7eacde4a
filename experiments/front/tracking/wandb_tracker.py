"""Weights & Biases: a W&B run per run, grouped by study, and a study run holding the tables and
figures as an artifact. ``project``: the W&B project (default "bpbench"). Files go under
``$WANDB_DIR`` when set, else the results folder; ``WANDB_MODE=offline`` logs without a network
(``wandb sync`` uploads later).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import wandb

from bpbench.experiments.front.tracking.base import TrackedRun


class WandbTracker:
    name = "wandb"

    def __init__(self, project: str | None, root: Path) -> None:
        self.project = project or "bpbench"
        self.dir = Path(os.environ.get("WANDB_DIR") or root)
        self.study, self.tags = "", {}  # type: tuple[str, Mapping[str, str]]

    def start_study(self, study: str, tags: Mapping[str, str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.study, self.tags = study, dict(tags)

    def _init(self, name: str, job_type: str, config: Mapping[str, str]) -> wandb.Run:
        return wandb.init(
            project=self.project,
            group=self.study,
            job_type=job_type,
            name=name,
            config=dict(config),
            dir=str(self.dir),
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log_run(self, run: TrackedRun) -> None:
        by_epoch: dict[int, dict[str, float]] = defaultdict(dict)
        for name, epoch, value in run.curves:
            by_epoch[epoch][name] = value
        tracked = self._init(run.name, "run", {**run.params, **{f"tag.{k}": v for k, v in run.tags.items()}})
        try:
            for epoch in sorted(by_epoch):
                tracked.log({**by_epoch[epoch], "epoch": epoch}, step=epoch)
            tracked.summary.update(run.final)
        finally:
            tracked.finish(exit_code=0 if run.tags.get("status") == "ok" else 1)

    def finish_study(self, artifacts: Sequence[Path]) -> None:
        tracked = self._init(self.study, "study", self.tags)
        try:
            artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.study}-results"), type="results")
            for path in artifacts:
                artifact.add_file(str(path))
            tracked.log_artifact(artifact)
        finally:
            tracked.finish()
