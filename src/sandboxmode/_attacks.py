"""Hostile functions of the containment suite (`sandboxmode.selftest`).

Each function does what a malicious input would make a vulnerable parser do, for real:
run directly (not sandboxed) it succeeds. The convention the suite relies on:

* a function **returns** (a short description of what it achieved) only when the attack
  worked: any normal return from inside a sandbox counts as an escape;
* it raises `Contained` when it ran to the end and found nothing to take (an empty
  directory, no secret in memory), and lets every other error propagate.

Every attack is bounded (a "fork bomb" forks at most ``limit`` times, a "memory bomb"
stops at ``limit`` bytes), so that running the suite with a layer switched off can never
harm the machine, only show that the attack got further than it should have.

Signals sent to the host and the zygote are SIGURG, whose default action is to do
nothing: the kernel's permission check is the same as for SIGKILL, and a hole in a
layer under test must not end the run that is measuring it.

System calls without a Python wrapper go through ``libc.syscall`` (x86_64 numbers, `NR`).
This module is imported by the zygote (sandboxed functions must be), so it imports only
the standard library and sandboxmode's child-side modules.
"""

from __future__ import annotations

import ctypes
import gc
import mmap
import os
import pickle
import re
import signal
import socket
import stat
import struct
import threading
import time
from typing import Any, Final

from sandboxmode._ffi import libc
from sandboxmode._ffi.pybuffer import buffer_address
from sandboxmode._wire import codec
from sandboxmode._wire.frame import HEADER, MAGIC, FrameKind, send_frame

__all__ = ["NR", "Contained", "libc"]

PAGE: Final = mmap.PAGESIZE

#: x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
NR: Final[dict[str, int]] = {
    "mmap": 9, "mprotect": 10, "ioctl": 16, "msync": 26, "shmget": 29, "shmctl": 31,
    "clone": 56, "vfork": 58, "execve": 59, "kill": 62, "uname": 63, "fcntl": 72,
    "ptrace": 101, "syslog": 103, "setuid": 105, "capget": 125, "capset": 126,
    "rt_sigqueueinfo": 129, "personality": 135, "setpriority": 141, "getpriority": 140,
    "modify_ldt": 154, "pivot_root": 155, "prctl": 157, "chroot": 161, "mount": 165,
    "umount2": 166, "sethostname": 170, "sched_setaffinity": 203,
    "sched_getaffinity": 204, "tgkill": 234, "add_key": 248, "keyctl": 250,
    "newfstatat": 262, "unshare": 272, "perf_event_open": 298, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "seccomp": 317, "memfd_create": 319,
    "bpf": 321, "execveat": 322, "userfaultfd": 323, "pkey_mprotect": 329,
    "pidfd_send_signal": 424, "io_uring_setup": 425, "pidfd_open": 434, "clone3": 435,
    "openat2": 437, "pidfd_getfd": 438,
}

AT_FDCWD: Final = -100
AT_EMPTY_PATH: Final = 0x1000
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000
#: Namespaces an attacker would unshare to get capabilities over fresh copies.
ALL_NAMESPACES: Final = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET

SECRET_RE: Final = "[0-9a-f]{32}"  # what follows the secret's public prefix


class Contained(Exception):
    """The attack ran to its end and got nothing: the sandbox held."""


# --------------------------------------------------------------------------------------
# helpers


def _sc(name: str, *args: Any) -> int:
    """Raw system call by name; OSError on failure. Arguments: ints, str/bytes (passed
    as NUL-terminated C strings) or ctypes objects (passed by address); the temporaries
    stay alive until the call has returned."""
    keep: list[Any] = []
    raw: list[int] = []
    for a in args:
        if isinstance(a, (str, bytes)):
            keep.append(_cstr(a))
            raw.append(ctypes.addressof(keep[-1]))
        elif isinstance(a, int):
            raw.append(a)
        else:
            keep.append(a)
            raw.append(ctypes.addressof(a))
    ret = libc.raw_syscall(NR[name], *raw)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return ret


def _cstr(s: str | bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(s.encode() if isinstance(s, str) else s)


def _addr(obj: Any) -> int:
    return ctypes.addressof(obj)


def _argv(items: list[str]) -> ctypes.Array[ctypes.c_char_p]:
    arr = (ctypes.c_char_p * (len(items) + 1))()
    for i, s in enumerate(items):
        arr[i] = s.encode()
    arr[len(items)] = None
    return arr


def _open_fds(limit: int = 1024) -> list[tuple[int, os.stat_result]]:
    """Every descriptor this process holds, found by fstat (no /proc needed)."""
    out = []
    for fd in range(limit):
        try:
            out.append((fd, os.fstat(fd)))
        except OSError:
            continue
    return out


def _find_secret(data: bytes | str, prefix: str) -> str | None:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    m = re.search(re.escape(prefix) + SECRET_RE, text)
    return m.group(0) if m else None


_readonly_address = buffer_address


class _Code:
    """Machine code copied into a fresh mapping (RWX, or RW then re-protected)."""

    def __init__(self, code: bytes, how: str) -> None:
        rw = libc.PROT_READ | libc.PROT_WRITE
        rx = libc.PROT_READ | libc.PROT_EXEC
        flags = libc.MAP_PRIVATE | libc.MAP_ANONYMOUS
        first = rw | libc.PROT_EXEC if how == "rwx" else rw
        addr = libc.mmap(None, PAGE, first, flags, -1, 0)
        if addr in (None, libc.MAP_FAILED):
            err = ctypes.get_errno()
            raise OSError(err, f"mmap(PROT_{'READ|WRITE|EXEC' if how == 'rwx' else 'READ|WRITE'})"
                          f": {os.strerror(err)}")
        self.addr = int(addr)
        ctypes.memmove(self.addr, code, len(code))
        if how == "mprotect":
            libc.check(libc.mprotect(self.addr, PAGE, rx), "mprotect(PROT_READ|PROT_EXEC)")
        elif how == "pkey":
            _sc("pkey_mprotect", self.addr, PAGE, rx, 0)

    def __call__(self) -> int:
        return int(ctypes.CFUNCTYPE(ctypes.c_long)(self.addr)())


#: mov eax, 42; ret
RET42: Final = b"\xb8\x2a\x00\x00\x00\xc3"
#: mov eax, 20 (i386 getpid); int 0x80; ret
INT80_GETPID: Final = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"
#: mov eax, 0x40000027 (x32 getpid); syscall; ret
X32_GETPID: Final = b"\xb8\x27\x00\x00\x40\x0f\x05\xc3"


def tiny_elf(exit_code: int) -> bytes:
    """A complete static x86_64 ELF executable that does ``exit(exit_code)`` (132 bytes)."""
    base = 0x400000
    code = (b"\xbf" + struct.pack("<I", exit_code)  # mov edi, code
            + b"\xb8\x3c\x00\x00\x00"  # mov eax, 60 (exit)
            + b"\x0f\x05")  # syscall
    ehsize, phsize = 64, 56
    size = ehsize + phsize + len(code)
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, 2, 0x3E, 1, base + ehsize + phsize,
                       ehsize, 0, 0, ehsize, phsize, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return ehdr + phdr + code


def _channel() -> int:
    """The sandbox's channel: the one socket it holds."""
    for fd, st in _open_fds(256):
        if stat.S_ISSOCK(st.st_mode):
            return fd
    raise Contained("no socket to forge frames on")


def _forge(kind: int, body: bytes, fds: tuple[int, ...] = ()) -> None:
    sock = socket.socket(fileno=os.dup(_channel()))
    try:
        send_frame(sock, kind, body, list(fds))
    finally:
        sock.close()


# --------------------------------------------------------------------------------------
# a harmless target and the pickle bomb


def ping() -> str:
    return "pong"


class PickleBomb:
    """Unpickling it runs ``os.mkdir(path)``: the proof that a host unpickled output."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


def unpickle(body: bytes) -> str:
    """What a host that trusted sandbox output would do (demonstration only)."""
    # Never on the host's real path: selftest runs this only in a throwaway forked child,
    # to show what a host that unpickled sandbox output would suffer.
    pickle.loads(bytes(body))  # the point of the demonstration
    return "unpickling ran the payload"


# --------------------------------------------------------------------------------------
# files and devices


def read_file(path: str) -> str:
    with open(path, "rb") as f:
        return f"read {len(f.read(1 << 16))} bytes of {path}"


def write_file(path: str) -> str:
    with open(path, "ab") as f:
        f.write(b"pwned\n")
    return f"appended to {path}"


def create_file(path: str) -> str:
    with open(path, "x") as f:
        f.write("pwned")
    return f"created {path}"


def truncate_file(path: str) -> str:
    os.truncate(path, 0)
    return f"truncated {path}"


def unlink_file(path: str) -> str:
    os.unlink(path)
    return f"removed {path}"


def rename_file(path: str, new: str) -> str:
    os.rename(path, new)
    return f"moved {path} to {new}"


def make_dir(path: str) -> str:
    os.mkdir(path)
    return f"made {path}"


def make_symlink(target: str, path: str) -> str:
    os.symlink(target, path)
    return f"linked {path} -> {target}"


def make_hardlink(target: str, path: str) -> str:
    os.link(target, path)
    return f"hard-linked {path} to {target}"


def chmod_file(path: str) -> str:
    os.chmod(path, 0o777)
    return f"made {path} world-writable"


def list_dir(path: str) -> str:
    names = os.listdir(path)
    if not names:
        raise Contained(f"{path} is empty here")
    return f"{path} lists {sorted(names)[:8]}"


def stat_path(path: str) -> str:
    return f"{path} has {os.stat(path).st_size} bytes"


def stat_empty_path(path: str) -> str:
    """newfstatat(AT_FDCWD, path, buf, AT_EMPTY_PATH): the form the filter must allow for
    fstat(); with a non-empty path it still resolves the path."""
    buf = ctypes.create_string_buffer(256)
    _sc("newfstatat", AT_FDCWD, path, buf, AT_EMPTY_PATH)
    size = struct.unpack_from("<q", buf.raw, 48)[0]
    return f"{path} has {size} bytes (newfstatat with AT_EMPTY_PATH)"


def access_path(path: str) -> str:
    if not os.access(path, os.F_OK):
        raise Contained(f"{path} does not exist here")
    return f"{path} exists"


def chdir_escape(depth: int = 64) -> str:
    """The classic chroot break: climb with '..' and look around."""
    for _ in range(depth):
        os.chdir("..")
    names = os.listdir(".")
    if not names:
        raise Contained("still in an empty root")
    return f"climbed out: / lists {sorted(names)[:8]}"


def openat2_read(path: str) -> str:
    how = struct.pack("<QQQ", os.O_RDONLY | os.O_CLOEXEC, 0, 0)
    hb = _cstr(how)
    fd = _sc("openat2", AT_FDCWD, path, hb, len(how))
    try:
        return f"read {len(os.read(fd, 4096))} bytes of {path} via openat2"
    finally:
        os.close(fd)


def open_by_handle(handle: bytes, handle_type: int, mount_path: str | None) -> str:
    """open_by_handle_at: open a file by inode handle, bypassing paths ("shocker")."""
    raw = bytes(handle)
    fh = _cstr(struct.pack("<Ii", len(raw), handle_type) + raw)
    mount_fd = os.open(mount_path, os.O_RDONLY | os.O_DIRECTORY) if mount_path else AT_FDCWD
    try:
        fd = _sc("open_by_handle_at", mount_fd, fh, os.O_RDONLY)
    finally:
        if mount_path:
            os.close(mount_fd)
    try:
        return f"opened a file by handle, read {len(os.read(fd, 4096))} bytes"
    finally:
        os.close(fd)


def name_to_handle(path: str) -> tuple[bytes, int]:
    """Host side helper: the handle of ``path`` (name_to_handle_at needs no privilege)."""
    buf = ctypes.create_string_buffer(8 + 128)
    struct.pack_into("<I", buf, 0, 128)
    mount_id = ctypes.c_int()
    _sc("name_to_handle_at", AT_FDCWD, path, buf, mount_id, 0)
    n, htype = struct.unpack_from("<Ii", buf.raw, 0)
    return buf.raw[8:8 + n], htype


def mknod_device(path: str) -> str:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return f"made a character device at {path}"


def read_device(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        return f"read {len(os.read(fd, 8192))} bytes from {path}"
    finally:
        os.close(fd)


def write_device(path: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    try:
        return f"wrote {os.write(fd, b'x')} byte to {path}"
    finally:
        os.close(fd)


def open_pty() -> str:
    fd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    os.close(fd)
    return "opened a new pseudo-terminal"


# --------------------------------------------------------------------------------------
# /proc of other processes


def proc_read_mem(pid: int, address: int, prefix: str) -> str:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
        f.seek(address)
        data = f.read(len(prefix) + 32)
    found = _find_secret(data, prefix)
    if not found:
        raise Contained("the memory read did not hold the secret")
    return f"read the host secret {found} from /proc/{pid}/mem"


def proc_write_mem(pid: int, address: int) -> str:
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as f:
        f.seek(address)
        f.write(b"PWNED")
    return f"wrote into the memory of process {pid}"


def proc_environ(pid: int, name: str) -> str:
    """Read another process's environment (the one it was started with) and look for
    the variable ``name`` it is known to have."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = f.read().split(b"\0")
    if not any(v.startswith(name.encode() + b"=") for v in env):
        raise Contained(f"no {name} in that environment")
    return f"read the {len(env)} variables of process {pid}, {name} among them"


def proc_list_fds(pid: int) -> str:
    return f"process {pid} holds descriptors {sorted(os.listdir(f'/proc/{pid}/fd'))[:16]}"


def proc_open_fd(pid: int, fd: int, prefix: str) -> str:
    with open(f"/proc/{pid}/fd/{fd}", "rb") as f:
        found = _find_secret(f.read(4096), prefix)
    if not found:
        raise Contained("the reopened descriptor held no secret")
    return f"reopened descriptor {fd} of {pid}: {found}"


def proc_maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        lines = f.read().splitlines()
    return f"read the address-space layout of {pid} ({len(lines)} mappings)"


def self_mem_write() -> str:
    """Write a read-only page through /proc/self/mem, which ignores page protection
    (FOLL_FORCE): how a W^X policy is bypassed without mprotect."""
    page = libc.mmap(None, PAGE, libc.PROT_READ, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS, -1, 0)
    if page in (None, libc.MAP_FAILED):
        raise MemoryError("mmap")
    with open("/proc/self/mem", "r+b", buffering=0) as f:
        f.seek(int(page))
        f.write(b"\xc3")
    if ctypes.string_at(int(page), 1) != b"\xc3":
        raise Contained("the write did not land")
    return "wrote a read-only page through /proc/self/mem"


# --------------------------------------------------------------------------------------
# other processes' memory and tracing


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def vm_readv(pid: int, address: int, prefix: str) -> str:
    n = len(prefix) + 32
    buf = ctypes.create_string_buffer(n)
    local = _IoVec(_addr(buf), n)
    remote = _IoVec(address, n)
    _sc("process_vm_readv", pid, local, 1, remote, 1, 0)
    found = _find_secret(buf.raw, prefix)
    if not found:
        raise Contained("process_vm_readv read no secret")
    return f"read {found} out of process {pid}"


def vm_writev(pid: int, address: int) -> str:
    data = ctypes.create_string_buffer(b"PWNED", 5)
    local = _IoVec(_addr(data), 5)
    remote = _IoVec(address, 5)
    n = _sc("process_vm_writev", pid, local, 1, remote, 1, 0)
    return f"wrote {n} bytes into process {pid}"


PTRACE_TRACEME: Final = 0
PTRACE_ATTACH: Final = 16
PTRACE_SEIZE: Final = 0x4206


def ptrace_seize(pid: int) -> str:
    """PTRACE_SEIZE: attach without stopping the tracee (it is detached when we exit)."""
    _sc("ptrace", PTRACE_SEIZE, pid, 0, 0)
    return f"now tracing process {pid}"


def ptrace_attach(pid: int) -> str:
    _sc("ptrace", PTRACE_ATTACH, pid, 0, 0)
    return f"attached to and stopped process {pid}"


def ptrace_traceme() -> str:
    _sc("ptrace", PTRACE_TRACEME, 0, 0, 0)
    return "asked to be traced by the parent"


def pidfd_getfd(pid: int, fd: int, prefix: str) -> str:
    """Steal a descriptor out of another process (pidfd_getfd(2))."""
    pidfd = _sc("pidfd_open", pid, 0)
    try:
        stolen = _sc("pidfd_getfd", pidfd, fd, 0)
    finally:
        os.close(pidfd)
    try:
        found = _find_secret(os.pread(stolen, 4096, 0), prefix)
    finally:
        os.close(stolen)
    if not found:
        raise Contained("the stolen descriptor held no secret")
    return f"stole descriptor {fd} of {pid}: {found}"


KCMP_FILE: Final = 0


def kcmp_files(pid: int, fd: int) -> str:
    """kcmp(2) compares kernel objects of two processes: a probe of the host's files."""
    _sc("kcmp", pid, os.getpid(), KCMP_FILE, fd, 0)
    return f"compared descriptor {fd} of process {pid} with one of ours"


# --------------------------------------------------------------------------------------
# signals


def send_signal(pid: int, sig: int) -> str:
    os.kill(pid, sig)
    return f"signal {sig} delivered to {pid}"


def tgkill_signal(pid: int, sig: int) -> str:
    _sc("tgkill", pid, pid, sig)
    return f"signal {sig} delivered to thread {pid}"


def pidfd_signal(pid: int, sig: int) -> str:
    pidfd = _sc("pidfd_open", pid, 0)
    try:
        _sc("pidfd_send_signal", pidfd, sig, 0, 0)
    finally:
        os.close(pidfd)
    return f"signal {sig} delivered to {pid} through a pidfd"


def sigqueue(pid: int, sig: int) -> str:
    info = ctypes.create_string_buffer(128)
    struct.pack_into("<iii", info, 0, sig, 0, -1)  # si_signo, si_errno, si_code=SI_QUEUE
    _sc("rt_sigqueueinfo", pid, sig, info)
    return f"queued signal {sig} to {pid}"


def signal_everyone(sig: int, witness: int) -> str:
    """kill(-1, sig): signal every process this one may signal.

    kill(2) returns 0 even when every target refused, so success cannot be judged
    here: ``witness``, a process that reports what it receives, says whether the signal
    arrived."""
    os.kill(-1, sig)
    raise Contained("kill(-1) returned; whether anything arrived is for the targets to say")


F_SETSIG: Final = 10


def fcntl_setown(pid: int, sig: int, own: bool) -> str:
    """Make the kernel signal ``pid``: F_SETOWN + F_SETSIG + O_ASYNC on a pipe, then make
    the pipe readable. First F_SETOWN on a descriptor already held (``own``: skip that,
    for demonstrations, whose descriptors are shared with the test process).

    Whether the signal arrived is for the target to say (the suite's dummy reports it)."""
    if not own:
        _sc("fcntl", _open_fds(256)[0][0], libc.F_SETOWN, pid)
    r, w = os.pipe()
    try:
        _sc("fcntl", r, libc.F_SETOWN, pid)
        _sc("fcntl", r, F_SETSIG, sig)
        _sc("fcntl", r, libc.F_SETFL, os.O_ASYNC | os.O_NONBLOCK)
        os.write(w, b"x")
    finally:
        os.close(r)
        os.close(w)
    if own:
        return f"asked the kernel to send signal {sig} to process {pid}"
    raise Contained("the kernel was asked to signal; whether it did is for the target to say")


# --------------------------------------------------------------------------------------
# new processes, threads and programs


def do_fork() -> str:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return f"forked process {pid}"


def do_vfork() -> str:
    pid = _sc("vfork")
    if pid == 0:
        os._exit(0)
    return f"vforked process {pid}"


def do_clone(flags: int) -> str:
    pid = _sc("clone", flags | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return f"cloned process {pid} (flags {flags:#x})"


def do_clone3(flags: int) -> str:
    args = ctypes.create_string_buffer(struct.pack("<11Q", flags, 0, 0, 0, signal.SIGCHLD,
                                                   0, 0, 0, 0, 0, 0))
    pid = _sc("clone3", args, 88)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return f"clone3 made process {pid} (flags {flags:#x})"


def start_thread() -> str:
    t = threading.Thread(target=int)
    t.start()
    t.join()
    return "started a thread"


def spawn_process(path: str) -> str:
    pid = os.posix_spawn(path, [path], {})
    os.waitpid(pid, 0)
    return f"spawned {path} as process {pid}"


def fork_bomb(limit: int) -> str:
    """Fork until refused, at most ``limit`` times (each child exits at once)."""
    pids = []
    for _ in range(limit):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return f"forked {len(pids)} processes"


def exec_shell(code: int) -> str:
    os.execv("/bin/sh", ["sh", "-c", f"exit {code}"])


def execveat_shell(code: int) -> str:
    argv = _argv(["sh", "-c", f"exit {code}"])
    envp = _argv([])
    _sc("execveat", AT_FDCWD, "/bin/sh", argv, envp, 0)
    return "execveat returned"  # pragma: no cover - it does not


def memfd_exec(elf: bytes) -> str:
    """Write an executable into an anonymous memfd and run it: no file system needed."""
    fd = _sc("memfd_create", "x", 0)
    data = bytes(elf)
    while data:
        data = data[os.write(fd, data):]
    argv = _argv(["x"])
    envp = _argv([])
    _sc("execveat", fd, "", argv, envp, AT_EMPTY_PATH)
    return "execveat returned"  # pragma: no cover - it does not


# --------------------------------------------------------------------------------------
# network


def tcp_connect(host: str, port: int) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((host, port))
        s.sendall(b"hello from the sandbox")
    return f"connected to {host}:{port}"


def udp_send(host: str, port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"hello from the sandbox", (host, port))
    return f"sent a datagram to {host}:{port}"


def tcp_listen() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        return f"listening on port {s.getsockname()[1]}"


def unix_connect(path: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
    return f"connected to {path!r}"


def unix_bind(path: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
    return f"made a socket file at {path}"


def netlink_links(host_interfaces: list[str]) -> str:
    """Dump the network interfaces over NETLINK_ROUTE and look for the host's."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
        s.bind((0, 0))
        # nlmsghdr(len, RTM_GETLINK, NLM_F_REQUEST|NLM_F_DUMP, seq, pid) + ifinfomsg
        s.send(struct.pack("=IHHII", 32, 18, 0x301, 1, 0) + bytes(16))
        names: list[str] = []
        done = False
        while not done:
            data = s.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                mlen, mtype = struct.unpack_from("=IH", data, off)
                if mtype == 3 or mlen < 16:  # NLMSG_DONE
                    done = True
                    break
                if mtype == 16:  # RTM_NEWLINK: ifinfomsg, then attributes
                    a = off + 32
                    while a + 4 <= off + mlen:
                        alen, atype = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        if atype == 3:  # IFLA_IFNAME
                            names.append(data[a + 4:a + alen].split(b"\0")[0].decode())
                        a += (alen + 3) & ~3
                off += (mlen + 3) & ~3
    seen = sorted(set(names) & set(host_interfaces))
    if not seen:
        raise Contained(f"only {names} visible, none of the host's interfaces")
    return f"sees the host's interfaces {seen}"


def packet_socket() -> str:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)):
        return "opened a raw packet socket (can sniff every frame)"


def raw_icmp_socket() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP):
        return "opened a raw IP socket"


# --------------------------------------------------------------------------------------
# kernel attack surface


def io_uring() -> str:
    params = ctypes.create_string_buffer(120)
    fd = _sc("io_uring_setup", 4, params)
    os.close(fd)
    return "set up an io_uring"


def bpf_map() -> str:
    attr = ctypes.create_string_buffer(struct.pack("<IIII", 2, 4, 4, 1), 128)  # ARRAY map
    fd = _sc("bpf", 0, attr, 128)  # BPF_MAP_CREATE
    os.close(fd)
    return "created a BPF map"


def userfaultfd() -> str:
    fd = _sc("userfaultfd", os.O_CLOEXEC | 1)  # UFFD_USER_MODE_ONLY
    os.close(fd)
    return "made a userfaultfd"


def perf_event() -> str:
    # perf_event_attr (VER0, 64 bytes): software task clock of this process, user only.
    attr = ctypes.create_string_buffer(struct.pack("<IIQQQQQ", 1, 64, 1, 0, 0, 0, 0x60), 64)
    fd = _sc("perf_event_open", attr, 0, -1, -1, 0)
    os.close(fd)
    return "opened a perf event"


def keyctl_describe() -> str:
    buf = ctypes.create_string_buffer(256)
    n = _sc("keyctl", 6, -4 & 0xFFFFFFFF, buf, 256)  # DESCRIBE user keyring
    text = buf.raw[:min(n, 256)].rstrip(b"\0").decode(errors="replace")
    return f"read the user keyring: {text}"


def add_key() -> str:
    serial = _sc("add_key", "user", "sbm-selftest",
                 b"x", 1, -2 & 0xFFFFFFFF)  # KEY_SPEC_PROCESS_KEYRING
    return f"added key {serial} to a kernel keyring"


def modify_ldt() -> str:
    buf = ctypes.create_string_buffer(16)
    n = _sc("modify_ldt", 0, buf, 16)
    return f"read the LDT ({n} bytes)"


def syslog_size() -> str:
    n = _sc("syslog", 10, 0, 0)  # SYSLOG_ACTION_SIZE_BUFFER
    return f"the kernel log buffer holds {n} bytes"


def sysv_shm() -> str:
    """A System V segment is visible to every process of the IPC namespace."""
    shmid = _sc("shmget", 0, 4096, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
    _sc("shmctl", shmid, 0, 0)  # IPC_RMID
    return f"created shared memory segment {shmid}"


# --------------------------------------------------------------------------------------
# namespaces, mounts, identity


def _private(flags: int) -> None:
    """Demonstrations only: a throwaway namespace so nothing changes on the machine."""
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        flags |= CLONE_NEWUSER
    _sc("unshare", flags)
    if flags & CLONE_NEWUSER:  # map ourselves, or new files would have no owner
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                           ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    if flags & CLONE_NEWNS:
        libc.check(libc.mount(b"none", b"/", None, libc.MS_REC | libc.MS_PRIVATE, None),
                   "mount(MS_PRIVATE)")


def mount_tmpfs(target: str, private: bool) -> str:
    if private:
        _private(CLONE_NEWNS)
    _sc("mount", "none", target, "tmpfs", 0, 0)
    return f"mounted a tmpfs on {target}"


def umount_path(target: str, private: bool) -> str:
    if private:
        _private(CLONE_NEWNS)
        _sc("mount", "none", target, "tmpfs", 0, 0)
    _sc("umount2", target, 2)  # MNT_DETACH
    return f"unmounted {target}"


def pivot_root(new_root: str, private: bool) -> str:
    if private:
        _private(CLONE_NEWNS)
        _sc("mount", "none", new_root, "tmpfs", 0, 0)
        os.mkdir(os.path.join(new_root, "old"))
        os.chdir(new_root)
    _sc("pivot_root", ".", "old")
    return "pivoted the root"


def chroot_path(path: str) -> str:
    _sc("chroot", path)
    return f"chrooted into {path}"


def unshare_ns(flags: int) -> str:
    _sc("unshare", flags)
    return f"unshared namespaces {flags:#x}"


def setns_host(pid: int, nstype: int) -> str:
    pidfd = _sc("pidfd_open", pid, 0)
    try:
        _sc("setns", pidfd, nstype)
    finally:
        os.close(pidfd)
    return f"joined the namespaces ({nstype:#x}) of process {pid}"


def set_hostname(name: str, private: bool) -> str:
    if private:
        _private(CLONE_NEWUTS)
    _sc("sethostname", name, len(name))
    return f"set the host name to {name!r}"


def _effective_caps() -> int:
    header = libc.CapHeader(libc.LINUX_CAPABILITY_VERSION_3, 0)
    data = (libc.CapData * 2)()
    _sc("capget", header, data)
    return int(data[0].effective) | int(data[1].effective) << 32


def setuid_root() -> str:
    _sc("setuid", 0)
    caps = _effective_caps()
    if not caps:
        raise Contained("uid 0 but no capability")
    return f"setuid(0): capabilities {caps:#x}"


CAP_SYS_ADMIN: Final = 21


def capset_all(mask: int) -> str:
    """capset(2) to the capabilities ``mask`` (the host's: what a root host holds; for
    an unprivileged host, CAP_SYS_ADMIN, which it does not hold either)."""
    mask = mask or 1 << CAP_SYS_ADMIN
    header = libc.CapHeader(libc.LINUX_CAPABILITY_VERSION_3, 0)
    data = (libc.CapData * 2)()
    for i, d in enumerate(data):
        d.effective = d.permitted = (mask >> (32 * i)) & 0xFFFFFFFF
    _sc("capset", header, data)
    return f"raised the capabilities {mask:#x}"


def permitted_caps() -> int:
    """This process's permitted capabilities (host side helper)."""
    header = libc.CapHeader(libc.LINUX_CAPABILITY_VERSION_3, 0)
    data = (libc.CapData * 2)()
    _sc("capget", header, data)
    return int(data[0].permitted) | int(data[1].permitted) << 32


# --------------------------------------------------------------------------------------
# prctl and friends


def seccomp_filter() -> str:
    """Install a filter of our own (an allow-all one): the process's filter is its own."""
    prog = ctypes.create_string_buffer(struct.pack("<HBBI", 0x06, 0, 0, libc.SECCOMP_RET_ALLOW))
    fprog = libc.SockFprog(1, _addr(prog))
    libc.check(libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _sc("prctl", 22, 2, fprog, 0, 0)  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    return "installed a seccomp filter"


def set_dumpable() -> str:
    _sc("prctl", libc.PR_SET_DUMPABLE, 1, 0, 0, 0)
    return "made the process dumpable (ptrace-able, /proc readable by its uid)"


def clear_no_new_privs() -> str:
    _sc("prctl", libc.PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0)
    return "cleared no_new_privs"


def clear_pdeathsig() -> str:
    _sc("prctl", libc.PR_SET_PDEATHSIG, 0, 0, 0, 0)
    return "will outlive its parent"


READ_IMPLIES_EXEC: Final = 0x0400000


def personality() -> str:
    old = _sc("personality", 0xFFFFFFFF)
    _sc("personality", old | READ_IMPLIES_EXEC)
    return "set READ_IMPLIES_EXEC: readable memory is now executable"


TIOCSCTTY: Final = 0x540E


def tiocsti(own_terminal: bool) -> str:
    """Push a keystroke into a terminal's input queue (TIOCSTI)."""
    char = ctypes.c_char(b"x")
    if own_terminal:  # demonstration: a terminal of our own, made our controlling one
        os.setsid()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # closing our terminal hangs it up
        master, slave = os.openpty()
        _sc("ioctl", slave, TIOCSCTTY, 0)
        fds = [slave]
    else:
        master = -1
        fds = [fd for fd, _ in _open_fds(256)]
    try:
        for fd in fds:
            if libc.ioctl(fd, libc.TIOCSTI, _addr(char)) == 0:
                return f"injected a keystroke through descriptor {fd}"
        err = ctypes.get_errno()
        raise OSError(err, f"ioctl(TIOCSTI): {os.strerror(err)}")
    finally:
        if master >= 0:
            os.close(master)
            os.close(fds[0])


# --------------------------------------------------------------------------------------
# memory: W^X, inputs, foreign ABIs


def run_code_rwx() -> str:
    return f"ran machine code from an RWX mapping: {_Code(RET42, 'rwx')()}"


def run_code_mprotect() -> str:
    return f"ran machine code after mprotect(PROT_EXEC): {_Code(RET42, 'mprotect')()}"


def run_code_pkey() -> str:
    return f"ran machine code after pkey_mprotect(PROT_EXEC): {_Code(RET42, 'pkey')()}"


def run_code_heap() -> str:
    """Jump into machine code in ordinary (non-executable) memory."""
    buf = ctypes.create_string_buffer(RET42, PAGE)
    return f"ran machine code from the heap: {ctypes.CFUNCTYPE(ctypes.c_long)(_addr(buf))()}"


_CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def ctypes_callback() -> str:
    """A ctypes callback: libffi must make a small executable trampoline for it."""
    cb = _CMP(lambda a, b: 0)
    arr = (ctypes.c_int * 4)(4, 3, 2, 1)
    qsort = ctypes.CDLL(None).qsort
    qsort.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, _CMP]
    qsort.restype = None
    qsort(_addr(arr), 4, 4, cb)
    return "made executable memory for a ctypes callback"


def write_input_native(data: Any) -> str:
    """Native write into the (read-only) input buffer, as a buggy C parser would."""
    addr = _readonly_address(data)
    ctypes.memset(addr, 0x41, 1)
    return "wrote into the input buffer"


def mprotect_input(data: Any) -> str:
    """Make the input's pages writable, then write."""
    addr = _readonly_address(data)
    page = addr & ~(PAGE - 1)
    libc.check(libc.mprotect(page, PAGE, libc.PROT_READ | libc.PROT_WRITE),
               "mprotect(input, PROT_READ|PROT_WRITE)")
    ctypes.memset(addr, 0x41, 1)
    return "made the input writable and wrote into it"


def readonly_page() -> memoryview:
    """Demonstration helper: a read-only anonymous page with one byte in it."""
    m = mmap.mmap(-1, PAGE)
    m.write(b"input")
    view = memoryview(m).toreadonly()
    addr = _readonly_address(view)
    libc.check(libc.mprotect(addr, PAGE, libc.PROT_READ), "mprotect")
    return view


class _LinkMap(ctypes.Structure):
    pass


_LinkMap._fields_ = [("l_addr", ctypes.c_size_t), ("l_name", ctypes.c_char_p),
                     ("l_ld", ctypes.c_void_p), ("l_next", ctypes.POINTER(_LinkMap)),
                     ("l_prev", ctypes.POINTER(_LinkMap))]


class _RDebug(ctypes.Structure):
    _fields_ = [("r_version", ctypes.c_int), ("r_map", ctypes.POINTER(_LinkMap))]


def find_gadget(pattern: bytes = b"\xcd\x80") -> int:
    """Address of ``pattern`` (``int 0x80``) in an executable segment already mapped:
    the dynamic linker's list of loaded objects gives each one's program headers, read
    straight from memory (no system call, no /proc)."""
    rd = _RDebug.in_dll(ctypes.CDLL(None), "_r_debug")
    lm = rd.r_map
    while lm:
        m = lm.contents
        base = int(m.l_addr)
        if base and ctypes.string_at(base, 4) == b"\x7fELF":
            phoff = struct.unpack("<Q", ctypes.string_at(base + 32, 8))[0]
            phnum = struct.unpack("<H", ctypes.string_at(base + 56, 2))[0]
            for i in range(phnum):
                ptype, pflags, _o, vaddr, _p, filesz = struct.unpack(
                    "<IIQQQQ", ctypes.string_at(base + phoff + 56 * i, 40))
                if ptype == 1 and pflags & 1:  # PT_LOAD, PF_X
                    at = ctypes.string_at(base + vaddr, filesz).find(pattern)
                    if at >= 0:
                        return int(base + vaddr + at)
        lm = m.l_next
    raise Contained("no int 0x80 instruction in any executable page")


def int80_gadget() -> str:
    """The i386 system call ABI from 64-bit code: ``int 0x80`` found in an existing
    executable page (new executable memory cannot be made in the sandbox)."""
    ret = ctypes.CFUNCTYPE(ctypes.c_long)(find_gadget())()
    return f"int 0x80 returned {ret}"


def int80_shellcode() -> str:
    """Demonstration: i386 getpid through int 0x80 from an RWX page."""
    pid = _Code(INT80_GETPID, "rwx")() & 0xFFFFFFFF
    if pid != os.getpid():
        raise Contained(f"int 0x80 getpid returned {pid:#x}")
    return f"i386 getpid() through int 0x80 returned {pid}"


def x32_getpid() -> str:
    """An x32 system call number (bit 30 set) straight through libc's syscall()."""
    ret = libc.raw_syscall(0x40000000 | 39)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"x32 getpid: {os.strerror(err)}")
    return f"x32 getpid() returned {ret}"


# --------------------------------------------------------------------------------------
# descriptors and secrets


def scan_fds() -> str:
    fds = _open_fds()
    extra = [fd for fd, st in fds if not stat.S_ISSOCK(st.st_mode)]
    socks = [fd for fd, st in fds if stat.S_ISSOCK(st.st_mode)]
    if not extra and len(socks) <= 1:
        raise Contained(f"only the channel is open: {socks}")
    return f"holds descriptors {[fd for fd, _ in fds][:16]}"


def stdio_fds() -> str:
    held = [fd for fd in (0, 1, 2) if _try_fstat(fd)]
    if not held:
        raise Contained("no standard descriptors")
    return f"holds the host's standard descriptors {held}"


def _try_fstat(fd: int) -> bool:
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return not stat.S_ISSOCK(st.st_mode)


def inherited_secret(prefix: str) -> str:
    for fd, st in _open_fds():
        if stat.S_ISREG(st.st_mode):
            try:
                found = _find_secret(os.pread(fd, 4096, 0), prefix)
            except OSError:
                continue
            if found:
                return f"descriptor {fd} holds the secret {found}"
    raise Contained("no descriptor holds the secret")


def env_secret(prefix: str) -> str:
    found = _find_secret("\n".join(f"{k}={v}" for k, v in os.environ.items()), prefix)
    if not found:
        raise Contained(f"the environment has {len(os.environ)} variables, none secret")
    return f"found {found} in the environment"


def memory_secret(prefix: str) -> str:
    """Search every object this interpreter holds for the host's secret."""
    pattern = re.compile(re.escape(prefix) + SECRET_RE)
    for obj in gc.get_objects():
        for ref in gc.get_referents(obj):
            if isinstance(ref, str) and prefix in ref:
                m = pattern.search(ref)
            elif isinstance(ref, bytes) and prefix.encode() in ref:
                m = pattern.search(ref.decode("latin-1"))
            else:
                continue
            if m:
                return f"found {m.group(0)} in memory"
    raise Contained("no copy of the secret in this process's memory")


def host_address(address: int, prefix: str) -> str:
    """Read the host's secret at its host address, if that page exists here at all."""
    page = address & ~(PAGE - 1)
    if libc.raw_syscall(NR["msync"], page, PAGE, 1) < 0:  # MS_ASYNC; ENOMEM: unmapped
        raise Contained(f"address {address:#x} is not mapped here")
    found = _find_secret(ctypes.string_at(address, len(prefix) + 32), prefix)
    if not found:
        raise Contained(f"address {address:#x} holds something else here")
    return f"read {found} at the host's address"


def hostname(host_name: str) -> str:
    seen = os.uname().nodename
    if seen != host_name:
        raise Contained(f"the host name here is {seen!r}")
    return f"learned the host name {seen!r}"


def get_affinity(pid: int) -> str:
    mask = ctypes.create_string_buffer(128)
    _sc("sched_getaffinity", pid, 128, mask)
    return f"read the CPU affinity of process {pid} (so it exists)"


def set_affinity(pid: int) -> str:
    mask = ctypes.create_string_buffer(128)
    n = _sc("sched_getaffinity", 0, 128, mask)
    _sc("sched_setaffinity", pid, n, mask)
    return f"changed the CPU affinity of process {pid}"


def set_priority(pid: int, nice: int) -> str:
    _sc("setpriority", 0, pid, nice)  # PRIO_PROCESS
    return f"changed the priority of process {pid}"


# --------------------------------------------------------------------------------------
# resources


def memory_bomb(limit: int) -> str:
    hog = []
    total = 0
    while total < limit:
        chunk = bytearray(16 << 20)
        chunk[::PAGE] = b"x" * len(range(0, len(chunk), PAGE))  # touch every page
        hog.append(chunk)
        total += len(chunk)
    return f"allocated {total >> 20} MiB"


def address_space() -> str:
    size = 1 << 40
    addr = libc.mmap(None, size, libc.PROT_NONE,
                     libc.MAP_PRIVATE | libc.MAP_ANONYMOUS | libc.MAP_NORESERVE, -1, 0)
    if addr in (None, libc.MAP_FAILED):
        raise MemoryError("mmap of 1 TiB refused")
    libc.munmap(addr, size)
    return "reserved 1 TiB of address space"


def file_size(out: Any) -> str:
    """Grow a file beyond its size: the output buffer's memfd is the one file here."""
    for fd, st in _open_fds():
        if stat.S_ISREG(st.st_mode) and st.st_size == len(out):
            os.lseek(fd, 0, os.SEEK_END)
            n = os.write(fd, b"x" * (1 << 20))
            return f"grew descriptor {fd} by {n} bytes"
    raise Contained("no file to grow")


def grow_file(path: str) -> str:
    """Demonstration: grow a file by a MiB."""
    with open(path, "ab") as f:
        f.write(b"x" * (1 << 20))
    return f"grew {path} by 1 MiB"


def fd_exhaustion(limit: int) -> str:
    fds: list[int] = []
    try:
        while len(fds) < limit:
            fds.append(os.dup(0 if _try_fstat(0) else _open_fds(256)[0][0]))
    finally:
        for fd in fds:
            os.close(fd)
    return f"held {limit} more descriptors"


def cpu_spin(seconds: float | None) -> str:
    end = float("inf") if seconds is None else time.process_time() + seconds
    while time.process_time() < end:
        pass
    return f"spun {seconds} s of CPU"


def cpu_spin_ignoring_sigxcpu(seconds: float | None) -> str:
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    return cpu_spin(seconds)


def sleep_blocking_signals(seconds: float) -> str:
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
    time.sleep(seconds)
    return f"slept {seconds} s with every signal blocked"


# --------------------------------------------------------------------------------------
# output floods and codec bombs


def huge_result(n: int) -> bytes:
    return b"x" * n


def deep_result(depth: int) -> Any:
    v: Any = 0
    for _ in range(depth):
        v = [v]
    return v


def many_items(n: int) -> list[int]:
    return [0] * n


def not_plain(path: str) -> Any:
    return PickleBomb(path)


def forged_pickle(path: str) -> None:
    """A RESULT frame whose body is a pickle that would mkdir(path) if unpickled."""
    _forge(FrameKind.RESULT, pickle.dumps(PickleBomb(path)))


def forged_ext(path: str) -> None:
    """A RESULT frame with a msgpack extension type carrying a pickle."""
    import msgpack  # type: ignore[import-untyped]

    _forge(FrameKind.RESULT, msgpack.packb(msgpack.ExtType(42, pickle.dumps(PickleBomb(path)))))


def forged_length() -> None:
    """A frame header announcing a 1 TiB body."""
    fd = os.dup(_channel())
    try:
        os.write(fd, HEADER.pack(MAGIC, FrameKind.RESULT, 0, 1 << 40))
    finally:
        os.close(fd)


def forged_fd() -> None:
    """A RESULT frame carrying a descriptor (the channel itself)."""
    _forge(FrameKind.RESULT, codec.encode("with a descriptor"), (_channel(),))


def garbage_flood(n: int) -> None:
    fd = os.dup(_channel())
    try:
        chunk = b"\xff" * 65536
        for _ in range(n // len(chunk)):
            os.write(fd, chunk)
    finally:
        os.close(fd)


def error_bomb(n: int) -> None:
    """An exception whose message is bigger than any result may be."""
    raise ValueError("x" * n)


def error_bomb_size(n: int) -> str:
    """Demonstration: unsandboxed, the whole message reaches the caller."""
    try:
        error_bomb(n)
    except ValueError as e:
        return f"the caller received a {len(str(e))}-character exception message"
    return "no exception"  # pragma: no cover


def many_frames(n: int) -> None:
    for _ in range(n):
        _forge(FrameKind.PONG, b"")


# --------------------------------------------------------------------------------------
# nesting


def nested_run() -> Any:
    import sandboxmode

    return sandboxmode.run(ping)


def nested_run_bypass() -> Any:
    """Switch the nesting guard off, then start a sandbox anyway."""
    import sandboxmode
    from sandboxmode import _child

    _child.IN_SANDBOX = False
    return sandboxmode.run(ping)

