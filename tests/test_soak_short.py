"""A short soak (scripts/soak.py) in-process: a seeded mix of successes and faults, every
outcome the expected one, nothing leaked. RSS and timing are the long run's business."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "soak.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("soak", module)
    spec.loader.exec_module(module)
    return module


def test_short_soak_has_only_expected_outcomes_and_leaks_nothing() -> None:
    soak = _load()
    report = soak.soak(sequential=300, concurrent=100, seed=1, warmup=20)
    assert not report.interrupted
    assert (report.sequential, report.concurrent) == (300, 100)
    assert sum(report.counts.values()) == 400
    assert set(report.counts) == set(soak.CASES), "the seed no longer draws every case"
    assert report.unexpected_count == 0, report.unexpected
    assert report.leaked_fds == {}
    assert report.leaked_processes == []
    assert report.leaked_host_children == []
    assert report.leaked_threads == set()
    assert report.problems(max_rss_growth=None) == []
