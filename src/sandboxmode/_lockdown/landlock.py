"""The Landlock layer: a domain that handles every access right and allows none.

landlock(7): a ruleset lists the *handled* access rights; everything handled is denied
unless a rule allows it. `restrict_all` handles every right the running kernel's ABI
knows and adds no rule, so after landlock_restrict_self(2) the process (and anything it
could fork) may not open, create, remove, rename, execute, truncate or ioctl-a-device on
any path, bind or connect TCP sockets (ABI >= 4), connect to abstract unix sockets made
outside the domain or signal processes outside it (ABI >= 6).

Descriptors opened before the restriction keep working (landlock(7): "Files or
directories opened before the sandboxing are not subject to these restrictions"), which
is exactly what the child needs for its channel and buffers.

The ruleset attribute grew with the ABI (landlock_create_ruleset(2), <linux/landlock.h>):

    struct landlock_ruleset_attr {
        __u64 handled_access_fs;    /* ABI 1 */
        __u64 handled_access_net;   /* ABI 4 */
        __u64 scoped;               /* ABI 6 */
    };

and the kernel learns from the ``size`` argument which fields the caller knows, so the
size passed matches the ABI.

Child-side module: standard library and ``_ffi`` only.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Final

from sandboxmode._ffi import libc

__all__ = ["KNOWN_ABI", "abi", "handled_fs", "handled_net", "restrict_all", "scoped"]

LANDLOCK_CREATE_RULESET_VERSION: Final = 1 << 0

# Filesystem access rights (landlock(7), "Filesystem actions").
ACCESS_FS_EXECUTE: Final = 1 << 0
ACCESS_FS_WRITE_FILE: Final = 1 << 1
ACCESS_FS_READ_FILE: Final = 1 << 2
ACCESS_FS_READ_DIR: Final = 1 << 3
ACCESS_FS_REMOVE_DIR: Final = 1 << 4
ACCESS_FS_REMOVE_FILE: Final = 1 << 5
ACCESS_FS_MAKE_CHAR: Final = 1 << 6
ACCESS_FS_MAKE_DIR: Final = 1 << 7
ACCESS_FS_MAKE_REG: Final = 1 << 8
ACCESS_FS_MAKE_SOCK: Final = 1 << 9
ACCESS_FS_MAKE_FIFO: Final = 1 << 10
ACCESS_FS_MAKE_BLOCK: Final = 1 << 11
ACCESS_FS_MAKE_SYM: Final = 1 << 12
ACCESS_FS_REFER: Final = 1 << 13  # ABI 2
ACCESS_FS_TRUNCATE: Final = 1 << 14  # ABI 3
ACCESS_FS_IOCTL_DEV: Final = 1 << 15  # ABI 5

# Network access rights (ABI 4).
ACCESS_NET_BIND_TCP: Final = 1 << 0
ACCESS_NET_CONNECT_TCP: Final = 1 << 1

# Scopes (ABI 6).
SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1 << 0
SCOPE_SIGNAL: Final = 1 << 1

#: The newest ABI whose rights this module knows. ABI 7 added only audit-logging flags
#: for landlock_restrict_self(2), no access right; a newer kernel is restricted with
#: everything known here (still a deny-all domain for those rights).
KNOWN_ABI: Final = 7


def abi() -> int:
    """The Landlock ABI version of the running kernel; 0 if Landlock is unavailable
    (not built, or not enabled at boot: ENOSYS / EOPNOTSUPP)."""
    ret = libc.raw_syscall(libc.SYS.landlock_create_ruleset, 0, 0, LANDLOCK_CREATE_RULESET_VERSION)
    if ret >= 0:
        return ret
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EOPNOTSUPP):
        return 0
    raise OSError(
        err, f"landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION): {os.strerror(err)}"
    )


def handled_fs(abi: int) -> int:
    """Every filesystem access right of ``abi``."""
    rights = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= ACCESS_FS_REFER
    if abi >= 3:
        rights |= ACCESS_FS_TRUNCATE
    if abi >= 5:
        rights |= ACCESS_FS_IOCTL_DEV
    return rights


def handled_net(abi: int) -> int:
    """Every network access right of ``abi`` (0 before ABI 4)."""
    return ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP if abi >= 4 else 0


def scoped(abi: int) -> int:
    """Every scope of ``abi`` (0 before ABI 6)."""
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def restrict_all(abi: int) -> None:
    """Enforce a deny-everything Landlock domain on the calling thread (and its future
    children).

    ``abi`` is what `abi` returned (the zygote asks once and passes it down). Requires
    no_new_privs (or CAP_SYS_ADMIN in the user namespace), landlock_restrict_self(2).
    The caller should be single-threaded: the domain applies to the calling thread only.

    Raises:
        ValueError: abi < 1 (nothing to enforce: the caller must decide, not us).
        OSError: a failing system call.
    """
    if abi < 1:
        raise ValueError("Landlock is not available (ABI 0)")
    abi = min(abi, KNOWN_ABI)
    attr = libc.LandlockRulesetAttr(handled_fs(abi), handled_net(abi), scoped(abi))
    # Pass only the fields this ABI knows: 8 bytes (fs), 16 (+ net), 24 (+ scoped).
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    fd = libc.check(
        libc.raw_syscall(libc.SYS.landlock_create_ruleset, libc.addr(attr), size, 0),
        "landlock_create_ruleset",
    )
    try:
        # No landlock_add_rule(2): with no rule, every handled right is denied.
        libc.check(
            libc.raw_syscall(libc.SYS.landlock_restrict_self, fd, 0), "landlock_restrict_self"
        )
    finally:
        os.close(fd)
