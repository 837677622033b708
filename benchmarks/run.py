"""sandboxmode benchmarks: what isolating one call costs, next to what people use today.

One run prints one table (median, p10, p90 and the ratio to each section's baseline):

- per call, 1 KiB input, ratio to the direct call: the direct call; ``sandboxmode.run``
  one-shot (back to back, and spaced 5 ms apart so the spares are refilled between
  calls); a persistent ``Sandbox.call``; `Pool` throughput on all cores (one-shot and
  persistent); a fresh ``multiprocessing`` fork `Process`; a reused
  ``ProcessPoolExecutor`` worker; ``subprocess.run([python, -c, pass])``; ``unshare``,
  ``bwrap`` and ``sandlock`` around the same ``python -c pass`` when installed (the row
  says so when not); a raw socketpair ping-pong between two Python processes (the floor
  of any process-based design);
- bulk data: 64 MiB through ``copy_in`` next to one 64 MiB memcpy;
- memory: private memory (USS, from /proc/PID/smaps_rollup) of each live persistent
  sandbox;
- parsers: the OpenPGP and AppArmor parsers over the shared corpora, sandboxed (one
  fresh sandbox per file, sequential and on all cores) next to direct, in files/s.

Usage::

    python benchmarks/run.py                 # full run (~1-3 min), writes docs/benchmarks.md
    python benchmarks/run.py --quick --no-write    # a few iterations (the smoke test)
    python benchmarks/run.py --markdown PATH  # write the table there instead

Benchmarks, not tests: nothing here asserts a time. Target functions are in
``bench_targets.py`` (the sandboxes import them by name).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import glob
import importlib
import importlib.util
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_targets  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

import sandboxmode as sbm  # noqa: E402
from sandboxmode import _spawner  # noqa: E402
from sandboxmode._pool import Pool  # noqa: E402
from sandboxmode.parsers import apparmor, openpgp, sandboxed  # noqa: E402

TITLE = "sandboxmode benchmarks"
CORPORA = ROOT.parent / "shared" / "corpora"
KiB, MiB = 1 << 10, 1 << 20
DATA = bytes(range(256)) * 4  # 1 KiB
assert len(DATA) == KiB


@dataclass
class Row:
    name: str
    samples: list[float] = field(default_factory=list)  # seconds per call, or bytes
    unit: str = "time"  # "time" | "bytes"
    note: str = ""
    baseline: float | None = None  # the section's baseline median, for the ratio
    skipped: str = ""  # why there are no samples
    failed: bool = False


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)


@dataclass
class Settings:
    quick: bool

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def budget(self, full: float = 8.0) -> float:
        return 1.5 if self.quick else full


# -- measuring ---------------------------------------------------------------------------

def timed(fn: Callable[[], Any], n: int, budget: float, warmup: int = 2) -> list[float]:
    """Seconds per call of ``fn``: up to ``n`` samples, stopping after ``budget`` seconds
    (at least 3 samples)."""
    for _ in range(warmup):
        fn()
    gc.collect()
    out: list[float] = []
    end = time.perf_counter() + budget
    while len(out) < n and (len(out) < 3 or time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def timed_batch(fn: Callable[[], Any], batch: int, n: int, budget: float) -> list[float]:
    """Like `timed` for calls too short to time one by one: each sample is a batch."""
    def many() -> None:
        for _ in range(batch):
            fn()
    return [s / batch for s in timed(many, n, budget)]


def stats(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=10, method="inclusive")
    return statistics.median(xs), q[0], q[8]


def fmt_time(s: float) -> str:
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt(row: Row, v: float) -> str:
    return f"{v / MiB:.1f} MiB" if row.unit == "bytes" else fmt_time(v)


def ratio(row: Row) -> str:
    if not row.samples or not row.baseline:
        return ""
    r = statistics.median(row.samples) / row.baseline
    return f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


# -- the rows ----------------------------------------------------------------------------

def per_call(cfg: Settings) -> Section:
    sec = Section("per call, 1 KiB input (ratio: vs the direct call)")
    f = bench_targets.length

    direct = Row("direct call, no isolation",
                 timed_batch(lambda: f(memoryview(DATA)), cfg.n(2000, 200), cfg.n(30, 5),
                             cfg.budget(3)))
    base = statistics.median(direct.samples)
    sec.rows.append(direct)

    def add(row: Row) -> None:
        row.baseline = base
        sec.rows.append(row)

    add(Row("sandboxmode.run one-shot, back to back",
            timed(lambda: sbm.run(f, DATA), cfg.n(300, 10), cfg.budget()),
            note="fresh locked-down process per call"))

    def spaced() -> float:
        time.sleep(0.005)
        t0 = time.perf_counter()
        sbm.run(f, DATA)
        return time.perf_counter() - t0
    for _ in range(2):
        spaced()  # warm-up
    samples: list[float] = []
    end = time.perf_counter() + cfg.budget()
    while len(samples) < cfg.n(200, 10) and (len(samples) < 3 or time.perf_counter() < end):
        samples.append(spaced())
    add(Row("sandboxmode.run one-shot, 5 ms apart", samples,
            note="spares refilled between calls"))

    with sbm.Sandbox() as box:
        add(Row("Sandbox.call, persistent",
                timed(lambda: box.call(f, box.copy_in(DATA)), cfg.n(3000, 50), cfg.budget()),
                note=f"isolation {box.isolation.name}; one process, many calls"))

    cores = os.cpu_count() or 1
    for label, max_calls, n in (("one-shot", 1, cfg.n(400, 20)),
                                ("persistent", None, cfg.n(4000, 100))):
        with Pool(processes=cores, max_calls=max_calls) as pool:
            items = [DATA] * n
            list(pool.map(f, items[: 4 * cores]))  # warm: workers, sandboxes, spares
            per: list[float] = []
            for _ in range(cfg.n(5, 2)):
                t0 = time.perf_counter()
                for _r in pool.map(f, items):
                    pass
                per.append((time.perf_counter() - t0) / n)
        add(Row(f"Pool throughput, {label}, {cores} cores", per,
                note=f"{1 / statistics.median(per):,.0f} calls/s; time per call amortised"))

    ctx = multiprocessing.get_context("fork")

    def fork_process() -> None:
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=bench_targets.length_to_pipe, args=(w, DATA))
        p.start()
        w.close()
        r.recv()
        p.join()
        r.close()
    add(Row("multiprocessing fork Process, fresh", timed(fork_process, cfg.n(150, 5),
                                                          cfg.budget()),
            note="no isolation; start, result through a Pipe, join"))

    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as ex:
        add(Row("ProcessPoolExecutor round trip, reused worker",
                timed(lambda: ex.submit(f, DATA).result(), cfg.n(1500, 20), cfg.budget()),
                note="no isolation"))

    py = [sys.executable, "-c", "pass"]
    add(Row("subprocess.run([python, -c, pass])",
            timed(lambda: subprocess.run(py, check=True), cfg.n(40, 3), cfg.budget()),
            note="no isolation, no data"))

    for row in wrappers(cfg, py):
        add(row)

    add(socketpair_floor(cfg, ctx))
    return sec


def _command_row(name: str, cmd: list[str], note: str, cfg: Settings) -> Row:
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return Row(name, skipped=f"skipped: does not run here ({type(e).__name__})")
    return Row(name, timed(lambda: subprocess.run(cmd, check=True, capture_output=True),
                           cfg.n(40, 3), cfg.budget(), warmup=1), note=note)


def wrappers(cfg: Settings, py: list[str]) -> Iterable[Row]:
    """The same ``python -c pass`` inside the isolation tools people reach for."""
    unshare = shutil.which("unshare")
    name = "unshare (user, net, mount, ipc, uts, pid) + python"
    if unshare:
        yield _command_row(name, [unshare, "--user", "--map-root-user", "--net", "--mount",
                                  "--ipc", "--uts", "--pid", "--fork", *py],
                           "namespaces only: no seccomp, no Landlock", cfg)
    else:
        yield Row(name, skipped="skipped: unshare is not installed")
    bwrap = shutil.which("bwrap")
    name = "bwrap + python"
    if bwrap:
        yield _command_row(name, [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
                                  "/proc", "--unshare-all", "--die-with-parent", *py],
                           "bubblewrap: namespaces + read-only root", cfg)
    else:
        yield Row(name, skipped="skipped: bwrap (bubblewrap) is not installed")
    name = "sandlock + python"
    cli = shutil.which("sandlock")
    if cli:
        yield _command_row(name, [cli, "run", "-r", "/", "--", *py],
                           "sandlock CLI: Landlock + seccomp", cfg)
    elif importlib.util.find_spec("sandlock") is not None:
        yield sandlock_sdk_row(name, py, cfg)
    else:
        yield Row(name, skipped="skipped: sandlock is not installed")


def sandlock_sdk_row(name: str, py: list[str], cfg: Settings) -> Row:
    try:
        sandlock: Any = importlib.import_module("sandlock")  # optional, untyped
        box = sandlock.Sandbox(fs_readable=["/"])

        def once() -> None:
            if not box.run(py, timeout=30).success:
                raise RuntimeError("sandlock run failed")
        once()
    except Exception as e:
        return Row(name, skipped=f"skipped: sandlock does not run here ({type(e).__name__})")
    return Row(name, timed(once, cfg.n(40, 3), cfg.budget(), warmup=1),
               note="sandlock Python SDK: Landlock + seccomp")


def socketpair_floor(cfg: Settings, ctx: Any) -> Row:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    p = ctx.Process(target=bench_targets.echo_server, args=(b, a))
    p.start()
    b.close()
    try:
        def ping() -> None:
            a.send(DATA)
            a.recv(16)
        samples = timed_batch(ping, 100, cfg.n(100, 5), cfg.budget(3))
    finally:
        a.close()
        p.join()
    return Row("socketpair ping-pong between two Python processes", samples,
               note="the floor of any process-based design")


def bulk(cfg: Settings) -> Section:
    sec = Section("bulk data, 64 MiB (ratio: vs one memcpy)")
    size = 64 * MiB
    big = b"\x5a" * size
    dst = bytearray(size)
    view = memoryview(dst)

    def memcpy() -> None:
        view[:] = big
    copy = Row("one 64 MiB memcpy (bytes copy)", timed(memcpy, cfg.n(20, 3), cfg.budget(3)))
    base = statistics.median(copy.samples)
    sec.rows.append(copy)
    with sbm.Sandbox() as box:
        row = Row("Sandbox.call with a 64 MiB copy_in, persistent",
                  timed(lambda: box.call(bench_targets.length, box.copy_in(big)),
                        cfg.n(20, 3), cfg.budget()),
                  note="memfd write + seal, mapped read-only inside", baseline=base)
        sec.rows.append(row)
    view.release()
    return sec


def inline_vs_memfd(cfg: Settings) -> Section:
    """Where a bytes argument pickled into the call frame stops being cheaper than a
    ``copy_in`` memfd (sealed, mapped read-only between guard pages: only the memfd gives
    SPEC §5's aborts on out-of-bounds native access, so ``copy_in`` keeps it at every
    size; this measures what that costs)."""
    sec = Section("input crossing, persistent call (ratio: copy_in vs inline)")
    with sbm.Sandbox() as box:
        for size in (1 << 10, 16 << 10, 128 << 10, 1 << 20, 8 << 20):
            data = b"\x5a" * size
            n = cfg.n(300 if size <= 128 << 10 else 40, 3)
            inline = Row(f"{size >> 10} KiB as a bytes argument (pickled inline)",
                         timed(lambda d=data: box.call(bench_targets.length, d), n,  # type: ignore[misc]
                               cfg.budget(3)))
            base = statistics.median(inline.samples)
            memfd = Row(f"{size >> 10} KiB through copy_in (memfd)",
                        timed(lambda d=data: box.call(bench_targets.length, box.copy_in(d)),  # type: ignore[misc]
                              n, cfg.budget(3)), baseline=base)
            sec.rows += [inline, memfd]
    return sec


def lockdown_steps(cfg: Settings) -> Section:
    """The cost of making one sandbox, step by step (medians over fresh processes, each
    step timed inside the child; the fork is the zygote's reply time)."""
    from sandboxmode._strong import spawn_proc

    sec = Section("making one sandbox, per step (off the caller's path: spares)")
    policy = sbm.Policy()
    zh = _spawner.zygote_for(policy)
    acc: dict[str, list[float]] = {}
    for _ in range(cfg.n(40, 3)):
        proc = spawn_proc(zh, policy, True, timings=True)
        try:
            for step, seconds in proc.timings.items():
                acc.setdefault(step, []).append(seconds)
        finally:
            proc.close()
    for step, samples in acc.items():
        sec.rows.append(Row(f"step: {step}", samples))
    return sec


def _smaps(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * KiB
    return out


def _uss(m: dict[str, int]) -> int:
    return m.get("Private_Clean", 0) + m.get("Private_Dirty", 0) + m.get("Private_Hugetlb", 0)


def memory(cfg: Settings) -> Section:
    sec = Section("memory")
    k = cfg.n(8, 2)
    boxes = [sbm.Sandbox() for _ in range(k)]
    name = f"private memory (USS) per live persistent sandbox ({k} live)"
    try:
        for b in boxes:
            b.call(bench_targets.length, b.copy_in(DATA))
        census = _spawner.census()
        if not census["children"]:
            sec.rows.append(Row(name, skipped="skipped: no sandbox processes (isolation "
                                f"{boxes[0].isolation.name})"))
            return sec
        try:
            maps = [_smaps(pid) for pid in census["children"]]
            zyg = [_smaps(pid) for pid in census["zygotes"] if pid]
        except OSError as e:
            sec.rows.append(Row(name, skipped=f"skipped: cannot read smaps_rollup ({e})"))
            return sec
        pss = statistics.median(m.get("Pss", 0) for m in maps) / MiB
        rss = statistics.median(m.get("Rss", 0) for m in maps) / MiB
        note = f"PSS {pss:.1f} MiB, RSS {rss:.1f} MiB"
        if zyg:
            note += f"; the zygote: USS {_uss(zyg[0]) / MiB:.1f} MiB"
        sec.rows.append(Row(name, [float(_uss(m)) for m in maps], unit="bytes", note=note))
    finally:
        for b in boxes:
            b.destroy()
    return sec


def _corpus(pattern: str) -> list[bytes]:
    return [Path(p).read_bytes() for p in sorted(glob.glob(str(CORPORA / pattern),
                                                           recursive=True))]


def _run_all(fn: Callable[[bytes], Any], datas: list[bytes]) -> int:
    errors = 0
    for d in datas:
        try:
            fn(d)
        except Exception:
            errors += 1
    return errors


def parsers(cfg: Settings) -> Section:
    sec = Section("parsers over the corpora, per file (ratio: vs direct)")
    cases = [("openpgp", "pgp/real/*.gpg", openpgp.parse, sandboxed.openpgp),
             ("apparmor", "apparmor/blobs/**/*.bin", apparmor.unpack, sandboxed.apparmor)]
    for label, pattern, direct_fn, boxed_fn in cases:
        datas = _corpus(pattern)
        if cfg.quick:
            datas = datas[:12]
        if not datas:
            sec.rows.append(Row(f"{label}: corpus", skipped=f"skipped: no files at "
                                f"{CORPORA / pattern}"))
            continue
        sec.rows += parser_rows(cfg, label, datas, direct_fn, boxed_fn)
    return sec


def parser_rows(cfg: Settings, label: str, datas: list[bytes],
                direct_fn: Callable[[bytes], Any], boxed_fn: Callable[..., Any]) -> list[Row]:
    cores = os.cpu_count() or 1
    n = len(datas)
    mib = sum(map(len, datas)) / MiB
    errs: dict[str, int] = {}

    def direct() -> None:
        errs["direct"] = _run_all(direct_fn, datas)

    def one_shot() -> None:
        errs["sandboxed"] = _run_all(boxed_fn, datas)

    def pooled(pool: Pool) -> None:
        out = list(pool.map(boxed_fn, datas, return_exceptions=True))
        errs["pool"] = sum(isinstance(x, BaseException) for x in out)

    def files_per_s(row: Row, key: str) -> str:
        return f"{1 / statistics.median(row.samples):,.0f} files/s; {errs[key]} rejected"

    d = Row(f"{label} direct ({n} files, {mib:.1f} MiB)",
            [s / n for s in timed(direct, cfg.n(5, 1), cfg.budget(), warmup=1)])
    base = statistics.median(d.samples)
    d.note = files_per_s(d, "direct")
    s = Row(f"{label} sandboxed one-shot, sequential",
            [x / n for x in timed(one_shot, cfg.n(3, 1), cfg.budget(20), warmup=0)],
            baseline=base)
    s.note = files_per_s(s, "sandboxed")
    with Pool(processes=cores) as pool:
        p = Row(f"{label} sandboxed one-shot, Pool on {cores} cores",
                [x / n for x in timed(lambda: pooled(pool), cfg.n(3, 1), cfg.budget(20),
                                      warmup=1)],
                baseline=base)
    p.note = files_per_s(p, "pool")
    rows = [d, s, p]
    if len(set(errs.values())) != 1:
        for r in rows:
            r.failed = True
        p.note += f"; DISAGREEMENT {errs}"
    return rows


# -- output ------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with sbm.Sandbox() as box:
        level = box.isolation.name
    return {"kernel": f"Linux {platform.release()}", "cpu": cpu,
            "cores": str(os.cpu_count()), "python": platform.python_version(),
            "isolation": level, "load": _load()}


def _load() -> str:
    """The 1-minute load average: other work on the machine skews every row."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def render(sections: list[Section], info: dict[str, str], console: Console) -> None:
    table = Table(title=TITLE, caption=(f"{info['kernel']} · {info['cpu']} · "
                                        f"{info['cores']} cores · Python {info['python']} · "
                                        f"isolation {info['isolation']} · load average "
                                        f"{info['load']} at start, {info['load_end']} at end"))
    table.add_column("benchmark")
    for col in ("median", "p10", "p90", "ratio"):
        table.add_column(col, justify="right")
    table.add_column("note")
    for sec in sections:
        table.add_row(f"[bold]{escape(sec.title)}[/bold]", "", "", "", "", "")
        for row in sec.rows:
            name = "  " + escape(row.name)
            if row.failed:
                name = f"[red]{name}[/red]"
            if not row.samples:
                table.add_row(name, "—", "—", "—", "", escape(row.skipped or row.note))
                continue
            med, p10, p90 = stats(row.samples)
            table.add_row(name, fmt(row, med), fmt(row, p10), fmt(row, p90), ratio(row),
                          escape(row.note))
        table.add_section()
    console.print(table)


MARKDOWN_HEAD = """# Benchmarks

Written by `make bench` (`benchmarks/run.py`; `--markdown PATH` writes elsewhere). Numbers
from one run on one machine: read the ratios, not the absolute times, and re-run on yours.
Each row is the median, 10th and 90th percentile of per-call samples (throughput rows: of
repeated batches, time per call amortised); "ratio" compares the median to the first row
of its section.

"""

MARKDOWN_NOTES = """
How to read it:

- **one-shot** rows are what `sandboxmode.run`, `@sandboxed` functions and `Pool()` (its
  default `max_calls=1`) give: a fresh locked-down process per call, nothing survives
  from one input to the next. *Back to back* drains the spares made ahead of demand;
  *5 ms apart* lets them refill, as in a program that parses now and then.
- **persistent** rows are one locked-down process serving many calls (`Sandbox()`,
  `Pool(max_calls=None)`): SBM's own model, cheaper, but a call can leave state behind
  for the next call of the same sandbox.
- The `multiprocessing`, `ProcessPoolExecutor` and `subprocess` rows isolate nothing:
  they are what a process boundary alone costs. `unshare`, `bwrap` and `sandlock` rows
  run an interpreter inside those tools, as people do today to isolate a parser.
- The socketpair ping-pong is the floor for any design with a separate process: one
  message each way between two Python processes.
- Parser rows count files per second over the shared corpora; "rejected" counts inputs
  the parser refused, which must be the same sandboxed and direct.
"""


def markdown(sections: list[Section], info: dict[str, str]) -> str:
    lines = [MARKDOWN_HEAD,
             f"Machine: {info['kernel']}, {info['cpu']}, {info['cores']} cores, "
             f"Python {info['python']}; sandboxmode isolation {info['isolation']}; "
             f"1-minute load average {info['load']} at the start of the run and "
             f"{info['load_end']} at its end (other work on the machine inflates every "
             f"row); {datetime.date.today().isoformat()}.", "",
             "| benchmark | median | p10 | p90 | ratio | note |",
             "|---|---:|---:|---:|---:|---|"]
    for sec in sections:
        lines.append(f"| **{sec.title}** | | | | | |")
        for row in sec.rows:
            if not row.samples:
                lines.append(f"| {row.name} | — | — | — | | {row.skipped or row.note} |")
                continue
            med, p10, p90 = stats(row.samples)
            lines.append(f"| {row.name} | {fmt(row, med)} | {fmt(row, p10)} | "
                         f"{fmt(row, p90)} | {ratio(row)} | {row.note} |")
    return "\n".join(lines) + "\n" + MARKDOWN_NOTES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true",
                    help="a few iterations per row (smoke test); writes nothing unless "
                    "--markdown is given")
    ap.add_argument("--markdown", metavar="PATH", type=Path,
                    help="write the table (with the machine description) to PATH "
                    "(default for a full run: docs/benchmarks.md)")
    ap.add_argument("--no-write", action="store_true", help="print only, write no file")
    args = ap.parse_args(argv)
    cfg = Settings(quick=args.quick)
    console = Console(width=None if sys.stdout.isatty() else 160)
    t0 = time.perf_counter()
    info = machine()
    sections: list[Section] = []
    failed = False
    for bench in (per_call, inline_vs_memfd, bulk, lockdown_steps, memory, parsers):
        try:
            sections.append(bench(cfg))
        except Exception as e:  # one broken section must not hide the others
            failed = True
            sec = Section(bench.__name__)
            sec.rows.append(Row(f"{bench.__name__} failed", skipped=f"ERROR {e!r}",
                                failed=True))
            sections.append(sec)
    info["load_end"] = _load()
    render(sections, info, console)
    console.print(f"{time.perf_counter() - t0:.0f} s")
    failed = failed or any(r.failed for s in sections for r in s.rows)
    path = args.markdown if args.markdown else (None if args.quick
                                                else ROOT / "docs" / "benchmarks.md")
    if path is not None and not args.no_write:
        path.write_text(markdown(sections, info))
        console.print(f"written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
