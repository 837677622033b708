"""Capabilities: drop every one, for good (capabilities(7)).

In the zygote's user namespace the child is uid 0 with a full capability set over that
namespace (user_namespaces(7)). `drop_all` leaves it with nothing: securebits locked so
that being uid 0 never grants capabilities again, empty bounding and ambient sets, empty
effective/permitted/inheritable sets. Then `set_no_new_privs` (prctl(2)) makes execve
unable to grant anything either -- and is the precondition of Landlock and of an
unprivileged seccomp filter.

Child-side module: standard library and ``_ffi`` only.
"""

from __future__ import annotations

from typing import Final

from sandboxmode._ffi import libc

__all__ = [
    "SECUREBITS_LOCKED",
    "drop_all",
    "drop_bounding_set",
    "read_last_cap",
    "set_no_new_privs",
]

#: capabilities(7): the capability that allows changing securebits and the bounding set.
CAP_SETPCAP: Final = 8

# Made at import (in the zygote): creating a ctypes array type costs ~0.5 ms, which each
# forked child would otherwise pay again.
_CapDataV3 = libc.CapData * 2

#: Root gets no capabilities from its uid, setuid fixups are off, KEEP_CAPS can never be
#: turned on, ambient capabilities can never be raised; each with its lock bit, so the
#: process cannot undo it (capabilities(7), "The securebits flags").
SECUREBITS_LOCKED: Final = (
    libc.SECBIT_NOROOT
    | libc.SECBIT_NOROOT_LOCKED
    | libc.SECBIT_NO_SETUID_FIXUP
    | libc.SECBIT_NO_SETUID_FIXUP_LOCKED
    | libc.SECBIT_KEEP_CAPS_LOCKED
    | libc.SECBIT_NO_CAP_AMBIENT_RAISE
    | libc.SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
)


def read_last_cap() -> int:
    """/proc/sys/kernel/cap_last_cap: the highest capability number of this kernel.

    Read it before chroot (the zygote does, once)."""
    with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
        return int(f.read())


def _effective() -> int:
    """The effective capability set of the calling thread (capget(2), version 3)."""
    header = libc.CapHeader(libc.LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataV3()
    libc.check(libc.raw_syscall(libc.SYS.capget, libc.addr(header), libc.addr(data)), "capget")
    return int(data[0].effective) | int(data[1].effective) << 32


def drop_bounding_set(last_cap: int) -> None:
    """Empty the capability bounding set (PR_CAPBSET_DROP for 0..last_cap, prctl(2)).

    The bounding set caps what execve(2) could ever grant; it is inherited by fork and
    does not touch the effective/permitted sets. So the zygote, which never execs, can
    call this once and spare every child ~40 prctl calls (`drop_all` only drops what
    is still set). Needs CAP_SETPCAP; raises OSError on failure.
    """
    for cap in range(last_cap + 1):
        if libc.prctl(libc.PR_CAPBSET_READ, cap, 0, 0, 0) == 1:
            libc.check(
                libc.prctl(libc.PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})"
            )


def drop_all(last_cap: int, bounding_set_empty: bool = False) -> None:
    """Drop every capability of the calling thread, irrevocably.

    Order matters: securebits and the bounding set need CAP_SETPCAP, so they go first;
    capset(2) to zero goes last. ``last_cap`` comes from `read_last_cap` (read before the
    filesystem went away).

    Without CAP_SETPCAP (an unprivileged caller outside a user namespace, e.g. with
    ``unsafe_no_namespaces``) securebits and the bounding set cannot be changed; both
    only guard setuid/execve transitions, which no_new_privs and the seccomp filter
    forbid anyway, and such a caller has no capability to lose. They are then skipped;
    with CAP_SETPCAP every failure raises. Ambient and capset(2) always raise on failure.

    ``bounding_set_empty``: the parent (the zygote) already emptied the bounding set,
    which fork inherits; skips ~40 prctl calls per child.
    """
    setpcap = bool(_effective() & (1 << CAP_SETPCAP))
    cur = libc.prctl(libc.PR_GET_SECUREBITS, 0, 0, 0, 0)
    if cur >= 0 and cur & SECUREBITS_LOCKED != SECUREBITS_LOCKED:
        want = (cur & ~libc.SECBIT_KEEP_CAPS) | SECUREBITS_LOCKED
        ret = libc.prctl(libc.PR_SET_SECUREBITS, want, 0, 0, 0)
        if setpcap:
            libc.check(ret, "prctl(PR_SET_SECUREBITS)")

    if setpcap and not bounding_set_empty:
        drop_bounding_set(last_cap)

    libc.check(
        libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
        "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
    )

    # capset(2), _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set, all zero.
    header = libc.CapHeader(libc.LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataV3()
    libc.check(libc.raw_syscall(libc.SYS.capset, libc.addr(header), libc.addr(data)), "capset")


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS, 1): execve can never add privileges again (and
    Landlock / unprivileged seccomp become possible). Irreversible."""
    libc.check(libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
