"""Policy: everything a sandbox is allowed, written down in one frozen value.

Every weakening of the sandbox is a separately named ``unsafe_*`` field, so that
``grep unsafe_`` finds every place a program asks for less protection. Cross-field
checks happen once, in ``__post_init__`` (sandbox2's ``PolicyBuilder::TryBuild``).

The default policy lets a sandboxed function compute, allocate memory within its budget,
read its input buffers and write its output buffers, and nothing else: no files, no
network, no new processes, no signals to others, no new privileges.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Policy"]

MiB = 1 << 20
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SYSCALL = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Policy:
    """What a sandbox may do. Immutable; make a variant with ``policy.replace(...)``.

    Args:
        timeout: wall-clock seconds per call (``None``: no wall-clock limit).
        cpu_seconds: CPU-time limit of the sandbox process (RLIMIT_CPU).
        memory: bytes of address space the sandbox may add to what the interpreter
            already maps when it starts (RLIMIT_AS over the baseline).
        open_files: descriptor limit inside the sandbox (RLIMIT_NOFILE).
        max_result_bytes: largest encoded result accepted from the sandbox.
        max_depth: deepest nesting of a result.
        max_items: most containers and scalars in one result.
        preload: extra modules imported before lockdown (the target's own module is
            always preloaded); an import of anything else inside the sandbox is a
            `PolicyViolation`.
        extra_syscalls: system calls allowed on top of the default allowlist (names as
            in ``man 2 syscalls``). Each one widens the attack surface.
        unsafe_no_seccomp / unsafe_no_landlock / unsafe_no_namespaces /
        unsafe_no_rlimits / unsafe_keep_capabilities: switch one layer off. Only for
            measuring what each layer stops (``sbm selftest --matrix``) and for debugging.

    Raises:
        ValueError: a field is out of range or names an invalid module or system call.

    Example:
        >>> Policy(timeout=2.0, memory=64 << 20).timeout
        2.0
    """

    timeout: float | None = 30.0
    cpu_seconds: int = 30
    memory: int = 1024 * MiB
    open_files: int = 64
    max_result_bytes: int = 64 * MiB
    max_depth: int = 64
    max_items: int = 1_000_000
    preload: tuple[str, ...] = field(default=())
    extra_syscalls: tuple[str, ...] = field(default=())
    unsafe_no_seccomp: bool = False
    unsafe_no_landlock: bool = False
    unsafe_no_namespaces: bool = False
    unsafe_no_rlimits: bool = False
    unsafe_keep_capabilities: bool = False

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples: the value stays hashable and frozen.
        object.__setattr__(self, "preload", tuple(self.preload))
        object.__setattr__(self, "extra_syscalls", tuple(self.extra_syscalls))
        if self.timeout is not None and not (self.timeout > 0):
            raise ValueError(f"Policy.timeout must be > 0 or None, not {self.timeout!r}")
        for name in ("cpu_seconds", "memory", "open_files", "max_result_bytes",
                     "max_depth", "max_items"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Policy.{name} must be a positive int, not {value!r}")
        if self.open_files < 8:
            raise ValueError("Policy.open_files must be at least 8 (the channel and buffers)")
        for mod in self.preload:
            if not isinstance(mod, str) or not _MODULE.match(mod):
                raise ValueError(f"Policy.preload: {mod!r} is not a module name")
        for sc in self.extra_syscalls:
            if not isinstance(sc, str) or not _SYSCALL.match(sc):
                raise ValueError(f"Policy.extra_syscalls: {sc!r} is not a system call name")

    def replace(self, **changes: Any) -> Policy:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def unsafe(self) -> tuple[str, ...]:
        """Names of the layers this policy switches off (empty for a safe policy)."""
        return tuple(f.name for f in dataclasses.fields(self)
                     if f.name.startswith("unsafe_") and getattr(self, f.name))

    def to_wire(self) -> dict[str, Any]:
        """Plain-data form sent to the zygote (host to zygote: trusted direction)."""
        return dataclasses.asdict(self)
