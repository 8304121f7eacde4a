"""The ``bpbench`` command: list, run, check, table, plot, report, compact, new, cache clear.

A thin layer over the Python API (``bpbench.run``, ``bpbench.load``, ``Results``). Bad input
(unknown names, wrong types, unknown keys, bad budgets) prints one line naming the value and
what is allowed, and exits with code 2 before any run starts. Heavy modules (torch, pandas)
are imported by the commands that need them, so ``bpbench --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, TypeAlias

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.time_to_target import TIME_TO_TARGET

# = experiments.report.render.FORMATS (no pandas import here)
TABLE_FORMATS = ("text", "markdown", "latex", "html", "csv")


def cmd_list(args: argparse.Namespace) -> int:
    from bpbench.experiments.front.availability import plugin_status
    from bpbench.experiments.plan.builtin import builtin_studies, read_toml
    from bpbench.experiments.plan.registry import LEARNER_GROUP, TASK_GROUP

    status = plugin_status((LEARNER_GROUP, TASK_GROUP))
    width = max((len(e.target) for entries in status.values() for e in entries), default=0)
    for title, group in (("learners", LEARNER_GROUP), ("tasks", TASK_GROUP)):
        print(f"{title}:")
        for entry in status[group]:
            state = "available" if entry.available else f"unavailable: {entry.error}"
            provider = f"{entry.distribution} {entry.version}" if entry.distribution else "(not installed)"
            print(f"  {entry.name:<16} {entry.target:<{width}}  {provider}  {state}")
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
    from bpbench.experiments.front.api import plan_runs, run, trial_plan_of

    if args.dry_run:
        trials = trial_plan_of(args.study, overrides=args.set or [])
        if trials is not None:
            print(trials)
            return 0
        return _dry_run(plan_runs(args.study, out=args.out, overrides=args.set or []))
    results = run(
        args.study,
        out=args.out,
        overrides=args.set or [],
        jobs=args.jobs,
        threads=args.threads,
        device=args.device,
        executor=args.executor,
        address=args.address,
        progress=True,
        extend=args.extend,
        track=args.track,
        slurm=args.slurm,
    )
    failed = sum(outcome.status != "ok" for outcome in results.ran)
    print(results.table("text"))
    elsewhere = f"; {results.elsewhere} finished by another driver" if results.elsewhere else ""
    print(
        f"\n{len(results.ran)} run(s) in {results.wall_seconds:.1f} s wall ({failed} failed){elsewhere}; "
        f"results in {results.out}"
    )
    standing = results.standing()
    if standing["failed"] or standing["missing"]:  # whoever ran them: this driver, another, or none yet
        print(
            f"study incomplete: {len(standing['ok'])} of {len(results.planned)} run(s) ok, "
            f"{len(standing['failed'])} failed, {len(standing['missing'])} missing (not stored; "
            "run the study again to run them)",
            file=sys.stderr,
        )
        return 1
    return 0


def _dry_run(planned: tuple[Path, list[tuple[Any, str]]]) -> int:
    """Print the expanded runs of a study and their state in its folder; runs nothing."""
    root, runs = planned
    todo = sum(state != "done" for _, state in runs)
    print(f"{len(runs)} run(s) into {root}: {todo} to run, {len(runs) - todo} done (dry run: nothing runs)")
    for spec, state in runs:
        config = varied_text(spec)
        print(
            f"  {spec.run_id}  {state:<7} {spec.label}{f' ({config})' if config else ''} on {spec.task_label}, "
            f"seed {spec.seed_index}, timeout {spec.timeout:g} s"
        )
    return 0


def varied_text(spec: Any) -> str:
    from bpbench.experiments.store.describe import varied_label

    return varied_label(spec.to_json())


TRACKING_FLAGS = (
    ("--track", "TARGET", "mirror every run to mlflow[:URI], tensorboard[:DIR] or wandb[:PROJECT] (repeatable)"),
    ("--slurm", "KEY=VALUE", "slurm executor: partition=, time= (minutes), cpus=, mem_gb=, gpus= per run"),
)


def cmd_track(args: argparse.Namespace) -> int:
    from bpbench.experiments.front.tracking.base import parse_targets
    from bpbench.experiments.front.tracking.mirror import export

    targets = parse_targets(args.to)
    print(f"mirrored {export(Path(args.dir), targets)} run(s) of {args.dir} to {', '.join(args.to)}")
    return 0


def _check_params(assignments: list[str]) -> tuple[dict[str, Any], Any]:
    """``check --set`` assignments -> (learner options, model options or None)."""
    from bpbench.experiments.plan.study import parse_set

    params: dict[str, Any] = {}
    for assignment in assignments:
        path, value = parse_set(assignment)
        if len(path) == 2 and path[0] == "model":
            params.setdefault("model", {})[path[1]] = value
        elif len(path) == 1:
            params[path[0]] = value
        else:
            raise ConfigError(
                f"--set {assignment!r}: expected a learner option (lr=0.01) or a model option (model.hidden=[])"
            )
    model = params.pop("model", None)
    return params, model


def cmd_check(args: argparse.Namespace) -> int:
    from bpbench.experiments.front.conformance import ConformanceError, check
    from bpbench.experiments.plan.registry import learner_registry, task_registry

    params, model = _check_params(args.set or [])
    try:
        meta = check(
            args.learner,
            args.task,
            learner_registry(),
            task_registry(),
            samples=args.samples,
            params=params,
            model=model,
        )
    except ConformanceError as exc:
        print(f"bpbench: {args.learner} does not conform: {exc}", file=sys.stderr)
        return 1
    steps, accuracy = meta["summary"]["steps"], meta["measures"]["values"]["test_accuracy"]
    print(
        f"{args.learner}: conforms to the Learner interface on {args.task}; a 1-epoch run on {args.samples} "
        f"samples through the runner took {steps} step(s), test accuracy {accuracy:.3f}"
    )
    learning = meta["learning"]
    print(
        f"  learning: test accuracy {learning.accuracy:.3f} after {learning.steps} updates on those samples "
        f"(chance {learning.chance:.3f})"
    )
    for metric, reason in sorted(meta.get("unmeasured", {}).items()):
        print(f"  n/a {metric}: {reason}")
    if learning.warning:
        print(f"warning: {learning.warning}")
    if args.options:
        from bpbench.experiments.front.conformance import check_option_lines

        print(
            "\n".join(check_option_lines(args.learner, args.task, learner_registry(), task_registry(), params, model))
        )
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from bpbench.experiments.front.results import load

    table_only = {"--columns": args.columns, "--tuning": args.tuning, "--p": args.p}
    given = [name for name, value in table_only.items() if value] if args.score else []
    if given or (args.measure and not args.score):
        wrong = f"{', '.join(given)} (options of the summary table)" if given else "--measure (an option of --score)"
        raise ConfigError(f"table: {wrong} cannot be combined with {'--score' if given else 'the summary table'}")
    results = load(args.dir)
    if args.score:
        print(results.score(args.format, reference=args.reference, measure=args.measure or "flops"))
        return 0
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    p = args.p or "holm"
    print(results.table(args.format, reference=args.reference, p=p, columns=columns, tuning=args.tuning))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from bpbench.experiments.front.reproduce import reproduce

    print(reproduce(args.dir, here=args.here, overrides=args.set or [], jobs=args.jobs))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from bpbench.experiments.front.results import load

    results = load(args.dir)
    out = Path(args.out) if args.out else results.out / "figures"
    written, skipped = results.plot(out)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"{len(written)} file(s) in {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bpbench.experiments.front.results import load

    print(f"report: {load(args.dir).report(args.out)}")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from bpbench.experiments.front.results import results_folder
    from bpbench.experiments.store.compact import compact

    done = compact(results_folder(args.dir))
    print(
        f"compacted {args.dir}: {done.moved} run(s) moved into {Path(args.dir) / 'dataset'}"
        + (f", {done.already} folder(s) already there removed" if done.already else "")
        + (f"; {len(done.left)} left in runs/" if done.left else "")
    )
    for run_id, reason in sorted(done.left.items()):
        print(f"  left {run_id}: {reason}")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from bpbench.experiments.front.scaffold import new_package

    folder = new_package(args.kind, args.name, Path(args.dir) if args.dir else None)
    print(f'wrote a {args.kind} plugin package in {folder}; next: pip install -e "{folder}[test]" && pytest {folder}')
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from bpbench.tasks.cache import cache_dir, clear

    folder = cache_dir()
    if folder is None:
        print("the task cache is off (BPBENCH_CACHE=off): nothing to clear")
        return 0
    files, freed = clear()
    print(f"removed {files} file(s), {freed / 2**20:.1f} MiB, from {folder / 'tasks'}")
    return 0


_Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # what add_subparsers returns


def _run_args(sub: _Subcommands) -> None:
    """``run``: a study name or TOML path, its output folder, overrides, workers, executor, tracking."""
    r = sub.add_parser("run", help="run a study (built-in name or TOML path); completed runs are skipped")
    r.add_argument("study")
    r.add_argument("--out", help="output folder (default: bpbench-out/STUDY)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study value, e.g. budget.epochs=2")
    r.add_argument("--jobs", type=_positive, default=0, help="worker processes (default: one per core)")
    r.add_argument(
        "--threads",
        type=_positive,
        default=0,
        help="torch threads per run (default 1: timings measure the learner, not thread contention)",
    )
    r.add_argument(
        "--extend",
        action="store_true",
        help="the --out folder holds this study with another definition: add its new grid points or "
        "seeds (never a changed budget or option of a recorded run)",
    )
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="print the expanded runs and their state (a tuned study: its trial plan); run nothing",
    )
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    r.add_argument(
        "--executor",
        default="process",
        help="process (default): local worker processes; inline: in this process; ray: Ray tasks; "
        "slurm: a Slurm job array (submitit)",
    )
    r.add_argument("--address", help="ray executor: the Ray cluster to join (HOST:PORT or auto; default: a local Ray)")
    for flag, meta, text in TRACKING_FLAGS:
        r.add_argument(flag, action="append", metavar=meta, help=text)
    r.set_defaults(fn=cmd_run)


def _track_args(sub: _Subcommands) -> None:
    """``track``: a results folder and the tracking targets to mirror it to."""
    m = sub.add_parser("track", help="mirror a results folder to MLflow, TensorBoard or W&B")
    m.add_argument("dir")
    m.add_argument("--to", action="append", required=True, metavar="TARGET", help=TRACKING_FLAGS[0][2])
    m.set_defaults(fn=cmd_track)


def _check_args(sub: _Subcommands) -> None:
    """``check``: a learner, the task and sample count of its check run, option overrides."""
    c = sub.add_parser(
        "check",
        help="check a learner against the interface contract, then run it for 1 epoch "
        "on a slice of the task through the runner",
    )
    c.add_argument("learner")
    c.add_argument("--task", default="digits")
    c.add_argument("--samples", type=_positive, default=256, help="training samples of the check run (default 256)")
    c.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a learner option (lr=0.01) or model option (model.hidden=[]); default model: hidden = [32]",
    )
    c.add_argument(
        "--options",
        action="store_true",
        help="also try each declared option at a non-default value for a few updates and report how much "
        "it changed them; an option that changes nothing is a warning",
    )
    c.set_defaults(fn=cmd_check)


def _table_args(sub: _Subcommands) -> None:
    """``table``: a results folder, its output format, reference, p-values, columns and scoring."""
    t = sub.add_parser("table", help="summary table of a results folder")
    t.add_argument("dir")
    t.add_argument("--format", choices=TABLE_FORMATS, default="text")
    t.add_argument(
        "--reference",
        metavar="LABEL",
        help="learner label the p-values compare against (default: the one the study names, else backprop)",
    )
    t.add_argument(
        "--tuning",
        action="store_true",
        help="a tuned study: every trial (configuration, validation accuracy, rank) instead of the final runs",
    )
    t.add_argument(
        "--p",
        choices=("holm", "raw"),
        default=None,
        help="p-values Holm-adjusted over the table's comparisons (default) or raw",
    )
    t.add_argument(
        "--columns",
        metavar="KEY,...",
        help="columns to print, e.g. learner,task,test_acc,diff,p,flops,ttt_flops,reached "
        "(default: all; LaTeX: a page-wide set)",
    )
    t.add_argument(
        "--score",
        action="store_true",
        help="one row per learner: performance-profile area, average ranks, Friedman test, IQM of normalized accuracy",
    )
    t.add_argument(
        "--measure",
        choices=[m.name for m in TIME_TO_TARGET],
        default=None,
        help="--score: the time-to-target measure of the performance profile (default flops)",
    )
    t.set_defaults(fn=cmd_table)


def _plot_args(sub: _Subcommands) -> None:
    """``plot``: a results folder and the figure folder."""
    f = sub.add_parser("plot", help="paper figures (PDF and PNG) of a results folder")
    f.add_argument("dir")
    f.add_argument("--out", help="figure folder (default: DIR/figures)")
    f.set_defaults(fn=cmd_plot)


def _reproduce_args(sub: _Subcommands) -> None:
    """``reproduce``: a results folder, the code to re-run it at, overrides and workers."""
    q = sub.add_parser("reproduce", help="re-run a results folder's study; per row: equivalent? bit-identical?")
    q.add_argument("dir")
    q.add_argument("--here", action="store_true", help="at the current code (default: the recorded commit)")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study value, e.g. seeds=2")
    q.add_argument("--jobs", type=_positive, default=1, help="worker processes (default 1)")
    q.set_defaults(fn=cmd_reproduce)


def _report_args(sub: _Subcommands) -> None:
    """``report``: a results folder and the HTML file."""
    h = sub.add_parser("report", help="one self-contained HTML page: table, figures, metadata")
    h.add_argument("dir")
    h.add_argument("--out", help="HTML file (default: DIR/report.html)")
    h.set_defaults(fn=cmd_report)


def _compact_args(sub: _Subcommands) -> None:
    """``compact``: a results folder."""
    k = sub.add_parser(
        "compact",
        help="merge the run folders of a results folder into one partitioned parquet "
        "dataset (safe while a study writes to it)",
    )
    k.add_argument("dir")
    k.set_defaults(fn=cmd_compact)


def _new_args(sub: _Subcommands) -> None:
    """``new``: the plugin kind, its name and the folder to write."""
    n = sub.add_parser("new", help="write a ready plugin package (learner or task) with its tests")
    n.add_argument("kind", choices=("learner", "task"))
    n.add_argument("name", help="the name to register (a lowercase Python identifier, e.g. my_rule)")
    n.add_argument("--dir", help="folder to write (default: ./NAME); must not exist or be empty")
    n.set_defaults(fn=cmd_new)


def _cache_args(sub: _Subcommands) -> None:
    """``cache clear``: the machine-wide task cache."""
    k = sub.add_parser("cache", help="the machine-wide cache of loaded tasks ($XDG_CACHE_HOME/bpbench)")
    k_sub = k.add_subparsers(dest="action", required=True)
    k_sub.add_parser("clear", help="delete every cached task (rebuilt on next use)").set_defaults(fn=cmd_cache_clear)


def parser() -> argparse.ArgumentParser:
    """The ``bpbench`` argument parser: one subcommand per command, each with ``fn`` set to its handler."""
    p = argparse.ArgumentParser(prog="bpbench", description="Compare backprop with its alternatives on equal terms.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="learners, tasks and built-in studies, with availability").set_defaults(fn=cmd_list)
    _run_args(sub)
    _track_args(sub)
    _check_args(sub)
    _table_args(sub)
    _plot_args(sub)
    _reproduce_args(sub)
    _report_args(sub)
    _compact_args(sub)
    _new_args(sub)
    _cache_args(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    recorded: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("default")
            try:
                return args.fn(args)
            except (ConfigError, ValueError) as exc:
                print(f"bpbench: error: {exc}", file=sys.stderr)
                return 2
            except OSError as exc:  # read-only folder, disk full, permission, a refused symlink, Ray unreachable
                where = (
                    f" ({exc.filename})" if getattr(exc, "filename", None) and str(exc.filename) not in str(exc) else ""
                )
                print(f"bpbench: error: {exc}{where}", file=sys.stderr)
                return 2
    finally:  # after the recording context has ended, so a warning shown here is not recorded again
        _show(recorded)


def _show(recorded: list[warnings.WarningMessage]) -> None:
    """A skipped run file: one line each (once); anything else as Python shows it."""
    shown = set()
    for w in recorded:
        if w.category.__name__ in ("ResultsWarning", "TrackingWarning"):
            if str(w.message) not in shown:
                print(f"bpbench: warning: {w.message}", file=sys.stderr)
            shown.add(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


if __name__ == "__main__":
    sys.exit(main())
