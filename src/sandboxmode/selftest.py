"""The containment suite, as a library: ``sbm selftest [--json] [--matrix]``.

`ATTACKS` is a table of `Attack` records. Each names a hostile function (module-level in
``sandboxmode._attacks``, run for real), the exception the default policy must answer it
with and the evidence that exception must carry, the layers of the design that stop it,
and how the attack is shown to work *without* the sandbox: either by running it directly
in a throwaway forked child against targets this suite owns (a sentinel file in its own
temporary directory, a loopback listener it runs, a dummy process it started), or a stated
reason why it cannot be shown.

`run_suite` runs attacks in sandboxes and returns one `Result` each (contained or
escaped, the exception, the layer that stopped it). An attack escaped when the sandboxed
call *returned* (attack functions return only on success), when it ran a program of its
choosing (exec'd code exits with `ESCAPE_CODE`), or when a sentinel check after it fails:
files unchanged and nothing created, listeners without a connection or datagram, the dummy
process, another sandbox, the zygote and the host's secrets and settings untouched.

`matrix` runs every attack under the default policy and again with each layer switched off
(``Policy.unsafe_*``), which shows which layer stops what and where layers back each other
up. `main` is the CLI; ``python -m sandboxmode.selftest --matrix --markdown`` writes the
table of ``docs/escape.md``.

Layer names: the five switchable ones (`SWITCHABLE`), and those that cannot be switched
off: ``zygote`` (a fresh interpreter with an empty environment: no host memory),
``fds`` (every descriptor but the channel closed), ``buffers`` (inputs in sealed read-only
memfds between guard pages, outputs sealed against growing), ``codec`` (bounded plain-data
decoding of everything the sandbox sends), ``supervisor`` (wall-clock timeout),
``import guard``, ``nesting guard``, ``nx`` (the CPU refuses to execute data) and
``kernel`` (what Linux refuses anyway). A matrix cell says ``crashed`` when an attack
brought its own sandbox down before doing anything (the host still got a typed error). A ``:nonroot`` suffix marks a layer that only
holds for unprivileged users (RLIMIT_NPROC does not bind root), ``:root`` one that only
holds when the host runs as root (a process may not renice or re-pin one that has more
capabilities, and a root host has them all); ``:abi4`` / ``:abi6`` mark
Landlock rights of that ABI or newer (TCP, signal and abstract-socket scoping).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import functools
import json
import os
import re
import reprlib
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sandboxmode as sbm
from sandboxmode import _attacks as atk
from sandboxmode._errors import (
    PolicyViolation,
    ProtocolError,
    SandboxError,
    SandboxFault,
    SandboxMemoryError,
    SandboxTimeout,
    SandboxUnavailable,
    TargetError,
)
from sandboxmode.policy import Policy

__all__ = [
    "ATTACKS",
    "CONFIGS",
    "SWITCHABLE",
    "Attack",
    "Check",
    "Demo",
    "Direct",
    "Env",
    "Matrix",
    "Out",
    "Ref",
    "Result",
    "demonstrate",
    "foreign_abi_proof",
    "main",
    "markdown",
    "matrix",
    "run_attack",
    "run_suite",
]

#: Exit code of a program an attack managed to execute.
ESCAPE_CODE: Final = 42
#: Public part of the planted secret; 32 random hex digits follow it.
SECRET_PREFIX: Final = "sbm-selftest-secret-"
#: Environment variable the host plants the secret in.
SECRET_ENV: Final = "SBM_SELFTEST_SECRET"

#: Layer name -> the Policy switch that turns it off.
SWITCHABLE: Final[dict[str, str]] = {
    "seccomp": "unsafe_no_seccomp",
    "landlock": "unsafe_no_landlock",
    "namespaces": "unsafe_no_namespaces",
    "rlimits": "unsafe_no_rlimits",
    "capabilities": "unsafe_keep_capabilities",
}
#: Configurations of the matrix: the default, then one layer off each.
CONFIGS: Final[tuple[str, ...]] = ("default", *SWITCHABLE.values())

#: The policy every attack starts from: the default, with a wall-clock limit that keeps
#: a layer-off run from waiting long on an attack that got further than it should.
BASE_POLICY: Final = Policy(timeout=10.0)


# ======================================================================================
# The table's vocabulary


@dataclass(frozen=True)
class Ref:
    """An argument that names a resource of the `Env` (a path, a pid, a port...),
    resolved when the attack runs; demonstrations get their own copy where using the
    real one would change it."""

    name: str


@dataclass(frozen=True)
class Out:
    """An output buffer of ``size`` bytes (``Sandbox.copy_out``)."""

    size: int


@dataclass(frozen=True)
class Check:
    """The evidence a contained attack's exception must carry."""

    text: str
    fn: Callable[[SandboxError], bool]

    def __call__(self, exc: SandboxError) -> bool:
        try:
            return bool(self.fn(exc))
        except (KeyError, TypeError, ValueError):
            return False


@dataclass(frozen=True)
class Direct:
    """Shown by running the attack directly in a throwaway forked child.

    Args:
        args: the demonstration's arguments (default: the attack's, with `Ref`\\ s
            resolved to the demonstration's own targets).
        function: another module-level function to run instead (when the harm happens
            on the host side, e.g. unpickling what a sandbox sent).
        exit_code: the attack replaces the process (exec): shown when it exits with this.
        needs: a requirement of this machine ("root", "ipv6", "interfaces"); when it is
            not met the demonstration is replaced by the reason.
        signalled: shown when the demonstration's dummy process reports the signal
            (the attack cannot know whether its signal arrived).
    """

    args: tuple[Any, ...] | None = None
    function: Callable[..., Any] | None = None
    exit_code: int | None = None
    needs: str | None = None
    signalled: bool = False


@dataclass(frozen=True)
class Attack:
    """One row of the table. See the module docstring."""

    name: str
    category: str
    function: Callable[..., Any]
    args: tuple[Any, ...]
    expect: str
    evidence: Check
    works_unsandboxed: Direct | str
    layers: tuple[str, ...]
    policy: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def effective_layers(self, root: bool, landlock_abi: int) -> tuple[str, ...]:
        """The layers that stop this attack on this machine, for this user."""
        out = []
        for layer in self.layers:
            name, _, cond = layer.partition(":")
            if (cond == "nonroot" and root) or (cond == "root" and not root):
                continue
            if name == "landlock" and landlock_abi < (int(cond[3:]) if cond.startswith("abi")
                                                      else 1):
                continue
            out.append(name)
        return tuple(dict.fromkeys(out))


@dataclass
class Result:
    """What one attack achieved under one policy."""

    attack: Attack
    config: str
    #: "contained"; "escaped"; "broken" (the host raised something other than a
    #: SandboxError: nothing escaped, but the API's promise of a typed error did not
    #: hold); "unavailable" (the sandbox could not be made here).
    outcome: str
    exception: str | None
    message: str
    evidence: dict[str, Any]
    layer: str
    as_expected: bool
    problems: list[str]
    seconds: float

    @property
    def escaped(self) -> bool:
        return self.outcome == "escaped"

    @property
    def failed(self) -> bool:
        """Escaped, or the host failed with an untyped error."""
        return self.outcome in ("escaped", "broken")

    def to_json(self) -> dict[str, Any]:
        ev = {k: v for k, v in self.evidence.items() if k != "traceback"}
        return {"attack": self.attack.name, "category": self.attack.category,
                "config": self.config, "outcome": self.outcome,
                "exception": self.exception, "message": self.message[:500],
                "evidence": _jsonable(ev), "layer": self.layer,
                "expected": self.attack.expect, "as_expected": self.as_expected,
                "problems": self.problems, "seconds": round(self.seconds, 4)}


@dataclass
class Demo:
    """Whether the attack was shown to work without the sandbox, and how."""

    shown: bool
    detail: str


# ======================================================================================
# Evidence checks


def _syscall(*names: str) -> Check:
    def fn(e: SandboxError) -> bool:
        ev = e.evidence
        return (ev["syscall"] in names and isinstance(ev["nr"], int)
                and isinstance(ev["args"], list) and len(ev["args"]) == 6)

    return Check(f"syscall in {names}, with nr and six args", fn)


def _syscall_tb(name: str, where: str) -> Check:
    """A refused system call whose Python traceback came back and names ``where``."""

    def fn(e: SandboxError) -> bool:
        return (_syscall(name)(e) and where in e.evidence.get("traceback", ""))

    return Check(f"syscall {name!r}, traceback names {where!r}", fn)


def _killed(sig: int) -> Check:
    name = signal.Signals(sig).name
    return Check(f"killed by {name}", lambda e: e.evidence["signal"] == sig
                 and e.evidence["signal_name"].startswith(name))


def _remote(type_suffix: str, text: str = "") -> Check:
    def fn(e: SandboxError) -> bool:
        return (isinstance(e, TargetError) and e.remote_type.endswith(type_suffix)
                and text in e.remote_message)

    return Check(f"remote {type_suffix}" + (f" with {text!r}" if text else ""), fn)


def _limit(name: str) -> Check:
    return Check(f"limit={name}", lambda e: e.evidence["limit"] == name)


def _module(name: str) -> Check:
    return Check(f"module={name}", lambda e: e.evidence["module"] == name)


def _protocol(text: str = "") -> Check:
    return Check(f"message mentions {text!r}", lambda e: text.lower() in str(e).lower())


def _errno_in(e: SandboxError) -> int | None:
    m = re.search(r"\[Errno (\d+)\]", e.evidence.get("message", "") or str(e))
    return int(m.group(1)) if m else None


# ======================================================================================
# The table

R = Ref
SIGURG = int(signal.SIGURG)
SIGKILL = int(signal.SIGKILL)
SIGSYS = int(signal.SIGSYS)

_NS = ("seccomp", "namespaces", "landlock")  # a path of the host's file system
_PTRACE = ("seccomp", "landlock")  # ptrace_may_access: Landlock confines tracing
_SIGNAL = ("seccomp", "landlock:abi6")
_CAPS = ("seccomp", "capabilities")
_MOUNT = ("seccomp", "capabilities", "landlock")  # Landlock forbids mount changes
_CHILD = ("seccomp", "rlimits:nonroot")  # RLIMIT_NPROC = 0 binds non-root users only
_OUTPUT_POLICY: Final = {"max_result_bytes": 1 << 20}
_NOT_SHOWN_FRAME = ("forging frames needs the sandbox's channel to the host, which exists "
                    "only inside a sandbox; the codec limits it meets are the host's own")


def _attacks() -> list[Attack]:
    A = Attack
    V = "PolicyViolation"
    T = "TargetError"
    out = [
        # ---- files ------------------------------------------------------------------
        A("fs.read_secret_file", "filesystem", atk.read_file, (R("secret_file"),), V,
          _syscall_tb("openat", "read_file"), Direct(), _NS),
        A("fs.read_etc_passwd", "filesystem", atk.read_file, ("/etc/passwd",), V,
          _syscall("openat"), Direct(), _NS),
        A("fs.write_file", "filesystem", atk.write_file, (R("victim"),), V,
          _syscall("openat"), Direct(), _NS),
        A("fs.create_file", "filesystem", atk.create_file, (R("new"),), V,
          _syscall("openat"), Direct(), _NS),
        A("fs.truncate", "filesystem", atk.truncate_file, (R("victim"),), V,
          _syscall("truncate"), Direct(), _NS),
        A("fs.unlink", "filesystem", atk.unlink_file, (R("victim"),), V,
          _syscall("unlink"), Direct(), _NS),
        A("fs.rename", "filesystem", atk.rename_file, (R("victim"), R("new")), V,
          _syscall("rename"), Direct(), _NS),
        A("fs.mkdir", "filesystem", atk.make_dir, (R("new"),), V,
          _syscall("mkdir"), Direct(), _NS),
        A("fs.symlink", "filesystem", atk.make_symlink, (R("secret_file"), R("new")), V,
          _syscall("symlink"), Direct(), _NS),
        A("fs.hardlink", "filesystem", atk.make_hardlink, (R("victim"), R("new")), V,
          _syscall("link"), Direct(), _NS),
        A("fs.chmod", "filesystem", atk.chmod_file, (R("victim"),), V,
          _syscall("chmod"), Direct(), ("seccomp", "namespaces")),
        A("fs.list_dir", "filesystem", atk.list_dir, (R("tmpdir"),), V,
          _syscall("openat"), Direct(), _NS),
        A("fs.list_root", "filesystem", atk.list_dir, ("/",), V,
          _syscall("openat"), Direct(), _NS),
        A("fs.stat", "filesystem", atk.stat_path, (R("secret_file"),), V,
          _syscall("newfstatat"), Direct(), ("seccomp", "namespaces"),
          note="Landlock cannot restrict stat(2)"),
        A("fs.stat_empty_path_flag", "filesystem", atk.stat_empty_path, (R("secret_file"),),
          T, _remote("FileNotFoundError"), Direct(), ("namespaces",),
          note="the filter must allow newfstatat(..., AT_EMPTY_PATH) for fstat(); with a "
               "path it resolves it, and only the empty root answers ENOENT"),
        A("fs.access", "filesystem", atk.access_path, (R("secret_file"),), V,
          _syscall("access"), Direct(), ("seccomp", "namespaces")),
        A("fs.chroot_climb", "filesystem", atk.chdir_escape, (64,), V,
          _syscall("chdir"), Direct(), _NS),
        A("fs.openat2", "filesystem", atk.openat2_read, (R("secret_file"),), V,
          _syscall("openat2"), Direct(), _NS),
        A("fs.open_by_handle_at", "filesystem", atk.open_by_handle,
          (R("handle_bytes"), R("handle_type"), R("handle_mount")), V,
          _syscall("open_by_handle_at"), Direct(needs="root"), _CAPS,
          note="the 'shocker' container escape: needs CAP_DAC_READ_SEARCH"),
        # ---- devices ----------------------------------------------------------------
        A("dev.mknod", "devices", atk.mknod_device, (R("new"),), V,
          _syscall("mknodat"), Direct(needs="root"),
          ("seccomp", "capabilities", "landlock", "namespaces")),
        A("dev.write_null", "devices", atk.write_device, ("/dev/null",), V,
          _syscall("openat"), Direct(), _NS),
        A("dev.read_urandom", "devices", atk.read_device, ("/dev/urandom",), V,
          _syscall("openat"), Direct(), _NS),
        A("dev.open_ptmx", "devices", atk.open_pty, (), V,
          _syscall("openat"), Direct(), _NS),
        A("dev.read_kmsg", "devices", atk.read_device, ("/dev/kmsg",), V,
          _syscall("openat"), Direct(needs="root"), _NS),
        # ---- /proc of other processes -----------------------------------------------
        A("proc.host_mem_read", "procfs", atk.proc_read_mem,
          (R("host_pid"), R("secret_addr"), SECRET_PREFIX), V,
          _syscall("openat"), Direct(), (*_NS, "landlock")),
        A("proc.host_mem_write", "procfs", atk.proc_write_mem,
          (R("host_pid"), R("scratch_addr")), V, _syscall("openat"), Direct(), _NS),
        A("proc.host_environ", "procfs", atk.proc_environ, (R("host_pid"), R("env_name")),
          V, _syscall("openat"), Direct(), _NS),
        A("proc.host_fd_list", "procfs", atk.proc_list_fds, (R("host_pid"),), V,
          _syscall("openat"), Direct(), _NS),
        A("proc.host_fd_reopen", "procfs", atk.proc_open_fd,
          (R("host_pid"), R("secret_fd"), SECRET_PREFIX), V,
          _syscall("openat"), Direct(), _NS),
        A("proc.host_maps", "procfs", atk.proc_maps, (R("host_pid"),), V,
          _syscall("openat"), Direct(), _NS),
        A("proc.zygote_maps", "procfs", atk.proc_maps, (R("zygote_pid"),), V,
          _syscall("openat"), Direct(), _NS),
        A("proc.self_mem_write", "procfs", atk.self_mem_write, (), V,
          _syscall("openat"), Direct(), _NS,
          note="/proc/self/mem writes ignore page protection (a W^X bypass)"),
        # ---- other processes' memory, tracing -----------------------------------------
        A("mem.process_vm_readv", "process-memory", atk.vm_readv,
          (R("host_pid"), R("secret_addr"), SECRET_PREFIX), V,
          _syscall_tb("process_vm_readv", "vm_readv"), Direct(), _PTRACE),
        A("mem.process_vm_writev", "process-memory", atk.vm_writev,
          (R("host_pid"), R("scratch_addr")), V, _syscall("process_vm_writev"), Direct(),
          _PTRACE),
        A("mem.pidfd_getfd", "process-memory", atk.pidfd_getfd,
          (R("host_pid"), R("secret_fd"), SECRET_PREFIX), V, _syscall("pidfd_open"),
          Direct(), _PTRACE),
        A("mem.kcmp", "process-memory", atk.kcmp_files, (R("host_pid"), R("secret_fd")), V,
          _syscall("kcmp"), Direct(), _PTRACE),
        A("ptrace.seize_host", "ptrace", atk.ptrace_seize, (R("trace_host"),), V,
          _syscall("ptrace"), Direct(), _PTRACE),
        A("ptrace.seize_zygote", "ptrace", atk.ptrace_seize, (R("trace_zygote"),), V,
          _syscall("ptrace"), Direct(), _PTRACE),
        A("ptrace.attach_dummy", "ptrace", atk.ptrace_attach, (R("dummy"),), V,
          _syscall("ptrace"), Direct(), _PTRACE),
        A("ptrace.traceme", "ptrace", atk.ptrace_traceme, (), V, _syscall("ptrace"),
          Direct(), ("seccomp",), note="would hand the zygote a tracee; harmless alone"),
        # ---- signals ----------------------------------------------------------------
        A("signal.kill_host", "signals", atk.send_signal, (R("signal_host"), SIGURG), V,
          _syscall_tb("kill", "send_signal"), Direct(), _SIGNAL),
        A("signal.kill_zygote", "signals", atk.send_signal, (R("signal_zygote"), SIGURG), V,
          _syscall("kill"), Direct(), _SIGNAL),
        A("signal.kill_other_sandbox", "signals", atk.send_signal,
          (R("other_sandbox"), SIGKILL), V, _syscall("kill"), Direct(), _SIGNAL),
        A("signal.kill_dummy", "signals", atk.send_signal, (R("dummy"), SIGKILL), V,
          _syscall("kill"), Direct(), _SIGNAL),
        A("signal.kill_everyone", "signals", atk.signal_everyone, (SIGURG, R("dummy")), V,
          _syscall("kill"), "kill(-1) would reach every process of this user on the "
          "machine, so it is not run unsandboxed (signal.kill_dummy shows a process of "
          "the same user can be signalled); the suite's dummy reports what arrives",
          _SIGNAL),
        A("signal.tgkill_host", "signals", atk.tgkill_signal, (R("signal_host"), SIGURG), V,
          _syscall("tgkill"), Direct(), _SIGNAL),
        A("signal.pidfd_send_signal", "signals", atk.pidfd_signal,
          (R("signal_host"), SIGURG), V, _syscall("pidfd_open"), Direct(), _SIGNAL),
        A("signal.sigqueue_host", "signals", atk.sigqueue, (R("signal_host"), SIGURG), V,
          _syscall("rt_sigqueueinfo"), Direct(), _SIGNAL),
        A("signal.fcntl_setown", "signals", atk.fcntl_setown, (R("dummy"), SIGURG, R("own")),
          V, _syscall("fcntl"), Direct(signalled=True), ("seccomp", "landlock:abi6"),
          note="SIGIO/SIGURG delivery to another process is scoped by Landlock ABI 6"),
        # ---- processes --------------------------------------------------------------
        A("proc.fork", "processes", atk.do_fork, (), V, _syscall_tb("clone", "do_fork"),
          Direct(), _CHILD),
        A("proc.vfork", "processes", atk.do_vfork, (), V, _syscall("vfork"),
          "a vfork child shares the parent's stack and would run the interpreter on it: "
          "it cannot be shown safely from Python (proc.posix_spawn shows the same "
          "CLONE_VFORK process creation)", _CHILD,
          note="with the filter off, as root, the vfork child clobbers the parent's stack "
               "and the sandbox crashes"),
        A("proc.clone", "processes", atk.do_clone, (0,), V, _syscall("clone"), Direct(),
          _CHILD),
        A("proc.clone_namespaces", "processes", atk.do_clone, (atk.ALL_NAMESPACES,), V,
          _syscall("clone"), Direct(), ("seccomp", "namespaces", "rlimits:nonroot"),
          note="a chrooted process may not create a user namespace"),
        A("proc.clone3", "processes", atk.do_clone3, (0,), V, _syscall("clone3"), Direct(),
          _CHILD),
        A("proc.clone3_namespaces", "processes", atk.do_clone3, (atk.ALL_NAMESPACES,), V,
          _syscall("clone3"), Direct(), ("seccomp", "namespaces", "rlimits:nonroot")),
        A("proc.thread", "processes", atk.start_thread, (), V, _syscall("clone3"), Direct(),
          _CHILD),
        A("proc.posix_spawn", "processes", atk.spawn_process, ("/bin/true",), V,
          _syscall("clone3"), Direct(), (*_CHILD, "namespaces", "landlock")),
        # ---- programs ---------------------------------------------------------------
        A("exec.execve", "exec", atk.exec_shell, (ESCAPE_CODE,), V, _syscall("execve"),
          Direct(exit_code=ESCAPE_CODE), _NS),
        A("exec.execveat", "exec", atk.execveat_shell, (ESCAPE_CODE,), V,
          _syscall("execveat"), Direct(exit_code=ESCAPE_CODE), _NS),
        A("exec.memfd_create", "exec", atk.memfd_exec, (atk.tiny_elf(ESCAPE_CODE),), V,
          _syscall("memfd_create"), Direct(exit_code=ESCAPE_CODE), ("seccomp", "rlimits"),
          note="a memfd is on no path: Landlock and the empty root do not apply; "
               "RLIMIT_FSIZE=0 stops writing the program"),
        # ---- network ----------------------------------------------------------------
        A("net.tcp_connect", "network", atk.tcp_connect, ("127.0.0.1", R("tcp_port")), V,
          _syscall_tb("socket", "tcp_connect"), Direct(),
          ("seccomp", "namespaces", "landlock:abi4")),
        A("net.tcp6_connect", "network", atk.tcp_connect, ("::1", R("tcp6_port")), V,
          _syscall("socket"), Direct(needs="ipv6"), ("seccomp", "namespaces", "landlock:abi4")),
        A("net.udp_sendto", "network", atk.udp_send, ("127.0.0.1", R("udp_port")), V,
          _syscall("socket"), Direct(), ("seccomp", "namespaces")),
        A("net.tcp_bind_listen", "network", atk.tcp_listen, (), V, _syscall("socket"),
          Direct(), ("seccomp", "namespaces", "landlock:abi4")),
        A("net.unix_connect", "network", atk.unix_connect, (R("unix_path"),), V,
          _syscall("socket"), Direct(), ("seccomp", "namespaces")),
        A("net.unix_abstract_connect", "network", atk.unix_connect, (R("abstract_name"),), V,
          _syscall("socket"), Direct(), ("seccomp", "namespaces", "landlock:abi6")),
        A("net.unix_bind", "network", atk.unix_bind, (R("new"),), V, _syscall("socket"),
          Direct(), _NS),
        A("net.netlink_route", "network", atk.netlink_links, (R("host_interfaces"),), V,
          _syscall("socket"), Direct(needs="interfaces"), ("seccomp", "namespaces")),
        A("net.packet_socket", "network", atk.packet_socket, (), V, _syscall("socket"),
          Direct(needs="root"), _CAPS),
        A("net.raw_ip_socket", "network", atk.raw_icmp_socket, (), V, _syscall("socket"),
          Direct(needs="root"), _CAPS),
        # ---- kernel attack surface --------------------------------------------------
        A("kernel.io_uring_setup", "kernel", atk.io_uring, (), V,
          _syscall("io_uring_setup"), Direct(), ("seccomp",)),
        A("kernel.bpf", "kernel", atk.bpf_map, (), V, _syscall("bpf"), Direct(needs="root"),
          _CAPS),
        A("kernel.userfaultfd", "kernel", atk.userfaultfd, (), V, _syscall("userfaultfd"),
          Direct(), ("seccomp",)),
        A("kernel.perf_event_open", "kernel", atk.perf_event, (), V,
          _syscall("perf_event_open"), Direct(), ("seccomp",)),
        A("kernel.keyctl", "kernel", atk.keyctl_describe, (), V, _syscall("keyctl"),
          Direct(), ("seccomp",)),
        A("kernel.add_key", "kernel", atk.add_key, (), V, _syscall("add_key"), Direct(),
          ("seccomp",)),
        A("kernel.modify_ldt", "kernel", atk.modify_ldt, (), V, _syscall("modify_ldt"),
          Direct(), ("seccomp",)),
        A("kernel.syslog", "kernel", atk.syslog_size, (), V, _syscall("syslog"),
          Direct(needs="root"), _CAPS),
        A("kernel.sysv_shm", "kernel", atk.sysv_shm, (), V, _syscall("shmget"), Direct(),
          ("seccomp",), note="the IPC namespace is the zygote's, shared by its sandboxes"),
        # ---- namespaces and mounts --------------------------------------------------
        A("ns.mount", "namespaces", atk.mount_tmpfs, (R("mount_target"), R("private")), V,
          _syscall("mount"), Direct(), _MOUNT),
        A("ns.umount", "namespaces", atk.umount_path, (R("mount_target"), R("private")), V,
          _syscall("umount2"), Direct(), _MOUNT),
        A("ns.pivot_root", "namespaces", atk.pivot_root, (R("mount_target"), R("private")),
          V, _syscall("pivot_root"), Direct(), _MOUNT),
        A("ns.chroot", "namespaces", atk.chroot_path, ("/",), V, _syscall("chroot"),
          Direct(needs="root"), _CAPS),
        A("ns.unshare_user", "namespaces", atk.unshare_ns, (atk.CLONE_NEWUSER,), V,
          _syscall("unshare"), Direct(), ("seccomp", "namespaces"),
          note="a chrooted process may not create a user namespace"),
        A("ns.unshare_net", "namespaces", atk.unshare_ns, (atk.CLONE_NEWNET,), V,
          _syscall("unshare"), Direct(needs="root"), _CAPS),
        A("ns.setns_host", "namespaces", atk.setns_host, (R("host_pid"), atk.CLONE_NEWNET),
          V, _syscall("pidfd_open"), Direct(needs="root"), _CAPS),
        A("ns.sethostname", "namespaces", atk.set_hostname, ("pwned", R("private")), V,
          _syscall("sethostname"), Direct(), _CAPS,
          note="the UTS namespace is the zygote's: one sandbox would rename all"),
        # ---- identity and privileges ------------------------------------------------
        A("priv.setuid_root", "privileges", atk.setuid_root, (), V, _syscall("setuid"),
          Direct(needs="root"), _CAPS),
        A("priv.capset", "privileges", atk.capset_all, (R("host_caps"),), V, _syscall("capset"),
          Direct(needs="root"), _CAPS),
        A("prctl.seccomp_filter", "prctl", atk.seccomp_filter, (), V,
          _syscall("prctl"), Direct(), ("seccomp",)),
        A("prctl.dumpable", "prctl", atk.set_dumpable, (), V, _syscall("prctl"), Direct(),
          ("seccomp",)),
        A("prctl.no_new_privs_off", "prctl", atk.clear_no_new_privs, (), V,
          _syscall("prctl"), "the kernel never clears no_new_privs once set (prctl(2): "
          "EINVAL), sandbox or not: there is nothing to show", ("seccomp", "kernel")),
        A("prctl.pdeathsig_off", "prctl", atk.clear_pdeathsig, (), V, _syscall("prctl"),
          Direct(), ("seccomp",), note="would let a sandbox outlive the zygote"),
        A("prctl.personality", "prctl", atk.personality, (), V, _syscall("personality"),
          Direct(), ("seccomp",), note="READ_IMPLIES_EXEC would undo W^X"),
        A("ioctl.tiocsti", "prctl", atk.tiocsti, (R("own"),), V, _syscall("ioctl"),
          Direct(needs="tiocsti"), ("seccomp", "fds")),
        A("sched.getaffinity_host", "scheduling", atk.get_affinity, (R("host_pid"),), V,
          _syscall("sched_getaffinity"), Direct(), ("seccomp",),
          note="allowed for pid 0 only: any other pid would probe the host's pids"),
        A("sched.setaffinity_host", "scheduling", atk.set_affinity, (R("dummy"),), V,
          _syscall("sched_setaffinity"), Direct(), ("seccomp", "capabilities:root"),
          note="commoncap: a process may not change one with more capabilities"),
        A("sched.setpriority_host", "scheduling", atk.set_priority, (R("dummy"), R("nice")),
          V, _syscall("setpriority"), Direct(), ("seccomp", "capabilities:root")),
        # ---- W^X, inputs, foreign ABIs ---------------------------------------------
        A("wx.mmap_exec", "w^x", atk.run_code_rwx, (), V, _syscall_tb("mmap", "run_code_rwx"),
          Direct(), ("seccomp",)),
        A("wx.mprotect_exec", "w^x", atk.run_code_mprotect, (), V, _syscall("mprotect"),
          Direct(), ("seccomp",)),
        A("wx.pkey_mprotect_exec", "w^x", atk.run_code_pkey, (), V,
          _syscall("pkey_mprotect"), Direct(), ("seccomp",)),
        A("wx.heap_code", "w^x", atk.run_code_heap, (), "SandboxFault",
          _killed(signal.SIGSEGV), "the heap is not executable anywhere (NX): the "
          "unsandboxed way to run new code is wx.mmap_exec, shown there", ("nx",)),
        A("wx.ctypes_callback", "w^x", atk.ctypes_callback, (), V,
          _syscall("mmap", "openat"), Direct(), ("seccomp",),
          note="a libffi closure needs an executable trampoline"),
        A("mem.write_input_native", "buffers", atk.write_input_native, (b"input",),
          "SandboxFault", _killed(signal.SIGSEGV), Direct(), ("buffers",)),
        A("mem.mprotect_input_writable", "buffers", atk.mprotect_input, (b"input",), T,
          _remote("PermissionError", "mprotect"), Direct(args=(R("readonly_page"),)),
          ("buffers",), note="the input memfd is sealed and its descriptor read-only"),
        A("abi.int80", "abi", atk.int80_gadget, (), V, _killed(SIGSYS),
          Direct(function=atk.int80_shellcode), ("seccomp",),
          note="int 0x80 found in an already executable page; the demonstration runs it "
               "from an RWX page (foreign_abi_proof installs the filter after mapping it)"),
        A("abi.x32", "abi", atk.x32_getpid, (), V, _killed(SIGSYS), Direct(needs="x32"),
          ("seccomp",)),
        # ---- descriptors ------------------------------------------------------------
        A("fd.scan", "descriptors", atk.scan_fds, (), T, _remote("Contained"), Direct(),
          ("fds",)),
        A("fd.stdio", "descriptors", atk.stdio_fds, (), T, _remote("Contained"), Direct(),
          ("fds",)),
        A("fd.inherited_secret", "descriptors", atk.inherited_secret, (SECRET_PREFIX,), T,
          _remote("Contained"), Direct(), ("fds", "zygote")),
        # ---- host secrets -----------------------------------------------------------
        A("secret.environment", "secrets", atk.env_secret, (SECRET_PREFIX,), T,
          _remote("Contained"), Direct(), ("zygote",)),
        A("secret.memory_scan", "secrets", atk.memory_secret, (SECRET_PREFIX,), T,
          _remote("Contained"), Direct(), ("zygote",)),
        A("secret.host_address", "secrets", atk.host_address,
          (R("secret_addr"), SECRET_PREFIX), T, _remote("Contained"), Direct(),
          ("zygote",)),
        A("secret.host_file", "secrets", atk.read_file, (R("secret_file"),), V,
          _syscall("openat"), Direct(), _NS),
        A("secret.hostname", "secrets", atk.hostname, (R("hostname"),), T,
          _remote("Contained"), Direct(), ("namespaces",)),
        # ---- resources --------------------------------------------------------------
        A("res.fork_bomb", "resources", atk.fork_bomb, (64,), V, _syscall("clone"),
          Direct(args=(8,)), _CHILD),
        A("res.memory_bomb", "resources", atk.memory_bomb, (256 << 20,),
          "SandboxMemoryError", _limit("memory"), Direct(), ("rlimits",),
          policy={"memory": 64 << 20}),
        A("res.address_space", "resources", atk.address_space, (), "SandboxMemoryError",
          _limit("memory"), Direct(), ("rlimits",), policy={"memory": 64 << 20}),
        A("res.file_size", "resources", atk.file_size, (Out(4096),), T,
          _remote("OSError", "File too large"), Direct(function=atk.grow_file,
                                                        args=(R("victim"),)),
          ("rlimits", "buffers"), note="a memfd could otherwise grow outside RLIMIT_AS"),
        A("res.fd_exhaustion", "resources", atk.fd_exhaustion, (256,), T,
          _remote("OSError", "Too many open files"), Direct(), ("rlimits",)),
        A("res.cpu_spin", "resources", atk.cpu_spin, (None,), "SandboxTimeout",
          _limit("cpu"), Direct(args=(1.05,)), ("rlimits", "supervisor"),
          policy={"cpu_seconds": 1, "timeout": 10.0}),
        A("res.cpu_spin_ignore_sigxcpu", "resources", atk.cpu_spin_ignoring_sigxcpu,
          (None,), "SandboxTimeout", _limit("cpu"),
          "same as res.cpu_spin (shown there); ignoring SIGXCPU is the twist",
          ("rlimits", "supervisor"), policy={"cpu_seconds": 1, "timeout": 10.0}),
        A("res.sleep_blocking_signals", "resources", atk.sleep_blocking_signals, (30.0,),
          "SandboxTimeout", _limit("timeout"), Direct(args=(0.6,)), ("supervisor",),
          policy={"timeout": 0.5}),
        # ---- output floods and codec bombs -------------------------------------------
        A("out.huge", "output", atk.huge_result, (2 << 20,), "ProtocolError",
          _protocol("", ), Direct(), ("codec",), policy=_OUTPUT_POLICY),
        A("out.deep", "output", atk.deep_result, (100_000,), "ProtocolError",
          _protocol("depth"), Direct(), ("codec",)),
        A("out.many_items", "output", atk.many_items, (2_000_000,), "ProtocolError",
          _protocol(""), Direct(), ("codec",)),
        A("out.not_plain", "output", atk.not_plain, (R("new"),), "ProtocolError",
          _protocol("plain"), Direct(), ("codec",)),
        A("out.forged_pickle_frame", "output", atk.forged_pickle, (R("new"),),
          "ProtocolError", _protocol(""), Direct(function=atk.unpickle,
                                                 args=(R("pickle_bomb"),)), ("codec",),
          note="a result claiming to be a pickle: the host never unpickles"),
        A("out.forged_ext_frame", "output", atk.forged_ext, (R("new"),), "ProtocolError",
          _protocol(""), _NOT_SHOWN_FRAME, ("codec",)),
        A("out.forged_length", "output", atk.forged_length, (), "ProtocolError",
          _protocol(""), _NOT_SHOWN_FRAME, ("codec",)),
        A("out.frame_with_fd", "output", atk.forged_fd, (), "ProtocolError",
          _protocol(""), _NOT_SHOWN_FRAME, ("codec",)),
        A("out.garbage_flood", "output", atk.garbage_flood, (64 << 20,), "ProtocolError",
          _protocol(""), _NOT_SHOWN_FRAME, ("codec",)),
        A("out.many_frames", "output", atk.many_frames, (100_000,), "ProtocolError",
          _protocol(""), _NOT_SHOWN_FRAME, ("codec",)),
        A("out.error_bomb", "output", atk.error_bomb, (4 << 20,), "ProtocolError",
          _protocol(""), Direct(function=atk.error_bomb_size), ("codec",),
          policy=_OUTPUT_POLICY),
        # ---- nesting ----------------------------------------------------------------
        A("nest.sandbox_in_sandbox", "nesting", atk.nested_run, (), T,
          _remote("SandboxError", "nest"), "outside a sandbox, starting one is the normal "
          "use of this library (every other row shows it)", ("nesting guard", "seccomp")),
        A("nest.guard_bypassed", "nesting", atk.nested_run_bypass, (), V,
          _module("sandboxmode._sandbox"), "outside a sandbox there is no guard to bypass",
          ("import guard", "seccomp")),
    ]
    return out


ATTACKS: Final[tuple[Attack, ...]] = tuple(_attacks())
BY_NAME: Final[dict[str, Attack]] = {a.name: a for a in ATTACKS}


# ======================================================================================
# The environment: targets the attacks aim at, and the checks that nothing was hit


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"hex": v[:64].hex()}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _listener(family: int, kind: int, address: Any) -> socket.socket:
    s = socket.socket(family, kind)
    try:
        s.bind(address)
        if kind == socket.SOCK_STREAM:
            s.listen(8)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def _pending(s: socket.socket) -> bool:
    """Did anything connect to / arrive at this listener? (Never blocks.)"""
    r, _, _ = select.select([s], [], [], 0)
    return bool(r)


class Env:
    """Targets the attacks aim at, owned by this process, and the checks that nothing
    of them (or of the host) changed. A context manager: everything is released on exit.

    Two sets of targets: those the sandboxed attacks aim at, which must stay untouched,
    and the demonstrations' own (a copy of the victim file, a second listener, a fresh
    dummy process per demonstration), which the unsandboxed runs are allowed to hit.
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.root = tempfile.mkdtemp(prefix="sbm-selftest-")
        self._stack.callback(shutil.rmtree, self.root, True)
        self.forbidden = os.path.join(self.root, "forbidden")  # must stay empty
        self.demo_dir = os.path.join(self.root, "demo")
        os.mkdir(self.forbidden)
        os.mkdir(self.demo_dir)
        self.secret = SECRET_PREFIX + os.urandom(16).hex()
        self.secret_file = os.path.join(self.root, "secret.txt")
        self.victim = os.path.join(self.root, "victim.txt")
        for path, text in ((self.secret_file, self.secret), (self.victim, "victim\n")):
            with open(path, "w") as f:
                f.write(text)
        self._listing = sorted(os.listdir(self.root))
        self._victim_stat = os.stat(self.victim)
        self.secret_fd = os.open(self.secret_file, os.O_RDONLY | os.O_CLOEXEC)
        self._stack.callback(os.close, self.secret_fd)
        # Host memory: the secret, and scratch buffers the write attacks aim at.
        self._secret_buf = ctypes.create_string_buffer(self.secret.encode())
        self._scratch = ctypes.create_string_buffer(b"host-scratch", 64)
        self._demo_scratch = ctypes.create_string_buffer(b"demo-scratch", 64)
        self._old_env = os.environ.get(SECRET_ENV)
        os.environ[SECRET_ENV] = self.secret
        self._stack.callback(self._restore_env)
        self.hostname = socket.gethostname()
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)
        self.affinity = os.sched_getaffinity(0)
        self._counter = 0
        self._dummies: dict[int, int] = {}  # pid -> the pipe whose EOF ends it
        self.last_dummy: int | None = None
        self._stack.callback(self._end_dummies)
        self._dummy: int | None = None
        self._other: Any = None
        self._other_pid: int | None = None
        self._zygotes: dict[bool, tuple[Any, int]] = {}
        self._listeners: dict[str, socket.socket] = {}
        self._demo_listeners: dict[str, socket.socket] = {}
        self._handle: tuple[bytes, int] | None = None
        self._pages: list[Any] = []
        try:  # the zygote the attacks run under must still be the same one at the end
            self.zygote_pid(BASE_POLICY)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._other is not None:
            self._other.destroy()
            self._other = None
        for s in (*self._listeners.values(), *self._demo_listeners.values()):
            s.close()
        self._listeners.clear()
        self._demo_listeners.clear()
        self._stack.close()

    def _restore_env(self) -> None:
        if self._old_env is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = self._old_env

    # -- processes of our own ----------------------------------------------------------

    def spawn_dummy(self) -> int:
        """A process of ours that waits for EOF on a pipe (no sleep, no timer) with SIGURG
        blocked, so that a SIGURG sent to it stays pending, visible in /proc (see
        `signalled`) -- no handler, no race with its delivery."""
        r, w = os.pipe2(os.O_CLOEXEC)
        rr, rw = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                keep = sorted((r, rw))
                os.closerange(0, keep[0])
                os.closerange(keep[0] + 1, keep[1])
                os.closerange(keep[1] + 1, 1 << 16)
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGURG})
                os.write(rw, b"r")  # ready: SIGURG is blocked
                os.close(rw)
                while os.read(r, 1):
                    pass
            finally:
                os._exit(0)
        os.close(r)
        os.close(rw)
        self._dummies[pid] = w
        try:
            ready = os.read(rr, 1)  # blocks until the dummy is ready (or died: EOF)
        finally:
            os.close(rr)
        if ready != b"r":
            raise OSError(errno.ECHILD, "the dummy process did not start")
        self.last_dummy = pid
        return pid

    def signalled(self, pid: int) -> bool:
        """Is a SIGURG pending for dummy ``pid`` (it blocks SIGURG, so one that arrived
        stays pending)?"""
        bit = 1 << (signal.SIGURG - 1)
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            return False
        return any(int(fields.get(k, "0").strip(), 16) & bit for k in ("SigPnd", "ShdPnd"))

    def _end_dummies(self) -> None:
        for pid, w in self._dummies.items():
            os.close(w)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self._dummies.clear()

    @property
    def dummy(self) -> int:
        if self._dummy is None:
            self._dummy = self.spawn_dummy()
        return self._dummy

    def other_sandbox_pid(self) -> int:
        """A live sandbox other than the attacker's (persistent: it serves calls)."""
        if self._other is None:
            self._other = sbm.Sandbox()
            if self._other.call(atk.ping) != "pong":
                raise SandboxError("the other sandbox does not answer")
            proc = self._other._backend.proc
            self._other_pid = int(proc.pid)
        assert self._other_pid is not None
        return self._other_pid

    def zygote_pid(self, policy: Policy) -> int:
        from sandboxmode import _spawner

        zh = _spawner.zygote_for(policy)
        assert zh.proc is not None
        ns = not policy.unsafe_no_namespaces
        self._zygotes.setdefault(ns, (zh, zh.proc.pid))
        return int(zh.proc.pid)

    # -- listeners ---------------------------------------------------------------------

    def listener(self, kind: str, demo: bool) -> socket.socket:
        table = self._demo_listeners if demo else self._listeners
        if kind not in table:
            tag = "demo" if demo else "sbx"
            if kind == "tcp":
                s = _listener(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0))
            elif kind == "tcp6":
                s = _listener(socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0))
            elif kind == "udp":
                s = _listener(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))
            elif kind == "unix":
                s = _listener(socket.AF_UNIX, socket.SOCK_STREAM,
                              os.path.join(self.root, f"{tag}.sock"))
            elif kind == "abstract":
                s = _listener(socket.AF_UNIX, socket.SOCK_STREAM,
                              f"\0sbm-selftest-{tag}-{os.getpid()}-{id(self)}")
            else:  # pragma: no cover
                raise KeyError(kind)
            table[kind] = s
        return table[kind]

    # -- resolving the table's references --------------------------------------------------

    def _fresh(self, where: str) -> str:
        self._counter += 1
        return os.path.join(where, f"n{self._counter}")

    def value(self, name: str, demo: bool, policy: Policy = BASE_POLICY) -> Any:
        """The value of `Ref` ``name`` for a sandboxed run or a demonstration."""
        if name == "secret_file":
            return self.secret_file
        if name == "secret_fd":
            return self.secret_fd
        if name == "secret_addr":
            return ctypes.addressof(self._secret_buf)
        if name == "scratch_addr":
            return ctypes.addressof(self._demo_scratch if demo else self._scratch)
        if name == "victim":
            if not demo:
                return self.victim
            path = self._fresh(self.demo_dir)
            shutil.copyfile(self.victim, path)
            return path
        if name == "new":
            return self._fresh(self.demo_dir if demo else self.forbidden)
        if name == "tmpdir":
            return self.root
        if name == "host_pid":
            return os.getpid()
        if name in ("signal_host", "trace_host"):
            return self.spawn_dummy() if demo else os.getpid()
        if name in ("signal_zygote", "trace_zygote"):
            return self.spawn_dummy() if demo else self.zygote_pid(policy)
        if name == "zygote_pid":
            return self.zygote_pid(policy)
        if name == "dummy":
            return self.spawn_dummy() if demo else self.dummy
        if name == "other_sandbox":
            return self.spawn_dummy() if demo else self.other_sandbox_pid()
        if name in ("tcp_port", "tcp6_port", "udp_port"):
            return self.listener(name[:-5], demo).getsockname()[1]
        if name == "unix_path":
            return self.listener("unix", demo).getsockname()
        if name == "abstract_name":
            addr = self.listener("abstract", demo).getsockname()
            return addr.decode("latin-1") if isinstance(addr, bytes) else addr
        if name == "host_interfaces":
            return [n for _, n in socket.if_nameindex() if n != "lo"]
        if name == "env_name":
            with open("/proc/self/environ", "rb") as f:
                first = f.read().split(b"\0")[0].partition(b"=")[0]
            return first.decode(errors="replace") or "PATH"
        if name == "host_caps":
            return atk.permitted_caps()
        if name == "hostname":
            return self.hostname
        if name == "nice":
            return self.nice
        if name in ("handle_bytes", "handle_type"):
            if self._handle is None:
                self._handle = atk.name_to_handle(self.secret_file)
            return self._handle[0] if name == "handle_bytes" else self._handle[1]
        if name == "handle_mount":
            return self.root if demo else None
        if name == "private":
            return demo
        if name == "own":
            return demo
        if name == "mount_target":
            if not demo:
                return "/"
            path = self._fresh(self.demo_dir)
            os.mkdir(path)
            return path
        if name == "readonly_page":
            page = atk.readonly_page()
            self._pages.append(page)
            return page
        if name == "pickle_bomb":
            import pickle

            return pickle.dumps(atk.PickleBomb(self._fresh(self.demo_dir)))
        raise KeyError(f"no such reference: {name!r}")

    def resolve(self, args: Iterable[Any], demo: bool, policy: Policy = BASE_POLICY
                ) -> list[Any]:
        return [self.value(a.name, demo, policy) if isinstance(a, Ref) else a for a in args]

    # -- what this machine can show ------------------------------------------------------

    def unmet(self, need: str | None) -> str | None:
        """Why a demonstration cannot run here, or None."""
        if need is None:
            return None
        if need == "root":
            return None if os.getuid() == 0 else (
                "needs privileges this (unprivileged) test process does not have")
        if need == "ipv6":
            try:
                self.listener("tcp6", True)
            except OSError as e:
                return f"no IPv6 loopback here ({e.strerror})"
            return None
        if need == "interfaces":
            return None if self.value("host_interfaces", True) else (
                "this machine has no network interface but lo to discover")
        if need == "x32":
            return None if _x32_works() else (
                "this kernel has no x32 ABI (CONFIG_X86_X32_ABI): x32 numbers fail with "
                "ENOSYS even unsandboxed; foreign_abi_proof shows the filter kills them")
        if need == "tiocsti":
            try:
                with open("/proc/sys/dev/tty/legacy_tiocsti") as f:
                    legacy = f.read().strip() == "1"
            except OSError:
                legacy = True
            return None if legacy or os.getuid() == 0 else (
                "TIOCSTI is disabled for unprivileged users here (dev.tty.legacy_tiocsti=0)")
        raise KeyError(need)

    # -- sentinel checks ------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Everything that changed on the host since the environment was made."""
        out = []
        try:
            with open(self.secret_file) as f:
                if f.read() != self.secret:
                    out.append("the secret file changed")
            with open(self.victim) as f:
                if f.read() != "victim\n":
                    out.append("the victim file changed")
            st = os.stat(self.victim)
            if (st.st_mode, st.st_ino, st.st_nlink) != (
                    self._victim_stat.st_mode, self._victim_stat.st_ino,
                    self._victim_stat.st_nlink):
                out.append("the victim file's mode, inode or links changed")
        except OSError as e:
            out.append(f"a sentinel file is gone: {e}")
        created = os.listdir(self.forbidden)
        if created:
            out.append(f"files were created: {created}")
        listing = sorted(n for n in os.listdir(self.root))
        expected = sorted({*self._listing, *(f"{t}.sock" for t in ("sbx", "demo")
                                            if (t == "sbx" and "unix" in self._listeners)
                                            or (t == "demo" and "unix" in self._demo_listeners))})
        if listing != expected:
            out.append(f"the directory changed: {listing} != {expected}")
        for kind, s in self._listeners.items():
            if _pending(s):
                out.append(f"the {kind} listener saw a connection or datagram")
        if self._scratch.raw[:12] != b"host-scratch":
            out.append("host memory was written")
        if self._secret_buf.value.decode() != self.secret:
            out.append("the host secret in memory changed")
        if self._dummy is not None:
            if not _alive(self._dummy):
                out.append(f"the dummy process {self._dummy} was killed or stopped")
            elif self.signalled(self._dummy):
                out.append(f"the dummy process {self._dummy} received a signal")
        if self._other is not None:
            try:
                if self._other.call(atk.ping) != "pong":
                    out.append("the other sandbox answers wrongly")
            except SandboxError as e:
                out.append(f"the other sandbox was harmed: {type(e).__name__}: {e}")
        for ns, (zh, pid) in self._zygotes.items():
            if not zh.alive() or zh.proc is None or zh.proc.pid != pid:
                out.append(f"the zygote (namespaces={ns}) {pid} died")
        if socket.gethostname() != self.hostname:
            out.append("the host name changed")
        if os.getpriority(os.PRIO_PROCESS, 0) != self.nice:
            out.append("the host's priority changed")
        if os.sched_getaffinity(0) != self.affinity:
            out.append("the host's CPU affinity changed")
        return out

    def demo_scratch_written(self) -> bool:
        return self._demo_scratch.raw[:5] == b"PWNED"


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    if done:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("T", "t", "Z", "X")


def _x32_works() -> bool:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            code = 0 if atk.libc.raw_syscall(0x40000000 | 39) > 0 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# ======================================================================================
# Running


def _policy_for(attack: Attack, config: str,
                overrides: Mapping[str, Any] | None = None) -> Policy:
    policy = BASE_POLICY.replace(**{**attack.policy, **(overrides or {})})
    if config != "default":
        policy = policy.replace(**{config: True})
    return policy


def _disabled(config: str) -> str | None:
    for layer, switch in SWITCHABLE.items():
        if switch == config:
            return layer
    return None


_ERRNO_LAYER: Final[dict[int, str]] = {
    errno.ENOENT: "namespaces", errno.ENOTDIR: "namespaces", errno.EROFS: "namespaces",
    errno.ENETUNREACH: "namespaces", errno.EADDRNOTAVAIL: "namespaces",
    errno.ECONNREFUSED: "namespaces", errno.ENODEV: "namespaces",
    errno.EACCES: "landlock", errno.EAGAIN: "rlimits", errno.EMFILE: "rlimits",
    errno.EFBIG: "rlimits", errno.EPERM: "capabilities",
}


def stopped_by(exc: SandboxError, attack: Attack, config: str) -> str:
    """The layer that stopped an attack, from the evidence (and the table for errors the
    attack saw itself: an errno maps to the layer that returns it, if the attack lists
    that layer; otherwise the first listed layer still switched on)."""
    ev = exc.evidence
    if isinstance(exc, PolicyViolation):
        return "import guard" if "module" in ev else "seccomp"
    if isinstance(exc, SandboxMemoryError):
        return "rlimits"
    if isinstance(exc, SandboxTimeout):
        return "rlimits" if ev.get("limit") == "cpu" else "supervisor"
    if isinstance(exc, ProtocolError):
        return "codec"
    off = _disabled(config)
    listed = list(attack.effective_layers(os.getuid() == 0, _landlock_abi()))
    candidates = [layer for layer in listed if layer not in ("seccomp", off)]
    if isinstance(exc, SandboxFault):
        sig = ev.get("signal")
        if sig in (signal.SIGXCPU, signal.SIGXFSZ):
            return "rlimits"
        if sig == signal.SIGKILL and "rlimits" in candidates:
            return "rlimits"
        for layer in ("nx", "buffers"):  # a fault is how these layers stop an attack
            if layer in candidates:
                return layer
        return "crashed"  # the attack brought its own process down
    if isinstance(exc, TargetError):
        if exc.remote_type.endswith("SandboxError") and "nesting guard" in listed:
            return "nesting guard"
        err = _errno_in(exc)
        if err is not None:
            mapped = _ERRNO_LAYER.get(err)
            if mapped == "capabilities" and "capabilities" not in candidates:
                mapped = "landlock" if "landlock" in candidates else None
            if mapped in candidates:
                return mapped
        return candidates[0] if candidates else "kernel"
    return "?"


def run_attack(attack: Attack, env: Env, config: str = "default",
               overrides: Mapping[str, Any] | None = None) -> Result:
    """Run one attack in a fresh sandbox under ``config`` and judge it.

    ``overrides``: Policy fields on top of the attack's own (not ``unsafe_*``), e.g. a
    shorter wall-clock limit where only containment, not its cause, is being checked.
    """
    if overrides and any(k.startswith("unsafe_") for k in overrides):
        raise ValueError("layers are switched off with config, not overrides")
    policy = _policy_for(attack, config, overrides)
    start = time.monotonic()
    exc: SandboxError | None = None
    broken: Exception | None = None
    value: Any = None
    try:
        args = env.resolve(attack.args, demo=False, policy=policy)
        if any(isinstance(a, Out) for a in args):
            with sbm.Sandbox(policy=policy, max_calls=1) as box:
                call_args = [box.copy_out(bytearray(a.size)) if isinstance(a, Out) else
                             box.copy_in(a) if isinstance(a, bytes) else a for a in args]
                value = box.call(attack.function, *call_args)
        else:
            value = sbm.run(attack.function, *args, policy=policy)
    except SandboxError as e:
        exc = e
    except Exception as e:  # the host side failed: not the typed error the API promises
        broken = e
    seconds = time.monotonic() - start
    problems = env.problems()
    if broken is not None:
        outcome, layer = "broken", "-"
        message = f"the host raised {type(broken).__name__}: {broken}"[:500]
    elif exc is None:
        outcome, layer = "escaped", "-"
        message = f"the attack returned: {str(value)[:300]}"
    elif isinstance(exc, SandboxUnavailable):
        outcome, layer, message = "unavailable", "-", str(exc)
    elif exc.evidence.get("exit_code") == ESCAPE_CODE:
        outcome, layer = "escaped", "-"
        message = f"a program of the attacker's choosing ran (exit code {ESCAPE_CODE})"
    else:
        outcome, layer, message = "contained", stopped_by(exc, attack, config), str(exc)
    if problems:
        outcome = "escaped"
    as_expected = (exc is not None and type(exc).__name__ == attack.expect
                   and attack.evidence(exc) and not problems)
    name = type(exc).__name__ if exc else type(broken).__name__ if broken else None
    return Result(attack, config, outcome, name, message,
                  dict(exc.evidence) if exc else {}, layer, as_expected, problems, seconds)


def run_suite(policy: Policy | None = None, attacks: Sequence[Attack] = ATTACKS,
              env: Env | None = None) -> list[Result]:
    """Run ``attacks`` in sandboxes; return one `Result` each.

    ``policy`` selects the configuration: the default policy, or one with exactly one
    ``unsafe_*`` switch on (what the matrix varies); per-attack settings (timeouts,
    limits) are applied on top. The sentinel checks run after every attack.
    """
    config = "default"
    if policy is not None:
        unsafe = policy.unsafe
        if len(unsafe) > 1:
            raise ValueError("run_suite takes the default policy or one unsafe_* switch")
        config = unsafe[0] if unsafe else "default"
    with contextlib.ExitStack() as stack:
        if env is None:
            env = stack.enter_context(Env())
        return [run_attack(a, env, config) for a in attacks]


@dataclass
class Matrix:
    """Results per attack and configuration (see `CONFIGS`)."""

    results: dict[str, dict[str, Result]]
    root: bool
    landlock_abi: int

    def redundant_escapes(self) -> list[Result]:
        """Attacks the design says more than one layer stops, that escaped with one
        layer off -- a design claim that does not hold here."""
        out = []
        for name, row in self.results.items():
            layers = BY_NAME[name].effective_layers(self.root, self.landlock_abi)
            if len(layers) < 2:
                continue
            out += [r for c, r in row.items() if c != "default" and r.escaped]
        return out

    def default_escapes(self) -> list[Result]:
        return [row["default"] for row in self.results.values()
                if "default" in row and row["default"].escaped]


@functools.cache
def _landlock_abi() -> int:
    from sandboxmode._lockdown import landlock

    try:
        return landlock.abi()
    except OSError:
        return 0


def matrix(attacks: Sequence[Attack] = ATTACKS, configs: Sequence[str] = CONFIGS,
           env: Env | None = None) -> Matrix:
    """Run every attack under each configuration."""
    results: dict[str, dict[str, Result]] = {a.name: {} for a in attacks}
    with contextlib.ExitStack() as stack:
        if env is None:
            env = stack.enter_context(Env())
        for config in configs:
            for a in attacks:
                results[a.name][config] = run_attack(a, env, config)
    return Matrix(results, os.getuid() == 0, _landlock_abi())


# ======================================================================================
# Demonstrations (unsandboxed, in a throwaway child)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 120


def demonstrate(attack: Attack, env: Env, timeout: float = 30.0) -> Demo:
    """Show that the attack works without the sandbox, or say why that cannot be shown.

    The function runs directly in a forked child of this process, against the
    demonstration's own targets; the child reports through a pipe and is reaped.
    """
    spec = attack.works_unsandboxed
    if isinstance(spec, str):
        return Demo(False, spec)
    reason = env.unmet(spec.needs)
    if reason is not None:
        return Demo(False, reason)
    fn = spec.function or attack.function
    args = env.resolve(attack.args if spec.args is None else spec.args, demo=True)
    args = [bytes(a.size) if isinstance(a, Out) else a for a in args]
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            os.close(r)
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            try:
                value = fn(*args)
                text = value if isinstance(value, str) else _REPR.repr(value)
                report = {"ok": True, "value": text[:300]}
                code = 0
            except BaseException as e:
                report = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
                code = 1
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if spec.signalled:
        target = env.last_dummy
        if target is not None and env.signalled(target):
            return Demo(True, f"the dummy process {target} received the signal")
        return Demo(False, f"the dummy process {target} received nothing: {data!r}")
    if spec.exit_code is not None:
        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if exit_code == spec.exit_code:
            return Demo(True, f"the process ran a program of its choosing (exit {exit_code})")
        return Demo(False, f"expected exit {spec.exit_code}, got status {status:#x}: {data!r}")
    try:
        report = json.loads(data)
    except ValueError:
        return Demo(False, f"the demonstration died (status {status:#x})")
    if report.get("ok"):
        return Demo(True, str(report["value"]))
    return Demo(False, str(report.get("error")))


def foreign_abi_proof() -> dict[str, Any]:
    """Prove the seccomp filter kills the i386 (``int 0x80``) and x32 ABIs.

    Inside a sandbox no executable memory can be made, so this runs where it can: in a
    forked child that maps an RWX page *first*, shows the foreign call working (or the
    kernel refusing it by itself), then sets no_new_privs, installs the very program the
    sandboxes get (`build_filter`, killing variant) and makes the call again. Returns,
    per ABI, the result before and the child's fate after.
    """
    from sandboxmode._lockdown import seccomp as seccomp_layer

    bpf = seccomp_layer.build_filter(notify=False)
    out: dict[str, Any] = {}
    for abi, code in (("i386 int 0x80", atk.INT80_GETPID), ("x32", atk.X32_GETPID)):
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(r)
                run = atk._Code(code, "rwx")
                before = run()
                os.write(w, struct.pack("<q", before))
                atk.libc.check(atk.libc.prctl(atk.libc.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                               "prctl(PR_SET_NO_NEW_PRIVS)")
                seccomp_layer.load(bpf, notify=False)
                after = run()  # the filter kills the process here
                os.write(w, struct.pack("<q", after))
            finally:
                os._exit(0)
        os.close(w)
        data = b""
        try:
            while chunk := os.read(r, 64):
                data += chunk
        finally:
            os.close(r)
        _, status = os.waitpid(pid, 0)
        values = [struct.unpack_from("<q", data, i)[0] for i in range(0, len(data) - 7, 8)]
        first = values[0] if values else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        out[abi] = {
            "before": first,
            "before_meaning": ("getpid() = child pid" if first == pid else
                               f"error {-first}" if first is not None and first < 0
                               else repr(first)),
            "after_signal": sig,
            "killed_by_filter": sig == signal.SIGSYS and len(values) == 1,
        }
    return out


# ======================================================================================
# Output


def _short(r: Result) -> str:
    if r.outcome == "escaped":
        return "ESCAPED"
    if r.outcome == "broken":
        return "BROKEN"
    if r.outcome == "unavailable":
        return "n/a"
    return r.layer


def _config_label(config: str) -> str:
    layer = _disabled(config)
    return "default" if layer is None else f"no {layer}"


def markdown(m: Matrix) -> str:
    """The layer matrix as a Markdown table (what ``docs/escape.md`` holds)."""
    configs = [c for c in CONFIGS if any(c in row for row in m.results.values())]
    head = ["attack", "design", *(_config_label(c) for c in configs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in m.results.items():
        a = BY_NAME[name]
        design = ", ".join(a.effective_layers(m.root, m.landlock_abi))
        cells = [f"`{name}`", design, *(_short(row[c]) for c in configs)]
        lines.append("| " + " | ".join(cells) + " |")
    s = _summary(m)
    lines += ["", f"{s['attacks']} attacks, run as uid {os.getuid()} (Landlock ABI "
              f"{m.landlock_abi}). Stopped under the default policy by: "
              + ", ".join(f"{k} {v}" for k, v in sorted(s["stopped_under_default_by"].items(),
                                                        key=lambda kv: -kv[1])) + ".", ""]
    for c in configs:
        names = s["escaped_per_config"].get(c, [])
        lines.append(f"- escaped with {_config_label(c)}: {len(names)}"
                     + (f" ({', '.join(names)})." if names else "."))
    broken = s["redundancy_broken"]
    lines.append("- attacks the design says several layers stop that escaped with one of "
                 f"them off: {', '.join(broken) if broken else 'none'}.")
    return "\n".join(lines) + "\n"


def _summary(m: Matrix) -> dict[str, Any]:
    by_layer: dict[str, int] = {}
    for row in m.results.values():
        if "default" in row and row["default"].outcome == "contained":
            by_layer[row["default"].layer] = by_layer.get(row["default"].layer, 0) + 1
    escapes: dict[str, list[str]] = {}
    for name, row in m.results.items():
        for c, r in row.items():
            if r.escaped:
                escapes.setdefault(c, []).append(name)
    return {"attacks": len(m.results), "stopped_under_default_by": by_layer,
            "escaped_per_config": escapes,
            "redundancy_broken": [f"{r.attack.name} ({r.config})"
                                  for r in m.redundant_escapes()]}


def main(args: argparse.Namespace) -> int:
    """``sbm selftest``: exit 1 if anything escaped (under the default policy; with
    ``--matrix`` also an attack the design says several layers stop that escaped with one
    of them off), else 0."""
    as_json = bool(getattr(args, "json", False))
    want_matrix = bool(getattr(args, "matrix", False))
    want_md = bool(getattr(args, "markdown", False))
    only = getattr(args, "only", None)
    attacks = [BY_NAME[n] for n in only] if only else list(ATTACKS)
    start = time.monotonic()
    with Env() as env:
        if want_matrix:
            m = matrix(attacks, env=env)
            default = [row["default"] for row in m.results.values()]
        else:
            m = None
            default = run_suite(attacks=attacks, env=env)
        final = env.problems()
    proof = foreign_abi_proof()
    escaped = [r for r in default if r.escaped]
    broken = [r for r in default if r.outcome == "broken"]
    redundancy = m.redundant_escapes() if m is not None else []
    failed = bool(escaped or broken or redundancy or final
                  or not all(p["killed_by_filter"] for p in proof.values()))
    elapsed = time.monotonic() - start
    if want_md and m is not None:
        sys.stdout.write(markdown(m))
    elif as_json:
        doc: dict[str, Any] = {
            "attacks": len(default), "escaped": [r.attack.name for r in escaped],
            "broken": [r.attack.name for r in broken],
            "results": [r.to_json() for r in default], "sentinels": final or "ok",
            "foreign_abi_proof": proof, "uid": os.getuid(), "seconds": round(elapsed, 2)}
        if m is not None:
            doc["matrix"] = {name: {c: r.to_json() for c, r in row.items()}
                             for name, row in m.results.items()}
            doc["summary"] = _summary(m)
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        _print_tables(default, m, final, proof, elapsed)
    return 1 if failed else 0


def _print_tables(default: list[Result], m: Matrix | None, final: list[str],
                  proof: dict[str, Any], elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, emoji=False, markup=False)
    if m is None:
        t = Table(title="sandboxmode selftest: attacks under the default policy")
        t.add_column("attack", no_wrap=True)
        t.add_column("stopped by")
        t.add_column("exception")
        category = None
        for r in default:
            if category is not None and r.attack.category != category:
                t.add_section()
            category = r.attack.category
            t.add_row(r.attack.name, r.outcome.upper() if r.failed else r.layer,
                      f"{r.exception or '-'}" + ("" if r.as_expected or r.failed else
                                                 " (unexpected)"),
                      style="bold" if r.failed else None)
        console.print(t)
    else:
        configs = list(CONFIGS)
        t = Table(title="sandboxmode selftest --matrix: which layer stops which attack")
        t.add_column("attack", no_wrap=True)
        t.add_column("design")
        for c in configs:
            t.add_column(_config_label(c))
        for name, row in m.results.items():
            a = BY_NAME[name]
            t.add_row(name, ", ".join(a.effective_layers(m.root, m.landlock_abi)),
                      *(_short(row[c]) for c in configs))
        console.print(t)
        s = _summary(m)
        console.print(f"stopped under the default policy by: {s['stopped_under_default_by']}")
        for c, names in s["escaped_per_config"].items():
            console.print(f"escaped with {c}: {len(names)}: {', '.join(names)}")
        if s["redundancy_broken"]:
            console.print("design claims broken: " + ", ".join(s["redundancy_broken"]))
    n_esc = sum(r.escaped for r in default)
    n_broken = sum(r.outcome == "broken" for r in default)
    console.print(f"{len(default)} attacks, {n_esc} escaped and {n_broken} broke the host's "
                  "error handling under the default policy; "
                  f"sentinels: {'; '.join(final) if final else 'untouched'}; "
                  f"{elapsed:.1f} s as uid {os.getuid()}")
    for abi, p in proof.items():
        console.print(f"{abi}: before the filter {p['before_meaning']}; after: "
                      + ("killed by SIGSYS" if p["killed_by_filter"]
                         else f"NOT killed (signal {p['after_signal']})"))


def _cli(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sandboxmode.selftest")
    p.add_argument("--json", action="store_true")
    p.add_argument("--matrix", action="store_true")
    p.add_argument("--markdown", action="store_true", help="with --matrix: a Markdown table")
    p.add_argument("--only", action="append", metavar="ATTACK", choices=sorted(BY_NAME),
                   help="run only this attack (repeatable)")
    return main(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_cli())
