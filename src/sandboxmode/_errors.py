"""The exception tree.

One root, split by *who is at fault*:

- the code in the sandbox misbehaved and the sandbox stopped it: `SandboxFault`,
  `PolicyViolation`, `SandboxTimeout`, `SandboxMemoryError`, `ProtocolError`
  (all *sticky*: the instance refuses further calls, SPEC-3);
- the sandboxed function raised an ordinary exception: `TargetError` (not sticky);
- you asked for something this machine or this instance cannot give:
  `SandboxUnavailable`, `SandboxClosed`.

Every exception carries `.errno` (positive; `Sandbox.error` stores it negated) and
`.evidence`, a dict of plain data (signal, syscall name and arguments, limit, traceback
text...) so that programs can act on it without parsing messages. Every exception is
picklable (tests and pools move them between threads and processes).
"""

from __future__ import annotations

import errno as _errno
from typing import Any

__all__ = [
    "PolicyViolation",
    "ProtocolError",
    "SandboxCancelled",
    "SandboxClosed",
    "SandboxError",
    "SandboxFault",
    "SandboxMemoryError",
    "SandboxTimeout",
    "SandboxUnavailable",
    "TargetError",
]


class SandboxError(Exception):
    """Root of every error sandboxmode raises.

    Attributes:
        errno: positive errno value describing the cause (EFAULT, EPERM, ...), or 0.
        evidence: plain-data details (never objects from the sandbox).
    """

    errno: int = 0
    sticky: bool = True

    def __init__(self, message: str, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.evidence: dict[str, Any] = dict(evidence or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.evidence))

    def __str__(self) -> str:
        return self.message


class SandboxFault(SandboxError):
    """The sandboxed code crashed or touched memory it does not own.

    Raised for crash signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT), stack overflow and
    unbounded recursion, `os._exit`, a write to an input buffer, and the loss of the
    sandbox process. Not raised when the function merely raised an exception
    (that is `TargetError`). Sticky.
    """

    errno = _errno.EFAULT


class PolicyViolation(SandboxError):
    """The sandboxed code tried something its `Policy` forbids.

    A forbidden system call (evidence: ``syscall``, ``nr``, ``args``, ``traceback``), an
    import of a module that was not preloaded (``module``), a call to a host function that is
    not on the sandbox's allowlist. Sticky.
    """

    errno = _errno.EPERM


class SandboxTimeout(SandboxError, TimeoutError):
    """The wall-clock timeout or the CPU-time limit ran out. Sticky.

    Also an instance of the builtin `TimeoutError`.
    """

    errno = _errno.ETIMEDOUT

    def __init__(self, message: str, evidence: dict[str, Any] | None = None) -> None:
        SandboxError.__init__(self, message, evidence)


class SandboxMemoryError(SandboxError):
    """The sandbox hit its memory limit (`Policy.memory`). Sticky.

    Not raised for `MemoryError`s of the host itself.
    """

    errno = _errno.ENOMEM


class ProtocolError(SandboxError):
    """What came back from the sandbox is malformed, oversized, not plain data, or was
    refused by the caller's ``validate=`` hook. Sticky: a sandbox that speaks garbage is
    not trusted again.
    """

    errno = _errno.EPROTO


class TargetError(SandboxError):
    """The sandboxed function raised an exception.

    Attributes (also in ``evidence``): ``remote_type`` (qualified type name, text only: the
    exception object never crosses), ``remote_message``, ``remote_traceback``.
    Not sticky: the function failed, the sandbox did not. No output buffer is copied back.
    """

    errno = 0
    sticky = False

    @property
    def remote_type(self) -> str:
        return str(self.evidence.get("type", ""))

    @property
    def remote_message(self) -> str:
        return str(self.evidence.get("message", ""))

    @property
    def remote_traceback(self) -> str:
        return str(self.evidence.get("traceback", ""))


class SandboxCancelled(SandboxError):
    """You cancelled the call (``Sandbox.cancel()``, an ``asyncio`` cancellation, a pool
    terminated): its sandbox process was killed and reaped. Not sticky: the next call of
    the instance gets a fresh process. Not raised for timeouts (`SandboxTimeout`).
    """

    errno = _errno.ECANCELED
    sticky = False


class SandboxUnavailable(SandboxError):
    """The isolation level or kernel feature you required is not available here.

    ``evidence["feature"]`` names what is missing. Raised instead of silently running with
    less protection; never raised because of what the sandboxed code did.
    """

    errno = _errno.ENOSYS


class SandboxClosed(SandboxError):
    """The sandbox was used after `destroy()`. Your bug, not the sandbox's."""

    errno = _errno.EBADF
    sticky = False
