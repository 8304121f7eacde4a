"""One ResNet-20 training step of bpbench's fa and backprop against BioTorch 0.0.16's ResNet-20
(its ``small_resnet.resnet20``) in ``fa`` mode and plain, interleaved in one process.

BioTorch is not a dependency: unless ``--biotorch DIR`` names an unpacked sdist, its sdist is
fetched with ``pip download biotorch==0.0.16 --no-deps --no-binary :all:`` into a temporary folder
and imported from there (its ``small_resnet.py`` by file path: the package's ``models/__init__``
imports torchvision, which this project does not install). Both sides: CIFAR-sized random
inputs (3, 32, 32), 10 classes, batch 128 (``--batch``), SGD lr 0.1, momentum 0.9, weight decay
1e-4 (BioTorch's ResNet-20 config), cross-entropy, one torch thread (``--threads``). Each round
steps every contender once in a shuffled order (``benchmarks.interleave``); medians of
``--rounds`` rounds. Prints wall and thread-CPU medians, their ratios to BioTorch's fa step, and
the target line: bpbench fa / BioTorch fa <= 1.0.

    python -m benchmarks.resnet_speed [--rounds 20] [--batch 128] [--biotorch DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.interleave import Step, interleaved_medians, print_ratios
from bpbench.learners.backprop import Backprop, BackpropLossParams
from bpbench.learners.base import TaskInfo
from bpbench.learners.fa import FeedbackAlignment
from bpbench.learners.feedback import FeedbackParams
from bpbench.learners.models import ModelSpec

VERSION = "0.0.16"
OPTIMIZER = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}


def fetch_biotorch(into: Path) -> Path:
    """Download BioTorch's sdist into ``into`` and unpack it; returns the unpacked folder."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"biotorch=={VERSION}",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-q",
            "-d",
            str(into),
        ],
        check=True,
    )
    (archive,) = into.glob(f"biotorch-{VERSION}.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / f"biotorch-{VERSION}"


def load_biotorch(root: Path) -> tuple[ModuleType, type[nn.Module]]:
    """(BioTorch's small_resnet module, its BioModule class) from the unpacked sdist at ``root``."""
    sys.path.insert(0, str(root))
    from biotorch.module.biomodule import BioModule  # the converter and layers need no torchvision

    spec = importlib.util.spec_from_file_location("biotorch_small_resnet", root / "biotorch/models/small_resnet.py")
    assert spec is not None and spec.loader is not None
    small_resnet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(small_resnet)
    return small_resnet, BioModule


def torch_step(model: nn.Module) -> Step:
    """A training step of ``model`` in plain torch: cross-entropy, backward, SGD step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step(x: Tensor, y: Tensor) -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20, help="timed steps per contender")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--biotorch", type=Path, help="an unpacked biotorch-0.0.16 sdist (default: pip download it)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.biotorch or fetch_biotorch(Path(tmp))
        small_resnet, bio_module = load_biotorch(root)
        torch.manual_seed(0)
        steps: dict[str, Step] = {
            "biotorch_fa": torch_step(bio_module(small_resnet.resnet20(num_classes=10), mode="fa", output_dim=10)),
            "biotorch_bp": torch_step(small_resnet.resnet20(num_classes=10)),
        }
    task = TaskInfo("bench", "image", (3, 32, 32), 10)
    spec = ModelSpec(arch="resnet", depth=20)
    fa = FeedbackAlignment(spec, task, FeedbackParams(batch_size=args.batch, **OPTIMIZER), torch.Generator(), device)
    bp = Backprop(spec, task, BackpropLossParams(batch_size=args.batch, **OPTIMIZER), torch.Generator(), device)
    steps |= {"bpbench_fa": fa.train_step, "bpbench_bp": bp.train_step}
    data = torch.Generator().manual_seed(0)
    pool = [
        (torch.randn(args.batch, 3, 32, 32, generator=data), torch.randint(0, 10, (args.batch,), generator=data))
        for _ in range(10)
    ]
    med_wall, med_cpu = interleaved_medians(steps, pool, args.rounds, device, warmup=2)
    print(
        f"ResNet-20, (3, 32, 32) inputs, batch {args.batch}, SGD, cpu, {torch.get_num_threads()} thread(s); "
        f"median of {args.rounds} interleaved steps; BioTorch {VERSION}"
    )
    print_ratios(med_wall, med_cpu, "biotorch_fa")
    print(
        f"bpbench fa / BioTorch fa step time = {med_wall['bpbench_fa'] / med_wall['biotorch_fa']:.3f} (wall), "
        f"{med_cpu['bpbench_fa'] / med_cpu['biotorch_fa']:.3f} (thread CPU); target <= 1.0"
    )
    print(
        f"bpbench backprop / BioTorch backprop = {med_wall['bpbench_bp'] / med_wall['biotorch_bp']:.3f} (wall), "
        f"{med_cpu['bpbench_bp'] / med_cpu['biotorch_bp']:.3f} (thread CPU)"
    )


if __name__ == "__main__":
    main()
