"""Mutation check: does each rule's test suite fail on deliberately broken variants of the rule?

    python -m benchmarks.mutation_check [--rule pc --rule ff ...] [--match "issue 31"] [--list]

For every mutant of ``benchmarks.mutants`` (in the chosen rules): copy the repository (without
.git and results/) to a temporary folder, apply the mutant's text edits there (the working tree
is never touched), run only that mutant's tests (``Mutant.tests``, else its rule's ``TESTS[rule]``)
with pytest in the copy, and call the mutant *killed* if pytest fails, *survived* if it passes. An
edit whose old text does not occur exactly once is an error (exit 2), never a skipped mutant. Prints
one line per mutant, the kill rate and the seconds it took; exit 0 when every mutant is killed, 1
otherwise. Each mutant costs a copy and a pytest process (about 15-90 s on two loaded cores), so the
whole check takes far longer than CI's 10-minute test budget and is not part of ``.ci/run``; run it
by hand, or a subset with ``--rule`` / ``--match``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.mutants import MUTANTS, TESTS, Mutant

REPO = Path(__file__).resolve().parent.parent
IGNORED = shutil.ignore_patterns(".git", "results", "__pycache__", "*.egg-info", "bpbench-out")


def apply(mutant: Mutant, root: Path) -> None:
    """Patch the mutant's file under ``root``; ValueError if an old text is not there exactly once."""
    path = root / mutant.path
    text = path.read_text()
    for old, new in mutant.edits:
        if text.count(old) != 1:
            raise ValueError(f"mutant {mutant.what!r}: {old!r} occurs {text.count(old)} times in {mutant.path}")
        text = text.replace(old, new)
    path.write_text(text)


def run_tests(mutant: Mutant, timeout: float) -> tuple[str, float]:
    """('killed' | 'survived' | 'timeout', seconds) of the rule's tests on a patched copy."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as folder:
        root = Path(folder) / "repo"
        shutil.copytree(REPO, root, ignore=IGNORED)
        apply(mutant, root)
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant.test_ids()]
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", time.monotonic() - start
        if proc.returncode not in (0, 1):  # 2+: pytest could not run the tests (import error, usage)
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            return f"error (pytest exit {proc.returncode}: {' | '.join(tail)})", time.monotonic() - start
        return ("survived" if proc.returncode == 0 else "killed"), time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", action="append", help="only this rule's mutants (repeatable)")
    parser.add_argument("--match", help="only mutants whose description contains this text (e.g. 'issue 31')")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant's test run")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.rule or ()) - set(TESTS))
    if unknown:
        print(f"--rule {unknown[0]!r}: allowed are {', '.join(sorted(TESTS))}", file=sys.stderr)
        return 2
    chosen = [m for m in MUTANTS if (not args.rule or m.rule in args.rule) and (args.match or "") in m.what]
    if not chosen:
        print(f"no mutant matches --rule {args.rule} --match {args.match!r}", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.rule:14s} {m.what}")
        return 0
    with tempfile.TemporaryDirectory() as folder:  # every edit applies, before any test runs
        for m in chosen:
            target = Path(folder) / m.path.replace("/", "_")
            shutil.copy(REPO / m.path, target)
            try:
                apply(Mutant(m.rule, m.what, target.name, m.edits, m.tests), Path(folder))
            except ValueError as err:
                print(err, file=sys.stderr)
                return 2
    killed, start = 0, time.monotonic()
    for m in chosen:
        outcome, seconds = run_tests(m, args.timeout)
        killed += outcome == "killed"
        print(f"{outcome:9s} {m.rule:14s} {m.what}  ({seconds:.0f} s)", flush=True)
    rules = sorted({m.rule for m in chosen})
    rate = f"{killed}/{len(chosen)} = {killed / len(chosen):.1%}"
    print(f"kill rate: {rate} over {len(rules)} rules ({', '.join(rules)})")
    print(f"seconds: {time.monotonic() - start:.0f} (copies and test runs, one mutant at a time)")
    return 0 if killed == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
