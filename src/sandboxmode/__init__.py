"""sandboxmode: run parsers of untrusted data in a sandbox mode.

    import sandboxmode as sbm
    result = sbm.run(parse, payload, timeout=2.0)

See README.md and the docstrings of `Sandbox`, `run`, `Policy`.

`Sandbox`, `run` and `Pool` are imported on first use (PEP 562): modules that only define
sandboxed functions are imported by the zygote, which must not carry threading, asyncio or
subprocess into every sandbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandboxmode._buffers import SharedBuffer
from sandboxmode._errors import (
    PolicyViolation,
    ProtocolError,
    SandboxCancelled,
    SandboxClosed,
    SandboxError,
    SandboxFault,
    SandboxMemoryError,
    SandboxTimeout,
    SandboxUnavailable,
    TargetError,
)
from sandboxmode._target import Isolation, sandboxed
from sandboxmode.policy import Policy

if TYPE_CHECKING:
    from sandboxmode._pool import Pool
    from sandboxmode._sandbox import Sandbox, run

__all__ = [
    "Isolation",
    "Policy",
    "Pool",
    "PolicyViolation",
    "ProtocolError",
    "Sandbox",
    "SandboxCancelled",
    "SandboxClosed",
    "SandboxError",
    "SandboxFault",
    "SandboxMemoryError",
    "SandboxTimeout",
    "SandboxUnavailable",
    "SharedBuffer",
    "TargetError",
    "run",
    "sandboxed",
]

__version__ = "0.1.0"

_LAZY = {"Sandbox": "sandboxmode._sandbox", "run": "sandboxmode._sandbox",
         "Pool": "sandboxmode._pool"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sandboxmode' has no attribute {name!r}")
    import importlib
    import sys

    child = sys.modules.get("sandboxmode._child")
    if child is not None and getattr(child, "IN_SANDBOX", False):
        # Inside a sandbox, where importing more is not allowed anyway: say why instead.
        raise SandboxError("a sandbox cannot be created or called inside a sandbox (no "
                           "nesting, SPEC-24)", {"reason": "nesting"})
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
