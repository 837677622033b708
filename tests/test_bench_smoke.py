"""The benchmark script runs end to end (``--quick``): a smoke test, no timing asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_quick_run_prints_the_table() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--no-write"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "sandboxmode benchmarks" in proc.stdout, out
    for column in ("benchmark", "median", "p10", "p90", "ratio"):
        assert column in proc.stdout, out
    for row in ("direct call", "sandboxmode.run one-shot", "Sandbox.call, persistent",
                "Pool throughput", "socketpair ping-pong"):
        assert row in proc.stdout, out
