"""What this machine can do, found out by trying (for ``sbm doctor`` and the host).

Every feature is detected by *using* it in a harmless way -- never by reading a kernel
version and guessing -- and the result is cached for the life of the process (`detect`).
Host side only: it may fork (user namespaces are tried in a throw-away child, because
unshare(2) cannot be undone).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import warnings
from dataclasses import dataclass

from sandboxmode._ffi import libc

__all__ = ["Features", "detect", "missing_for_strong"]


@dataclass(frozen=True, slots=True)
class Features:
    """Kernel and library features relevant to the strong isolation level.

    ``errors`` maps a feature name to why it is missing (text for humans).
    """

    kernel_release: str
    arch: str
    libseccomp_version: tuple[int, int, int] | None
    libseccomp_api: int
    seccomp_filter: bool
    seccomp_notify: bool
    landlock_abi: int
    user_namespaces: bool
    pidfd: bool
    cgroup2_mount: str | None
    errors: tuple[tuple[str, str], ...] = ()

    def error(self, feature: str) -> str:
        """Why ``feature`` is missing ("" if it is not, or nobody said)."""
        return dict(self.errors).get(feature, "")


def _seccomp_action_available(action: int) -> tuple[bool, str]:
    # seccomp(2), SECCOMP_GET_ACTION_AVAIL: 0 if the kernel's filters support `action`.
    value = ctypes.c_uint32(action)
    try:
        nr = libc.SYS.seccomp
    except OSError as e:
        return False, str(e)
    ret = libc.raw_syscall(nr, libc.SECCOMP_GET_ACTION_AVAIL, 0, ctypes.addressof(value))
    if ret == 0:
        return True, ""
    err = ctypes.get_errno()
    return False, f"seccomp(SECCOMP_GET_ACTION_AVAIL, {action:#x}): {os.strerror(err)}"


def _try_user_namespaces() -> tuple[bool, str]:
    """Enter the zygote's namespaces and mount its empty root in a forked child."""
    r, w = os.pipe()
    try:
        with warnings.catch_warnings():
            # Python >= 3.12 warns about fork() in a threaded process; the child below
            # only makes system calls and _exits.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as e:
        os.close(r)
        os.close(w)
        return False, f"fork: {e}"
    if pid == 0:  # pragma: no cover -- child, reports through the pipe
        code = 1
        try:
            os.close(r)
            from sandboxmode._lockdown import namespaces

            namespaces.enter_zygote_namespaces(os.getuid(), os.getgid())
            namespaces.make_empty_root()
            code = 0
        except BaseException as e:
            with contextlib.suppress(BaseException):
                os.write(w, str(e).encode(errors="replace")[:1000])
        finally:
            os._exit(code)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 4096):
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return True, ""
    return False, b"".join(chunks).decode(errors="replace") or f"child status {status:#x}"


def _try_pidfd() -> tuple[bool, str]:
    try:
        fd = os.pidfd_open(os.getpid())
    except (OSError, AttributeError) as e:
        return False, f"pidfd_open: {e}"
    os.close(fd)
    return True, ""


def _cgroup2_mount() -> str | None:
    """Mount point of the cgroup v2 hierarchy (first one in /proc/self/mountinfo)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                # proc(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE ...
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    point = left.split(" ")[4]
                    return point.replace("\\040", " ")
    except OSError:
        pass
    return None


@functools.cache
def detect() -> Features:
    """Detect (once per process; later calls return the cached result)."""
    errors: dict[str, str] = {}

    version: tuple[int, int, int] | None = None
    api = 0
    try:
        from sandboxmode._ffi import seccomp as scmp

        scmp.lib()
        version = scmp.version()
        api = scmp.api_get()
    except OSError as e:
        errors["libseccomp"] = str(e)

    seccomp_filter, why = _seccomp_action_available(libc.SECCOMP_RET_KILL_PROCESS)
    if why:
        errors["seccomp_filter"] = why
    seccomp_notify, why = _seccomp_action_available(libc.SECCOMP_RET_USER_NOTIF)
    if why:
        errors["seccomp_notify"] = why
    elif version is not None and api < 6:
        # seccomp_api_get(3): level 6 is where libseccomp supports SCMP_ACT_NOTIFY.
        errors["seccomp_notify"] = f"libseccomp API level {api} < 6: no SCMP_ACT_NOTIFY"

    try:
        from sandboxmode._lockdown import landlock

        landlock_abi = landlock.abi()
        if not landlock_abi:
            errors["landlock"] = "Landlock is not enabled in this kernel (see landlock(7))"
    except OSError as e:
        landlock_abi = 0
        errors["landlock"] = str(e)

    userns, why = _try_user_namespaces()
    if why:
        errors["user_namespaces"] = why
    pidfd, why = _try_pidfd()
    if why:
        errors["pidfd"] = why
    cgroup2 = _cgroup2_mount()
    if cgroup2 is None:
        errors["cgroup2"] = "no cgroup2 file system is mounted"

    return Features(
        kernel_release=platform.release(),
        arch=platform.machine(),
        libseccomp_version=version,
        libseccomp_api=api,
        seccomp_filter=seccomp_filter,
        seccomp_notify=seccomp_notify and api >= 6,
        landlock_abi=landlock_abi,
        user_namespaces=userns,
        pidfd=pidfd,
        cgroup2_mount=cgroup2,
        errors=tuple(sorted(errors.items())),
    )


def missing_for_strong(features: Features) -> list[str]:
    """Names of what the strong isolation level needs and ``features`` lacks.

    Needed: libseccomp (to compile the filter), seccomp filters, user notification (to
    report forbidden calls with their arguments), user namespaces (empty root, private
    network), pidfds (race-free supervision), a known architecture. Landlock and cgroup
    v2 are defence in depth and not required (chroot into an empty root + seccomp
    already deny the filesystem; rlimits bound memory).
    """
    missing: list[str] = []
    if features.arch not in ("x86_64", "aarch64"):
        missing.append(f"architecture ({features.arch} is not supported)")
    if features.libseccomp_version is None:
        missing.append("libseccomp")
    if not features.seccomp_filter:
        missing.append("seccomp-filter")
    if not features.seccomp_notify:
        missing.append("seccomp-notify")
    if not features.user_namespaces:
        missing.append("user-namespaces")
    if not features.pidfd:
        missing.append("pidfd")
    return missing
