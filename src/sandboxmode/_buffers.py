"""Buffers that cross into a sandbox: copy handles and shared memory.

``copy_in/copy_out/copy_inout`` (SBM_COPY_IN/OUT/INOUT) return a `BufferHandle`: a note
of which caller object to snapshot at call time (SPEC-7) and where to copy back on
success (SPEC-9). `SharedBuffer` is memory the host allocated for sharing (a memfd mapped
in the host), given to a sandbox without copying by ``map_readonly/map_writable``.

memfd ownership (invariant 3): a `SharedBuffer` owns its memfd and mapping until
``close()``; per-call memfds are owned by the call that made them and closed on every
path by ``CallBuffers.close()``.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["BufferHandle", "CallBuffers", "Outputs", "SharedBuffer"]

IN, OUT, INOUT, SHARED_RO, SHARED_RW = "in", "out", "inout", "shared_ro", "shared_rw"
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def _byte_view(obj: Any, writable: bool) -> memoryview:
    try:
        view = memoryview(obj)
    except TypeError as e:
        raise TypeError(f"expected a buffer-protocol object (bytes, bytearray, memoryview, "
                        f"array, mmap...), not {type(obj).__name__}") from e
    if writable and view.readonly:
        view.release()
        raise TypeError(f"an output buffer must be writable; {type(obj).__name__} is read-only")
    if not view.c_contiguous:
        view.release()
        raise TypeError("buffer must be C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class SharedBuffer:
    """Host memory shared with sandboxes without copying (SBM_MAP_READONLY/WRITABLE).

    Args:
        size: bytes (>= 0).

    Writes through ``Sandbox.map_writable(buf)`` are visible in ``buf`` at once, even if
    the call later fails (SPEC-12). Use as a context manager or call ``close()``.

    Example:
        >>> with SharedBuffer(4096) as shared:
        ...     shared.view[:2] = b"hi"
    """

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"SharedBuffer size must be an int >= 0, not {size!r}")
        self.size = size
        self._fd: int | None = os.memfd_create("sbm-shared", os.MFD_CLOEXEC)
        self._map: mmap.mmap | None = None
        try:
            os.ftruncate(self._fd, size)
            if size:
                self._map = mmap.mmap(self._fd, size, mmap.MAP_SHARED,
                                      mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise

    @property
    def view(self) -> memoryview:
        """A writable memoryview of the whole buffer (host side)."""
        if self._fd is None:
            raise ValueError("SharedBuffer is closed")
        return memoryview(self._map) if self._map is not None else memoryview(bytearray(0))

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return bytes(self.view)

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError("SharedBuffer is closed")
        return self._fd

    def readonly_fd(self) -> int:
        """A new read-only descriptor of the same memory: a MAP_SHARED mapping of it can
        never be made writable (mprotect checks the file's open mode; see mmap(2) EACCES)."""
        return os.open(f"/proc/self/fd/{self.fileno()}", os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                # A view of it is still alive somewhere: leave the mapping to the GC
                # rather than crash; the memfd is closed below either way.
                pass
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SharedBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


@dataclass(eq=False)
class BufferHandle:
    """Returned by ``copy_in/copy_out/copy_inout/map_*``; pass it as an argument of ``call``.

    Holds a reference to the caller's object; nothing is copied until the call runs.
    """

    kind: str
    obj: Any
    owner: int  # id of the Sandbox that made it: handles do not cross sandboxes (SPEC-17)

    @property
    def size(self) -> int:
        if isinstance(self.obj, SharedBuffer):
            return self.obj.size
        with memoryview(self.obj) as v:
            return v.nbytes

    @property
    def writable(self) -> bool:
        return self.kind in (OUT, INOUT, SHARED_RW)


class Outputs:
    """The output memfds of a successful call, waiting for the caller's verdict
    (``validate=``). Owns the fds: ``copy_back()`` or ``close()`` releases them."""

    def __init__(self, pairs: list[tuple[BufferHandle, int]]) -> None:
        self.pairs = pairs

    def copy_back(self) -> None:
        """Read each memfd straight into the caller's object, exactly its size (SPEC-9):
        no intermediate copy, so copying back never needs memory of its own."""
        try:
            views = [_byte_view(h.obj, writable=True) for h, _ in self.pairs]
            try:
                if any(v.nbytes != h.size for v, (h, _) in zip(views, self.pairs, strict=True)):
                    raise ValueError("an output buffer changed size during the call")
                for v, (_, fd) in zip(views, self.pairs, strict=True):
                    done = 0
                    while done < v.nbytes:
                        n = os.preadv(fd, [v[done:]], done)
                        if n <= 0:
                            raise OSError("short read from an output memfd")
                        done += n
            finally:
                for v in views:
                    v.release()
        finally:
            self.close()

    def close(self) -> None:
        pairs, self.pairs = self.pairs, []
        for _, fd in pairs:
            os.close(fd)


class CallBuffers:
    """The memfds of one call: made at call time, closed on every path."""

    def __init__(self, handles: list[BufferHandle]) -> None:
        self.handles = handles
        self.fds: list[int] = []  # sent to the child, one per handle
        self.out_fds: dict[int, int] = {}  # handle index -> fd kept for copy-back
        try:
            for i, h in enumerate(handles):
                self._prepare(i, h)
        except BaseException:
            self.close()
            raise

    def _prepare(self, i: int, h: BufferHandle) -> None:
        if isinstance(h.obj, SharedBuffer):
            fd = h.obj.readonly_fd() if h.kind == SHARED_RO else os.dup(h.obj.fileno())
            self.fds.append(fd)
            return
        # Snapshot now, at call time (SPEC-7). Outputs start zero-filled (SPEC-8): a new
        # memfd is all zeros.
        fd = os.memfd_create("sbm-" + h.kind, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        self.fds.append(fd)
        size = h.size
        if h.kind in (IN, INOUT) and size:
            with _byte_view(h.obj, writable=False) as src:
                done = 0
                while done < size:
                    done += os.pwrite(fd, src[done:], done)
        else:
            os.ftruncate(fd, size)
        if h.kind == IN:
            # Sealed, then passed read-only: neither a write() nor a writable mapping
            # can change it (memfd_create(2), F_SEAL_WRITE).
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            os.close(fd)
            self.fds[-1] = ro
        else:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_SEAL)
            self.out_fds[i] = fd

    def spec(self) -> list[tuple[str, int]]:
        return [(h.kind, h.size) for h in self.handles]

    def release_sent(self) -> None:
        """After the fds went to the child: keep only those needed for copy-back."""
        keep = set(self.out_fds.values())
        for fd in self.fds:
            if fd not in keep:
                os.close(fd)
        self.fds = []

    def take_outputs(self) -> Outputs:
        """Hand the output memfds over to an `Outputs` (which then owns them), after
        checking each still has exactly its buffer's size (the seals forbid changing it)."""
        pairs = []
        for i, fd in self.out_fds.items():
            h = self.handles[i]
            if os.fstat(fd).st_size != h.size:
                raise OSError(f"output buffer {i} no longer has {h.size} bytes")
            pairs.append((h, fd))
        self.out_fds = {}
        return Outputs(pairs)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        for fd in self.out_fds.values():
            if fd not in self.fds:
                os.close(fd)
        self.fds = []
        self.out_fds = {}
