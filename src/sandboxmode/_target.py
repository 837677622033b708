"""What the sandbox runs: `sandboxed` entry points, how they are named, `Isolation`.

Kept apart from ``_sandbox.py`` because modules holding sandboxed functions are imported
by the zygote, which must stay small and single-threaded: importing this module (and so
``@sandboxed``) pulls in neither threading nor asyncio.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Any, TypeVar, overload

from sandboxmode.policy import Policy

__all__ = ["Isolation", "sandboxed"]

F = TypeVar("F", bound=Callable[..., Any])


class Isolation(enum.IntEnum):
    """How strongly a sandbox separates the function from its caller (SPEC-18)."""

    NONE = 0
    WEAK = 1
    STRONG = 2


class _SandboxedFunction:
    """What `@sandboxed` returns: calling it runs the function in a fresh sandbox."""

    def __init__(self, fn: Callable[..., Any], policy: Policy | None, timeout: float | None) -> None:
        functools.update_wrapper(self, fn)
        self.__sandboxed_target__ = fn
        self._policy = policy
        self._timeout = timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sandboxmode._sandbox import run

        return run(self, *args, policy=self._policy, timeout=self._timeout, **kwargs)

    def direct(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function here, unprotected (for trusted input and benchmarks)."""
        return self.__sandboxed_target__(*args, **kwargs)

    def __reduce__(self) -> str:
        # Pickled by reference, like the function it wraps.
        return str(self.__sandboxed_target__.__qualname__)


@overload
def sandboxed(fn: F) -> F: ...
@overload
def sandboxed(*, policy: Policy | None = None, timeout: float | None = None) -> Callable[[F], F]: ...
def sandboxed(fn: Any = None, *, policy: Policy | None = None, timeout: float | None = None) -> Any:
    """Mark an importable function as a sandbox entry point (SBM_DEFINE_FUNC).

    Calling the decorated function runs it with `run` (fresh sandbox per call);
    ``f.direct(...)`` calls it unprotected. It must be defined at module level so the
    sandbox can import it by name.

    Example:
        >>> @sandboxed
        ... def parse(data: memoryview) -> int: return len(data)   # doctest: +SKIP
    """
    def wrap(f: Callable[..., Any]) -> Any:
        return _SandboxedFunction(f, policy, timeout)

    return wrap(fn) if fn is not None else wrap


def _target_ref(fn: Any) -> tuple[str, str, Callable[..., Any]]:
    """(module, qualname, the function to run) for an importable function."""
    raw = getattr(fn, "__sandboxed_target__", fn)
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not callable(raw) or not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"{fn!r} is not a function the sandbox can import")
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(f"{qualname} is a local function or lambda: a sandboxed function must "
                        "be defined at module level so the sandbox can import it by name")
    if module == "__main__":
        raise TypeError(f"{qualname} is defined in __main__: move it into a module the "
                        "sandbox can import (like multiprocessing's spawn, the sandbox "
                        "never sees the host's __main__)")
    return module, qualname, raw
