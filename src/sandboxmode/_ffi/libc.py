"""ctypes declarations for the C library and the kernel ABI structures sandboxmode uses.

Child-side module: standard library only. Every symbol is declared exactly once here, with
``argtypes``/``restype``, and every call site decides failure from the *return value*
first and only then reads ``errno`` (``use_errno=True`` + `ctypes.get_errno`): errno is
meaningless after a successful call. `check` does both.

System calls without a libc wrapper (seccomp, capget/capset, landlock_*) go through
`raw_syscall`, which pads to six arguments so the one `syscall` declaration fits every
call. Syscall numbers are per architecture (`SYS`); only x86_64 and aarch64 are known.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Final

__all__ = [
    "MAP_FAILED",
    "SYS",
    "CapData",
    "CapHeader",
    "LandlockRulesetAttr",
    "SeccompData",
    "SeccompNotif",
    "SeccompNotifResp",
    "SeccompNotifSizes",
    "SockFilter",
    "SockFprog",
    "addr",
    "check",
    "free",
    "ioctl",
    "mmap",
    "mount",
    "mprotect",
    "munmap",
    "prctl",
    "raw_syscall",
    "sethostname",
    "syscall",
    "umount2",
    "unshare",
]

# The C library already mapped into this process (glibc or musl): CDLL(None) looks symbols
# up in the global namespace instead of searching the filesystem (find_library would spawn
# /sbin/ldconfig, which a child that has lost its filesystem cannot do).
_libc = ctypes.CDLL(None, use_errno=True)

_long = ctypes.c_long
_ulong = ctypes.c_ulong
_int = ctypes.c_int
_vp = ctypes.c_void_p
_cp = ctypes.c_char_p
_size = ctypes.c_size_t

# --- functions ------------------------------------------------------------------------

#: long syscall(long number, ...). Declared with six fixed long arguments: on x86_64 and
#: aarch64 Linux, integer varargs travel in the same registers as fixed ones, and glibc's
#: syscall() is an assembly trampoline that never uses va_arg on floating registers.
syscall = _libc.syscall
syscall.argtypes = (_long, _long, _long, _long, _long, _long, _long)
syscall.restype = _long

#: int prctl(int option, unsigned long arg2, arg3, arg4, arg5) -- prctl(2).
prctl = _libc.prctl
prctl.argtypes = (_int, _ulong, _ulong, _ulong, _ulong)
prctl.restype = _int

#: void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset).
#: Returns an int address (or None for address 0); failure is MAP_FAILED.
mmap = _libc.mmap
mmap.argtypes = (_vp, _size, _int, _int, _int, ctypes.c_int64)
mmap.restype = _vp

#: int munmap(void *addr, size_t length).
munmap = _libc.munmap
munmap.argtypes = (_vp, _size)
munmap.restype = _int

#: int mprotect(void *addr, size_t len, int prot).
mprotect = _libc.mprotect
mprotect.argtypes = (_vp, _size, _int)
mprotect.restype = _int

#: int mount(const char *source, const char *target, const char *filesystemtype,
#:           unsigned long mountflags, const void *data) -- mount(2).
mount = _libc.mount
mount.argtypes = (_cp, _cp, _cp, _ulong, _cp)
mount.restype = _int

#: int umount2(const char *target, int flags).
umount2 = _libc.umount2
umount2.argtypes = (_cp, _int)
umount2.restype = _int

#: int unshare(int flags) -- unshare(2).
unshare = _libc.unshare
unshare.argtypes = (_int,)
unshare.restype = _int

#: int sethostname(const char *name, size_t len).
sethostname = _libc.sethostname
sethostname.argtypes = (_cp, _size)
sethostname.restype = _int

#: int ioctl(int fd, unsigned long request, void *argp). Variadic in C; the third argument
#: is always a pointer (or an int passed as one) for the requests used here.
ioctl = _libc.ioctl
ioctl.argtypes = (_int, _ulong, _vp)
ioctl.restype = _int

#: void free(void *) -- for strings libseccomp returns from malloc().
free = _libc.free
free.argtypes = (_vp,)
free.restype = None

MAP_FAILED: Final[int] = ctypes.c_void_p(-1).value or -1


def check(ret: int, what: str) -> int:
    """Return ``ret`` if the call succeeded, else raise OSError(errno, "what: strerror").

    Failure is decided from the return value alone (-1, or any negative value for the
    raw syscall() wrapper); errno is read only then, because a successful call may leave
    a stale errno behind.
    """
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def addr(obj: ctypes._CData) -> int:
    """Address of a ctypes object, as the plain int `raw_syscall` takes."""
    return ctypes.addressof(obj)


def raw_syscall(nr: int, *args: int) -> int:
    """syscall(nr, *args) with up to six integer (or address) arguments; returns the raw
    result (-1 on failure: use `check`)."""
    if len(args) > 6:
        raise TypeError("a system call takes at most six arguments")
    padded = (*args, 0, 0, 0, 0, 0, 0)[:6]
    return int(syscall(nr, *padded))


# --- system call numbers -----------------------------------------------------------------

_SYSCALLS: Final[dict[str, dict[str, int]]] = {
    # arch/x86/entry/syscalls/syscall_64.tbl
    "x86_64": {
        "capget": 125,
        "capset": 126,
        "gettid": 186,
        "seccomp": 317,
        "memfd_create": 319,
        "pidfd_open": 434,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
    },
    # include/uapi/asm-generic/unistd.h
    "aarch64": {
        "capget": 90,
        "capset": 91,
        "gettid": 178,
        "seccomp": 277,
        "memfd_create": 279,
        "pidfd_open": 434,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
    },
}

MACHINE: Final[str] = platform.machine()


class _Sys:
    """Syscall numbers of this machine, as attributes (SYS.seccomp ...). An unknown
    architecture raises OSError(ENOSYS) on first use, not at import."""

    def __getattr__(self, name: str) -> int:
        table = _SYSCALLS.get(MACHINE)
        if table is None:
            raise OSError(38, f"sandboxmode does not know the system calls of {MACHINE!r}")
        try:
            return table[name]
        except KeyError:
            raise AttributeError(name) from None


SYS: Final = _Sys()

# --- constants ------------------------------------------------------------------------------

# prctl(2)
PR_SET_PDEATHSIG: Final = 1
PR_GET_DUMPABLE: Final = 3
PR_SET_DUMPABLE: Final = 4
PR_GET_SECCOMP: Final = 21
PR_CAPBSET_READ: Final = 23
PR_CAPBSET_DROP: Final = 24
PR_GET_SECUREBITS: Final = 27
PR_SET_SECUREBITS: Final = 28
PR_SET_NO_NEW_PRIVS: Final = 38
PR_GET_NO_NEW_PRIVS: Final = 39
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_IS_SET: Final = 1
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4

# capabilities(7): securebits, <linux/securebits.h>
SECBIT_NOROOT: Final = 1 << 0
SECBIT_NOROOT_LOCKED: Final = 1 << 1
SECBIT_NO_SETUID_FIXUP: Final = 1 << 2
SECBIT_NO_SETUID_FIXUP_LOCKED: Final = 1 << 3
SECBIT_KEEP_CAPS: Final = 1 << 4
SECBIT_KEEP_CAPS_LOCKED: Final = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE: Final = 1 << 6
SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: Final = 1 << 7
LINUX_CAPABILITY_VERSION_3: Final = 0x20080522

# mmap(2)
PROT_NONE: Final = 0
PROT_READ: Final = 1
PROT_WRITE: Final = 2
PROT_EXEC: Final = 4
MAP_SHARED: Final = 0x01
MAP_PRIVATE: Final = 0x02
MAP_FIXED: Final = 0x10
MAP_ANONYMOUS: Final = 0x20
MAP_NORESERVE: Final = 0x4000

# mount(2), umount(2)
MS_RDONLY: Final = 1
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_REMOUNT: Final = 32
MS_BIND: Final = 4096
MS_REC: Final = 16384
MS_PRIVATE: Final = 1 << 18
MNT_DETACH: Final = 2

# clone(2) / unshare(2)
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000

# fcntl(2), openat(2)
AT_EMPTY_PATH: Final = 0x1000
F_DUPFD: Final = 0
F_GETFD: Final = 1
F_SETFD: Final = 2
F_GETFL: Final = 3
F_SETFL: Final = 4
F_SETOWN: Final = 8
F_DUPFD_CLOEXEC: Final = 1030

# ioctl_tty(2), ioctl(2) generic requests (asm-generic/ioctls.h; same on x86_64/aarch64)
TCGETS: Final = 0x5401
TIOCSTI: Final = 0x5412
FIONREAD: Final = 0x541B
FIONBIO: Final = 0x5421
FIONCLEX: Final = 0x5450
FIOCLEX: Final = 0x5451

# seccomp(2)
SECCOMP_SET_MODE_STRICT: Final = 0
SECCOMP_SET_MODE_FILTER: Final = 1
SECCOMP_GET_ACTION_AVAIL: Final = 2
SECCOMP_GET_NOTIF_SIZES: Final = 3
SECCOMP_FILTER_FLAG_TSYNC: Final = 1 << 0
SECCOMP_FILTER_FLAG_LOG: Final = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW: Final = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER: Final = 1 << 3
SECCOMP_RET_KILL_PROCESS: Final = 0x80000000
SECCOMP_RET_KILL_THREAD: Final = 0x00000000
SECCOMP_RET_TRAP: Final = 0x00030000
SECCOMP_RET_ERRNO: Final = 0x00050000
SECCOMP_RET_USER_NOTIF: Final = 0x7FC00000
SECCOMP_RET_TRACE: Final = 0x7FF00000
SECCOMP_RET_LOG: Final = 0x7FFC0000
SECCOMP_RET_ALLOW: Final = 0x7FFF0000
BPF_MAXINSNS: Final = 4096

# <linux/audit.h>: the arch field of struct seccomp_data.
AUDIT_ARCH_X86_64: Final = 0xC000003E
AUDIT_ARCH_I386: Final = 0x40000003
AUDIT_ARCH_AARCH64: Final = 0xC00000B7
#: x86_64 syscall numbers with this bit set select the x32 ABI.
X32_SYSCALL_BIT: Final = 0x40000000


# --- kernel ABI structures ---------------------------------------------------------------


class SockFilter(ctypes.Structure):
    """struct sock_filter (one classic BPF instruction, 8 bytes) -- <linux/filter.h>."""

    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class SockFprog(ctypes.Structure):
    """struct sock_fprog {unsigned short len; struct sock_filter *filter;} -- seccomp(2)."""

    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class SeccompData(ctypes.Structure):
    """struct seccomp_data -- seccomp(2): what a filter (and a notification) sees."""

    _fields_ = (
        ("nr", ctypes.c_int),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    )


class SeccompNotif(ctypes.Structure):
    """struct seccomp_notif -- seccomp_unotify(2)."""

    _fields_ = (
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("data", SeccompData),
    )


class SeccompNotifResp(ctypes.Structure):
    """struct seccomp_notif_resp -- seccomp_unotify(2)."""

    _fields_ = (
        ("id", ctypes.c_uint64),
        ("val", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    )


class SeccompNotifSizes(ctypes.Structure):
    """struct seccomp_notif_sizes -- seccomp(2), SECCOMP_GET_NOTIF_SIZES."""

    _fields_ = (
        ("seccomp_notif", ctypes.c_uint16),
        ("seccomp_notif_resp", ctypes.c_uint16),
        ("seccomp_data", ctypes.c_uint16),
    )


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    # asm-generic/ioctl.h: dir(2 bits) | size(14) | type(8) | nr(8)
    return (direction << 30) | (size << 16) | (kind << 8) | nr


_IOC_WRITE: Final = 1
_IOC_READ: Final = 2
_SECCOMP_IOC_MAGIC: Final = ord("!")

SECCOMP_IOCTL_NOTIF_RECV: Final = _ioc(
    _IOC_READ | _IOC_WRITE, _SECCOMP_IOC_MAGIC, 0, ctypes.sizeof(SeccompNotif)
)
SECCOMP_IOCTL_NOTIF_SEND: Final = _ioc(
    _IOC_READ | _IOC_WRITE, _SECCOMP_IOC_MAGIC, 1, ctypes.sizeof(SeccompNotifResp)
)
SECCOMP_IOCTL_NOTIF_ID_VALID: Final = _ioc(_IOC_WRITE, _SECCOMP_IOC_MAGIC, 2, 8)


class CapHeader(ctypes.Structure):
    """struct __user_cap_header_struct -- capget(2)."""

    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class CapData(ctypes.Structure):
    """struct __user_cap_data_struct -- capget(2); version 3 uses an array of two."""

    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


class LandlockRulesetAttr(ctypes.Structure):
    """struct landlock_ruleset_attr -- landlock_create_ruleset(2), landlock(7).

    Grew over time: handled_access_fs (ABI 1), handled_access_net (ABI 4), scoped
    (ABI 6). The size passed to the kernel tells it which fields the caller knows.
    """

    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )
