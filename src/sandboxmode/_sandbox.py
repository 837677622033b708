"""The public lifecycle: `Sandbox`, `run`, `sandboxed`, `Isolation`.

A `Sandbox` is SBM's ``struct sbm``: created, called, destroyed; its error is sticky.
The isolation backend does the work:

- STRONG (``_strong.py``): a locked-down process from the zygote. By default one process
  serves every call of the instance (SBM's one address space per ``struct sbm``:
  *persistent*, fast, but a call can leave state behind for the next call of the same
  instance); ``max_calls=1`` gives a fresh process per call (what `run` and pools use:
  nothing survives from one input to the next).
- WEAK / NONE (``weak.py``): in-process, same API.
"""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Callable
from types import EllipsisType
from typing import Any

from sandboxmode import _child
from sandboxmode._buffers import (
    IN,
    INOUT,
    OUT,
    SHARED_RO,
    SHARED_RW,
    BufferHandle,
    SharedBuffer,
)
from sandboxmode._errors import (
    SandboxCancelled,
    SandboxClosed,
    SandboxError,
    SandboxUnavailable,
)
from sandboxmode._outcome import Outcome, Status
from sandboxmode._target import Isolation, sandboxed
from sandboxmode.policy import Policy

__all__ = ["Isolation", "Sandbox", "run", "sandboxed"]


_local = threading.local()


def _inside() -> bool:
    return _child.IN_SANDBOX or getattr(_local, "depth", 0) > 0


class _ArgPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, owner: int) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.handles: list[BufferHandle] = []
        self.owner = owner

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, BufferHandle):
            if obj.owner != self.owner:
                raise ValueError("this buffer handle belongs to another Sandbox (SPEC-17)")
            self.handles.append(obj)
            return ("buf", len(self.handles) - 1)
        if isinstance(obj, SharedBuffer):
            raise TypeError("pass a SharedBuffer through box.map_readonly() or "
                            "box.map_writable()")
        return None


def pickle_args(args: tuple[Any, ...], kwargs: dict[str, Any], owner: int) -> tuple[bytes, list[BufferHandle]]:
    f = io.BytesIO()
    p = _ArgPickler(f, owner)
    try:
        p.dump((args, kwargs))
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise TypeError(f"cannot send the arguments into the sandbox: {e}") from e
    return f.getvalue(), p.handles


class Sandbox:
    """One sandbox (SBM's ``struct sbm``). Context manager; ``destroy()`` is idempotent.

    Args:
        policy: what the sandbox may do (default: `Policy()`).
        isolation: `Isolation` level; ``None`` = the strongest this machine supports.
        require: fail with `SandboxUnavailable` unless at least this level is available
            (never a silent downgrade).
        max_calls: STRONG only: calls served by one sandbox process before a fresh one is
            used. ``None`` (default): one process for the instance's life (SBM's model);
            1: a fresh process per call.

    Raises:
        SandboxUnavailable: the required level or a kernel feature it needs is missing.
        SandboxError: nesting (a sandbox inside a sandbox is refused, SPEC-24).

    Example:
        >>> with Sandbox() as box:                                  # doctest: +SKIP
        ...     out = bytearray(16)
        ...     n = box.call(decode, box.copy_in(b"data"), box.copy_out(out))
    """

    def __init__(self, policy: Policy | None = None, isolation: Isolation | None = None,
                 require: Isolation | None = None, max_calls: int | None = None) -> None:
        self._error = 0
        self._sticky_exc: SandboxError | None = None
        self._closed = False
        self._active = 0  # calls in progress or about to start (acall), for cancel()
        self._active_lock = threading.Lock()
        self._lock = threading.Lock()
        self._backend: Any = None
        self.policy = policy if policy is not None else Policy()
        if not isinstance(self.policy, Policy):
            raise TypeError("policy must be a sandboxmode.Policy")
        if max_calls is not None and (not isinstance(max_calls, int) or max_calls < 1):
            raise ValueError("max_calls must be None or an int >= 1")
        if _inside():
            raise SandboxError("a sandbox cannot be created inside a sandbox (no nesting, "
                               "SPEC-24)", {"reason": "nesting"})
        from sandboxmode import weak
        from sandboxmode._spawner import strong_available

        missing: list[str] = []
        if isolation is None:
            missing = strong_available(self.policy)
            isolation = Isolation.STRONG if not missing else Isolation.WEAK
        if require is not None and isolation < require:
            why = f": missing {', '.join(missing)}" if missing else ""
            raise SandboxUnavailable(
                f"isolation {Isolation(require).name} required but only "
                f"{Isolation(isolation).name} is available{why}",
                {"feature": missing[0] if missing else "isolation", "missing": missing})
        if isolation == Isolation.STRONG:
            missing = strong_available(self.policy)
            if missing:
                raise SandboxUnavailable(
                    "strong isolation is not available on this machine: missing "
                    + ", ".join(missing), {"feature": missing[0], "missing": missing})
            from sandboxmode._spawner import StrongBackend

            self._backend = StrongBackend(self.policy, max_calls)
        elif isolation == Isolation.WEAK:
            self._backend = weak.WeakBackend(self.policy)
        else:
            self._backend = weak.NoneBackend(self.policy)
        self.isolation = Isolation(isolation)

    # -- SBM's error and lifecycle -----------------------------------------------------

    @property
    def error(self) -> int:
        """0, or the negative errno of the abort that made this sandbox unusable."""
        return self._error

    def destroy(self) -> None:
        """Release every process, buffer and descriptor. Idempotent."""
        with self._lock:
            self._closed = True
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __del__(self) -> None:
        if getattr(self, "_backend", None) is not None:
            self.destroy()

    # -- buffers -----------------------------------------------------------------------

    def _handle(self, kind: str, obj: Any) -> BufferHandle:
        if kind in (SHARED_RO, SHARED_RW):
            if not isinstance(obj, SharedBuffer):
                raise TypeError(f"map_* takes a SharedBuffer, not {type(obj).__name__}")
        else:
            try:
                with memoryview(obj) as v:
                    if kind != IN and v.readonly:
                        raise TypeError(f"copy_{kind} needs a writable buffer, "
                                        f"{type(obj).__name__} is read-only")
            except TypeError as e:
                if "read-only" in str(e):
                    raise
                raise TypeError(f"copy_{kind} takes a buffer-protocol object, not "
                                f"{type(obj).__name__}") from e
        return BufferHandle(kind, obj, id(self))

    def copy_in(self, buf: Any) -> BufferHandle:
        """Input, snapshotted at call time, read-only inside (SBM_COPY_IN)."""
        return self._handle(IN, buf)

    def copy_out(self, buf: Any) -> BufferHandle:
        """Output: zero-filled inside, copied back only on success (SBM_COPY_OUT)."""
        return self._handle(OUT, buf)

    def copy_inout(self, buf: Any) -> BufferHandle:
        """Both (SBM_COPY_INOUT)."""
        return self._handle(INOUT, buf)

    def map_readonly(self, shared: SharedBuffer) -> BufferHandle:
        """Share without copying, read-only inside (SBM_MAP_READONLY)."""
        return self._handle(SHARED_RO, shared)

    def map_writable(self, shared: SharedBuffer) -> BufferHandle:
        """Share without copying; writes are visible at once (SBM_MAP_WRITABLE)."""
        return self._handle(SHARED_RW, shared)

    # -- calls -------------------------------------------------------------------------

    def call(self, f: Callable[..., Any], *args: Any,
             validate: Callable[[Any], Any] | None = None,
             timeout: float | EllipsisType | None = ..., **kwargs: Any) -> Any:
        """Run ``f(*args, **kwargs)`` in the sandbox and return its result (SBM's sbm_call).

        Args:
            f: a module-level function (or `sandboxed` one).
            args, kwargs: sent by copy; buffer handles become memoryviews inside.
            validate: called with the result; if it raises or returns False the call
                fails with `ProtocolError` and no output is copied back.
            timeout: wall-clock seconds, overriding ``policy.timeout``.

        Returns:
            What ``f`` returned (plain data, SPEC-16).

        Raises:
            TargetError: ``f`` raised (not sticky).
            SandboxFault, PolicyViolation, SandboxTimeout, SandboxMemoryError,
            ProtocolError: the sandbox aborted the call (sticky, see ``error``).
            SandboxClosed: after ``destroy()``.
        """
        if _inside():
            raise SandboxError("calling into a sandbox from inside one is refused (SPEC-24)",
                               {"reason": "nesting"})
        tmo = self.policy.timeout if isinstance(timeout, EllipsisType) else timeout
        self._enter()
        try:
            return self._call(f, args, kwargs, validate, tmo)
        finally:
            self._leave()

    def _enter(self) -> None:
        with self._active_lock:
            self._active += 1

    def _leave(self) -> None:
        with self._active_lock:
            self._active -= 1
            if self._active == 0 and self._backend is not None:
                self._backend.cancel_requested = False  # a cancel ends one call, no more

    def _call(self, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
              validate: Callable[[Any], Any] | None, tmo: float | None) -> Any:
        with self._lock:  # concurrent calls on one instance are serialised (SPEC-24)
            if self._closed or self._backend is None:
                raise SandboxClosed("this sandbox was destroyed", {"error": self._error})
            if self._sticky_exc is not None:
                raise self._sticky_exc
            outcome = Outcome()
            result = self._backend.call(f, args, kwargs, id(self), outcome, tmo)
            if outcome.status is Status.OK and validate is not None:
                try:
                    ok = validate(result)
                except Exception as e:
                    outcome.overrule(Status.PROTOCOL, f"result refused by validate: {e!r}",
                                     validator=repr(e))
                else:
                    if ok is False:
                        outcome.overrule(Status.PROTOCOL, "result refused by validate")
            if outcome.status is Status.OK:
                self._backend.commit()
                return result
            self._backend.discard()
            exc = outcome.exception()
            if exc.sticky:
                self._error = -exc.errno if exc.errno else -1
                self._sticky_exc = exc
                self._backend.broken()
            raise exc

    async def acall(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`call` for asyncio: runs in a worker thread. Cancelling the task ends the call
        at once, even if it had not started yet: its process is killed and reaped, and the
        task sees `asyncio.CancelledError` (SPEC-23). The instance stays usable."""
        import asyncio  # here: the zygote imports this module and must stay small

        loop = asyncio.get_running_loop()
        token = {"cancelled": False}

        def work() -> Any:
            self._enter()  # from here on, cancel() reaches this call
            try:
                if token["cancelled"]:
                    raise SandboxCancelled("the call was cancelled before it started")
                return self.call(f, *args, **kwargs)
            finally:
                self._leave()

        fut = loop.run_in_executor(None, work)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            token["cancelled"] = True
            self.cancel()
            try:
                await fut
            except BaseException:
                pass
            raise

    def cancel(self) -> None:
        """End the current call, if any, at once (thread-safe): its process is killed and
        reaped and the call raises `SandboxCancelled`; the cause is recorded before the
        kill. Not sticky: the next call gets a fresh process. No effect on WEAK/NONE,
        which cannot interrupt code running in the caller's own process."""
        backend = self._backend
        if backend is not None:
            with self._active_lock:
                busy = self._active > 0
            backend.cancel(busy)


def run(f: Callable[..., Any], *args: Any, policy: Policy | None = None,
        timeout: float | EllipsisType | None = ..., isolation: Isolation | None = None,
        require: Isolation | None = None, validate: Callable[[Any], Any] | None = None,
        **kwargs: Any) -> Any:
    """One-shot: a fresh sandbox, one call, destroyed. Bytes-like arguments go in as
    read-only memoryviews (``copy_in``); everything else by copy.

    Example:
        >>> result = run(parse, payload, timeout=2.0)   # doctest: +SKIP
    """
    with Sandbox(policy=policy, isolation=isolation, require=require, max_calls=1) as box:
        args = tuple(box.copy_in(a) if isinstance(a, (bytes, bytearray, memoryview)) else a
                     for a in args)
        return box.call(f, *args, validate=validate, timeout=timeout, **kwargs)
