"""Every test ends by checking that nothing leaked: no descriptor (memfds included), no
sandbox process, no thread of ours, and that the zygote it used is still the same one
(unless the test killed it on purpose and says so with ``zygote_may_change``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from sandboxmode import _spawner

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPORA = SHARED / "corpora"


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    before_fds = _spawner.open_fds()
    before_threads = _threads()
    census = _spawner.census()
    yield
    # A still picture: spares are not refilled while we look (their refill thread would
    # otherwise open descriptors between the census and the listing).
    _spawner.spares.pause()
    try:
        after = _spawner.census()
        current = _spawner.open_fds()
    finally:
        _spawner.spares.resume()
    zygote_fds = set(after["fds"]) | set(census["fds"])
    leaked = {fd: target for fd, target in current.items()
              if fd not in before_fds and fd not in zygote_fds}
    assert not leaked, f"descriptors leaked: {leaked}"
    assert after["children"] == [], f"sandbox processes left alive: {after['children']}"
    new_threads = {t for t in _threads() - before_threads
                   if not t.startswith(("asyncio_", "ThreadPoolExecutor", "sbm-"))}
    assert not new_threads, f"threads leaked: {new_threads}"
    if "zygote_may_change" not in request.keywords and census["zygotes"] and after["zygotes"]:
        assert census["zygotes"] == after["zygotes"], "a zygote died during the test"


def assert_plain(value: Any) -> None:
    """Only None, bool, int, float, str, bytes, list and dict with str keys, all the way down
    (what the parsers promise, so that results cross the codec unchanged)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            assert all(type(k) is str for k in item), item.keys()
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            assert item is None or type(item) in (bool, int, float, str, bytes), type(item)


#: The parsers' mutation fuzzing: deterministic (the same inputs every run, no database),
#: 400 mutated corpus files per parser, big inputs allowed.
MUTATION_SETTINGS = settings(
    max_examples=400,
    deadline=1000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
