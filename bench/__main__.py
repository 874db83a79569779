"""python -m bench [WORKLOAD...] [--runs N] [--json FILE] [--fixtures DIR] [--keep]

Runs the workloads, each side by side with its anchors in this one run, prints per command the
median, IQR and min–max of wall time and the peak RSS, then every target with PASS or FAIL.
Progress goes to stderr, the report to stdout. Exit status: 0 when no target failed, 1 when
one did (or the bench could not run), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sys
import tempfile
from pathlib import Path

from bench import anchors
from bench.harness import FAIL, PASS, SKIP, Result, StepError, Verdict, measure, megabytes, seconds
from bench.workloads import WORKLOADS, Context, Plan, Workload

REPO = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description="Time dist side by side with ctr, podman and skopeo.",
        epilog="workloads: " + ", ".join(WORKLOADS))
    p.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                   help="workloads to run, in the order given (default: all)")
    p.add_argument("--runs", type=int, metavar="N", help="timed runs per command "
                   "(default: per workload, see --list)")
    p.add_argument("--warmup", type=int, metavar="N", help="untimed rounds first "
                   "(default: per workload)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every sample as JSON")
    p.add_argument("--fixtures", type=Path, default=anchors.FIXTURES_DEFAULT, metavar="DIR",
                   help="fixture cache, built by make-fixtures.sh when DIR/fixtures.env is "
                   "missing (default: %(default)s)")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch directory (stores, archives) for inspection")
    p.add_argument("--dist", metavar="PATH", default=default_dist(),
                   help="the dist executable (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    args = p.parse_args(argv)
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload {', '.join(unknown)} (choose from {', '.join(WORKLOADS)})")
    for opt in ("runs", "warmup"):
        v = getattr(args, opt)
        if v is not None and v < (1 if opt == "runs" else 0):
            p.error(f"--{opt} {v}: too small")
    return args


def default_dist() -> str:
    for candidate in (REPO / ".venv" / "bin" / "dist", Path(sys.prefix) / "bin" / "dist"):
        if candidate.exists():
            return str(candidate)
    return str(REPO / ".venv" / "bin" / "dist")


def python_beside(dist: str) -> str:
    """The python of dist's venv (the start-up floor), else this one."""
    candidate = Path(dist).parent / "python"
    return str(candidate) if candidate.exists() else sys.executable


# --------------------------------------------------------------------------------- report

def print_workload(wl: Workload, plan: Plan, results: list[Result], verdicts: list[Verdict],
                   runs: int, warmup: int) -> None:
    print(f"\n== {wl.name}: {plan.description}")
    print(f"   {runs} runs{f' after {warmup} warm-up' if warmup else ''}, interleaved; "
          "wall time median, IQR, min–max; peak RSS of the process")
    width = max(len(r.command.label) + len(r.command.key) for r in results) + 5
    print(f"   {'command':<{width}}{'median':>10}  {'IQR':<19}  {'min–max':<19}  {'peak RSS':>9}")
    for r in results:
        name = f"   {f'{r.command.key}: {r.command.label}':<{width}}"
        if r.skipped:
            print(f"{name}skipped: {r.skipped}")
        elif r.error:
            print(f"{name}FAILED: {r.error}")
        else:
            s = r.stats
            print(f"{name}{seconds(s.median):>10}  {span(s.q1, s.q3):<19}  "
                  f"{span(s.min, s.max):<19}  {megabytes(r.peak_rss):>9}")
    for r in results:
        for note in r.command.notes:
            print(f"   note: {r.command.key}: {note}")
    if verdicts:
        w = max(len(v.name) for v in verdicts) + 2
        print(f"   {'':4}  {'target':<{w}}{'value':>9}  limit")
        for v in verdicts:
            note = f"   ({v.note})" if v.note else ""
            print(f"   {v.status:<4}  {v.name:<{w}}{v.value:>9}  {v.limit:<8}{note}")
    sys.stdout.flush()


def span(lo: float, hi: float) -> str:
    return f"{lo:.3f}–{hi:.3f} s" if hi >= 0.1 else f"{lo:.4f}–{hi:.4f} s"


def print_summary(done: list[tuple[str, list[Verdict]]], interrupted: bool) -> None:
    counted = [(n, v) for n, vs in done for v in vs if v.status in (PASS, FAIL, SKIP)]
    print(f"\n== summary{' (interrupted)' if interrupted else ''}")
    w = max((len(f"{n}: {v.name}") for n, v in counted), default=0) + 2
    for n, v in counted:
        print(f"   {v.status:<4}  {f'{n}: {v.name}':<{w}}{v.value:>9}  {v.limit}")
    counted = [v for _, v in counted]
    print("   " + ", ".join(f"{sum(v.status == s for v in counted)} {s}"
                             for s in (PASS, FAIL, SKIP)))


def result_json(r: Result) -> dict:
    c, s = r.command, r.stats
    return {"key": c.key, "label": c.label, "role": c.role, "argv": c.argv,
            "skipped": r.skipped, "error": r.error, "notes": c.notes,
            "wall_s": r.walls, "maxrss_bytes": r.rss,
            "stats": None if s is None else {"median": s.median, "q1": s.q1, "q3": s.q3,
                                             "min": s.min, "max": s.max, "n": s.n},
            "peak_rss_bytes": r.peak_rss}


# --------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        for wl in WORKLOADS.values():
            print(f"{wl.name:<14} {wl.runs:>2} runs  {wl.summary}")
        return 0
    selected = [WORKLOADS[w] for w in (args.workloads or WORKLOADS)]
    # SIGTERM unwinds like ^C, so the services are stopped and the scratch directory removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        fixtures = anchors.ensure_fixtures(args.fixtures.resolve(), log)
    except StepError as e:
        log(f"fixtures: {e}")
        return 1

    anchors.CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=anchors.CACHE_ROOT))
    dist, env = os.path.abspath(args.dist), anchors.dist_env()
    services = anchors.Services(work / "services", log)
    ctx = Context(dist=dist, python=python_beside(dist), fixtures=fixtures, services=services,
                  work=work, env=env, log=log, keep=args.keep)
    versions = {"dist": anchors.tool_version([dist], env),
                "python": anchors.tool_version([ctx.python]),
                **{t: anchors.tool_version([t]) for t in ("ctr", "podman", "skopeo")}}
    started = datetime.datetime.now(datetime.UTC)
    print(f"dist bench, {started:%Y-%m-%d %H:%M:%S} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    for tool, version in versions.items():
        print(f"   {tool:<7} {version}")
    commit = anchors.git_commit(REPO)
    print(f"   tree    {REPO}{f' at {commit}' if commit else ''}")
    print(f"   fixtures {fixtures.dir}; scratch {work}")

    done: list[tuple[str, list[Verdict]]] = []
    report: list[dict] = []
    interrupted = False
    try:
        for wl in selected:
            runs, warmup = args.runs or wl.runs, wl.warmup if args.warmup is None else args.warmup
            log(f"{wl.name}: {wl.summary}")
            ctx.begin(wl.name)
            try:
                plan = wl.build(ctx)
                results = measure(plan.commands, runs, warmup,
                                  log=lambda m, n=wl.name: log(f"{n}: {m}"))
            except StepError as e:              # the workload's own fixture could not be made
                log(f"{wl.name}: {e}")
                print(f"\n== {wl.name}: could not run: {e}")
                done.append((wl.name, [Verdict(wl.name, FAIL, "—", "", str(e))]))
                continue
            finally:
                ctx.end()
            by_key = {r.command.key: r for r in results}
            verdicts = [t.evaluate(by_key) for t in plan.targets]
            print_workload(wl, plan, results, verdicts, runs, warmup)
            done.append((wl.name, verdicts))
            report.append({"workload": wl.name, "description": plan.description, "runs": runs,
                           "warmup": warmup, "results": [result_json(r) for r in results],
                           "targets": [vars(v) for v in verdicts]})
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; cleaning up")
    finally:
        services.stop()
        anchors.unmount_under(work, log)
        try:
            anchors.RUNROOTS.rmdir()        # podman's runroots, each removed by its workload
        except OSError:
            pass
        if args.keep:
            log(f"kept {work}")
        else:
            try:
                anchors.remove_tree(work, log)
            except StepError as e:
                log(f"clean-up: {e}")

    print_summary(done, interrupted)
    if args.json:
        args.json.write_text(json.dumps({
            "started": started.isoformat(), "host": platform.node(), "cpus": os.cpu_count(),
            "versions": versions, "commit": commit, "fixtures": str(fixtures.dir),
            "interrupted": interrupted,
            "workloads": report}, indent=1) + "\n")
        log(f"wrote {args.json}")
    failed = any(v.status == FAIL for _, vs in done for v in vs)
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
