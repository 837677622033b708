"""Each lockdown layer, in a real forked child: the attack works before, fails after.

Every test forks (``run_child``): the child runs a body that reports JSON messages through
a pipe and ``os._exit``s; the parent reads until EOF (no sleeps: a deadline only guards
against a hung child) and reaps it. An autouse fixture checks that no descriptor and no
child process leaked. Tests marked ``isolation`` also run as uid 65534 (see Makefile):
there the child first enters a user namespace, as the zygote does, before mounting or
chrooting.
"""

from __future__ import annotations

import bz2
import ctypes
import errno
import faulthandler
import gc
import json
import lzma
import mmap
import os
import random
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from sandboxmode._ffi import libc
from sandboxmode._ffi import seccomp as scmp
from sandboxmode._lockdown import caps, landlock, namespaces, notify, probe, rlimits, seccomp

X86_64 = libc.MACHINE == "x86_64"
ROOT = os.getuid() == 0
Send = Callable[[Any], None]

# --------------------------------------------------------------------------------------
# Harness


@dataclass
class Child:
    pid: int
    status: int
    messages: list[Any]

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def exit_code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None

    def describe(self) -> str:
        how = f"signal {self.signal}" if self.signal is not None else f"exit {self.exit_code}"
        return f"child {how}, messages {self.messages!r}"


def _frames(e: BaseException) -> list[str]:
    # Built by hand: traceback formatting reads source files (linecache), which a
    # locked-down child may not do.
    out = []
    tb = e.__traceback__
    while tb is not None:
        out.append(f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}")
        tb = tb.tb_next
    return out


def _child_main(body: Callable[[Send], None], w: int) -> None:
    code = 70
    try:

        def send(obj: Any) -> None:
            data = (json.dumps(obj) + "\n").encode()
            while data:
                data = data[os.write(w, data) :]

        try:
            # core_pattern may be a plain file name: no core files from killed children.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            body(send)
            code = 0
        except BaseException as e:
            send(
                {
                    "exception": type(e).__name__,
                    "errno": getattr(e, "errno", None),
                    "message": str(e),
                    "where": _frames(e),
                }
            )
            code = 1
    finally:
        os._exit(code)


def fork_child(body: Callable[[Send], None]) -> tuple[int, int]:
    """Fork; the child runs ``body(send)``. Returns (pid, read end of the report pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover -- child
        os.close(r)
        _child_main(body, w)
    os.close(w)
    return pid, r


def collect(pid: int, r: int, timeout: float = 60.0) -> Child:
    """Read the child's messages until EOF, then reap it."""
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"child {pid} hung; it said {buf!r}")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    messages = [json.loads(line) for line in buf.decode().splitlines() if line]
    return Child(pid, status, messages)


def run_child(body: Callable[[Send], None], timeout: float = 60.0) -> Child:
    pid, r = fork_child(body)
    return collect(pid, r, timeout)


def attempt(fn: Callable[[], object]) -> str:
    """ "ok", or the errno name (or exception type) the call failed with."""
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, type(e).__name__)
    except Exception as e:
        return type(e).__name__
    return "ok"


def _open_fds() -> set[tuple[int, str]]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:  # the listing's own descriptor is gone by now: skipped
            fds.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except OSError:
            pass
    return fds


def _children() -> set[int]:
    """Pids of this process's children, zombies included (proc(5): task/TID/children).
    Compared before/after, so a zygote other tests keep running is not a leak."""
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    fds, children = _open_fds(), _children()
    yield
    assert _open_fds() == fds, "descriptors leaked"
    assert _children() <= children, "child processes leaked (running or unreaped)"


@pytest.fixture(scope="module")
def features() -> probe.Features:
    return probe.detect()


@pytest.fixture(scope="module")
def kill_filter() -> bytes:
    return seccomp.build_filter(notify=False)


@pytest.fixture(scope="module")
def notify_filter() -> bytes:
    return seccomp.build_filter(notify=True)


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv


def _connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass


def _status(field: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(field)


def _lock_seccomp(bpf: bytes, *, notify: bool = False) -> int | None:
    caps.set_no_new_privs()
    return seccomp.load(bpf, notify=notify)


class Shellcode:
    """Machine code in an RWX page mapped before lockdown, callable through ctypes."""

    def __init__(self, code: bytes) -> None:
        prot = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
        self.page = mmap.mmap(-1, mmap.PAGESIZE, prot=prot)
        self.page.write(code)
        self._anchor = ctypes.c_char.from_buffer(self.page)
        self.call = ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(self._anchor))

    @staticmethod
    def syscall64(nr: int) -> Shellcode:
        # mov eax, nr; syscall; ret
        return Shellcode(b"\xb8" + struct.pack("<I", nr) + b"\x0f\x05\xc3")

    @staticmethod
    def int80(nr: int) -> Shellcode:
        # mov eax, nr; int 0x80; ret  (the i386 ABI from 64-bit code)
        return Shellcode(b"\xb8" + struct.pack("<I", nr) + b"\xcd\x80\xc3")


# --------------------------------------------------------------------------------------
# Landlock


@pytest.mark.isolation
def test_landlock_denies_files_tcp_abstract_sockets_and_signals(
    features: probe.Features, tcp_listener: socket.socket
) -> None:
    abi = features.landlock_abi
    if abi < 1:
        pytest.skip("Landlock unavailable")
    port = tcp_listener.getsockname()[1]
    abstract = f"\0sandboxmode-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix_srv:
        unix_srv.bind(abstract)
        unix_srv.listen()

        def unix_connect() -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(abstract)

        def attempts() -> dict[str, str]:
            def read_hostname() -> None:
                with open("/etc/hostname", "rb") as f:
                    f.read()

            return {
                "open": attempt(read_hostname),
                "listdir": attempt(lambda: os.listdir("/")),
                "mkdir": attempt(lambda: os.mkdir(f"/tmp/sbm-ll-{os.getpid()}")),
                "tcp": attempt(lambda: _connect(port)),
                "unix": attempt(unix_connect),
                "signal_parent": attempt(lambda: os.kill(os.getppid(), 0)),
                "signal_self": attempt(lambda: os.kill(os.getpid(), 0)),
            }

        def body(send: Send) -> None:
            before = attempts()
            os.rmdir(f"/tmp/sbm-ll-{os.getpid()}")
            send(before)
            caps.set_no_new_privs()
            landlock.restrict_all(abi)
            send(attempts())

        child = run_child(body)
    assert child.exit_code == 0, child.describe()
    before, after = child.messages
    assert set(before.values()) == {"ok"}, before
    assert after["open"] == "EACCES"
    assert after["listdir"] == "EACCES"
    assert after["mkdir"] == "EACCES"
    assert after["signal_self"] == "ok"
    assert after["tcp"] == ("EACCES" if abi >= 4 else "ok")
    assert after["unix"] == ("EPERM" if abi >= 6 else "ok")
    assert after["signal_parent"] == ("EPERM" if abi >= 6 else "ok")


def test_landlock_rights_per_abi() -> None:
    assert landlock.handled_fs(1) == (1 << 13) - 1
    assert landlock.handled_fs(3) == (1 << 15) - 1
    assert landlock.handled_fs(7) == (1 << 16) - 1
    assert landlock.handled_net(3) == 0 and landlock.handled_net(4) == 3
    assert landlock.scoped(5) == 0 and landlock.scoped(6) == 3
    with pytest.raises(ValueError):
        landlock.restrict_all(0)


# --------------------------------------------------------------------------------------
# seccomp: the compiled program, without any process


def _nr(name: str) -> int:
    nr = scmp.resolve_name(name)
    assert nr >= 0, name
    return nr


def _native() -> int:
    return scmp.arch_native()


@pytest.mark.parametrize("notify_mode", [False, True])
def test_filter_program_allows_listed_calls_and_defaults_the_rest(notify_mode: bool) -> None:
    bpf = seccomp.build_filter(notify=notify_mode)
    default = libc.SECCOMP_RET_USER_NOTIF if notify_mode else libc.SECCOMP_RET_KILL_PROCESS
    arch = _native()

    def action(name: str, *args: int) -> int:
        return seccomp.run_filter(bpf, nr=_nr(name), arch=arch, args=args)

    for name in seccomp.ALLOWED:
        if scmp.resolve_name(name) >= 0:
            assert action(name) == libc.SECCOMP_RET_ALLOW, name
    for name in (
        "openat",
        "open",
        "socket",
        "connect",
        "clone",
        "clone3",
        "execve",
        "ptrace",
        "bpf",
        "userfaultfd",
        "io_uring_setup",
        "mount",
        "unshare",
        "setns",
        "chroot",
        "setuid",
        "capset",
        "prctl",
        "memfd_create",
        "seccomp",
        "kcmp",
        "pidfd_open",
        "process_vm_readv",
        "ftruncate",
        "pipe2",
        "socketpair",
        "personality",
    ):
        if scmp.resolve_name(name) >= 0:
            assert action(name) == default, name
    rw, rx = libc.PROT_READ | libc.PROT_WRITE, libc.PROT_READ | libc.PROT_EXEC
    assert action("mmap", 0, 4096, rw, 0x22, 2**64 - 1, 0) == libc.SECCOMP_RET_ALLOW
    assert action("mmap", 0, 4096, rx, 0x22, 2**64 - 1, 0) == default
    assert action("mprotect", 0x1000, 4096, libc.PROT_READ) == libc.SECCOMP_RET_ALLOW
    assert action("mprotect", 0x1000, 4096, libc.PROT_EXEC) == default
    assert action("newfstatat", 3, 0, 0, libc.AT_EMPTY_PATH) == libc.SECCOMP_RET_ALLOW
    assert action("newfstatat", 2**32 - 100, 0, 0, 0) == default  # stat(path)
    assert action("fcntl", 3, libc.F_GETFD) == libc.SECCOMP_RET_ALLOW
    assert action("fcntl", 3, libc.F_SETOWN, 1) == default
    assert action("ioctl", 3, libc.FIONBIO) == libc.SECCOMP_RET_ALLOW
    assert action("ioctl", 0, libc.TIOCSTI) == default
    assert action("prlimit64", 0, 7, 0, 0x1000) == libc.SECCOMP_RET_ALLOW
    assert action("prlimit64", 0, 7, 0x1000, 0) == default  # setrlimit
    assert action("prlimit64", 1, 7, 0, 0x1000) == default  # another process
    # Signals: only to the placeholder "self", which load() binds to the real pid.
    me = seccomp.SELF_PLACEHOLDER
    assert action("kill", me, signal.SIGABRT) == libc.SECCOMP_RET_ALLOW
    assert action("tgkill", me, me, signal.SIGABRT) == libc.SECCOMP_RET_ALLOW
    assert action("kill", 1, 0) == default
    assert action("tgkill", me, 1, signal.SIGABRT) == default
    bound = seccomp.bind_self(bpf, 4242)
    assert seccomp.run_filter(bound, nr=_nr("kill"), arch=arch, args=(4242, 9)) == (
        libc.SECCOMP_RET_ALLOW
    )
    assert seccomp.run_filter(bound, nr=_nr("kill"), arch=arch, args=(me, 9)) == default
    # A pid whose upper 32 bits are garbage is not "self".
    assert seccomp.run_filter(bound, nr=_nr("kill"), arch=arch, args=(4242 | 1 << 32, 9)) == (
        default
    )


def test_filter_program_kills_foreign_abis_even_when_notifying() -> None:
    bpf = seccomp.build_filter(notify=True)
    kill = libc.SECCOMP_RET_KILL_PROCESS
    assert seccomp.run_filter(bpf, nr=20, arch=libc.AUDIT_ARCH_I386) == kill
    if _native() == libc.AUDIT_ARCH_X86_64:
        for nr in (0, 39, 41, 59, 0x3FFFFFFF):  # x32 read, getpid, socket, execve...
            assert seccomp.run_filter(bpf, nr=nr | libc.X32_SYSCALL_BIT, arch=_native()) == kill
    # libseccomp lets nr == -1 (a tracer's "skip this call") reach the default action.
    assert seccomp.run_filter(bpf, nr=-1, arch=_native()) == libc.SECCOMP_RET_USER_NOTIF


def test_build_filter_extra_names_and_validation() -> None:
    arch = _native()
    bpf = seccomp.build_filter(notify=False, extra=("socket", "mmap"))
    assert seccomp.run_filter(bpf, nr=_nr("socket"), arch=arch) == libc.SECCOMP_RET_ALLOW
    # extra "mmap" lifts the PROT_EXEC condition (the Policy asked for it).
    assert seccomp.run_filter(bpf, nr=_nr("mmap"), arch=arch, args=(0, 1, 7)) == (
        libc.SECCOMP_RET_ALLOW
    )
    with pytest.raises(ValueError, match="unknown system call"):
        seccomp.build_filter(notify=False, extra=("no_such_call",))
    with pytest.raises(ValueError):
        seccomp.build_filter(notify=False, extra=("getpid; rm",))
    with pytest.raises(TypeError):
        seccomp.build_filter(notify=False, extra="socket")
    loose = seccomp.build_filter(notify=False, unsafe_allow_all=True)
    assert seccomp.run_filter(loose, nr=_nr("socket"), arch=arch) == libc.SECCOMP_RET_ALLOW
    assert seccomp.run_filter(loose, nr=20, arch=libc.AUDIT_ARCH_I386) == (
        libc.SECCOMP_RET_KILL_PROCESS
    )


def test_load_requires_no_new_privs_and_a_program(kill_filter: bytes) -> None:
    def body(send: Send) -> None:
        send(attempt(lambda: seccomp.load(kill_filter, notify=False)))
        send(attempt(lambda: seccomp.load(b"\0" * 7, notify=False)))
        send(_status("Seccomp"))

    child = run_child(body)
    assert child.messages == ["RuntimeError", "ValueError", "0"], child.describe()


# --------------------------------------------------------------------------------------
# seccomp: in a process


def _attack_socket(port: int) -> Callable[[], object]:
    return lambda: _connect(port)


def _attack_mmap_exec() -> object:
    return mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_EXEC)


def _attack_mprotect_exec() -> object:
    page = libc.mmap(
        None,
        mmap.PAGESIZE,
        libc.PROT_READ | libc.PROT_WRITE,
        libc.MAP_PRIVATE | libc.MAP_ANONYMOUS,
        -1,
        0,
    )
    assert page not in (None, libc.MAP_FAILED)
    try:
        return libc.check(
            libc.mprotect(page, mmap.PAGESIZE, libc.PROT_READ | libc.PROT_EXEC), "mprotect"
        )
    finally:
        libc.munmap(page, mmap.PAGESIZE)


def _attack_open() -> object:
    with open("/etc/hostname", "rb") as f:
        return f.read()


def _attack_stat() -> object:
    return os.stat("/etc/hostname")


def _attack_signal_parent() -> object:
    os.kill(os.getppid(), 0)
    return None


def _attack_setrlimit() -> object:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return None


@pytest.mark.isolation
@pytest.mark.parametrize(
    "attack",
    ["socket", "mmap_exec", "mprotect_exec", "open", "stat", "signal_parent", "setrlimit"],
)
def test_seccomp_kills_forbidden_calls(
    attack: str, kill_filter: bytes, tcp_listener: socket.socket
) -> None:
    port = tcp_listener.getsockname()[1]
    fn = {
        "socket": _attack_socket(port),
        "mmap_exec": _attack_mmap_exec,
        "mprotect_exec": _attack_mprotect_exec,
        "open": _attack_open,
        "stat": _attack_stat,
        "signal_parent": _attack_signal_parent,
        "setrlimit": _attack_setrlimit,
    }[attack]

    def body(send: Send) -> None:
        send(attempt(fn))
        _lock_seccomp(kill_filter)
        send("loaded")
        send(attempt(fn))

    child = run_child(body)
    assert child.messages == ["ok", "loaded"], child.describe()
    assert child.signal == signal.SIGSYS, child.describe()


@pytest.mark.isolation
@pytest.mark.parametrize("what", ["fork", "thread"])
def test_seccomp_kills_process_creation(what: str, kill_filter: bytes) -> None:
    def body(send: Send) -> None:
        _lock_seccomp(kill_filter)
        send("loaded")
        if what == "fork":
            os.fork()
        else:
            threading.Thread(target=lambda: None).start()
        send("survived")

    child = run_child(body)
    assert child.messages == ["loaded"], child.describe()
    assert child.signal == signal.SIGSYS, child.describe()


@pytest.mark.isolation
@pytest.mark.skipif(not X86_64, reason="x86_64 machine code")
@pytest.mark.parametrize("abi", ["x32", "int80"])
@pytest.mark.parametrize("notify_mode", [False, True])
def test_seccomp_kills_foreign_abis(abi: str, notify_mode: bool) -> None:
    bpf = seccomp.build_filter(notify=notify_mode)

    def body(send: Send) -> None:
        if abi == "x32":
            # getpid with the x32 bit. Without CONFIG_X86_X32_ABI the kernel answers
            # -ENOSYS; either way it must never reach the notifier or run.
            code = Shellcode.syscall64(libc.X32_SYSCALL_BIT | 39)
        else:
            code = Shellcode.int80(20)  # i386 getpid
        before = code.call()
        send({"before": before, "pid": os.getpid()})
        listener = _lock_seccomp(bpf, notify=notify_mode)
        if listener is not None:
            # No supervisor: a *notified* call would now fail with ENOSYS instead of
            # blocking, so "killed" below really means the bad-arch action, not notify.
            os.close(listener)
        send("loaded")
        send({"after": code.call()})

    child = run_child(body)
    first = child.messages[0]
    if abi == "int80":
        assert first["before"] == first["pid"]
    else:
        assert first["before"] in (first["pid"], -errno.ENOSYS)
    assert child.messages[1:] == ["loaded"], child.describe()
    assert child.signal == signal.SIGSYS, child.describe()


def _probe_calls(parent: int) -> dict[str, Callable[[], object]]:
    """System calls to try under a notify filter whose listener is closed: denied ones
    fail with ENOSYS (seccomp_unotify(2): no listener), allowed ones run."""
    nrs = {
        name: scmp.resolve_name(name)
        for name in (
            "ptrace",
            "bpf",
            "userfaultfd",
            "perf_event_open",
            "io_uring_setup",
            "keyctl",
            "add_key",
            "request_key",
            "unshare",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "personality",
            "seccomp",
            "prctl",
            "kcmp",
            "process_vm_readv",
            "pidfd_open",
            "clone3",
            "execveat",
            "arch_prctl",
            "ftruncate",
            "setsockopt",
            "tgkill",
            "rt_sigqueueinfo",
            "pidfd_send_signal",
            "openat2",
            "name_to_handle_at",
            "open_by_handle_at",
            "setrlimit",
            "iopl",
            "ioperm",
            "init_module",
            "kexec_load",
            "swapon",
            "reboot",
            "sethostname",
            "chroot",
            "socket",
            "memfd_create",
        )
    }
    raw = {
        f"raw:{name}": (lambda nr=nr: libc.check(libc.raw_syscall(nr), "raw"))
        for name, nr in nrs.items()
        if nr >= 0
    }
    raw["raw:tgkill_parent"] = lambda: libc.check(
        libc.raw_syscall(nrs["tgkill"], parent, parent, 0), "tgkill"
    )
    raw["raw:ioctl_tiocsti"] = lambda: libc.check(libc.ioctl(0, libc.TIOCSTI, None), "ioctl")
    return raw


_DENIED_PY: dict[str, Callable[[], object]] = {
    "os.open": lambda: os.open("/", os.O_RDONLY),
    "os.stat": lambda: os.stat("/"),
    "os.listdir": lambda: os.listdir("/"),
    "os.pipe": os.pipe,
    "os.fork": os.fork,
    "os.execv": lambda: os.execv("/bin/true", ["true"]),
    "os.chroot": lambda: os.chroot("/"),
    "os.setuid": lambda: os.setuid(0),
    "os.memfd_create": lambda: os.memfd_create("x"),
    "socket": socket.socket,
    "socketpair": socket.socketpair,
    "mmap_exec": _attack_mmap_exec,
    "mprotect_exec": _attack_mprotect_exec,
    "setrlimit": _attack_setrlimit,
    "kill_init": lambda: os.kill(1, 0),
}


@pytest.mark.isolation
def test_seccomp_allowlist_in_a_process(notify_filter: bytes) -> None:
    """One child, many calls: ENOSYS marks a denied call (notify filter, no listener)."""
    parent = os.getpid()
    raw = _probe_calls(parent)
    r0, w0 = os.pipe()
    got: list[int] = []

    def allowed_calls() -> dict[str, Callable[[], object]]:
        def raise_self() -> None:
            signal.raise_signal(signal.SIGUSR1)  # tgkill(self)
            assert got == [signal.SIGUSR1]

        def mmap_rw() -> None:
            with mmap.mmap(-1, 1 << 20) as m:
                m[:5] = b"hello"

        def ioctl_fionread() -> None:
            n = ctypes.c_int(-1)
            libc.check(libc.ioctl(r0, libc.FIONREAD, ctypes.addressof(n)), "ioctl")
            assert n.value == 0

        def dups() -> None:
            os.close(os.dup(w0))
            os.close(os.dup2(w0, 100, inheritable=False))
            os.close(os.dup2(w0, 101))

        return {
            "getpid": os.getpid,
            "ids": lambda: (
                os.getuid(),
                os.geteuid(),
                os.getgid(),
                os.getegid(),
                os.getresuid(),
                os.getresgid(),
                os.getgroups(),
                os.getppid(),
            ),
            "fstat": lambda: os.fstat(w0),
            "urandom": lambda: os.urandom(32),
            "time": lambda: (time.time(), time.monotonic(), time.process_time()),
            "getrlimit": lambda: resource.getrlimit(resource.RLIMIT_NOFILE),
            "getrusage": lambda: resource.getrusage(resource.RUSAGE_SELF),
            "mmap_rw": mmap_rw,
            "ioctl_fionread": ioctl_fionread,
            "inheritable": lambda: (
                os.set_inheritable(w0, True),
                os.get_inheritable(w0),
                os.set_inheritable(w0, False),
            ),
            "blocking": lambda: (os.set_blocking(r0, False), os.set_blocking(r0, True)),
            "dups": dups,
            "pipe_io": lambda: (os.write(w0, b"x"), os.read(r0, 1), os.lseek(w0, 0, 0)),
            "poll": lambda: select.poll().poll(0),
            "kill_self": lambda: os.kill(os.getpid(), 0),
            "raise_self": raise_self,
            "sched": lambda: (os.sched_getaffinity(0), os.sched_yield()),
            "uname": os.uname,
            "getcwd": os.getcwd,
        }

    def body(send: Send) -> None:
        signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
        allowed = allowed_calls()
        listener = _lock_seccomp(notify_filter, notify=True)
        assert listener is not None
        os.close(listener)
        send({name: attempt(fn) for name, fn in allowed.items()})
        send({name: attempt(fn) for name, fn in {**_DENIED_PY, **raw}.items()})
        send({"thread": attempt(lambda: threading.Thread(target=lambda: None).start())})

    try:
        child = run_child(body)
    finally:
        os.close(r0)
        os.close(w0)
    assert child.exit_code == 0, child.describe()
    allowed, denied, thread = child.messages
    # An allowed call may still fail on its own terms (ESPIPE from lseek on a pipe).
    assert {k: v for k, v in allowed.items() if v not in ("ok", "ESPIPE")} == {}
    assert {k: v for k, v in denied.items() if v != "ENOSYS"} == {}
    assert thread == {"thread": "RuntimeError"}


# --------------------------------------------------------------------------------------
# seccomp user notification


@pytest.mark.isolation
def test_notification_names_the_call_and_the_answer_is_eperm(notify_filter: bytes) -> None:
    host, guest = socket.socketpair()

    def body(send: Send) -> None:
        host.close()
        listener = _lock_seccomp(notify_filter, notify=True)
        assert listener is not None
        socket.send_fds(guest, [b"L"], [listener])
        os.close(listener)
        send(attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)))

    with host, guest:
        pid, r = fork_child(body)
        guest.close()
        try:
            ready, _, _ = select.select([host], [], [], 60)
            assert ready, "no listener fd from the child"
            _, fds, _, _ = socket.recv_fds(host, 16, 1)
            (listener,) = fds
            try:
                poller = select.poll()
                poller.register(listener, select.POLLIN)
                assert poller.poll(60_000), "no notification"
                n = notify.recv_notification(listener)
                assert n is not None
                assert notify.syscall_name(n.nr, n.arch) == "socket"
                assert n.arch == _native()
                assert n.pid == pid
                assert n.args[0] == socket.AF_INET
                assert n.args[1] & 0xF == socket.SOCK_STREAM
                assert n.ip != 0
                assert notify.id_valid(listener, n.id)
                assert notify.respond(listener, n.id, -errno.EPERM) is True
                assert not notify.id_valid(listener, n.id)
            finally:
                os.close(listener)
        finally:
            child = collect(pid, r)
    assert child.messages == ["EPERM"], child.describe()
    assert child.exit_code == 0


@pytest.mark.isolation
def test_notification_of_a_dead_child_is_not_an_error(notify_filter: bytes) -> None:
    host, guest = socket.socketpair()

    def body(send: Send) -> None:
        host.close()
        listener = _lock_seccomp(notify_filter, notify=True)
        assert listener is not None
        socket.send_fds(guest, [b"L"], [listener])
        os.close(listener)
        os.open("/etc/hostname", os.O_RDONLY)  # blocks until answered; it never is
        send("answered?!")

    with host, guest:
        pid, r = fork_child(body)
        guest.close()
        _, fds, _, _ = socket.recv_fds(host, 16, 1)
        (listener,) = fds
        try:
            assert select.select([listener], [], [], 60)[0]
            n = notify.recv_notification(listener)
            assert n is not None
            assert notify.syscall_name(n.nr, n.arch) in ("openat", "open")
            os.kill(pid, signal.SIGKILL)
            child = collect(pid, r)
            assert child.signal == signal.SIGKILL
            assert not notify.id_valid(listener, n.id)
            assert notify.respond(listener, n.id, -errno.EPERM) is False
            # Every user of the filter is gone: the listener reports POLLHUP.
            poller = select.poll()
            poller.register(listener, select.POLLIN)
            assert poller.poll(60_000)[0][1] & select.POLLHUP
        finally:
            os.close(listener)
    with pytest.raises(ValueError):
        notify.respond(-1, 0, 0)


def test_syscall_name_of_unknown_numbers() -> None:
    assert notify.syscall_name(0, libc.AUDIT_ARCH_X86_64) == "read"
    assert notify.syscall_name(99999, _native()) == "syscall_99999"


# --------------------------------------------------------------------------------------
# Namespaces and the empty root


@pytest.mark.isolation
def test_namespaces_and_chroot_into_the_empty_root(tcp_listener: socket.socket) -> None:
    port = tcp_listener.getsockname()[1]
    uid, gid = os.getuid(), os.getgid()

    def write_root() -> None:
        with open("/x", "wb"):
            pass

    def body(send: Send) -> None:
        send(
            {
                "tcp": attempt(lambda: _connect(port)),
                "listdir": bool(os.listdir("/")),
                "hostname": socket.gethostname(),
            }
        )
        made = namespaces.enter_zygote_namespaces(uid, gid)
        with open("/proc/self/uid_map") as f:
            uid_map = f.read().split()
        send(
            {
                "made": made,
                "uid": os.getuid(),
                "uid_map": uid_map,
                "tcp": attempt(lambda: _connect(port)),
                "hostname": socket.gethostname(),
            }
        )
        root = namespaces.make_empty_root()
        send({"root": root, "outside_still_there": os.path.exists("/proc/self/status")})
        namespaces.chroot_empty(root)
        send(
            {
                "listdir": os.listdir("/"),
                "cwd": os.getcwd(),
                "open": attempt(_attack_open),
                "write": attempt(write_root),
                "mkdir": attempt(lambda: os.mkdir("/d")),
                "dotdot": os.listdir("/.."),
            }
        )

    child = run_child(body)
    assert child.exit_code == 0, child.describe()
    before, inside, mounted, chrooted = child.messages
    assert before["tcp"] == "ok" and before["listdir"]
    assert inside["made"] == ["user", "ipc", "uts", "mnt", "net"]
    assert inside["uid"] == 0
    assert inside["uid_map"] == ["0", str(uid), "1"]
    assert inside["tcp"] == "ENETUNREACH"  # own network namespace: lo is down
    assert inside["hostname"] == namespaces.HOSTNAME
    assert mounted["root"] in namespaces.EMPTY_ROOT_CANDIDATES
    assert mounted["outside_still_there"]
    assert chrooted == {
        "listdir": [],
        "cwd": "/",
        "open": "ENOENT",
        "write": "EROFS",
        "mkdir": "EROFS",
        "dotdot": [],
    }


# --------------------------------------------------------------------------------------
# Capabilities


def _cap_fields() -> dict[str, int]:
    return {f: int(_status(f), 16) for f in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


@pytest.mark.isolation
def test_drop_all_capabilities_in_the_user_namespace() -> None:
    uid, gid = os.getuid(), os.getgid()
    last = caps.read_last_cap()
    full = (1 << (last + 1)) - 1

    def body(send: Send) -> None:
        namespaces.enter_zygote_namespaces(uid, gid)
        send(
            {
                "caps": _cap_fields(),
                "sethostname": attempt(lambda: socket.sethostname("a")),
                "chroot": attempt(lambda: os.chroot("/")),
            }
        )
        caps.drop_all(last)
        send(
            {
                "caps": _cap_fields(),
                "securebits": libc.prctl(libc.PR_GET_SECUREBITS, 0, 0, 0, 0),
                "nnp_before": _status("NoNewPrivs"),
                "sethostname": attempt(lambda: socket.sethostname("b")),
                "chroot": attempt(lambda: os.chroot("/")),
                "mount": attempt(
                    lambda: libc.check(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None), "mount")
                ),
                "setuid": attempt(lambda: os.setuid(1)),
            }
        )
        caps.set_no_new_privs()
        send(
            {
                "nnp": _status("NoNewPrivs"),
                "prctl": libc.prctl(libc.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
            }
        )

    child = run_child(body)
    assert child.exit_code == 0, child.describe()
    before, after, nnp = child.messages
    # A new user namespace gives its creator every capability (user_namespaces(7));
    # the bounding set is inherited as it was.
    assert before["caps"]["CapEff"] == full and before["caps"]["CapBnd"] != 0
    assert before["sethostname"] == "ok" and before["chroot"] == "ok"
    assert after["caps"] == dict.fromkeys(before["caps"], 0)
    assert after["securebits"] & caps.SECUREBITS_LOCKED == caps.SECUREBITS_LOCKED
    assert after["nnp_before"] == "0"
    assert after["sethostname"] == "EPERM"
    assert after["chroot"] == "EPERM"
    assert after["mount"] == "EPERM"
    assert after["setuid"] in ("EPERM", "EINVAL")  # uid 1 is not even mapped
    assert nnp == {"nnp": "1", "prctl": 1}


@pytest.mark.isolation
def test_drop_bounding_set_keeps_the_effective_set() -> None:
    """What the zygote may do once: children inherit an empty bounding set."""
    uid, gid = os.getuid(), os.getgid()
    last = caps.read_last_cap()

    def body(send: Send) -> None:
        namespaces.enter_zygote_namespaces(uid, gid)
        caps.drop_bounding_set(last)
        send(_cap_fields())

    child = run_child(body)
    assert child.exit_code == 0, child.describe()
    fields = child.messages[0]
    assert fields["CapBnd"] == 0
    assert fields["CapEff"] == (1 << (last + 1)) - 1


@pytest.mark.isolation
def test_drop_all_without_a_user_namespace() -> None:
    """Real root loses everything; an unprivileged process (unsafe_no_namespaces) has no
    capability to lose and no CAP_SETPCAP to touch its bounding set: still succeeds."""
    last = caps.read_last_cap()

    def body(send: Send) -> None:
        before = _cap_fields()
        caps.drop_all(last)
        send({"before": before, "after": _cap_fields()})

    child = run_child(body)
    assert child.exit_code == 0, child.describe()
    before, after = child.messages[0]["before"], child.messages[0]["after"]
    expected = dict.fromkeys(before, 0)
    if not ROOT:
        expected["CapBnd"] = before["CapBnd"]
    assert after == expected


@pytest.mark.skipif(not ROOT, reason="needs real root")
def test_drop_all_capabilities_of_real_root() -> None:
    last = caps.read_last_cap()

    def body(send: Send) -> None:
        send(_cap_fields()["CapEff"])
        caps.drop_all(last)
        send({"caps": _cap_fields(), "chroot": attempt(lambda: os.chroot("/"))})

    child = run_child(body)
    assert child.exit_code == 0, child.describe()
    assert child.messages[0] != 0
    after = child.messages[1]
    assert set(after["caps"].values()) == {0}
    assert after["chroot"] == "EPERM"


# --------------------------------------------------------------------------------------
# Resource limits


@pytest.mark.isolation
def test_rlimits_bound_memory_descriptors_and_file_size() -> None:
    big = 256 << 20
    last_cap = caps.read_last_cap()

    def body(send: Send) -> None:
        send({"alloc": attempt(lambda: bytearray(big))})
        vm = rlimits.current_vm_size()
        rlimits.apply(
            address_space=vm + (64 << 20),
            cpu_seconds=30,
            file_size=0,
            open_files=32,
            nproc=None,
            core=0,
        )
        if os.getuid() == 0:  # CAP_SYS_RESOURCE could raise the limits back
            caps.drop_all(last_cap)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # see EFBIG instead of dying
        fd = os.memfd_create("sbm-test")
        pipes: list[int] = []

        def many_pipes() -> None:
            for _ in range(32):
                pipes.extend(os.pipe())

        send(
            {
                "alloc": attempt(lambda: bytearray(big)),
                "small": attempt(lambda: bytearray(1 << 20)),
                "limits": [
                    resource.getrlimit(r)
                    for r in (
                        resource.RLIMIT_AS,
                        resource.RLIMIT_CPU,
                        resource.RLIMIT_FSIZE,
                        resource.RLIMIT_NOFILE,
                        resource.RLIMIT_CORE,
                    )
                ],
                "vm": vm,
                "write_file": attempt(lambda: os.write(fd, b"x")),
                "pipes": attempt(many_pipes),
                "raise_back": attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))),
            }
        )

    child = run_child(body)
    assert child.exit_code == 0, child.describe()
    before, after = child.messages
    assert before["alloc"] == "ok"
    assert after["alloc"] == "MemoryError"
    assert after["small"] == "ok"
    vm = after["vm"]
    assert after["limits"] == [[vm + (64 << 20)] * 2, [30, 31], [0, 0], [32, 32], [0, 0]]
    assert after["write_file"] == "EFBIG"
    assert after["pipes"] == "EMFILE"
    assert after["raise_back"] in ("ValueError", "EPERM")


@pytest.mark.isolation
def test_rlimit_cpu_ends_a_busy_loop() -> None:
    def body(send: Send) -> None:
        rlimits.apply(address_space=None, cpu_seconds=1, open_files=64, nproc=None)
        send("limited")
        while True:
            pass

    child = run_child(body)
    assert child.messages == ["limited"]
    assert child.signal == signal.SIGXCPU, child.describe()


# --------------------------------------------------------------------------------------
# The whole lockdown, in the order _child.py runs it, then ordinary Python work


def _full_lockdown(bpf: bytes, abi: int, uid: int, gid: int) -> None:
    # Zygote part (once per zygote in production; here per child).
    namespaces.enter_zygote_namespaces(uid, gid)
    root = namespaces.make_empty_root()
    last_cap = caps.read_last_cap()
    vm = rlimits.current_vm_size()
    time.localtime()  # glibc reads /etc/localtime once; the zygote must do it first
    # Child part.
    os.setsid()
    libc.check(libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    rlimits.apply(
        address_space=vm + (1 << 30),
        cpu_seconds=60,
        file_size=0,
        open_files=64,
        nproc=None if uid == 0 else 0,
        core=0,
    )
    namespaces.chroot_empty(root)
    caps.drop_all(last_cap)
    caps.set_no_new_privs()
    if abi:
        landlock.restrict_all(abi)
    seccomp.load(bpf, notify=False)


def _ordinary_work() -> dict[str, Any]:
    out: dict[str, Any] = {}
    block = bytearray(50 << 20)
    block[::4096] = b"x" * len(block[::4096])
    out["alloc"] = len(block)
    del block
    ints = list(range(1_000_000))
    out["sum"] = sum(ints)
    del ints
    doc = {"a": [1, 2.5, "três", None, True], "b": {"c": list(range(100))}}
    out["json"] = json.loads(json.dumps(doc)) == doc
    blob = os.urandom(1 << 16) + b"a" * (1 << 16)
    out["zlib"] = zlib.decompress(zlib.compress(blob)) == blob
    out["bz2"] = bz2.decompress(bz2.compress(blob)) == blob
    out["lzma"] = lzma.decompress(lzma.compress(blob)) == blob
    out["struct"] = struct.unpack("<iqd", struct.pack("<iqd", -1, 2**40, 0.5))
    out["msgpack"] = msgpack.unpackb(msgpack.packb(doc)) == doc
    try:
        raise KeyError("inner")
    except KeyError as e:
        try:
            raise ValueError("outer") from e
        except ValueError as e2:
            out["exception"] = repr(e2.__cause__)

    def deep(n: int) -> int:
        return deep(n + 1)

    try:
        deep(0)
    except RecursionError:
        out["recursion"] = "RecursionError"
    out["gc"] = gc.collect() >= 0
    with mmap.mmap(-1, 4 << 20) as m:
        m[-1] = 7
        out["mmap"] = m[-1]
    out["random"] = 0 <= random.random() < 1
    out["time"] = time.time() > 0 and time.monotonic() > 0 and time.process_time() > 0
    out["localtime"] = time.localtime().tm_year > 2000
    out["limits"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    out["hostname"] = os.uname().nodename
    return out


@pytest.mark.isolation
def test_full_lockdown_then_ordinary_python_work(
    kill_filter: bytes, features: probe.Features
) -> None:
    uid, gid = os.getuid(), os.getgid()
    abi = features.landlock_abi

    def body(send: Send) -> None:
        _full_lockdown(kill_filter, abi, uid, gid)
        send(_ordinary_work())

    child = run_child(body)
    assert child.exit_code == 0, child.describe()
    out = child.messages[0]
    assert out == {
        "alloc": 50 << 20,
        "sum": 499999500000,
        "json": True,
        "zlib": True,
        "bz2": True,
        "lzma": True,
        "struct": [-1, 2**40, 0.5],
        "msgpack": True,
        "exception": "KeyError('inner')",
        "recursion": "RecursionError",
        "gc": True,
        "mmap": 7,
        "random": True,
        "time": True,
        "localtime": True,
        "limits": 64,
        "hostname": namespaces.HOSTNAME,
    }


@pytest.mark.isolation
@pytest.mark.parametrize(
    ("crash", "expected"), [("abort", signal.SIGABRT), ("segv", signal.SIGSEGV)]
)
def test_crashes_under_the_full_lockdown_are_crashes_not_violations(
    crash: str, expected: int, kill_filter: bytes, features: probe.Features
) -> None:
    """abort() signals itself with tgkill: allowed because load() bound "self"."""
    uid, gid = os.getuid(), os.getgid()

    def body(send: Send) -> None:
        # faulthandler (enabled by pytest) writes, then re-raises with tgkill: both must
        # work under the filter. Into /dev/null, to keep the test output clean.
        faulthandler.enable(file=os.open(os.devnull, os.O_WRONLY))
        _full_lockdown(kill_filter, features.landlock_abi, uid, gid)
        send("locked")
        if crash == "abort":
            os.abort()
        ctypes.string_at(0)

    child = run_child(body)
    assert child.messages == ["locked"], child.describe()
    assert child.signal == expected, child.describe()


# --------------------------------------------------------------------------------------
# Probe


def test_probe_reports_this_machine(features: probe.Features) -> None:
    assert features is probe.detect()  # cached
    assert features.kernel_release == os.uname().release
    assert features.arch == os.uname().machine
    assert features.pidfd
    if features.libseccomp_version is not None:
        assert features.libseccomp_version >= (2, 0, 0)
    missing = probe.missing_for_strong(features)
    assert all(isinstance(m, str) for m in missing)
    weak = probe.Features("x", "riscv64", None, 0, False, False, 0, False, False, None)
    assert probe.missing_for_strong(weak) == [
        "architecture (riscv64 is not supported)",
        "libseccomp",
        "seccomp-filter",
        "seccomp-notify",
        "user-namespaces",
        "pidfd",
    ]
    assert sys.platform == "linux"
