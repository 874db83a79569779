"""Timing: run each command N times, interleaved, with an untimed setup step before every run.

The contract of `measure()`:

* a command whose program is not installed is never run: an anchor is reported as
  "skipped: not installed", dist (the subject) as an error;
* `prepare` runs once, untimed; `setup` (then `sync`) runs before every run, untimed;
  `verify` runs after every run, untimed, and checks that the run did its work, so a command
  that exits 0 without doing anything is reported as failing, not as fast;
* the rounds are interleaved (dist, ctr, podman, dist, ctr, ...; the order rotates each round)
  so that drift on a noisy machine hits every command alike;
* the first failure of a command (non-zero exit, failed step) ends its runs; the error is one
  line, the other commands go on.

Wall time is `perf_counter()` around spawn and `wait4()`. Peak RSS is the `ru_maxrss` of the
command as reported by GNU time (`/usr/bin/time -f %M`), which covers the descendants the command
waited for. Not `wait4()`'s own: Linux counts in a child's maxrss the memory of the process it
was forked from (here the ~20 MB harness, recorded at exec), which would put a 20 MB floor under
every figure; GNU time's child is forked from a 2 MB process. The wrapper adds about 0.3 ms to
every run of every command alike. Without /usr/bin/time, `wait4()`'s figure is used.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Step = Callable[[], None]
Log = Callable[[str], None]

TIME = "/usr/bin/time"
HAVE_TIME = os.access(TIME, os.X_OK)


class StepError(Exception):
    """A command or a helper step failed. The message is one line: what failed and why."""


def error_line(text: str, limit: int = 240) -> str:
    """The most useful line of a tool's stderr: the first that says "error", else the last."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "(no output)"
    line = next((ln for ln in lines if "error" in ln.lower()), lines[-1])
    return line if len(line) <= limit else line[: limit - 1] + "…"


def exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit {code}"


def sh(argv: Sequence[str], what: str = "", *, env: Mapping[str, str] | None = None,
       cwd: str | None = None) -> str:
    """Runs an untimed helper command and returns its stdout; raises StepError if it fails."""
    what = what or " ".join(argv[:3])
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=env, cwd=cwd)
    except OSError as e:
        raise StepError(f"{what}: {argv[0]}: {e.strerror}") from None
    if proc.returncode != 0:
        raise StepError(f"{what}: {exit_text(proc.returncode)}: "
                        f"{error_line(proc.stderr or proc.stdout)}")
    return proc.stdout


@dataclass
class Command:
    """One timed command line and the untimed steps around it."""

    key: str                       # stable id used by targets and in the JSON: "dist", "ctr-json"
    label: str                     # what the report shows
    argv: list[str]
    role: str = "anchor"           # "dist" (the subject), "anchor" or "floor"
    prepare: Step | None = None    # once, before the first run
    setup: Step | None = None      # before every run, warm-up included
    verify: Step | None = None     # after every run: StepError if the run did not do its work
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    notes: list[str] = field(default_factory=list)   # caveats the steps found, for the report

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def missing(self) -> str | None:
        """Why the program cannot run ("not installed"), or None."""
        prog = self.argv[0]
        found = os.access(prog, os.X_OK) if "/" in prog else shutil.which(prog) is not None
        return None if found else f"not installed ({prog})"


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    q1: float
    q3: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if len(values) >= 2:
            q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        else:
            q1 = q3 = values[0]
        return cls(len(values), statistics.median(values), q1, q3, min(values), max(values))


@dataclass
class Result:
    command: Command
    walls: list[float] = field(default_factory=list)   # seconds, timed runs only
    rss: list[int] = field(default_factory=list)       # peak RSS in bytes, per timed run
    skipped: str | None = None
    error: str | None = None

    @property
    def live(self) -> bool:
        return self.skipped is None and self.error is None

    @property
    def ok(self) -> bool:
        return self.live and bool(self.walls)

    @property
    def stats(self) -> Stats | None:
        return Stats.of(self.walls) if self.ok else None

    @property
    def peak_rss(self) -> int | None:
        return max(self.rss) if self.ok else None


def run_once(cmd: Command) -> tuple[float, int]:
    """Runs the command once, stdout to /dev/null; returns (wall seconds, peak RSS bytes)."""
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        argv = ([TIME, "-q", "-f", "%M", "-o", rss.name, "--", *cmd.argv] if HAVE_TIME
                else cmd.argv)
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, env=cmd.env, cwd=cmd.cwd)
        except OSError as e:
            raise StepError(f"{cmd.argv[0]}: {e.strerror}") from None
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise StepError(f"{exit_text(code)}: {error_line(err.read().decode(errors='replace'))}")
        if not HAVE_TIME:
            return wall, usage.ru_maxrss * 1024
        try:
            return wall, int(rss.read().split()[-1]) * 1024
        except (ValueError, IndexError):
            raise StepError(f"{TIME} wrote no peak RSS") from None


def measure(commands: Sequence[Command], runs: int, warmup: int = 0,
            log: Log = lambda _: None) -> list[Result]:
    """Times every command `runs` times after `warmup` untimed rounds (see the module contract)."""
    results = [Result(c) for c in commands]
    for r in results:
        why = r.command.missing()
        if why and r.command.role == "dist":
            r.error = why
        elif why:
            r.skipped = why
        elif r.command.prepare:
            log(f"prepare {r.command.label}")
            try:
                r.command.prepare()
            except StepError as e:
                r.error = f"prepare: {e}"
    for i in range(warmup + runs):
        live = [r for r in results if r.live]
        if not live:
            break
        log(f"warm-up {i + 1}/{warmup}" if i < warmup else f"run {i - warmup + 1}/{runs}")
        shift = i % len(live)
        for r in live[shift:] + live[:shift]:
            _one_run(r, timed=i >= warmup, index=i - warmup + 1)
    return results


def _one_run(r: Result, *, timed: bool, index: int) -> None:
    cmd = r.command
    phase = "setup"
    try:
        if cmd.setup:
            cmd.setup()
        os.sync()
        phase = f"run {index}" if timed else "warm-up"
        wall, rss = run_once(cmd)
        phase = "verify"
        if cmd.verify:
            cmd.verify()
    except StepError as e:
        r.error = f"{phase}: {e}"
        return
    if timed:
        r.walls.append(wall)
        r.rss.append(rss)


# ---------------------------------------------------------------------------------- targets

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "info"


@dataclass(frozen=True)
class Verdict:
    name: str
    status: str       # PASS, FAIL, SKIP (the anchor is missing or failed), info (no limit)
    value: str
    limit: str
    note: str = ""


def _subject_failed(name: str, limit: str, s: Result) -> Verdict:
    return Verdict(name, FAIL, "—", limit, f"{s.command.key} did not run: see above")


@dataclass(frozen=True)
class Ratio:
    """median(subject) / median(anchor) <= limit; no limit: shown for information only."""

    subject: str
    anchor: str
    limit: float | None = None

    def evaluate(self, results: Mapping[str, Result]) -> Verdict:
        s, a = results[self.subject], results[self.anchor]
        name = f"{s.command.key} / {a.command.key}"
        limit = "" if self.limit is None else f"≤ {self.limit:g}"
        if not (s.ok and a.ok):
            if a.skipped:
                why = f"{a.command.key} skipped: {a.skipped}"
            elif not s.ok:
                if self.limit is not None:
                    return _subject_failed(name, limit, s)
                why = f"{s.command.key} did not run"
            else:
                why = f"{a.command.key} failed: see above"
            return Verdict(name, SKIP if self.limit is not None else INFO, "—", limit, why)
        ratio = s.stats.median / a.stats.median
        status = INFO if self.limit is None else PASS if ratio <= self.limit else FAIL
        return Verdict(name, status, f"{ratio:.3f}", limit)


@dataclass(frozen=True)
class Seconds:
    """median(subject) <= limit seconds."""

    subject: str
    limit: float

    def evaluate(self, results: Mapping[str, Result]) -> Verdict:
        s = results[self.subject]
        name, limit = f"{s.command.key} median", f"≤ {seconds(self.limit)}"
        if not s.ok:
            return _subject_failed(name, limit, s)
        med = s.stats.median
        return Verdict(name, PASS if med <= self.limit else FAIL, seconds(med), limit)


@dataclass(frozen=True)
class PeakRss:
    """max over the runs of the subject's peak RSS < limit bytes."""

    subject: str
    limit: int

    def evaluate(self, results: Mapping[str, Result]) -> Verdict:
        s = results[self.subject]
        name, limit = f"{s.command.key} peak RSS", f"< {megabytes(self.limit)}"
        if not s.ok:
            return _subject_failed(name, limit, s)
        peak = s.peak_rss
        return Verdict(name, PASS if peak < self.limit else FAIL, megabytes(peak), limit)


@dataclass(frozen=True)
class Headroom:
    """What a speed target leaves the subject once a floor it cannot avoid is paid.

    The target's budget (``limit`` seconds, or ``limit`` × the anchor's median) minus the
    floor's median, beside the subject's own cost beyond the floor (its median minus the
    floor's). Shown for information: when the budget is negative, no work of the subject's can
    meet the target on this machine, only a cheaper floor can."""

    subject: str
    floor: str
    limit: float
    anchor: str | None = None

    def evaluate(self, results: Mapping[str, Result]) -> Verdict:
        s, f = results[self.subject], results[self.floor]
        a = results[self.anchor] if self.anchor else None
        name = f"{s.command.key} − {f.command.key}"
        if not (s.ok and f.ok and (a is None or a.ok)):
            return Verdict(name, INFO, "—", "", "a command did not run")
        budget = self.limit * (a.stats.median if a else 1.0) - f.stats.median
        own = s.stats.median - f.stats.median
        target = f"{self.limit:g} × {a.command.key}" if a else seconds(self.limit)
        return Verdict(name, INFO, signed_seconds(own), f"{signed_seconds(budget)} left",
                       f"{target} less {f.command.key}: what dist may spend beyond it")


Target = Ratio | Seconds | PeakRss | Headroom


def seconds(v: float) -> str:
    return f"{v:.3f} s" if v >= 0.1 else f"{v:.4f} s"


def signed_seconds(v: float) -> str:
    return f"{v:+.3f} s"


def megabytes(b: int) -> str:
    """Decimal megabytes, the unit of the targets ("< 100 MB")."""
    return f"{b / 1e6:.1f} MB"
