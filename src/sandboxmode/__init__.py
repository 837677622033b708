"""sandboxmode: run parsers of untrusted data in a sandbox mode.

    import sandboxmode as sbm
    result = sbm.run(parse, payload, timeout=2.0)

See README.md and the docstrings of `Sandbox`, `run`, `Policy`.
"""

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
from sandboxmode._pool import Pool
from sandboxmode._sandbox import Isolation, Sandbox, run, sandboxed
from sandboxmode.policy import Policy

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
