"""libseccomp (``libseccomp.so.2``) through ctypes.

Used where filters are *compiled*: in the zygote, once, and on the host (syscall names for
notifications, `sbm doctor`). A sandbox child never needs the library: it loads the raw
BPF program the zygote exported (see ``_lockdown/seccomp.py``).

The library is loaded lazily by `lib()`. When it is missing, `lib()` raises an OSError
whose message names libseccomp and the package that provides it; callers turn that into
``SandboxUnavailable``. libseccomp reports errors as negative errno *return values*
(seccomp_init(3), seccomp_rule_add(3)), never through errno; `_check` converts them.

Constants come from <seccomp.h> of libseccomp 2.5 (the header is not installed here, so
they are written out and documented).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sandboxmode._ffi import libc

__all__ = [
    "LIBRARY",
    "ArgCmp",
    "api_get",
    "arch_add",
    "arch_exist",
    "arch_native",
    "arch_remove",
    "attr_set",
    "export_bpf",
    "init",
    "lib",
    "release",
    "resolve_name",
    "resolve_name_arch",
    "resolve_num_arch",
    "rule_add_array",
    "version",
]

LIBRARY: Final = "libseccomp.so.2"

# Actions (seccomp.h): the kernel's SECCOMP_RET_* values.
SCMP_ACT_KILL_PROCESS: Final = 0x80000000
SCMP_ACT_KILL_THREAD: Final = 0x00000000
SCMP_ACT_TRAP: Final = 0x00030000
SCMP_ACT_NOTIFY: Final = 0x7FC00000
SCMP_ACT_LOG: Final = 0x7FFC0000
SCMP_ACT_ALLOW: Final = 0x7FFF0000


def SCMP_ACT_ERRNO(err: int) -> int:
    """The action "fail with errno ``err``" (named like the C macro)."""
    return 0x00050000 | (err & 0x0000FFFF)


# enum scmp_filter_attr
SCMP_FLTATR_ACT_DEFAULT: Final = 1
SCMP_FLTATR_ACT_BADARCH: Final = 2
SCMP_FLTATR_CTL_NNP: Final = 3
SCMP_FLTATR_CTL_TSYNC: Final = 4
SCMP_FLTATR_API_TSKIP: Final = 5
SCMP_FLTATR_CTL_LOG: Final = 6
SCMP_FLTATR_CTL_SSB: Final = 7
SCMP_FLTATR_CTL_OPTIMIZE: Final = 8
SCMP_FLTATR_API_SYSRAWRC: Final = 9

# enum scmp_compare
SCMP_CMP_NE: Final = 1
SCMP_CMP_LT: Final = 2
SCMP_CMP_LE: Final = 3
SCMP_CMP_EQ: Final = 4
SCMP_CMP_GE: Final = 5
SCMP_CMP_GT: Final = 6
SCMP_CMP_MASKED_EQ: Final = 7

# Architecture tokens (= AUDIT_ARCH_* values; x32 is libseccomp's own token).
SCMP_ARCH_NATIVE: Final = 0
SCMP_ARCH_X86: Final = 0x40000003
SCMP_ARCH_X86_64: Final = 0xC000003E
SCMP_ARCH_X32: Final = 0x4000003E
SCMP_ARCH_AARCH64: Final = 0xC00000B7

#: seccomp_syscall_resolve_name() result for a name no architecture knows.
NR_SCMP_ERROR: Final = -1


class _ScmpArgCmp(ctypes.Structure):
    # struct scmp_arg_cmp {unsigned int arg; enum scmp_compare op;
    #                      scmp_datum_t datum_a; scmp_datum_t datum_b;}
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _ScmpVersion(ctypes.Structure):
    # struct scmp_version {unsigned int major, minor, micro;}
    _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))


@dataclass(frozen=True, slots=True)
class ArgCmp:
    """One argument comparison of a rule (struct scmp_arg_cmp).

    ``arg`` is the 0-based syscall argument index; ``op`` one of SCMP_CMP_*; for
    SCMP_CMP_MASKED_EQ the test is ``(arg & datum_a) == datum_b``, otherwise
    ``arg <op> datum_a``.
    """

    arg: int
    op: int
    datum_a: int
    datum_b: int = 0


_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """The loaded libseccomp with every function used here declared; loaded once.

    Raises OSError(ENOENT) naming libseccomp when the shared library cannot be loaded.
    """
    global _lib
    if _lib is not None:
        return _lib
    try:
        dll = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as e:
        raise OSError(
            errno.ENOENT,
            f"libseccomp is not available ({LIBRARY} could not be loaded: {e}); install "
            "the libseccomp2 package (Debian/Ubuntu) or libseccomp (Fedora/Arch/Alpine)",
        ) from e
    vp, u32, cint, uint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint

    dll.seccomp_init.argtypes = (u32,)
    dll.seccomp_init.restype = vp
    dll.seccomp_release.argtypes = (vp,)
    dll.seccomp_release.restype = None
    dll.seccomp_rule_add_array.argtypes = (vp, u32, cint, uint, ctypes.POINTER(_ScmpArgCmp))
    dll.seccomp_rule_add_array.restype = cint
    dll.seccomp_attr_set.argtypes = (vp, cint, u32)
    dll.seccomp_attr_set.restype = cint
    dll.seccomp_arch_native.argtypes = ()
    dll.seccomp_arch_native.restype = u32
    dll.seccomp_arch_add.argtypes = (vp, u32)
    dll.seccomp_arch_add.restype = cint
    dll.seccomp_arch_remove.argtypes = (vp, u32)
    dll.seccomp_arch_remove.restype = cint
    dll.seccomp_arch_exist.argtypes = (vp, u32)
    dll.seccomp_arch_exist.restype = cint
    dll.seccomp_export_bpf.argtypes = (vp, cint)
    dll.seccomp_export_bpf.restype = cint
    dll.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    dll.seccomp_syscall_resolve_name.restype = cint
    dll.seccomp_syscall_resolve_name_arch.argtypes = (u32, ctypes.c_char_p)
    dll.seccomp_syscall_resolve_name_arch.restype = cint
    # Returns a malloc()ed string the caller frees (seccomp_syscall_resolve_name(3)):
    # declared void* so ctypes does not copy-and-lose the pointer.
    dll.seccomp_syscall_resolve_num_arch.argtypes = (u32, cint)
    dll.seccomp_syscall_resolve_num_arch.restype = vp
    dll.seccomp_api_get.argtypes = ()
    dll.seccomp_api_get.restype = uint
    dll.seccomp_version.argtypes = ()
    dll.seccomp_version.restype = ctypes.POINTER(_ScmpVersion)
    _lib = dll
    return dll


def _check(ret: Any, what: str) -> int:
    # libseccomp returns -errno on failure and leaves errno alone.
    value = int(ret)
    if value < 0:
        raise OSError(-value, f"{what}: {os.strerror(-value)}")
    return value


def init(default_action: int) -> int:
    """seccomp_init(3): a new filter context (an opaque address); release() it."""
    ctx = lib().seccomp_init(default_action)
    if not ctx:
        raise OSError(errno.EINVAL, f"seccomp_init({default_action:#x}) failed")
    return int(ctx)


def release(ctx: int) -> None:
    """seccomp_release(3)."""
    lib().seccomp_release(ctx)


def rule_add_array(ctx: int, action: int, syscall: int, args: Sequence[ArgCmp] = ()) -> None:
    """seccomp_rule_add_array(3): ``action`` for ``syscall`` when every comparison holds."""
    array: Any = None
    if args:
        array = (_ScmpArgCmp * len(args))(
            *(_ScmpArgCmp(a.arg, a.op, a.datum_a, a.datum_b) for a in args)
        )
    _check(
        lib().seccomp_rule_add_array(ctx, action, syscall, len(args), array),
        f"seccomp_rule_add_array(syscall {syscall})",
    )


def attr_set(ctx: int, attr: int, value: int) -> None:
    """seccomp_attr_set(3)."""
    _check(lib().seccomp_attr_set(ctx, attr, value), f"seccomp_attr_set({attr})")


def arch_native() -> int:
    """seccomp_arch_native(3): the token of the architecture libseccomp was built for."""
    return int(lib().seccomp_arch_native())


def arch_add(ctx: int, arch: int) -> None:
    """seccomp_arch_add(3)."""
    _check(lib().seccomp_arch_add(ctx, arch), f"seccomp_arch_add({arch:#x})")


def arch_remove(ctx: int, arch: int) -> None:
    """seccomp_arch_remove(3)."""
    _check(lib().seccomp_arch_remove(ctx, arch), f"seccomp_arch_remove({arch:#x})")


def arch_exist(ctx: int, arch: int) -> bool:
    """seccomp_arch_exist(3): 0 if present, -EEXIST if not."""
    ret = int(lib().seccomp_arch_exist(ctx, arch))
    if ret == -errno.EEXIST:
        return False
    _check(ret, f"seccomp_arch_exist({arch:#x})")
    return True


def export_bpf(ctx: int) -> bytes:
    """seccomp_export_bpf(3) into a memfd, read back: the raw struct sock_filter array."""
    fd = os.memfd_create("sandboxmode-bpf", os.MFD_CLOEXEC)
    try:
        _check(lib().seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks: list[bytes] = []
        while size > 0:
            chunk = os.read(fd, size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def resolve_name(name: str) -> int:
    """seccomp_syscall_resolve_name(3) on the native architecture.

    Returns the number, a negative libseccomp pseudo-number for a call that exists only
    on other architectures, or NR_SCMP_ERROR (-1) for a name nobody knows.
    """
    return int(lib().seccomp_syscall_resolve_name(name.encode("ascii")))


def resolve_name_arch(arch: int, name: str) -> int:
    """seccomp_syscall_resolve_name_arch(3)."""
    return int(lib().seccomp_syscall_resolve_name_arch(arch, name.encode("ascii")))


def resolve_num_arch(arch: int, nr: int) -> str | None:
    """seccomp_syscall_resolve_num_arch(3): the name, or None if unknown."""
    ptr = lib().seccomp_syscall_resolve_num_arch(arch, nr)
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("ascii", "replace")
    finally:
        libc.free(ptr)


def api_get() -> int:
    """seccomp_api_get(3): the API level libseccomp detected for this kernel (>= 6 means
    user notification works, with the NEW_LISTENER flag)."""
    return int(lib().seccomp_api_get())


def version() -> tuple[int, int, int]:
    """seccomp_version(3): (major, minor, micro) of the loaded library."""
    v = lib().seccomp_version()
    if not v:
        return (0, 0, 0)
    return (int(v.contents.major), int(v.contents.minor), int(v.contents.micro))
