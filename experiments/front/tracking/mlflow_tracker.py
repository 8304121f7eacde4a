"""MLflow: a parent run per study (its tables and figures as artifacts), a child run per run.

Uses ``MlflowClient`` only (no global active run): the experiment is named after the study; each
run's parameters, tags, per-epoch curves (step = epoch) and final measures go in one
``log_batch``. ``uri``: any tracking URI MLflow takes (``sqlite:///DIR/mlflow.db``, ``http://...``);
None: MLflow's default (``MLFLOW_TRACKING_URI``, else ``./mlruns``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from bpbench.experiments.front.tracking.base import TrackedRun, final_only

MAX_PARAM = 6000  # MLflow's limit on a parameter value's length


class MlflowTracker:
    name = "mlflow"

    def __init__(self, uri: str | None) -> None:
        self.uri = uri
        self.client: MlflowClient | None = None
        self.experiment = ""
        self.parent = ""

    def start_study(self, study: str, tags: Mapping[str, str]) -> None:
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(study)
        self.experiment = found.experiment_id if found else self.client.create_experiment(study, self._artifacts())
        parent = self.client.create_run(self.experiment, run_name=study, tags={**tags, "kind": "study"})
        self.parent = parent.info.run_id

    def _artifacts(self) -> str | None:
        """Artifacts beside a SQLite store (``DIR/mlartifacts``), not MLflow's default ./mlruns of the
        working directory; a server's URI: the server's own artifact store (None)."""
        if self.uri and self.uri.startswith("sqlite:///"):
            return (Path(self.uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
        return None

    def log_run(self, run: TrackedRun) -> None:
        assert self.client is not None
        tags = {**run.tags, "mlflow.parentRunId": self.parent, "kind": "run"}
        child = self.client.create_run(self.experiment, run_name=run.name, tags=tags)
        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, epoch) for name, epoch, value in run.curves]
        last = max((epoch for _, epoch, _ in run.curves), default=0)
        metrics += [Metric(name, value, now, last) for name, value in final_only(run).items()]
        params = [Param(k, v[:MAX_PARAM]) for k, v in run.params.items()]
        for start in range(0, max(len(metrics), 1), 1000):  # MLflow takes at most 1000 metrics a batch
            self.client.log_batch(
                child.info.run_id, metrics=metrics[start : start + 1000], params=params if start == 0 else []
            )
        self.client.set_terminated(child.info.run_id, "FINISHED" if run.tags.get("status") == "ok" else "FAILED")

    def finish_study(self, artifacts: Sequence[Path]) -> None:
        assert self.client is not None
        for path in artifacts:
            self.client.log_artifact(self.parent, str(path))
        self.client.set_terminated(self.parent, "FINISHED")
