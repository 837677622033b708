"""The seccomp layer: an allowlist of system calls, compiled once, loaded per child.

Two halves, on purpose (seccomp(2)):

- `build_filter` runs in the zygote (or the host), once per (notify, extra) pair: it asks
  libseccomp to compile the allowlist into a classic-BPF program for the *native*
  architecture only and returns the raw ``struct sock_filter`` array. Compiling costs
  about a millisecond; doing it once keeps forks cheap.
- `load` runs in the child, last in the lockdown: it installs those bytes with the raw
  ``seccomp(SECCOMP_SET_MODE_FILTER)`` call. It needs no library, only ctypes.

Default action: ``SECCOMP_RET_USER_NOTIF`` when ``notify`` (a supervisor holding the
listener fd sees the call and its arguments and answers EPERM, seccomp_unotify(2)), else
``SECCOMP_RET_KILL_PROCESS``. Any other ABI -- i386 via ``int 0x80``, x32 (syscall
numbers with bit 30 set) -- is killed outright, never notified: libseccomp's
``SCMP_FLTATR_ACT_BADARCH`` covers both on x86_64 (2.5.4 emits ``nr >= 0x40000000 ->
bad arch``), and `build_filter` proves it on the compiled program with `run_filter`, a
small BPF interpreter, before returning it.

Signals to self: ``abort()`` is ``tgkill(getpid(), gettid(), SIGABRT)``, faulthandler
re-raises fatal signals the same way, ``os.kill(os.getpid(), ...)`` is ``kill``. The
child's pid is not known when the zygote compiles, and compiling per child is too slow,
so the rules compare the pid arguments with the placeholder `SELF_PLACEHOLDER` (larger
than any pid_max, so it can never match a real pid), and `load` rewrites those constants
to ``getpid()`` right before installing (`bind_self`). A process is then allowed to
signal itself only; Landlock's signal scoping (ABI >= 6) is a second, independent fence.

Child-side module: standard library and sandboxmode's ``_ffi`` only; libseccomp is loaded
by `build_filter` alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

from sandboxmode._ffi import libc
from sandboxmode._ffi import seccomp as scmp

__all__ = [
    "ALLOWED",
    "ARG_RULES",
    "SELF_PLACEHOLDER",
    "Cmp",
    "allowed_names",
    "bind_self",
    "build_filter",
    "load",
    "run_filter",
]

#: Stands for "the calling process's pid" in compiled rules; `bind_self` replaces it.
#: Above PID_MAX_LIMIT (4 194 304), so an unpatched program fails closed.
SELF_PLACEHOLDER: Final = 0x7EC05E1F

#: System calls allowed whatever their arguments. Enough for a forked CPython 3.11 that
#: already imported its modules (msgpack, ctypes, mmap, struct, zlib, bz2, lzma, json,
#: sandboxmode's child modules) to compute, allocate and talk over descriptors it
#: already holds. Names missing on the native architecture (``poll``, ``dup2`` on
#: aarch64) are skipped. Everything not listed here or in `ARG_RULES` takes the
#: default action; notably: open/openat/openat2/creat, stat/lstat (by path), socket,
#: socketpair, connect, bind, listen, accept, pipe2, clone/clone3/fork/vfork (so no
#: threads), execve/execveat, ptrace, process_vm_readv/writev, bpf, userfaultfd,
#: perf_event_open, io_uring_*, keyctl/add_key/request_key, mount/umount2/pivot_root/
#: chroot/unshare/setns, set*id, capset, personality, memfd_create, seccomp, prctl,
#: arch_prctl, kcmp, pidfd_*, ftruncate/fallocate (a child must not shrink a memfd the
#: host has mapped: the host would take SIGBUS), setsockopt, madvise-like
#: process_madvise, select/epoll (poll is enough for a call loop), wait4 (no children).
ALLOWED: Final[tuple[str, ...]] = (
    # Memory. mmap/mprotect are in ARG_RULES (no PROT_EXEC).
    "brk",
    "munmap",
    "mremap",  # realloc() of large blocks; keeps the existing protection
    "madvise",  # free(): MADV_DONTNEED; the privileged advices need caps we dropped
    "msync",  # mmap.flush() of a shared buffer
    # Synchronisation: the GIL and glibc locks use futexes even single-threaded.
    "futex",
    # I/O on descriptors the child already holds (the channel, buffer memfds). None of
    # these can name a new object: access stays what the host handed over.
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "lseek",
    "recvmsg",
    "sendmsg",
    "recvfrom",
    "sendto",  # on a connected socket only: there is no other kind here
    "shutdown",
    "getsockname",
    "getpeername",
    "getsockopt",  # socket.socket(fileno=...) reads SO_TYPE/SO_PROTOCOL
    "close",
    "close_range",
    "fstat",
    "poll",
    "ppoll",
    # Aliases of held descriptors (os.dup, mmap.mmap(fd) dups its fd); bounded by
    # RLIMIT_NOFILE, and an alias grants nothing the original did not.
    "dup",
    "dup2",
    "dup3",
    # Identity and accounting: read-only facts about this process.
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "getpgrp",
    "getrusage",
    "times",
    "getrlimit",
    "uname",  # platform/os.uname; the UTS namespace shows a fixed host name
    "getcwd",  # "/" of the empty root
    "sched_yield",
    # Time. Usually served by the vDSO; the syscall remains for CPU-time clocks
    # (time.process_time) and as the vDSO's fallback.
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "nanosleep",
    "clock_nanosleep",
    # Randomness: os.urandom, hash seeds, random.seed().
    "getrandom",
    # Signals delivered to and handled by this process (faulthandler, KeyboardInterrupt
    # style handlers). Sending is in ARG_RULES (self only).
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "restart_syscall",  # resumes a sleep interrupted by a handled signal
    # The end.
    "exit",
    "exit_group",
)


class Cmp(NamedTuple):
    """One argument comparison: ``args[arg] <op> a`` (MASKED_EQ: ``args[arg] & a == b``)."""

    arg: int
    op: int
    a: int
    b: int = 0


_NO_EXEC = Cmp(2, scmp.SCMP_CMP_MASKED_EQ, libc.PROT_EXEC, 0)
_SELF = SELF_PLACEHOLDER

#: System calls allowed only with some arguments. Each entry is one alternative; all its
#: comparisons must hold (libseccomp ANDs within a rule, ORs between rules).
ARG_RULES: Final[tuple[tuple[str, tuple[Cmp, ...]], ...]] = (
    # W^X: memory may be mapped or re-protected, never executable. New code could only
    # come from a file (open is denied) or from memory the sandbox wrote.
    ("mmap", (_NO_EXEC,)),
    ("mprotect", (_NO_EXEC,)),
    # fstat(): glibc >= 2.33 implements it as newfstatat(fd, "", buf, AT_EMPTY_PATH).
    # With AT_EMPTY_PATH a *non-empty* path still resolves (relative to fd or the cwd),
    # so this also answers stat() on paths -- harmless only because the child sits in
    # an empty chroot (its answer is always ENOENT) and Landlock cannot restrict stat.
    ("newfstatat", (Cmp(3, scmp.SCMP_CMP_MASKED_EQ, libc.AT_EMPTY_PATH, libc.AT_EMPTY_PATH),)),
    # fcntl: descriptor flags and status flags, CLOEXEC dups (Python's _Py_dup). Not
    # F_SETOWN/F_SETSIG (signals to other processes), locks, leases, seals, pipe sizes.
    *(
        ("fcntl", (Cmp(1, scmp.SCMP_CMP_EQ, cmd),))
        for cmd in (libc.F_GETFD, libc.F_SETFD, libc.F_GETFL, libc.F_SETFL, libc.F_DUPFD_CLOEXEC)
    ),
    # ioctl: a tiny, information-free set. TCGETS answers isatty() (ENOTTY here);
    # FIONBIO is socket.setblocking(); FIONREAD a pending-byte count; FIOCLEX/FIONCLEX
    # are os.set_inheritable(). Never TIOCSTI (pushes input into a terminal).
    *(
        ("ioctl", (Cmp(1, scmp.SCMP_CMP_EQ, req),))
        for req in (libc.TCGETS, libc.FIONBIO, libc.FIONREAD, libc.FIOCLEX, libc.FIONCLEX)
    ),
    # getrlimit() is prlimit64(0, res, NULL, &old) in glibc: read-only, on self.
    ("prlimit64", (Cmp(0, scmp.SCMP_CMP_EQ, 0), Cmp(2, scmp.SCMP_CMP_EQ, 0))),
    # os.sched_getaffinity(0): on self only; any other pid would probe the host's pids.
    ("sched_getaffinity", (Cmp(0, scmp.SCMP_CMP_EQ, 0),)),
    # Signals to self only (see the module docstring; `bind_self` fills in the pid).
    ("kill", (Cmp(0, scmp.SCMP_CMP_EQ, _SELF),)),
    ("tkill", (Cmp(0, scmp.SCMP_CMP_EQ, _SELF),)),
    ("tgkill", (Cmp(0, scmp.SCMP_CMP_EQ, _SELF), Cmp(1, scmp.SCMP_CMP_EQ, _SELF))),
)


def allowed_names() -> tuple[str, ...]:
    """Every system call name the filter can allow, conditionally or not (sorted)."""
    return tuple(sorted({*ALLOWED, *(name for name, _ in ARG_RULES)}))


# --- compiling (zygote / host) ---------------------------------------------------------------


def _resolve(name: str) -> int | None:
    """Native number of ``name``; None if only other architectures have it; ValueError if
    no architecture has it."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"not a system call name: {name!r}")
    nr = scmp.resolve_name(name)
    if nr == scmp.NR_SCMP_ERROR:
        raise ValueError(f"unknown system call name: {name!r}")
    return nr if nr >= 0 else None


def build_filter(
    *, notify: bool, extra: Sequence[str] = (), unsafe_allow_all: bool = False
) -> bytes:
    """Compile the allowlist (plus ``extra`` names) to BPF for the native architecture.

    Args:
        notify: default action SECCOMP_RET_USER_NOTIF (supervised) instead of
            SECCOMP_RET_KILL_PROCESS.
        extra: more system call names to allow unconditionally (``Policy.extra_syscalls``).
            A name that no architecture knows raises ValueError; a name that exists only
            on other architectures is ignored.
        unsafe_allow_all: default action ALLOW (debugging only); foreign ABIs are still
            killed.

    Returns:
        The raw ``struct sock_filter`` array (8 bytes per instruction) for `load`.

    Raises:
        ValueError: an unknown name in ``extra``.
        OSError: libseccomp is missing (the message names it) or failed, or the compiled
            program does not kill foreign-ABI calls.
    """
    if isinstance(extra, str):
        raise TypeError("extra must be a sequence of names, not a string")
    scmp.lib()  # missing library: a clear OSError before anything else
    extra_nrs = {name: _resolve(name) for name in extra}
    unconditional = {name: _resolve(name) for name in ALLOWED} | extra_nrs

    if unsafe_allow_all:
        default = scmp.SCMP_ACT_ALLOW
    elif notify:
        default = scmp.SCMP_ACT_NOTIFY
    else:
        default = scmp.SCMP_ACT_KILL_PROCESS
    ctx = scmp.init(default)
    try:
        # Native architecture only (seccomp_init adds it); anything else is killed,
        # never notified: a notification's nr would be read in the wrong table.
        scmp.attr_set(ctx, scmp.SCMP_FLTATR_ACT_BADARCH, scmp.SCMP_ACT_KILL_PROCESS)
        # A binary tree of syscall numbers instead of a linear scan; optional.
        with contextlib.suppress(OSError):
            scmp.attr_set(ctx, scmp.SCMP_FLTATR_CTL_OPTIMIZE, 2)
        if not unsafe_allow_all:
            for nr in unconditional.values():
                if nr is not None:
                    scmp.rule_add_array(ctx, scmp.SCMP_ACT_ALLOW, nr)
            for name, cmps in ARG_RULES:
                if name in unconditional:
                    continue  # `extra` already allows it whatever the arguments
                nr = _resolve(name)
                if nr is not None:
                    scmp.rule_add_array(
                        ctx,
                        scmp.SCMP_ACT_ALLOW,
                        nr,
                        [scmp.ArgCmp(c.arg, c.op, c.a, c.b) for c in cmps],
                    )
        bpf = scmp.export_bpf(ctx)
        native = scmp.arch_native()
    finally:
        scmp.release(ctx)
    _verify_foreign_abis_killed(bpf, native)
    return bpf


def _verify_foreign_abis_killed(bpf: bytes, native: int) -> None:
    """Fail closed unless the program kills i386 and x32 calls (on x86_64) and any
    other architecture token."""
    probes = [(39, libc.AUDIT_ARCH_I386), (0, 0x40000028)]  # i386 getpid... ARM EABI
    if native == libc.AUDIT_ARCH_X86_64:
        # x32 getpid/read/socket: bit 30 set on the x86_64 arch token.
        probes += [(libc.X32_SYSCALL_BIT | nr, native) for nr in (39, 0, 41, 0x3FFFFFFF)]
    for nr, arch in probes:
        if arch == native and not nr & libc.X32_SYSCALL_BIT:
            continue
        action = run_filter(bpf, nr=nr, arch=arch)
        if action != libc.SECCOMP_RET_KILL_PROCESS:
            raise OSError(
                errno.ENOTSUP,
                f"libseccomp {'.'.join(map(str, scmp.version()))} compiled a filter that "
                f"does not kill system call {nr:#x} of architecture {arch:#x} "
                f"(action {action:#x}); refusing to use it",
            )


# --- classic BPF, as the kernel runs it (enough for libseccomp's output) ----------------

_DATA = struct.Struct("<iIQ6Q")  # struct seccomp_data


def run_filter(
    bpf: bytes,
    *,
    nr: int,
    arch: int,
    args: Sequence[int] = (0, 0, 0, 0, 0, 0),
    ip: int = 0,
) -> int:
    """Evaluate a seccomp BPF program on one ``struct seccomp_data``; return the 32-bit
    action value (SECCOMP_RET_*). For self-checks and tests: no process is involved.

    Implements the classic BPF instructions a seccomp program may use (seccomp(2):
    loads of the data, scratch memory, ALU, jumps, returns); raises ValueError on
    anything else, or on a program that runs off its end.
    """
    if len(bpf) % 8 or not bpf:
        raise ValueError("a BPF program is a non-empty array of 8-byte instructions")
    full = (*args, 0, 0, 0, 0, 0, 0)[:6]
    data = _DATA.pack(ctypes.c_int32(nr).value, arch, ip, *(a & 0xFFFFFFFFFFFFFFFF for a in full))
    insns = list(struct.iter_unpack("<HBBI", bpf))
    a = x = 0
    mem = [0] * 16
    pc = 0
    mask = 0xFFFFFFFF
    while pc < len(insns):
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x00:  # BPF_LD
            mode = code & 0xE0
            if mode == 0x20 and code & 0x18 == 0x00:  # BPF_ABS | BPF_W
                if k % 4 or k + 4 > len(data):
                    raise ValueError(f"load outside seccomp_data at offset {k}")
                a = int.from_bytes(data[k : k + 4], "little")
            elif mode == 0x00:  # BPF_IMM
                a = k
            elif mode == 0x60:  # BPF_MEM
                a = mem[k]
            elif mode == 0x80:  # BPF_LEN
                a = len(data)
            else:
                raise ValueError(f"unsupported load {code:#x}")
        elif cls == 0x01:  # BPF_LDX
            mode = code & 0xE0
            if mode == 0x00:
                x = k
            elif mode == 0x60:
                x = mem[k]
            elif mode == 0x80:
                x = len(data)
            else:
                raise ValueError(f"unsupported ldx {code:#x}")
        elif cls == 0x02:  # BPF_ST
            mem[k] = a
        elif cls == 0x03:  # BPF_STX
            mem[k] = x
        elif cls == 0x04:  # BPF_ALU
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op == 0x00:
                a = (a + src) & mask
            elif op == 0x10:
                a = (a - src) & mask
            elif op == 0x20:
                a = (a * src) & mask
            elif op == 0x30:
                a = a // src if src else 0
            elif op == 0x40:
                a |= src
            elif op == 0x50:
                a &= src
            elif op == 0x60:
                a = (a << src) & mask if src < 32 else 0
            elif op == 0x70:
                a = a >> src if src < 32 else 0
            elif op == 0x80:
                a = -a & mask
            elif op == 0x90:
                a = a % src if src else 0
            elif op == 0xA0:
                a ^= src
            else:
                raise ValueError(f"unsupported alu {code:#x}")
        elif cls == 0x05:  # BPF_JMP
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op == 0x00:  # JA
                pc += k
                continue
            if op == 0x10:
                taken = a == src
            elif op == 0x20:
                taken = a > src
            elif op == 0x30:
                taken = a >= src
            elif op == 0x40:
                taken = bool(a & src)
            else:
                raise ValueError(f"unsupported jump {code:#x}")
            pc += jt if taken else jf
        elif cls == 0x06:  # BPF_RET
            return a if code & 0x18 == 0x10 else k
        elif cls == 0x07:  # BPF_MISC
            if code & 0xF8 == 0x00:
                x = a
            elif code & 0xF8 == 0x80:
                a = x
            else:
                raise ValueError(f"unsupported misc {code:#x}")
        else:  # pragma: no cover -- three bits, all handled
            raise ValueError(f"bad instruction {code:#x}")
    raise ValueError("BPF program ran off its end")


_JEQ_K: Final = 0x15  # BPF_JMP | BPF_JEQ | BPF_K


def bind_self(bpf: bytes, pid: int) -> bytes:
    """Replace `SELF_PLACEHOLDER` in the program's ``JEQ #k`` instructions with ``pid``.

    libseccomp compiles ``args[i] == SELF_PLACEHOLDER`` to a compare of the high word
    with 0 and of the low word with the placeholder; pids are < 2**22, so only the low
    word changes.
    """
    if not 0 < pid < SELF_PLACEHOLDER:
        raise ValueError(f"not a pid: {pid}")
    out = bytearray(bpf)
    for off in range(0, len(out) - 7, 8):
        code, _jt, _jf, k = struct.unpack_from("<HBBI", out, off)
        if code == _JEQ_K and k == SELF_PLACEHOLDER:
            struct.pack_into("<I", out, off + 4, pid)
    return bytes(out)


# --- loading (child) ----------------------------------------------------------------------


def load(bpf: bytes, *, notify: bool) -> int | None:
    """Install ``bpf`` on the calling process; return the listener fd when ``notify``.

    Uses the raw ``seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`` system call
    (seccomp(2)); with ``notify``, flags is SECCOMP_FILTER_FLAG_NEW_LISTENER and the
    result is a close-on-exec listener fd for seccomp_unotify(2). The caller must be
    single-threaded (the filter applies to the calling thread and its future children;
    TSYNC is not used) and must have set no_new_privs: this is checked, because without
    it the kernel would accept the filter only from a CAP_SYS_ADMIN caller, silently
    making the layer depend on privilege.

    After the call returns the filter is in force: the caller may only use allowed
    system calls from here on.
    """
    if len(bpf) % 8 or not 0 < len(bpf) // 8 <= libc.BPF_MAXINSNS:
        raise ValueError(f"not a BPF program of 1..{libc.BPF_MAXINSNS} instructions")
    if libc.check(libc.prctl(libc.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), "prctl") != 1:
        raise RuntimeError("no_new_privs must be set before loading the seccomp filter")
    program = bind_self(bpf, os.getpid())
    buf = ctypes.create_string_buffer(program, len(program))
    prog = libc.SockFprog(len(program) // 8, ctypes.addressof(buf))
    flags = libc.SECCOMP_FILTER_FLAG_NEW_LISTENER if notify else 0
    ret = libc.check(
        libc.raw_syscall(libc.SYS.seccomp, libc.SECCOMP_SET_MODE_FILTER, flags, libc.addr(prog)),
        "seccomp(SECCOMP_SET_MODE_FILTER)",
    )
    return ret if notify else None
