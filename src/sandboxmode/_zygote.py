"""The fork server ("zygote") and the host's handle on it.

::

    host process                          zygote: exec'd as `python -I`, empty environment,
      ZygoteHandle ── control socket ──>    own user/ipc/uts/mount/net namespaces (made once),
        import / spawn / reap / forget      single-threaded, never reads untrusted data
                                              │ fork() on "spawn"
      Sandbox ────── channel ─────────────>   ▼
                                            child: _child.serve() → lockdown → READY → calls

Why a zygote: sandbox memory must never contain host memory (secrets, objects, the
environment), so sandboxes cannot be forked from the host; exec'ing a fresh interpreter
per call costs 10+ ms. The zygote is exec'd once, imports the trusted modules the
targets live in, compiles the seccomp filter once, and forks.

The control protocol is JSON in SOCK_SEQPACKET datagrams (the zygote is host-trusted, but
nothing on this socket is ever unpickled either). The channel socket of a new sandbox is
made by the host and passed with SCM_RIGHTS, so the host owns one end from the start.

The zygote dies on EOF of the control socket (the host is gone: CPython's forkserver
"alive" pipe idea), and the host restarts it if it dies (``ensure_running``).

Children are reaped by the zygote (their parent) only when the host says so
("reap" when it needs the exit status, "forget" when it does not): until then a dead
child stays a zombie, so the pid the host holds a pidfd for can never be reused.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from sandboxmode._lockdown.rlimits import current_vm_size

__all__ = ["BOOT", "pack", "unpack", "zygote_main"]

MAX_MSG = 1 << 16

#: Imported in every zygote: text codecs are looked up lazily by CPython
#: (``b.decode("latin-1")`` imports ``encodings.latin_1``), and an import inside a sandbox
#: is a PolicyViolation; these are the ones parsers commonly need.
PRELOAD = (
    "encodings.ascii", "encodings.latin_1", "encodings.utf_8", "encodings.utf_8_sig",
    "encodings.utf_16", "encodings.utf_16_le", "encodings.utf_16_be", "encodings.utf_32",
    "encodings.cp1252", "encodings.cp437", "encodings.iso8859_1", "encodings.iso8859_15",
    "encodings.idna", "encodings.punycode", "encodings.raw_unicode_escape",
    "encodings.unicode_escape", "encodings.base64_codec", "encodings.hex_codec",
    "encodings.charmap",
)


def pack(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode()


def unpack(data: bytes) -> dict[str, Any]:
    if not data:
        raise EOFError("control socket closed")
    msg = json.loads(data)
    if not isinstance(msg, dict):
        raise ValueError("control message is not an object")
    return msg


# ======================================================================================
# Zygote side


class _Zygote:
    def __init__(self, ctl: socket.socket, boot: dict[str, Any]) -> None:
        self.ctl = ctl
        self.boot = boot
        self.filters: dict[tuple[tuple[str, ...], bool], bytes] = {}
        self.forget: set[int] = set()
        self.features: dict[str, Any] = {}
        #: the zygote's address-space size, which a child starts with; the memory budget
        #: goes on top. Read again only where the zygote grows (imports, filters), not
        #: on every spawn.
        self.vm_baseline = current_vm_size()

    def setup(self) -> None:
        from sandboxmode._lockdown import landlock, namespaces

        f = self.features
        f["uid"], f["gid"] = os.getuid(), os.getgid()
        f["root"] = os.getuid() == 0
        f["errors"] = {}
        f["namespaces"] = []
        f["empty_root"] = None
        if self.boot.get("namespaces", True):
            try:
                f["namespaces"] = namespaces.enter_zygote_namespaces(f["uid"], f["gid"])
                f["empty_root"] = namespaces.make_empty_root()
            except OSError as e:
                f["errors"]["namespaces"] = str(e)
        try:
            f["landlock_abi"] = landlock.abi()
        except OSError as e:
            f["landlock_abi"] = 0
            f["errors"]["landlock"] = str(e)
        try:
            self.filter((), True)
            f["seccomp"] = True
            f["notify"] = True
        except OSError as e:
            f["errors"]["seccomp_notify"] = str(e)
            f["notify"] = False
            try:
                self.filter((), False)
                f["seccomp"] = True
            except OSError as e2:
                f["seccomp"] = False
                f["errors"]["seccomp"] = str(e2)
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            f["last_cap"] = int(fh.read())
        if f["namespaces"]:
            # Once here rather than ~40 prctl calls in every child: the bounding set is
            # inherited by fork, and the zygote never execs (it keeps its effective set).
            from sandboxmode._lockdown import caps

            try:
                caps.drop_bounding_set(f["last_cap"])
                f["bounding_set_empty"] = True
            except OSError as e:
                f["errors"]["bounding_set"] = str(e)

    def filter(self, extra: tuple[str, ...], notify: bool) -> bytes:
        from sandboxmode._lockdown import seccomp as seccomp_layer

        key = (extra, notify)
        if key not in self.filters:
            self.filters[key] = seccomp_layer.build_filter(notify=notify, extra=extra)
            self.vm_baseline = current_vm_size()
        return self.filters[key]

    def do_import(self, modules: list[str]) -> dict[str, Any]:
        import importlib
        import linecache

        before = set(sys.modules)
        try:
            for name in modules:
                importlib.import_module(name)
        except BaseException as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
        # Cache the source of what was just imported, so tracebacks inside sandboxes
        # (which have no filesystem) still show lines of the target's code.
        for name in set(sys.modules) - before:
            file = getattr(sys.modules.get(name), "__file__", None)
            if isinstance(file, str) and file.endswith(".py"):
                linecache.getlines(file)
        self.vm_baseline = current_vm_size()
        if threading_started():
            return {"ok": False, "error": f"importing {modules} started a thread in the "
                    "zygote; a fork server must stay single-threaded"}
        return {"ok": True}

    def spawn(self, req: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        from sandboxmode import _child

        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return {"ok": False, "error": "spawn needs exactly one channel fd"}
        channel = fds[0]
        policy = req["policy"]
        notify = bool(self.features.get("notify"))
        try:
            bpf = b"" if policy["unsafe_no_seccomp"] else self.filter(
                tuple(policy["extra_syscalls"]), notify)
        except (OSError, ValueError) as e:
            os.close(channel)
            return {"ok": False, "error": f"seccomp filter: {e}"}
        cfg = {
            "policy": policy,
            "bpf": bpf,
            "notify": notify,
            "landlock_abi": self.features["landlock_abi"],
            "empty_root": self.features["empty_root"],
            "last_cap": self.features["last_cap"],
            "root": self.features["root"],
            "vm_baseline": self.vm_baseline,
            "oneshot": bool(req.get("oneshot", True)),
            "inject_failure": req.get("inject_failure"),
            "timings": {} if req.get("timings") else None,
            "bounding_set_empty": bool(self.features.get("bounding_set_empty")),
        }
        # Objects that exist now are never collected in a child: keep the collector from
        # touching (and so copying) their pages after fork (gc.freeze, CPython >= 3.7).
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as e:
            os.close(channel)
            return {"ok": False, "error": f"fork: {e}"}
        if pid == 0:  # child
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _child.serve(channel, cfg)
            finally:
                os._exit(_child.LOCKDOWN_FAILED)
        os.close(channel)
        return {"ok": True, "pid": pid}

    def reap(self, pid: int) -> dict[str, Any]:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return {"ok": False, "error": f"no child {pid}"}
        return {"ok": True, "status": status}

    def reap_forgotten(self) -> None:
        for pid in list(self.forget):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.forget.discard(pid)

    def census(self) -> dict[str, Any]:
        """Reap every forgotten child (each was killed or is exiting), then list the rest."""
        for pid in list(self.forget):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.forget.discard(pid)
        children: list[int] = []
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                children += [int(x) for x in f.read().split()]
        return {"ok": True, "children": sorted(children)}

    def loop(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)
        while True:
            ready, _, _ = select.select([self.ctl.fileno(), wake_r], [], [])
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                self.reap_forgotten()
            if self.ctl.fileno() not in ready:
                continue
            data, fds, _flags, _addr = socket.recv_fds(self.ctl, MAX_MSG, 4)
            if not data:
                return  # the host is gone
            try:
                req = unpack(data)
            except ValueError as e:
                for fd in fds:
                    os.close(fd)
                self.ctl.send(pack({"ok": False, "error": f"bad request: {e}"}))
                continue
            # Any request may carry pids the host let go of (batched, so that letting go
            # never waits for the control socket).
            for pid in req.get("forget", ()):
                self.forget.add(int(pid))
            if req.get("forget"):
                self.reap_forgotten()
            op = req.get("op")
            if op == "spawn":
                reply = self.spawn(req, fds)
            else:
                for fd in fds:
                    os.close(fd)
                if op == "import":
                    reply = self.do_import(list(req["modules"]))
                elif op == "reap":
                    reply = self.reap(int(req["pid"]))
                elif op == "census":
                    reply = self.census()
                elif op == "forget":
                    continue  # handled above; no reply
                else:
                    reply = {"ok": False, "error": f"unknown op {op!r}"}
            self.ctl.send(pack(reply))


def threading_started() -> bool:
    t = sys.modules.get("threading")
    return t is not None and len(t.enumerate()) > 1


def zygote_main(fd: int, boot_json: str) -> None:
    """Entry point of the zygote process (see ``ZygoteHandle.start``)."""
    boot = json.loads(boot_json)
    sys.path[:] = boot["path"]
    # The host started us with an empty environment; CPython's own C-locale coercion
    # (PEP 538) may have added LC_CTYPE. Sandboxes get nothing at all.
    os.environ.clear()
    ctl = socket.socket(fileno=fd)
    z = _Zygote(ctl, boot)
    try:
        z.setup()
        z.do_import(["sandboxmode._child", "msgpack", *PRELOAD])
        # glibc reads /etc/localtime on the first localtime(): do it here, where there is
        # still a filesystem, so time.localtime() works in sandboxes.
        time.localtime()
        reply = {"ok": True, "features": z.features, "pid": os.getpid()}
    except BaseException as e:  # report, never hang the host
        ctl.send(pack({"ok": False, "error": f"zygote setup failed: {type(e).__name__}: {e}"}))
        os._exit(1)
    ctl.send(pack(reply))
    z.loop()
    os._exit(0)


BOOT = (
    "import sys; sys.path[:0] = __import__('json').loads(sys.argv[2])['path'];"
    "from sandboxmode._zygote import zygote_main; zygote_main(int(sys.argv[1]), sys.argv[2])"
)



if __name__ == "__main__":  # pragma: no cover
    zygote_main(int(sys.argv[1]), sys.argv[2])
