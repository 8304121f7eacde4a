"""The ``bpbench`` command: list, run, table, plot, report.

Bad input (unknown names, wrong types, unknown keys, bad budgets) prints one line naming
the value and what is allowed, and exits with code 2 before any run starts.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any
from pathlib import Path

from bpbench.experiments.config import ConfigError
from bpbench.experiments.executor import EXECUTORS, make_executor
from bpbench.experiments.registry import learner_registry, task_registry
from bpbench.experiments.study import builtin_studies, load_study, parse_set, read_toml, study_reference
from bpbench.experiments.store import RunStore
from bpbench.experiments.table import FORMATS, render, summarize
from bpbench.experiments.progress import Progress


def cmd_list(args: argparse.Namespace) -> int:
    for title, registry in (("learners", learner_registry()), ("tasks", task_registry())):
        print(f"{title}:")
        for name in registry.names():
            entry = registry.entries[name]
            state = "available" if entry.available else f"unavailable: {entry.error}"
            print(f"  {name:<16} {entry.target:<32} {state}")
    print("studies:")
    for name, path in sorted(builtin_studies().items()):
        print(f"  {name:<16} {read_toml(path).get('description', '')}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be >= 0")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    learners, tasks = learner_registry(), task_registry()
    study = load_study(args.study, args.set or [], learners, tasks)
    executor = make_executor(args.executor, jobs=args.jobs, threads=args.threads, device=args.device,
                             address=args.address)
    out = Path(args.out) if args.out else Path("bpbench-out") / study.name
    store = RunStore(out)
    store.write_study(study.name, study.raw)
    todo = [s for s in study.runs if store.status(s.run_id) != "ok"]
    if len({s.run_id for s in study.runs}) != len(study.runs):
        raise ConfigError(f"study {study.name} expands to duplicate runs; make each learner/task entry distinct")
    progress = Progress(todo, skipped=len(study.runs) - len(todo))
    start = time.perf_counter()
    executed = failed = 0
    try:
        for outcome in executor.run(todo, store, progress):
            executed += 1
            failed += outcome.status != "ok"
    finally:
        progress.close()
    wall = time.perf_counter() - start
    print(render(summarize(store, study_reference(study.raw)), "text"))
    elsewhere = f"; {progress.elsewhere} finished by another driver" if progress.elsewhere else ""
    print(f"\n{executed} run(s) in {wall:.1f} s wall ({failed} failed){elsewhere}; results in {out}")
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    from bpbench.experiments.conformance import ConformanceError, check

    params: dict[str, Any] = {}
    for assignment in args.set or []:
        path, value = parse_set(assignment)
        if len(path) == 2 and path[0] == "model":
            params.setdefault("model", {})[path[1]] = value
        elif len(path) == 1:
            params[path[0]] = value
        else:
            raise ConfigError(f"--set {assignment!r}: expected a learner option (lr=0.01) or a model option "
                              "(model.hidden=[])")
    model = params.pop("model", None)
    try:
        meta = check(args.learner, args.task, learner_registry(), task_registry(), samples=args.samples,
                     params=params, model=model)
    except ConformanceError as exc:
        print(f"bpbench: {args.learner} does not conform: {exc}", file=sys.stderr)
        return 1
    summary = meta["summary"]
    print(f"{args.learner}: conforms to the Learner interface on {args.task}; a 1-epoch run on {args.samples} "
          f"samples through the runner took {summary['steps']} step(s), test accuracy {summary['test_accuracy']:.3f}")
    for metric, reason in sorted(meta.get("unmeasured", {}).items()):
        print(f"  n/a {metric}: {reason}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    store = RunStore(Path(args.dir))
    if not store.runs_dir.is_dir():
        raise ConfigError(f"results folder {args.dir!r} has no runs/ (expected the --out folder of bpbench run)")
    labels = sorted({m["spec"]["label"] for m in store.metas()})
    if args.reference is not None and args.reference not in labels:
        raise ConfigError(f"--reference {args.reference!r}: no run in {args.dir!r} has that learner label; "
                          f"allowed: {', '.join(labels)}")
    print(render(summarize(store, args.reference), args.format))
    return 0


def _results(path: str) -> Path:
    """A results folder (the --out of bpbench run), or a clear error."""
    root = Path(path)
    if not (root / "runs").is_dir():
        raise ConfigError(f"results folder {path!r} has no runs/ (expected the --out folder of bpbench run)")
    return root


def cmd_plot(args: argparse.Namespace) -> int:
    from bpbench.experiments.plots import save_all
    from bpbench.experiments.table import tidy

    root = _results(args.dir)
    out = Path(args.out) if args.out else root / "figures"
    written, skipped = save_all(tidy(RunStore(root)), out)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"{len(written)} file(s) in {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bpbench.experiments.report import write_report

    root = _results(args.dir)
    out = write_report(root, Path(args.out) if args.out else root / "report.html")
    print(f"report: {out}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bpbench", description="Compare backprop with its alternatives on equal terms.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="learners, tasks and built-in studies, with availability").set_defaults(fn=cmd_list)
    r = sub.add_parser("run", help="run a study (built-in name or TOML path); completed runs are skipped")
    r.add_argument("study")
    r.add_argument("--out", help="output folder (default: bpbench-out/STUDY)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study value, e.g. budget.epochs=2")
    r.add_argument("--jobs", type=_positive, default=0, help="worker processes (default: one per core)")
    r.add_argument("--threads", type=_positive, default=0, help="torch threads per worker (default: cores / jobs)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    r.add_argument("--executor", choices=EXECUTORS, default="process",
                   help="process (default): local worker processes; inline: in this process; ray: Ray tasks")
    r.add_argument("--address", help="ray executor: the Ray cluster to join (HOST:PORT or auto; default: a local Ray)")
    r.set_defaults(fn=cmd_run)
    c = sub.add_parser("check", help="check a learner against the interface contract, then run it for 1 epoch "
                                     "on a slice of the task through the runner")
    c.add_argument("learner")
    c.add_argument("--task", default="digits")
    c.add_argument("--samples", type=_positive, default=256, help="training samples of the check run (default 256)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a learner option (lr=0.01) or model option (model.hidden=[]); default model: hidden = [32]")
    c.set_defaults(fn=cmd_check)
    t = sub.add_parser("table", help="summary table of a results folder")
    t.add_argument("dir")
    t.add_argument("--format", choices=FORMATS, default="text")
    t.add_argument("--reference", metavar="LABEL",
                   help="learner label the p-values compare against (default: the one the study names, else backprop)")
    t.set_defaults(fn=cmd_table)
    f = sub.add_parser("plot", help="paper figures (PDF and PNG) of a results folder")
    f.add_argument("dir")
    f.add_argument("--out", help="figure folder (default: DIR/figures)")
    f.set_defaults(fn=cmd_plot)
    h = sub.add_parser("report", help="one self-contained HTML page: table, figures, metadata")
    h.add_argument("dir")
    h.add_argument("--out", help="HTML file (default: DIR/report.html)")
    h.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, ValueError) as exc:
        print(f"bpbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
