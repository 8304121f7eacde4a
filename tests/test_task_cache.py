"""The machine-wide task cache: used on the second load, rebuilt after corruption or a changed source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bpbench.tasks import cache
from bpbench.tasks.base import TaskParams
from bpbench.tasks.digits import Digits
from bpbench.tasks.idx import FashionMnist, IdxParams
from test_idx import fixture_set


class CountingDigits(Digits):
    """Digits that counts how often its raw data is parsed."""

    calls = 0

    def raw(self, params: TaskParams) -> tuple[np.ndarray, np.ndarray]:
        type(self).calls += 1
        return super().raw(params)


def same(a, b) -> bool:  # type: ignore[no-untyped-def]
    return a.info == b.info and all(
        torch.equal(getattr(a, s).x, getattr(b, s).x) and torch.equal(getattr(a, s).y, getattr(b, s).y)
        for s in ("train", "val", "test")
    )


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BPBENCH_CACHE", raising=False)
    CountingDigits.calls = 0
    return tmp_path / "cache"


def test_second_load_reads_the_cache_and_equals_a_fresh_load(cache_root: Path) -> None:
    first = cache.load_cached(CountingDigits(), TaskParams())
    second = cache.load_cached(CountingDigits(), TaskParams())
    assert CountingDigits.calls == 1
    assert same(first, second) and same(second, Digits().load(TaskParams()))
    assert len(list((cache_root / "tasks").glob("digits-*.npz"))) == 1
    other = cache.load_cached(CountingDigits(), TaskParams(split_seed=1))  # other options: another entry
    assert CountingDigits.calls == 2 and not torch.equal(other.train.y, first.train.y)


def test_another_process_uses_the_entry(cache_root: Path) -> None:
    cache.load_cached(Digits(), TaskParams())
    code = (
        "import bpbench.tasks.cache as c, bpbench.tasks.base as b; from bpbench.tasks.digits import Digits\n"
        "Digits.raw = lambda self, p: exit('parsed again')\n"
        "print(c.load_cached(Digits(), b.TaskParams()).train.x.shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.Size([1257, 1, 8, 8])" in out.stdout


def test_corrupt_entry_is_reported_and_rebuilt(cache_root: Path) -> None:
    good = cache.load_cached(CountingDigits(), TaskParams())
    npz = next((cache_root / "tasks").glob("digits-*.npz"))
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the arrays
    npz.write_bytes(bytes(raw))
    with pytest.warns(cache.CacheWarning, match="unusable.*rebuilding"):
        rebuilt = cache.load_cached(CountingDigits(), TaskParams())
    assert CountingDigits.calls == 2 and same(good, rebuilt)
    npz.write_bytes(npz.read_bytes()[:100])  # truncated (a half-written file)
    with pytest.warns(cache.CacheWarning):
        cache.load_cached(CountingDigits(), TaskParams())
    assert CountingDigits.calls == 3
    assert same(good, cache.load_cached(CountingDigits(), TaskParams())) and CountingDigits.calls == 3


def test_changed_source_file_invalidates_the_entry(cache_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "fashion"
    fixture_set(folder, 160, 40, compress=False)
    params = IdxParams(path=str(folder))
    before = cache.load_cached(FashionMnist(), params)
    assert len(list((cache_root / "tasks").glob("fashion_mnist-*.npz"))) == 1
    images = folder / "train-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    raw[-1] = (raw[-1] + 7) % 256  # one pixel of the last training image changes
    images.write_bytes(bytes(raw))
    after = cache.load_cached(FashionMnist(), params)
    assert len(list((cache_root / "tasks").glob("fashion_mnist-*.npz"))) == 2
    assert same(after, FashionMnist().load(params)) and not same(before, after)


def test_uncached_when_off_or_without_sources(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class NoSources(CountingDigits):
        def sources(self, params: TaskParams) -> None:
            return None

    cache.load_cached(NoSources(), TaskParams())
    cache.load_cached(NoSources(), TaskParams())
    assert NoSources.calls == 2 and not (cache_root / "tasks").exists()
    monkeypatch.setenv("BPBENCH_CACHE", "off")
    cache.load_cached(CountingDigits(), TaskParams())
    cache.load_cached(CountingDigits(), TaskParams())
    assert CountingDigits.calls == 2  # NoSources counted on its own class attribute


def test_clear_removes_every_entry(cache_root: Path) -> None:
    cache.load_cached(Digits(), TaskParams())
    files, freed = cache.clear()
    assert files >= 2 and freed > 0 and not list((cache_root / "tasks").glob("*.npz"))
    assert cache.clear() == (0, 0)


def test_cli_cache_clear(cache_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from bpbench.experiments.front.cli import main

    cache.load_cached(CountingDigits(), TaskParams())
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("removed ") and str(cache_root / "tasks") in out and " 0 file(s)" not in out
    assert not list((cache_root / "tasks").glob("*.npz"))
    cache.load_cached(CountingDigits(), TaskParams())
    assert CountingDigits.calls == 2  # parsed again after the clear
    monkeypatch.setenv("BPBENCH_CACHE", "off")
    assert main(["cache", "clear"]) == 0 and "off" in capsys.readouterr().out


def test_key_covers_the_shared_loading_code_a_task_imports() -> None:
    from bpbench.tasks.fsdd import Fsdd
    from bpbench.tasks.japanese_vowels import JapaneseVowels

    for task in (Fsdd(), JapaneseVowels()):  # both take fix_length from tasks/sequences.py
        assert {p.name for p in cache.code_files(task)} == {"base.py", "sequences.py", f"{task.name}.py"}
    # a subclass defined elsewhere: its own module and the module of the task it extends
    assert {p.name for p in cache.code_files(CountingDigits())} >= {"base.py", "digits.py", "test_task_cache.py"}
