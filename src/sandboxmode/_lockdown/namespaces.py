"""Namespaces and the empty root: made once by the zygote, inherited by every child.

`enter_zygote_namespaces` moves the (single-threaded) zygote into new user, IPC, UTS,
mount and network namespaces; its children are forked inside them and never pay for
unshare(2) themselves. `make_empty_root` mounts a tiny read-only tmpfs in the zygote's
private mount namespace; `chroot_empty` (in each child) makes it the child's ``/``.

What each buys (namespaces(7), user_namespaces(7)):

- user: the zygote is root *inside* (full capabilities over the new namespaces, none
  outside), which is what lets an unprivileged host mount and chroot. One uid and one
  gid are mapped (0 -> the caller's), setgroups(2) is denied.
- mount: mounts made here are invisible outside; the tree is made MS_PRIVATE first so
  nothing propagates back either way.
- net: only a loopback interface, down: no route anywhere, not even to the host's
  127.0.0.1 services.
- ipc: no System V IPC objects or POSIX message queues of the host.
- uts: the host name is replaced by a fixed one (``sandbox``), so uname() leaks nothing.

Child-side module: standard library and ``_ffi`` only.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Final

from sandboxmode._ffi import libc

__all__ = [
    "EMPTY_ROOT_CANDIDATES",
    "HOSTNAME",
    "chroot_empty",
    "enter_zygote_namespaces",
    "make_empty_root",
]

#: The host name seen inside the UTS namespace.
HOSTNAME: Final = "sandbox"

#: Directories tried, in order, as the mount point of the empty root. Mounting over one
#: hides it only inside the zygote's private mount namespace; the first ones are those
#: the zygote never needs (FHS: /mnt is for temporary mounts).
EMPTY_ROOT_CANDIDATES: Final = ("/mnt", "/media", "/srv", "/opt", "/home", "/var/tmp", "/tmp")

#: tmpfs(5) options of the empty root: one inode (the root directory itself), one page
#: (size=0 would mean *unlimited*), mode 0555. Mounted read-only, nosuid, nodev, noexec.
_EMPTY_ROOT_OPTIONS: Final = b"size=4k,nr_inodes=1,mode=0555"

_NAMESPACES: Final = (
    ("user", libc.CLONE_NEWUSER),
    ("ipc", libc.CLONE_NEWIPC),
    ("uts", libc.CLONE_NEWUTS),
    ("mnt", libc.CLONE_NEWNS),
    ("net", libc.CLONE_NEWNET),
)


def _write_proc(path: str, text: str) -> None:
    # user_namespaces(7): the map must be written with a single write(2).
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        data = text.encode()
        if os.write(fd, data) != len(data):
            raise OSError(errno.EIO, f"short write to {path}")
    finally:
        os.close(fd)


def enter_zygote_namespaces(uid: int, gid: int) -> list[str]:
    """Unshare user+ipc+uts+mount+net namespaces and set them up; return their names
    (as in /proc/self/ns: ``["user", "ipc", "uts", "mnt", "net"]``).

    ``uid``/``gid`` are the caller's ids *before* the call (os.getuid(), os.getgid()):
    they become uid/gid 0 inside. The caller must be single-threaded (unshare(2) refuses
    CLONE_NEWUSER otherwise, EINVAL).

    Raises:
        OSError: unshare(CLONE_NEWUSER) refused (EPERM: unprivileged user namespaces are
            disabled here, e.g. kernel.unprivileged_userns_clone=0 or an AppArmor/
            SELinux policy; ENOSPC: user.max_user_namespaces reached), or a later step
            failed. The message says which.
    """
    try:
        libc.check(libc.unshare(libc.CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    except OSError as e:
        hint = ""
        if e.errno in (errno.EPERM, errno.EACCES):
            hint = (
                " (user namespaces are not allowed for this user here: see "
                "user_namespaces(7), sysctls kernel.unprivileged_userns_clone, "
                "user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns)"
            )
        elif e.errno == errno.ENOSPC:
            hint = " (user.max_user_namespaces is exhausted)"
        raise OSError(e.errno, f"{e.strerror}{hint}") from None

    # user_namespaces(7): an unprivileged process must deny setgroups(2) before it may
    # write gid_map; harmless for root too, and no process here needs setgroups.
    _write_proc("/proc/self/setgroups", "deny")
    _write_proc("/proc/self/uid_map", f"0 {uid} 1\n")
    _write_proc("/proc/self/gid_map", f"0 {gid} 1\n")

    # The other namespaces are created *after* the user namespace, so they are owned by
    # it and our (namespace-local) capabilities apply to them.
    rest = 0
    for _name, flag in _NAMESPACES[1:]:
        rest |= flag
    libc.check(libc.unshare(rest), "unshare(CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWNS|CLONE_NEWNET)")

    # mount_namespaces(7): stop propagation in both directions before mounting anything.
    libc.check(
        libc.mount(b"none", b"/", None, libc.MS_REC | libc.MS_PRIVATE, None),
        "mount(/, MS_REC|MS_PRIVATE)",
    )
    name = HOSTNAME.encode()
    libc.check(libc.sethostname(name, len(name)), "sethostname")
    return [name for name, _flag in _NAMESPACES]


def make_empty_root() -> str:
    """Mount an empty, read-only tmpfs over an existing directory of this (private)
    mount namespace and return its path. Call after `enter_zygote_namespaces`.

    Raises OSError when no candidate directory could be used.
    """
    errors: list[str] = []
    for path in EMPTY_ROOT_CANDIDATES:
        try:
            st = os.lstat(path)
        except OSError as e:
            errors.append(f"{path}: {e.strerror}")
            continue
        if not stat.S_ISDIR(st.st_mode):  # a symlink would move the mount elsewhere
            errors.append(f"{path}: not a directory")
            continue
        flags = libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
        try:
            libc.check(
                libc.mount(b"none", path.encode(), b"tmpfs", flags, _EMPTY_ROOT_OPTIONS),
                f"mount(tmpfs, {path})",
            )
        except OSError as e:
            errors.append(f"{path}: {e.strerror}")
            continue
        if os.listdir(path):  # cannot happen on a fresh tmpfs; never chroot into content
            libc.umount2(path.encode(), libc.MNT_DETACH)
            errors.append(f"{path}: not empty after mounting")
            continue
        return path
    raise OSError(errno.ENOENT, "no directory to mount the empty root on: " + "; ".join(errors))


def chroot_empty(path: str) -> None:
    """chroot(path) then chdir("/"): the caller's filesystem is now the empty root.

    Needs CAP_SYS_CHROOT (in the zygote's user namespace), so it runs before capabilities
    are dropped. The chdir matters: chroot(2) leaves the working directory outside the
    new root, a classic escape. Descriptors to directories outside must already be
    closed (the lockdown closes every fd but the channel first).
    """
    os.chroot(path)
    os.chdir("/")
