"""One outcome record per call; exceptions are derived from it at the API boundary.

The host's supervisor records *why* it ends a sandbox before it ends it, and the first
verdict wins: if a forbidden system call was reported and the process then died of the
SIGKILL we sent, the call failed with a `PolicyViolation`, not a crash. Evidence is plain
data only (never objects from the sandbox); text that came from the sandbox is bounded.
"""

from __future__ import annotations

import enum
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from sandboxmode._errors import (
    PolicyViolation,
    ProtocolError,
    SandboxCancelled,
    SandboxError,
    SandboxFault,
    SandboxMemoryError,
    SandboxTimeout,
    TargetError,
)

__all__ = ["Outcome", "Status", "describe_status", "signal_name"]

MAX_TEXT = 16 * 1024


class Status(enum.Enum):
    OK = "ok"
    TARGET_ERROR = "target-error"
    FAULT = "fault"
    VIOLATION = "violation"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    PROTOCOL = "protocol"
    CANCELLED = "cancelled"


_EXC: dict[Status, type[SandboxError]] = {
    Status.TARGET_ERROR: TargetError,
    Status.FAULT: SandboxFault,
    Status.VIOLATION: PolicyViolation,
    Status.TIMEOUT: SandboxTimeout,
    Status.MEMORY: SandboxMemoryError,
    Status.PROTOCOL: ProtocolError,
    Status.CANCELLED: SandboxCancelled,
}


def clip(text: object, limit: int = MAX_TEXT) -> str:
    """Bound text that came from a sandbox before it goes into a message."""
    s = text if isinstance(text, str) else repr(text)
    return s if len(s) <= limit else s[:limit] + f"... [{len(s) - limit} more characters]"


def signal_name(sig: int) -> str:
    """``SIGSEGV(-11)``, as loky prints worker deaths."""
    try:
        return f"{signal.Signals(sig).name}(-{sig})"
    except ValueError:
        return f"signal {sig}"


def describe_status(status: int) -> tuple[str, dict[str, Any]]:
    """Turn a wait status into (reason, evidence)."""
    import os

    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"killed by {signal_name(sig)}", {"signal": sig, "signal_name": signal_name(sig)}
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return f"exited with code {code}", {"exit_code": code}
    return f"wait status {status:#x}", {"status": status}


@dataclass
class Outcome:
    """The record of one call. ``decide`` only takes the first verdict."""

    status: Status | None = None
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    # decide() may be called from a cancelling thread while the supervisor decides.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def decided(self) -> bool:
        return self.status is not None

    def decide(self, status: Status, reason: str, /, **evidence: Any) -> bool:
        """Record a verdict unless one was recorded already. Returns True if it was taken."""
        with self.lock:
            if self.status is not None:
                return False
            self.status, self.reason, self.evidence = status, reason, dict(evidence)
            return True

    def overrule(self, status: Status, reason: str, /, **evidence: Any) -> None:
        """Replace an OK verdict the host itself then refused (``validate=``, unreadable
        outputs). Never used to replace a verdict about what the sandbox did."""
        with self.lock:
            assert self.status is Status.OK, self.status
            self.status, self.reason, self.evidence = status, reason, dict(evidence)

    def add(self, **evidence: Any) -> None:
        """Add evidence to the verdict already taken (e.g. the traceback that followed)."""
        for k, v in evidence.items():
            self.evidence.setdefault(k, v)

    def exception(self) -> SandboxError:
        assert self.status is not None and self.status is not Status.OK
        exc = _EXC[self.status](self.reason, self.evidence)
        return exc
