"""The two parsers as sandbox entry points: ``sbm.run(openpgp, data)``.

Calling them runs the parser in a fresh, locked-down sandbox (one process per input).
The parser modules are ordinary importable code; this module only names the entry points.
"""

from __future__ import annotations

from typing import Any

from sandboxmode._target import sandboxed
from sandboxmode.parsers import apparmor as _apparmor
from sandboxmode.parsers import openpgp as _openpgp

__all__ = ["apparmor", "openpgp"]


@sandboxed
def openpgp(data: memoryview) -> list[dict[str, Any]]:
    """Parse OpenPGP certificates (armored or binary) inside the sandbox."""
    return _openpgp.parse(data)


@sandboxed
def apparmor(data: memoryview) -> dict[str, Any]:
    """Unpack an AppArmor binary policy blob inside the sandbox."""
    return _apparmor.unpack(data)
