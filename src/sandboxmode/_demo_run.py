"""``sbm demo``: parse an embedded OpenPGP key in the sandbox, then show hostile inputs
contained, as a table."""

from __future__ import annotations

import importlib.resources
import os
import secrets
import time
from typing import Any

import sandboxmode as sbm
from sandboxmode import _demo

ATTACKS: list[tuple[str, Any, str]] = [
    ("segfault (NULL read in native code)", _demo.segfault, "SandboxFault"),
    ("read a host file (/etc/passwd)", _demo.read_host_file, "PolicyViolation"),
    ("fork bomb", _demo.fork_bomb, "PolicyViolation"),
    ("memory bomb", _demo.memory_bomb, "SandboxMemoryError"),
    ("endless loop", _demo.endless_loop, "SandboxTimeout"),
    ("read a host secret (environment, /proc)", _demo.host_secret, "PolicyViolation"),
    ("connect to the network", _demo.phone_home, "PolicyViolation"),
]


def error_ok(e: sbm.SandboxError, expected: str) -> bool:
    return type(e).__name__ == expected


def stopped_by(e: sbm.SandboxError, policy: sbm.Policy) -> str:
    """The layer that stopped an attack and what it saw, in a few words."""
    ev = e.evidence
    if isinstance(e, sbm.PolicyViolation) and "syscall" in ev:
        paths = ev.get("paths") or []
        return f"seccomp: {ev['syscall']}({paths[0]!r})" if paths else f"seccomp: {ev['syscall']}"
    if isinstance(e, sbm.PolicyViolation) and "module" in ev:
        return f"import guard: {ev['module']}"
    if isinstance(e, sbm.SandboxFault) and "signal_name" in ev:
        return f"separate process: {ev['signal_name']}"
    if isinstance(e, sbm.SandboxMemoryError):
        return f"rlimit: {policy.memory >> 20} MiB of memory"
    if isinstance(e, sbm.SandboxTimeout):
        if ev.get("limit") == "cpu":
            return f"rlimit: {policy.cpu_seconds} s of CPU"
        return f"supervisor: {ev.get('seconds')} s wall clock"
    return str(e)


def demo(console: Any) -> int:
    from rich.table import Table

    from sandboxmode.cli import _safe

    secret = secrets.token_hex(16)
    os.environ[_demo.HOST_SECRET_ENV] = secret  # a secret the sandbox must never see
    key = importlib.resources.files("sandboxmode").joinpath("data/demo-key.asc").read_bytes()
    box_level = sbm.Sandbox(max_calls=1)
    level = box_level.isolation.name
    box_level.destroy()
    console.print(f"isolation: {level}")
    t0 = time.perf_counter()
    certs = sbm.run(_demo.parse_key, key, timeout=10)
    dt = (time.perf_counter() - t0) * 1000
    console.print(f"parsed the embedded OpenPGP key in a fresh sandbox in {dt:.1f} ms:")
    for c in certs:
        console.print(f"  fingerprint {c['fingerprint']}  {c.get('algorithm_name')} "
                      f"{c.get('curve') or c.get('bits') or ''}")
        for u in c.get("user_ids", []):
            console.print(f"  uid {_safe(u.get('uid'))}")
        for s in c.get("subkeys", []):
            console.print(f"  subkey {s.get('keyid')} {s.get('algorithm_name')} "
                          f"caps={s.get('capabilities')}")

    table = Table(title="hostile inputs")
    table.add_column("attack")
    table.add_column("result")
    table.add_column("error")
    table.add_column("stopped by")
    table.add_column("ms", justify="right")
    policy = sbm.Policy(timeout=2.0, cpu_seconds=5, memory=256 << 20)
    escaped = 0
    for name, fn, expected in ATTACKS:
        t0 = time.perf_counter()
        try:
            value = sbm.run(fn, b"hostile input", policy=policy)
        except sbm.SandboxError as e:
            result = "contained"
            error = type(e).__name__ + ("" if error_ok(e, expected) else " (unexpected)")
            how = stopped_by(e, policy)
            leaked = secret in str(e) or secret in repr(e.evidence)
        else:
            result, error, how, leaked = "ESCAPED", "", _safe(value, 80), True
        if leaked:
            result, escaped = "ESCAPED" + (" (secret leaked)" if result != "ESCAPED" else ""), \
                escaped + 1
        table.add_row(name, result, error, _safe(how, 80),
                      f"{(time.perf_counter() - t0) * 1000:.0f}")
    console.print(table)
    console.print("nothing escaped" if not escaped else f"{escaped} attack(s) ESCAPED")
    return 0 if not escaped else 1
