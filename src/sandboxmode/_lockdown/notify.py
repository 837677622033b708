"""Host side of seccomp user notification: read what the child tried, answer it.

seccomp_unotify(2): a filter whose action is SECCOMP_RET_USER_NOTIF suspends the calling
thread and queues a notification on the listener fd that ``seccomp(...,
SECCOMP_FILTER_FLAG_NEW_LISTENER, ...)`` returned. The supervisor

1. waits for POLLIN on the listener (POLLHUP once every process using the filter has
   gone), then calls `recv_notification` (ioctl SECCOMP_IOCTL_NOTIF_RECV);
2. answers with `respond` (ioctl SECCOMP_IOCTL_NOTIF_SEND): here always a failure with a
   negative errno, e.g. ``-errno.EPERM`` -> the child's call fails with EPERM.

Both ioctls fail with ENOENT when the target died, or its call was interrupted by a
signal, between the notification and the ioctl; that is a normal race, reported as
None / False rather than raised. The arguments in a notification are plain register
values: pointers refer to the child's memory and are never dereferenced here.

Never used inside a sandbox.
"""

from __future__ import annotations

import ctypes
import errno
import functools
from dataclasses import dataclass

from sandboxmode._ffi import libc

__all__ = [
    "Notification",
    "id_valid",
    "notif_sizes",
    "recv_notification",
    "respond",
    "syscall_name",
]


@dataclass(frozen=True, slots=True)
class Notification:
    """One intercepted system call (struct seccomp_notif)."""

    id: int  #: cookie for `respond`; unique per notification
    pid: int  #: thread id of the caller, in the listener's pid namespace (0 if invisible)
    nr: int  #: system call number, in the table of ``arch``
    arch: int  #: AUDIT_ARCH_* of the call
    ip: int  #: instruction pointer at the call
    args: tuple[int, int, int, int, int, int]  #: raw argument registers


@functools.cache
def notif_sizes() -> tuple[int, int, int]:
    """Kernel sizes of (seccomp_notif, seccomp_notif_resp, seccomp_data), asked once with
    ``seccomp(SECCOMP_GET_NOTIF_SIZES)``: a newer kernel may write more than the struct
    this module knows, so receive buffers are sized by the larger of the two."""
    sizes = libc.SeccompNotifSizes()
    libc.check(
        libc.raw_syscall(libc.SYS.seccomp, libc.SECCOMP_GET_NOTIF_SIZES, 0, libc.addr(sizes)),
        "seccomp(SECCOMP_GET_NOTIF_SIZES)",
    )
    return (int(sizes.seccomp_notif), int(sizes.seccomp_notif_resp), int(sizes.seccomp_data))


def _ioctl(fd: int, request: int, buf: ctypes.Array[ctypes.c_char], what: str) -> bool:
    """ioctl() retried on EINTR; False on ENOENT (target gone), OSError otherwise."""
    while True:
        if libc.ioctl(fd, request, ctypes.addressof(buf)) >= 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EINTR:
            continue
        if err == errno.ENOENT:
            return False
        raise OSError(err, f"{what}: {errno.errorcode.get(err, err)}")


def recv_notification(listener_fd: int) -> Notification | None:
    """Receive one notification (blocks if none is pending: poll for POLLIN first).

    Returns None when it vanished before it could be read (the target was killed or its
    call interrupted: ENOENT). Raises OSError for anything else (EBADF, ...).
    """
    size = max(notif_sizes()[0], ctypes.sizeof(libc.SeccompNotif))
    # Zeroed: the kernel refuses (EINVAL) a receive buffer that is not (seccomp_unotify(2)).
    buf = ctypes.create_string_buffer(size)
    if not _ioctl(listener_fd, libc.SECCOMP_IOCTL_NOTIF_RECV, buf, "SECCOMP_IOCTL_NOTIF_RECV"):
        return None
    n = libc.SeccompNotif.from_buffer(buf)
    a = n.data.args
    return Notification(
        id=int(n.id),
        pid=int(n.pid),
        nr=int(n.data.nr),
        arch=int(n.data.arch),
        ip=int(n.data.instruction_pointer),
        args=(int(a[0]), int(a[1]), int(a[2]), int(a[3]), int(a[4]), int(a[5])),
    )


def respond(listener_fd: int, id: int, error: int) -> bool:
    """Fail the intercepted call ``id`` with ``error``, a *negative* errno (-EPERM ...).

    Returns False when the target died or its call was interrupted meanwhile (ENOENT:
    nothing left to answer), True when answered. A success answer (error 0, which would
    make the call "return" a value without running it) is deliberately not offered.
    """
    if error >= 0:
        raise ValueError(f"error must be a negative errno, got {error}")
    size = max(notif_sizes()[1], ctypes.sizeof(libc.SeccompNotifResp))
    buf = ctypes.create_string_buffer(size)
    resp = libc.SeccompNotifResp.from_buffer(buf)
    resp.id = id
    resp.val = 0
    resp.error = error
    resp.flags = 0
    return _ioctl(listener_fd, libc.SECCOMP_IOCTL_NOTIF_SEND, buf, "SECCOMP_IOCTL_NOTIF_SEND")


def id_valid(listener_fd: int, id: int) -> bool:
    """SECCOMP_IOCTL_NOTIF_ID_VALID: is notification ``id`` still pending (its target
    alive and still blocked in the call)?"""
    buf = ctypes.create_string_buffer(8)
    ctypes.c_uint64.from_buffer(buf).value = id
    return _ioctl(
        listener_fd, libc.SECCOMP_IOCTL_NOTIF_ID_VALID, buf, "SECCOMP_IOCTL_NOTIF_ID_VALID"
    )


def syscall_name(nr: int, arch: int) -> str:
    """Name of system call ``nr`` of ``arch`` via libseccomp; ``"syscall_<nr>"`` when
    libseccomp does not know it (or is missing)."""
    from sandboxmode._ffi import seccomp as scmp

    try:
        name = scmp.resolve_num_arch(arch, nr)
    except OSError:
        name = None
    return name or f"syscall_{nr}"
