#!/usr/bin/env python3
"""Fuzz `sandboxmode._wire.codec.decode` with generated hostile inputs.

Not a test: a long run that feeds N inputs (default 1,000,000) to ``decode`` and counts the
outcomes. The contract under test: every input either decodes to plain data within the
limits (checked by re-encoding it under the same limits) or raises `ProtocolError`;
anything else (another exception, or an "ok" value that is not plain data within the
limits) is a failure, and the script exits with status 1.

Inputs come from several generators (``--list`` shows them): random bytes, mutated valid
encodings, grammar-aware random msgpack token streams, deep nesting up to 10**6 levels,
huge declared lengths, many small objects, every ext type, misplaced tuple markers, bad big
integers, bad UTF-8, and pickles. A quarter of the inputs are decoded under small limits to
exercise the limit paths.

Usage::

    .venv/bin/python scripts/fuzz_codec.py                # 1,000,000 inputs, seed 0
    .venv/bin/python scripts/fuzz_codec.py --n 50000 --seed 7

Reports: counts per generator and outcome, the slowest input (time, generator, size), the
maximum resident set size, and the total time.
"""

from __future__ import annotations

import argparse
import pickle
import random
import resource
import struct
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from sandboxmode._errors import ProtocolError
from sandboxmode._wire.codec import DEFAULT, Limits, decode, encode

SMALL = Limits(max_bytes=4096, max_depth=4, max_items=100, max_str=16, max_bin=16, max_int_bytes=16)

INTERESTING_BYTES = bytes(
    [
        *(0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5),
        *(0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCF, 0xD0, 0xD3, 0xD4, 0xD8, 0xD9),
        *(0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0, 0xFF, 0x01, 0x02),
    ]
)
MARKER = b"\xc7\x00\x02"


# --------------------------------------------------------------------------- plain values


def random_scalar(rng: random.Random) -> object:
    """A random plain scalar, biased toward edge cases."""
    choice = rng.randrange(12)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.randrange(-200, 200)
    if choice == 3:
        return rng.choice([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
    if choice == 4:
        return rng.randrange(-(2**300), 2**300)
    if choice == 5:
        return rng.choice([0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf"), 5e-324])
    if choice == 6:
        return rng.uniform(-1e300, 1e300)
    if choice == 7:
        return "".join(
            chr(rng.choice([0x41, 0xE9, 0x20AC, 0x1F600])) for _ in range(rng.randrange(8))
        )
    if choice == 8:
        return "x" * rng.choice([0, 1, 31, 32, 255, 256])
    if choice == 9:
        return rng.randbytes(rng.randrange(10))
    if choice == 10:
        return rng.randrange(2**32)
    return rng.randrange(-(2**63), 2**64)


def random_hashable(rng: random.Random, depth: int) -> object:
    """A random hashable plain value (scalars and tuples of them)."""
    if depth <= 0 or rng.random() < 0.7:
        return random_scalar(rng)
    return tuple(random_hashable(rng, depth - 1) for _ in range(rng.randrange(4)))


def random_plain(rng: random.Random, depth: int = 5) -> object:
    """A random plain value, nested up to `depth` levels."""
    if depth <= 0 or rng.random() < 0.45:
        return random_scalar(rng)
    kind = rng.randrange(3)
    size = rng.randrange(6)
    if kind == 0:
        return [random_plain(rng, depth - 1) for _ in range(size)]
    if kind == 1:
        return tuple(random_plain(rng, depth - 1) for _ in range(size))
    return {random_hashable(rng, 2): random_plain(rng, depth - 1) for _ in range(size)}


# --------------------------------------------------------------------------- generators


def gen_random_bytes(rng: random.Random, pool: list[bytes]) -> bytes:
    """Uniformly random bytes, mostly short."""
    return rng.randbytes(rng.choice([0, 1, 2, 3, 5, 8, 16, 64, 256]))


def gen_interesting_bytes(rng: random.Random, pool: list[bytes]) -> bytes:
    """Random strings over msgpack's format bytes and small values."""
    return bytes(rng.choice(INTERESTING_BYTES) for _ in range(rng.randrange(1, 40)))


def gen_mutated(rng: random.Random, pool: list[bytes]) -> bytes:
    """A valid encoding with a few random mutations."""
    data = bytearray(rng.choice(pool))
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(8)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[min(pos, len(data) - 1)] = rng.choice(INTERESTING_BYTES)
        elif op == 2:
            data[pos:pos] = rng.randbytes(rng.randrange(1, 6))
        elif op == 3:
            del data[pos : pos + rng.randrange(1, 6)]
        elif op == 4:
            del data[pos:]
        elif op == 5:
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            data[pos:] = other[cut:]  # splice two encodings
        elif op == 6 and data:
            start = rng.randrange(len(data))
            data[pos:pos] = data[start : start + rng.randrange(1, 16)]  # duplicate a slice
        else:
            data[pos:pos] = rng.choice([MARKER, b"\xc7\x09\x01" + rng.randbytes(9), b"\xd6\xff"])
    return bytes(data)


def _token(rng: random.Random) -> bytes:
    """One random msgpack token: a scalar, or a container / string header."""
    kind = rng.randrange(14)
    small = rng.choice([0, 1, 2, 3, 15, 16, 31, 255, 256, 65535, 65536, 2**31, 2**32 - 1])
    if kind == 0:
        return bytes([0x90 | rng.randrange(16)])
    if kind == 1:
        return bytes([0x80 | rng.randrange(16)])
    if kind == 2:
        return b"\xdc" + struct.pack(">H", min(small, 0xFFFF))
    if kind == 3:
        return b"\xdf" + struct.pack(">I", small)
    if kind == 4:
        length = rng.randrange(8)
        return bytes([0xA0 | length]) + rng.randbytes(length)
    if kind == 5:
        return b"\xc4" + bytes([min(small, 255)]) + rng.randbytes(rng.randrange(8))
    if kind == 6:
        return MARKER
    if kind == 7:
        length = rng.choice([0, 1, 8, 9, 10, 20])
        return (
            b"\xc7"
            + bytes([length, rng.choice([1, 2, 0xFF, rng.randrange(256)])])
            + rng.randbytes(length)
        )
    if kind == 8:
        return rng.choice([b"\xc0", b"\xc2", b"\xc3", b"\xc1"])
    if kind == 9:
        return b"\xcb" + struct.pack(">d", rng.choice([0.0, float("nan"), 1e308]))
    if kind == 10:
        return b"\xcf" + rng.randbytes(8)
    if kind == 11:
        return b"\xd3" + rng.randbytes(8)
    if kind == 12:
        return (
            b"\xd9"
            + bytes([rng.randrange(5)])
            + rng.choice([b"ab", b"\xff\xfe", b"\xed\xa0\x80", b"\xf0\x9f"])
        )
    return bytes([rng.randrange(0x80)])


def gen_tokens(rng: random.Random, pool: list[bytes]) -> bytes:
    """A random stream of msgpack tokens (grammar-aware: gets past the first byte)."""
    return b"".join(_token(rng) for _ in range(rng.randrange(1, 30)))


def gen_deep(rng: random.Random, pool: list[bytes]) -> bytes:
    """Nesting from a few levels to a million, with all container spellings."""
    opener = rng.choice(
        [
            b"\x91",
            b"\xdc\x00\x01",
            b"\xdd\x00\x00\x00\x01",
            b"\x81\xc0",
            b"\x81\x91\xc0",
            b"\x92" + MARKER,
        ]
    )
    depth = rng.choice([10, 63, 64, 65, 100, 1000, 1024, 1025, rng.randrange(1, 2000)])
    if rng.random() < 0.002:
        depth = 1_000_000
    return opener * depth + rng.choice([b"\xc0", b"", b"\x00\x00"])


def gen_huge_length(rng: random.Random, pool: list[bytes]) -> bytes:
    """Headers declaring far more than follows, possibly nested."""
    big = rng.choice([2**32 - 1, 2**31, 10**6, 10**6 + 1, 2**16 - 1, rng.randrange(2**32)])
    header = rng.choice(
        [
            b"\xdd" + struct.pack(">I", big),
            b"\xdf" + struct.pack(">I", big),
            b"\xdb" + struct.pack(">I", big),
            b"\xc6" + struct.pack(">I", big),
            b"\xc9" + struct.pack(">I", big) + bytes([rng.choice([1, 2, 5])]),
            b"\xdc" + struct.pack(">H", big & 0xFFFF),
            b"\xda" + struct.pack(">H", big & 0xFFFF),
        ]
    )
    nesting = b"\xdd\x00\x0f\x42\x40" * rng.randrange(0, 70)
    return nesting + header + rng.randbytes(rng.randrange(0, 64))


def gen_many(rng: random.Random, pool: list[bytes]) -> bytes:
    """Arrays and maps of many small objects near the item limit (rare: big inputs)."""
    if rng.random() < 0.01:
        count = rng.choice([999_999, 1_000_000, 1_000_001])
        return b"\xdd" + struct.pack(">I", count) + b"\x00" * count
    count = rng.randrange(50, 300)  # around the SMALL limit of 100 items
    if rng.random() < 0.5:
        return b"\xdd" + struct.pack(">I", count) + b"\xc0" * count
    return (
        b"\xdf"
        + struct.pack(">I", count)
        + b"".join(b"\xcd" + struct.pack(">H", i) + b"\x01" for i in range(count))
    )


def gen_ext(rng: random.Random, pool: list[bytes]) -> bytes:
    """Every ext type and spelling, alone or inside an array."""
    code = rng.randrange(256)
    length = rng.choice([0, 1, 2, 4, 8, 9, 10, 16, 17, 255])
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if length in fixed and rng.random() < 0.5:
        ext = bytes([fixed[length], code]) + rng.randbytes(length)
    else:
        ext = (
            rng.choice(
                [
                    b"\xc7" + bytes([length]),
                    b"\xc8" + struct.pack(">H", length),
                    b"\xc9" + struct.pack(">I", length),
                ]
            )
            + bytes([code])
            + rng.randbytes(length)
        )
    if rng.random() < 0.5:
        return ext
    return b"\x92" + rng.choice([ext + b"\x00", b"\x00" + ext])


def gen_markers(rng: random.Random, pool: list[bytes]) -> bytes:
    """Tuple markers in valid and invalid places."""
    parts = [
        rng.choice([MARKER, b"\x00", b"\x91", b"\x81", b"\x90", b"\x80"])
        for _ in range(rng.randrange(1, 8))
    ]
    return bytes([0x90 | rng.randrange(5)]) + b"".join(parts)


def gen_bigint(rng: random.Random, pool: list[bytes]) -> bytes:
    """Ext 1 big integers: canonical, non-canonical, in range, too long, empty."""
    length = rng.choice([0, 1, 8, 9, 10, 100, 8192, 8193, rng.randrange(20)])
    payload = rng.choice([rng.randbytes(length), b"\x00" * length, b"\xff" * length])
    head = b"\xc7" + bytes([length]) if length < 256 else b"\xc8" + struct.pack(">H", length)
    return head + b"\x01" + payload


def gen_utf8(rng: random.Random, pool: list[bytes]) -> bytes:
    """Strings with invalid, truncated or overlong UTF-8 and surrogates."""
    body = rng.choice(
        [
            b"\xff",
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xe2\x82",
            b"ok",
            b"\xf0\x9f\x98\x80",
        ]
    )
    body = body * rng.randrange(1, 4)
    return bytes([0xA0 | min(len(body), 31)]) + body


def gen_pickle(rng: random.Random, pool: list[bytes]) -> bytes:
    """The bytes of a pickle (which must never be unpickled)."""
    return pickle.dumps(random_plain(rng, 3), protocol=rng.randrange(pickle.HIGHEST_PROTOCOL + 1))


def gen_valid(rng: random.Random, pool: list[bytes]) -> bytes:
    """Valid encodings (the "ok" path must work too)."""
    return rng.choice(pool)


GENERATORS: dict[str, tuple[int, Callable[[random.Random, list[bytes]], bytes]]] = {
    "random-bytes": (14, gen_random_bytes),
    "format-bytes": (10, gen_interesting_bytes),
    "mutated": (24, gen_mutated),
    "tokens": (16, gen_tokens),
    "deep": (3, gen_deep),
    "huge-length": (6, gen_huge_length),
    "many": (2, gen_many),
    "ext": (7, gen_ext),
    "markers": (5, gen_markers),
    "bigint": (4, gen_bigint),
    "utf8": (3, gen_utf8),
    "pickle": (2, gen_pickle),
    "valid": (4, gen_valid),
}


# --------------------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 if every input decoded to valid plain data or raised
        ProtocolError, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of inputs")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--list", action="store_true", help="list the generators and exit")
    args = parser.parse_args(argv)
    console = Console()
    if args.list:
        for name, (weight, fn) in GENERATORS.items():
            console.print(f"{name:14} weight {weight:3}  {fn.__doc__}")
        return 0

    rng = random.Random(args.seed)
    pool = [encode(random_plain(rng)) for _ in range(2000)]
    names = list(GENERATORS)
    weights = [GENERATORS[name][0] for name in names]
    outcomes: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    slowest = (0.0, "", 0, "")
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]fuzzing decode"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("fuzz", total=args.n, status="")
        chosen = rng.choices(names, weights, k=args.n)
        for index, name in enumerate(chosen):
            data = GENERATORS[name][1](rng, pool)
            limits = SMALL if index % 4 == 3 else DEFAULT
            start = time.perf_counter()
            try:
                value = decode(data, limits)
            except ProtocolError:
                outcome = "protocol-error"
            except BaseException as exc:  # the contract says this never happens
                if isinstance(exc, KeyboardInterrupt):
                    raise
                outcome = "other"
                if len(failures) < 20:
                    failures.append(f"{name} {data[:64].hex()}: {traceback.format_exc(limit=3)}")
            else:
                outcome = "ok"
            elapsed = time.perf_counter() - start
            if outcome == "ok":
                try:
                    encode(value, limits)  # plain data within the limits
                except (TypeError, ValueError) as exc:
                    outcome = "invalid-ok"
                    if len(failures) < 20:
                        failures.append(f"{name} {data[:64].hex()}: decoded but {exc}")
            outcomes[name, outcome] += 1
            if elapsed > slowest[0]:
                slowest = (elapsed, name, len(data), data[:16].hex())
            if index % 2000 == 1999 or index == args.n - 1:
                bad = sum(n for (_, o), n in outcomes.items() if o in ("other", "invalid-ok"))
                progress.update(task, completed=index + 1, status=f"failures: {bad}")
    total_time = time.perf_counter() - started

    table = Table(title=f"decode fuzz: {args.n:,} inputs, seed {args.seed}")
    for column in ("generator", "ok", "ProtocolError", "other", "invalid ok"):
        table.add_column(column, justify="right" if column != "generator" else "left")
    totals = Counter[str]()
    for name in names:
        row = [outcomes[name, o] for o in ("ok", "protocol-error", "other", "invalid-ok")]
        for o, n in zip(("ok", "protocol-error", "other", "invalid-ok"), row, strict=True):
            totals[o] += n
        table.add_row(name, *(f"{n:,}" for n in row))
    table.add_row(
        "[bold]total",
        *(f"[bold]{totals[o]:,}" for o in ("ok", "protocol-error", "other", "invalid-ok")),
    )
    console.print(table)
    max_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(
        f"slowest input: {slowest[0] * 1000:.2f} ms ({slowest[1]}, {slowest[2]:,} bytes, "
        f"starts {slowest[3]})"
    )
    console.print(f"max RSS: {max_rss_mib:.1f} MiB; total time {total_time:.1f} s")
    for failure in failures:
        console.print(f"[red]FAILURE[/red] {failure}", markup=True, highlight=False)
    bad = totals["other"] + totals["invalid-ok"]
    console.print(
        "[green]OK[/green]: no other exceptions" if not bad else f"[red]{bad} failures[/red]"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
