#!/usr/bin/env python3
"""Soak: many calls, a seeded random mix of successes and faults, then look for leaks.

Not a test: a long run (``tests/test_soak_short.py`` runs a short one through the same
`soak` function). Two phases:

- **sequential**: N one-shot calls, one after the other, with `sandboxmode.run`;
- **concurrent**: M calls submitted to a `sandboxmode.Pool` (a bounded window in flight).

Each call is drawn from `CASES` (a good call, the function raising, a segfault, a
forbidden system call, a wall-clock timeout, the memory limit, an oversized result) and
its outcome must be exactly the expected one (type and key evidence). At the end, after
the pool is closed, it compares with the start:

- descriptors of this process (``/proc/self/fd``, memfds counted apart), leaving out
  the zygote's control socket and the spare sandboxes' descriptors;
- processes: the zygote's children that are neither spares nor let go of
  (`sandboxmode._spawner.census`), the zygote's total child count, this process's
  children other than the zygote;
- threads (the spare maker ``sbm-spares`` aside);
- resident set size, between the end of a warm-up phase and the end.

Usage::

    .venv/bin/python scripts/soak.py                          # 100_000 + 10_000, seed 0
    .venv/bin/python scripts/soak.py --sequential 1000 --concurrent 200 --seed 7

Exit status: 0 clean; 1 an unexpected outcome, a leak, or RSS growth above
``--max-rss-growth``; 130 interrupted (the report then covers the calls made).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import sandboxmode as sbm
from sandboxmode import _spawner

# The sandboxed functions live in tests/targets.py, which the zygote imports by name: it
# must be on sys.path before the zygote starts (the zygote copies the host's sys.path).
TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
targets: Any = importlib.import_module("targets")

#: Every call runs under this policy; the memory and result limits are the ones the
#: memory and oversized cases hit.
POLICY = sbm.Policy(timeout=10.0, cpu_seconds=10, memory=64 << 20, max_result_bytes=1 << 20)
#: Wall-clock limit of the sequential timeout case (the others run under POLICY's).
SHORT_TIMEOUT = 0.1
GOOD = 0x600D600D


@dataclass(frozen=True)
class Case:
    """One kind of call and the one outcome it must have."""

    weight: float
    target: str  # a function of tests/targets.py
    args: tuple[Any, ...]
    expect: type[BaseException] | None  # None: a result
    check: Callable[[Any], bool]  # the result, or the exception, is the expected one
    timeout: float | None = None  # per call, sequential phase; the pool has its own


def _ev(key: str, value: Any) -> Callable[[Any], bool]:
    return lambda e: e.evidence.get(key) == value


#: The mix. Weights keep the slow cases (a timeout, the memory limit) rare enough that
#: 100_000 sequential calls take about half an hour on two cores.
CASES: dict[str, Case] = {
    "good": Case(62, "good", (), None, lambda r: r == GOOD),
    "target error": Case(14, "raise_value_error", ("soak",), sbm.TargetError,
                         lambda e: e.remote_type == "ValueError"),
    "segfault": Case(8, "segfault", (), sbm.SandboxFault, _ev("signal", signal.SIGSEGV)),
    "forbidden syscall": Case(8, "open_file", ("/etc/hostname",), sbm.PolicyViolation,
                              _ev("syscall", "openat")),
    "oversized result": Case(4, "big_result", (2 << 20,), sbm.ProtocolError,
                             lambda e: True),
    "memory limit": Case(3, "eat_memory", (), sbm.SandboxMemoryError, _ev("limit", "memory")),
    "timeout": Case(1, "spin", (), sbm.SandboxTimeout, _ev("limit", "timeout"),
                    timeout=SHORT_TIMEOUT),
}


def plan(n: int, rng: random.Random) -> list[str]:
    """``n`` case names drawn by weight."""
    names = list(CASES)
    return rng.choices(names, weights=[CASES[c].weight for c in names], k=n)


def judge(name: str, result: Any, exc: BaseException | None) -> str | None:
    """None if the outcome is the expected one, else what was wrong."""
    case = CASES[name]
    if case.expect is None:
        if exc is not None:
            return f"expected a result, got {type(exc).__name__}: {exc}"
        return None if case.check(result) else f"unexpected result {result!r:.200}"
    if exc is None:
        return f"expected {case.expect.__name__}, got the result {result!r:.200}"
    if type(exc) is not case.expect:
        return f"expected {case.expect.__name__}, got {type(exc).__name__}: {exc}"
    if not case.check(exc):
        return f"{type(exc).__name__} without the expected evidence: {exc}; " \
               f"{getattr(exc, 'evidence', {})!r:.300}"
    return None


# -- what the process holds -----------------------------------------------------------------


def _children(pid: int | str) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return sorted(out)


def _state(pid: int) -> str:
    """The one-letter state of a process (proc(5): /proc/PID/stat, field 3)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "gone"


def _diagnose(pids: list[int], bound: float = 2.0) -> dict[int, str]:
    """For a report: what each leftover process is, and whether a later census (which
    reaps what the host let go of meanwhile) still finds it: a race in the leak check
    rather than a leak if it does not."""
    states = {pid: _state(pid) for pid in pids}
    deadline = time.monotonic() + bound
    left = set(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.01)  # a polling interval
        left &= set(_spawner.census()["children"])
    return {pid: f"state {states[pid]}, "
                 + (f"still there after {bound} s" if pid in left else "gone on a later census")
            for pid in pids}


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Snapshot:
    """A still picture of this process (the spare maker paused while it is taken)."""

    fds: dict[int, str]  # ours: the zygote's and the spares' left out
    threads: set[str]
    rss_kib: int
    leftover: list[int]  # the zygote's children neither spares nor let go of
    zygote_children: int  # all of them, spares included
    spares: int
    host_children: list[int]  # this process's children other than zygotes


def snapshot() -> Snapshot:
    gc.collect()
    _spawner.spares.pause()
    try:
        census = _spawner.census()  # reaps every child the host let go of first
        spare_pids, _ = _spawner.spares.owned()
        fds = _spawner.open_fds()
        zygotes = [z for z in census["zygotes"] if z is not None]
        zygote_children = sum(len(_children(z)) for z in zygotes)
    finally:
        _spawner.spares.resume()
    own = set(census["fds"])
    return Snapshot(
        fds={fd: t for fd, t in fds.items() if fd not in own},
        threads={t.name for t in threading.enumerate()},
        rss_kib=_rss_kib(),
        leftover=list(census["children"]),
        zygote_children=zygote_children,
        spares=len(spare_pids),
        host_children=[p for p in _children("self") if p not in zygotes],
    )


# -- the report -----------------------------------------------------------------------------


@dataclass
class Report:
    seed: int
    sequential: int = 0  # calls made (fewer than asked if interrupted)
    concurrent: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    unexpected: list[tuple[str, int, str, str]] = field(default_factory=list)  # phase, i, case, why
    unexpected_count: int = 0
    leaked_fds: dict[int, str] = field(default_factory=dict)
    leaked_processes: list[int] = field(default_factory=list)
    leaked_process_detail: dict[int, str] = field(default_factory=dict)
    leaked_host_children: list[int] = field(default_factory=list)
    leaked_threads: set[str] = field(default_factory=set)
    zygote_children: tuple[int, int] = (0, 0)  # at the end: all, spares
    rss_kib: tuple[int, int] = (0, 0)  # after warm-up, at the end
    interrupted: bool = False

    @property
    def leaked_memfds(self) -> int:
        return sum(1 for t in self.leaked_fds.values() if t.startswith("/memfd:"))

    @property
    def rss_growth(self) -> float:
        warm, end = self.rss_kib
        return 100.0 * (end - warm) / warm if warm else 0.0

    def problems(self, max_rss_growth: float | None = None) -> list[str]:
        out = []
        if self.unexpected_count:
            out.append(f"{self.unexpected_count} unexpected outcomes")
        if self.leaked_fds:
            out.append(f"{len(self.leaked_fds)} descriptors leaked "
                       f"({self.leaked_memfds} memfds): {self.leaked_fds}")
        if self.leaked_processes:
            out.append(f"sandbox processes left alive: {self.leaked_process_detail}")
        if self.leaked_host_children:
            out.append(f"host children left: {self.leaked_host_children}")
        if self.leaked_threads:
            out.append(f"threads leaked: {sorted(self.leaked_threads)}")
        if max_rss_growth is not None and self.rss_growth > max_rss_growth:
            out.append(f"RSS grew {self.rss_growth:.1f}% (limit {max_rss_growth}%)")
        return out

    def table(self) -> Table:
        t = Table(title=f"soak, seed {self.seed}"
                  + (" [bold red](interrupted: partial)[/]" if self.interrupted else ""))
        t.add_column("what")
        t.add_column("value", justify="right")
        for phase, n in (("sequential", self.sequential), ("concurrent", self.concurrent)):
            s = self.seconds.get(phase, 0.0)
            t.add_row(f"{phase} calls", f"{n:,} in {s:,.1f} s"
                      + (f" ({n / s:,.0f}/s)" if s else ""))
        for name in CASES:
            t.add_row(f"  {name}", f"{self.counts.get(name, 0):,}")
        t.add_row("unexpected outcomes", str(self.unexpected_count))
        t.add_row("leaked descriptors (memfds)", f"{len(self.leaked_fds)} ({self.leaked_memfds})")
        t.add_row("leaked sandbox processes", str(len(self.leaked_processes)))
        t.add_row("zygote children at the end (spares)",
                  f"{self.zygote_children[0]} ({self.zygote_children[1]})")
        t.add_row("leaked host children", str(len(self.leaked_host_children)))
        t.add_row("leaked threads", str(len(self.leaked_threads)))
        warm, end = self.rss_kib
        t.add_row("host RSS after warm-up → end",
                  f"{warm / 1024:,.1f} → {end / 1024:,.1f} MiB ({self.rss_growth:+.1f}%)")
        return t


# -- the run --------------------------------------------------------------------------------


def _one(name: str) -> tuple[Any, BaseException | None]:
    case = CASES[name]
    fn = getattr(targets, case.target)
    timeout: Any = case.timeout if case.timeout is not None else ...
    try:
        return sbm.run(fn, *case.args, policy=POLICY, timeout=timeout), None
    except Exception as e:
        return None, e


@contextmanager
def _progress(show: bool, console: Console) -> Iterator[Progress]:
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[bad]} unexpected"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, disable=not show) as p:
        yield p


class _Ticker:
    """Counts one phase: progress bar, periodic plain log lines (for logs without a
    terminal), unexpected outcomes."""

    def __init__(self, report: Report, phase: str, total: int, progress: Progress,
                 console: Console, log_every: float | None) -> None:
        self.report, self.phase, self.total = report, phase, total
        self.progress, self.console, self.log_every = progress, console, log_every
        self.task: TaskID = progress.add_task(phase, total=total, bad=0)
        self.done = 0
        self.start = self.last_log = time.monotonic()

    def record(self, i: int, name: str, result: Any, exc: BaseException | None) -> None:
        self.done += 1
        self.report.counts[name] += 1
        why = judge(name, result, exc)
        if why is not None:
            self.report.unexpected_count += 1
            if len(self.report.unexpected) < 50:
                self.report.unexpected.append((self.phase, i, name, why[:500]))
        self.progress.update(self.task, advance=1, bad=self.report.unexpected_count)
        now = time.monotonic()
        if self.log_every is not None and now - self.last_log >= self.log_every:
            self.last_log = now
            self.console.print(
                f"[{time.strftime('%H:%M:%S')}] {self.phase}: {self.done:,}/{self.total:,} "
                f"in {now - self.start:,.0f} s, {self.report.unexpected_count} unexpected, "
                f"RSS {_rss_kib() / 1024:,.1f} MiB", highlight=False)


def _sequential(names: list[str], ticker: _Ticker) -> None:
    for i, name in enumerate(names):
        result, exc = _one(name)
        ticker.record(i, name, result, exc)


def _concurrent(names: list[str], ticker: _Ticker, processes: int,
                pool_timeout: float) -> None:
    window = 4 * processes
    with sbm.Pool(processes=processes, policy=POLICY, timeout=pool_timeout) as pool:
        pending: dict[Future[Any], tuple[int, str]] = {}
        todo = iter(enumerate(names))
        exhausted = False
        try:
            while pending or not exhausted:
                while not exhausted and len(pending) < window:
                    item = next(todo, None)
                    if item is None:
                        exhausted = True
                        break
                    case = CASES[item[1]]
                    pending[pool.submit(getattr(targets, case.target), *case.args)] = item
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i, name = pending.pop(fut)
                    exc = fut.exception()
                    ticker.record(i, name, None if exc else fut.result(), exc)
        finally:
            for fut in pending:  # interrupted: what was queued is not counted
                fut.cancel()


def soak(sequential: int = 100_000, concurrent: int = 10_000, *, seed: int = 0,
         processes: int | None = None, pool_timeout: float = 2.0, warmup: int = 500,
         progress: bool = False, log_every: float | None = None,
         console: Console | None = None) -> Report:
    """Run the soak and return its report (see the module docstring).

    Args:
        sequential, concurrent: calls in each phase.
        seed: the mix is ``random.Random(seed)``: the same seed, the same calls.
        processes: sandboxes at once in the pool (default: twice the CPUs).
        pool_timeout: the pool's wall-clock limit per call (its timeout case hits it).
        warmup: calls before the RSS baseline, sequential, then (up to four per
            pool process) through a pool; not counted in the report.
        progress: show a progress bar; log_every: seconds between plain log lines.
    """
    console = console or Console(stderr=True)
    processes = processes or 2 * (os.cpu_count() or 1)
    rng = random.Random(seed)
    report = Report(seed=seed)
    start = warm = snapshot()
    seq, conc = plan(sequential, rng), plan(concurrent, rng)
    try:
        # Warm-up through both paths (the pool brings its threads and modules), so that
        # the RSS baseline is taken with everything loaded.
        with _progress(False, console) as quiet:
            scratch = Report(seed=seed)
            _sequential(plan(warmup, rng), _Ticker(scratch, "warm-up", warmup, quiet,
                                                   console, None))
            n = min(warmup, 4 * processes)
            _concurrent(plan(n, rng), _Ticker(scratch, "warm-up", n, quiet, console, None),
                        processes, pool_timeout)
        warm = snapshot()
        with _progress(progress, console) as bar:
            t0 = time.monotonic()
            ticker = _Ticker(report, "sequential", len(seq), bar, console, log_every)
            try:
                _sequential(seq, ticker)
            finally:
                report.sequential = ticker.done
                report.seconds["sequential"] = time.monotonic() - t0
            t0 = time.monotonic()
            ticker = _Ticker(report, "concurrent", len(conc), bar, console, log_every)
            try:
                _concurrent(conc, ticker, processes, pool_timeout)
            finally:
                report.concurrent = ticker.done
                report.seconds["concurrent"] = time.monotonic() - t0
    except KeyboardInterrupt:
        report.interrupted = True
    end = snapshot()
    report.leaked_fds = {fd: t for fd, t in end.fds.items() if start.fds.get(fd) != t}
    report.leaked_processes = end.leftover
    report.leaked_process_detail = _diagnose(end.leftover)
    report.leaked_host_children = [p for p in end.host_children
                                   if p not in start.host_children]
    report.leaked_threads = end.threads - start.threads - {"sbm-spares"}
    report.zygote_children = (end.zygote_children, end.spares)
    report.rss_kib = (warm.rss_kib, end.rss_kib)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sequential", type=int, default=100_000, metavar="N")
    ap.add_argument("--concurrent", type=int, default=10_000, metavar="M")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=None,
                    help="pool size (default: twice the CPUs)")
    ap.add_argument("--pool-timeout", type=float, default=2.0)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--max-rss-growth", type=float, default=20.0, metavar="PCT",
                    help="fail above this RSS growth after warm-up (default 20)")
    ap.add_argument("--log-every", type=float, default=60.0, metavar="SECONDS")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    console = Console()
    report = soak(args.sequential, args.concurrent, seed=args.seed, processes=args.processes,
                  pool_timeout=args.pool_timeout, warmup=args.warmup,
                  progress=not args.no_progress, log_every=args.log_every, console=console)
    console.print(report.table())
    for phase, i, name, why in report.unexpected:
        console.print(f"unexpected: {phase} #{i} {name}: {why}", highlight=False)
    problems = report.problems(args.max_rss_growth)
    for p in problems:
        console.print(f"[bold red]FAIL[/] {p}")
    if report.interrupted:
        return 130
    if problems:
        return 1
    console.print("[bold green]OK[/] no unexpected outcome, nothing leaked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
