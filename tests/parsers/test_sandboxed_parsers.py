"""Both parsers inside the sandbox: every corpus input gives the same answer sandboxed as
called directly, and hostile mutations give only the parsers' own typed errors."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import sandboxmode as sbm
from conftest import CORPORA
from sandboxmode.parsers import apparmor, openpgp
from sandboxmode.parsers import sandboxed as entry

pytestmark = [pytest.mark.isolation,
              pytest.mark.skipif(not CORPORA.is_dir(), reason="corpora not present")]

PGP = sorted(p for d in ("real", "generated", "malformed") for p in (CORPORA / "pgp" / d).glob("*")
             if p.suffix in (".gpg", ".asc", ".bin")) if CORPORA.is_dir() else []
AA = sorted((CORPORA / "apparmor").glob("**/*.bin")) if CORPORA.is_dir() else []


def direct(fn: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(memoryview(data))
    except (openpgp.OpenPGPError, apparmor.AppArmorError) as e:
        return "error", f"{type(e).__module__}.{type(e).__qualname__}"


def boxed(box: sbm.Sandbox, fn: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", box.call(fn, box.copy_in(data))
    except sbm.TargetError as e:
        return "error", e.remote_type


@pytest.mark.parametrize(("name", "files", "raw", "wrapped"), [
    ("openpgp", PGP, openpgp.parse, entry.openpgp),
    ("apparmor", AA, apparmor.unpack, entry.apparmor),
])
def test_same_answer_sandboxed_as_direct(name: str, files: list[Path], raw: Any,
                                         wrapped: Any) -> None:
    assert files, f"no {name} corpus files found"
    policy = sbm.Policy(timeout=60)
    with sbm.Sandbox(policy=policy) as box:
        for path in files:
            data = path.read_bytes()
            assert boxed(box, wrapped, data) == direct(raw, data), path.name


def _mutations(files: list[Path], n: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        data = bytearray(rnd.choice(files).read_bytes())
        if not data:
            continue
        for _ in range(rnd.randint(1, 8)):
            op = rnd.random()
            if op < 0.5:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
            elif op < 0.8:
                del data[rnd.randrange(len(data)):]
                data = data or bytearray(b"\x00")
            else:
                i = rnd.randrange(len(data))
                data[i:i] = data[: rnd.randrange(1, 64)]
        out.append(bytes(data))
    return out


@pytest.mark.parametrize(("name", "files", "wrapped", "prefix"), [
    ("openpgp", PGP, entry.openpgp, "sandboxmode.parsers.openpgp."),
    ("apparmor", AA, entry.apparmor, "sandboxmode.parsers.apparmor."),
])
def test_mutated_inputs_in_the_sandbox_give_only_typed_errors(
        name: str, files: list[Path], wrapped: Any, prefix: str) -> None:
    with sbm.Sandbox(policy=sbm.Policy(timeout=30)) as box:
        for data in _mutations([f for f in files if f.stat().st_size < 200_000], 150, 7):
            try:
                box.call(wrapped, box.copy_in(data))
            except sbm.TargetError as e:
                assert e.remote_type.startswith(prefix), (e.remote_type, e.remote_message)
            assert box.error == 0
