"""Resource limits of a sandbox child (getrlimit(2), setrlimit(2)).

Every limit is set with soft == hard (CPU: hard = soft + 1, see `apply`), so the child
cannot raise it back; lowering a limit needs no privilege, so this works unprivileged.
A request above the current hard limit is clamped to it (raising would need
CAP_SYS_RESOURCE, and a lower limit is what we wanted anyway).

The address-space budget is absolute: RLIMIT_AS counts every mapping the forked child
inherited from the zygote, so the caller adds its memory budget to `current_vm_size`
measured *before* the filesystem (and /proc) goes away.

Child-side module: standard library only.
"""

from __future__ import annotations

import mmap
import resource

__all__ = ["apply", "current_vm_size"]


def current_vm_size() -> int:
    """Total virtual memory of the calling process in bytes (/proc/self/statm, field 1).

    Read it before chroot: /proc is not there afterwards."""
    with open("/proc/self/statm", "rb") as f:
        pages = int(f.read().split()[0])
    return pages * mmap.PAGESIZE


def _set(which: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    _cur_soft, cur_hard = resource.getrlimit(which)
    if cur_hard != resource.RLIM_INFINITY:
        soft = min(soft, cur_hard)
        hard = min(hard, cur_hard)
    resource.setrlimit(which, (soft, hard))


def apply(
    *,
    address_space: int | None,
    cpu_seconds: int | None,
    file_size: int = 0,
    open_files: int,
    nproc: int | None,
    core: int = 0,
) -> None:
    """Lower the calling process's limits. ``None`` leaves a limit as it is.

    Args:
        address_space: RLIMIT_AS in bytes (absolute: baseline + budget). An allocation
            beyond it fails with ENOMEM (Python: MemoryError) instead of growing.
        cpu_seconds: RLIMIT_CPU. The soft limit sends SIGXCPU (reported as a timeout by
            the host); the hard limit, one second later, SIGKILL in case SIGXCPU is
            caught or ignored.
        file_size: RLIMIT_FSIZE in bytes. 0: a write(2) that would *extend a file*
            (including a memfd) raises SIGXFSZ; pipes and sockets are not files.
            Buffers must therefore be sized by the host, not grown by the child.
        open_files: RLIMIT_NOFILE (one more than the highest descriptor number).
        nproc: RLIMIT_NPROC (processes of this real uid; 0 forbids fork() even if the
            filter allowed it). Ignored by the kernel for root (CAP_SYS_RESOURCE /
            CAP_SYS_ADMIN), hence optional.
        core: RLIMIT_CORE; 0 means a crashing sandbox writes no core file.
    """
    if address_space is not None:
        _set(resource.RLIMIT_AS, address_space)
    if cpu_seconds is not None:
        _set(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _set(resource.RLIMIT_FSIZE, file_size)
    _set(resource.RLIMIT_NOFILE, open_files)
    if nproc is not None:
        _set(resource.RLIMIT_NPROC, nproc)
    _set(resource.RLIMIT_CORE, core)
