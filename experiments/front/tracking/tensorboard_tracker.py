"""TensorBoard: an event-file folder per run under ``LOG_DIR/STUDY/RUN_ID`` (torch's ``SummaryWriter``).

A run's curves are scalars at step = epoch, its other final measures scalars at its last epoch,
its parameters and final measures an hparams entry (TensorBoard's HParams tab), its tags a text
summary. The study's tables are text and its PNG figures images under ``LOG_DIR/STUDY/study``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from bpbench.experiments.front.tracking.base import TrackedRun, final_only
from bpbench.experiments.store.safe_paths import safe_name


class TensorboardTracker:
    name = "tensorboard"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.study = self.folder

    def start_study(self, study: str, tags: Mapping[str, str]) -> None:
        self.study = self.folder / safe_name(study)
        self.study.mkdir(parents=True, exist_ok=True)

    def log_run(self, run: TrackedRun) -> None:
        with SummaryWriter(str(self.study / run.run_id)) as writer:
            for name, epoch, value in run.curves:
                writer.add_scalar(name, value, epoch)
            last = max((epoch for _, epoch, _ in run.curves), default=0)
            for name, value in final_only(run).items():
                writer.add_scalar(name, value, last)
            writer.add_text("tags", "\n".join(f"- {k}: {v}" for k, v in sorted(run.tags.items())))
            writer.add_hparams(dict(run.params), {f"hparam/{k}": v for k, v in run.final.items()}, run_name=".")

    def finish_study(self, artifacts: Sequence[Path]) -> None:
        with SummaryWriter(str(self.study / "study")) as writer:
            for path in artifacts:
                if path.suffix == ".png":
                    writer.add_image(path.stem, np.asarray(Image.open(path).convert("RGB")), dataformats="HWC")
                elif path.suffix in (".txt", ".md", ".csv"):
                    writer.add_text(path.name, "    " + path.read_text().replace("\n", "\n    "))
