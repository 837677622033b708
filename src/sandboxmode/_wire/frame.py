"""Length-prefixed frames over a connected unix socket, with optional descriptors.

Shared by the host and the sandboxed child, so standard library only. The frame layer
never interprets a body (no unpickling, no decoding): bodies are bytes for the codec, or
for the child's own unpickling of the host's (trusted) call description.

Header layout, 12 bytes, big-endian (`HEADER`, ``struct`` format ``">2sBBQ"``)::

    offset 0   2 bytes  magic b"SB" (a desynchronised stream fails at once)
    offset 2   u8       kind, a `FrameKind`
    offset 3   u8       number of descriptors sent with the frame (0..`MAX_FDS`)
    offset 4   u64      body length in bytes

The descriptors travel as one ``SCM_RIGHTS`` message attached to the header's bytes. The
receiver reads the header alone, checks the magic, the kind, the declared descriptor count
against its ``max_fds`` and the descriptors actually received, and the body length against
its ``max_len``, all **before** it allocates or reads the body (as CPython's
``multiprocessing.connection`` does with its length prefix). The body follows; descriptors
arriving with body bytes are a protocol error.

Socket types:

* ``SOCK_STREAM``: header and body are a byte stream; any split is accepted.
* ``SOCK_SEQPACKET``: the header is one record of exactly `HEADER.size` bytes, the body
  follows in records of at most `SEQPACKET_CHUNK` bytes (records are limited by the send
  buffer). A record longer than the bytes expected is a protocol error (``MSG_TRUNC``).
  An empty record reads as the end of the channel.

Descriptor ownership: `send_frame` never closes the caller's descriptors (the kernel
duplicates them into the message). `recv_frame` hands every received descriptor to the
caller on success, and closes every one it received on every error path, whatever the
exception (one owner per descriptor). Received descriptors are close-on-exec
(``MSG_CMSG_CLOEXEC``); descriptors beyond what the ancillary buffer holds are discarded
and closed by the kernel, and reported as a protocol error.

Errors: malformed frames raise `ProtocolError`; the end of the channel raises
`ChannelClosed`, a subclass of both `ProtocolError` and the builtin `EOFError`, whose
``evidence`` says ``eof=True`` and whether it came in the middle of a frame. Socket errors
(``OSError``, including ``TimeoutError`` of a socket timeout) propagate unchanged, except
that a connection reset while receiving is a `ChannelClosed`. After any exception raised
once a frame has begun, the channel is out of step and must be closed.
"""

from __future__ import annotations

import _socket
import array
import contextlib
import os
import socket
import struct
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, Final

from sandboxmode._errors import ProtocolError

__all__ = [
    "HEADER",
    "MAGIC",
    "MAX_FDS",
    "SEQPACKET_CHUNK",
    "ChannelClosed",
    "FrameKind",
    "recv_frame",
    "send_frame",
]

HEADER: Final = struct.Struct(">2sBBQ")
"""The frame header: magic, kind, descriptor count, body length (12 bytes, big-endian)."""

MAGIC: Final = b"SB"
"""First two bytes of every frame."""

MAX_FDS: Final = 253
"""Most descriptors one frame can carry (the kernel's ``SCM_MAX_FD``)."""

SEQPACKET_CHUNK: Final = 32 * 1024
"""Largest body record on a ``SOCK_SEQPACKET`` socket (well under the default send buffer)."""

_FD_SIZE: Final = array.array("i").itemsize
_CLOEXEC: Final = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


def _is_seqpacket(sock: socket.socket) -> bool:
    # The raw getter: ``sock.type`` converts to an enum on every access (~3 µs, and a
    # call reads it four times).
    return bool(_RAW_TYPE(sock) == socket.SOCK_SEQPACKET)


_RAW_TYPE: Any = _socket.socket.type.__get__


class FrameKind(IntEnum):
    """What a frame carries. The numbers are the wire values (the header's kind byte)."""

    CALL = 1
    """host -> child: the call description (pickled by the host), buffers as descriptors."""
    RESULT = 2
    """child -> host: the function's return value, codec-encoded."""
    ERROR = 3
    """child -> host: the target raised; type, message and traceback as codec plain data."""
    FAULT = 4
    """child -> host: a fault the child caught itself (RecursionError, MemoryError...)."""
    READY = 5
    """child -> host: set-up done, ready for calls."""
    PING = 6
    """host -> child: liveness probe."""
    PONG = 7
    """child -> host: answer to PING."""
    IMPORT_DENIED = 8
    """child -> host: the code tried to import a module that was not preloaded."""
    EXIT = 9
    """host -> child: leave the call loop and exit."""


class ChannelClosed(ProtocolError, EOFError):
    """The peer closed the channel (or reset it), between frames or in the middle of one.

    A `ProtocolError` (so a sandbox that hangs up mid-frame is a protocol failure for code
    that does not care) and an `EOFError` (so ``except EOFError`` sees a hang-up).
    ``evidence``: ``eof`` (always True), ``mid_frame`` (bool), ``received`` and
    ``expected`` (bytes of the part being read: ``"header"`` or ``"body"``, in ``part``).
    """


def _check_fds(fds: Sequence[int]) -> list[int]:
    """Validate descriptors to send and return them as a list."""
    result = list(fds)
    if len(result) > MAX_FDS:
        raise ValueError(f"a frame carries at most {MAX_FDS} descriptors, not {len(result)}")
    for fd in result:
        if type(fd) is not int or fd < 0:
            raise ValueError(f"not a file descriptor: {fd!r}")
    return result


def send_frame(
    sock: socket.socket,
    kind: int,
    payload: bytes | bytearray | memoryview,
    fds: Sequence[int] = (),
) -> None:
    """Send one frame, with descriptors attached to its header.

    Blocks until the whole frame is handed to the kernel (or the socket's timeout expires).
    The caller keeps its descriptors: the kernel passes duplicates.

    Args:
        sock: a connected ``AF_UNIX`` socket, ``SOCK_STREAM`` or ``SOCK_SEQPACKET``.
        kind: the frame kind (a `FrameKind` or its value).
        payload: the body, any length up to ``2**64 - 1`` bytes.
        fds: descriptors to pass with the frame (at most `MAX_FDS`).

    Raises:
        ValueError: `kind` is not a `FrameKind`, or `fds` holds too many or invalid values.
        OSError: the socket failed (``BrokenPipeError`` if the peer is gone,
            ``TimeoutError`` on the socket's timeout; the channel is then out of step).
    """
    frame_kind = FrameKind(kind)
    fd_list = _check_fds(fds)
    body = memoryview(payload).cast("B")
    header = HEADER.pack(MAGIC, frame_kind, len(fd_list), body.nbytes)
    ancillary: list[tuple[int, int, bytes]] = []
    if fd_list:
        ancillary.append(
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fd_list).tobytes())
        )
    if _is_seqpacket(sock):
        sock.sendmsg([header], ancillary)  # one record, all or nothing
        for offset in range(0, body.nbytes, SEQPACKET_CHUNK):
            sock.sendall(body[offset : offset + SEQPACKET_CHUNK])
        return
    sent = sock.sendmsg([header, body], ancillary)
    if sent < len(header):
        sock.sendall(header[sent:])
        sent = len(header)
    if sent - len(header) < body.nbytes:
        sock.sendall(body[sent - len(header) :])


def _take_fds(ancdata: list[tuple[int, int, bytes]], into: list[int]) -> bool:
    """Move the descriptors of received ancillary data into `into`.

    Args:
        ancdata: ancillary data as returned by ``recvmsg``.
        into: the list that owns received descriptors (closed by the caller on error).

    Returns:
        True if there was ancillary data other than ``SCM_RIGHTS``.
    """
    other = False
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            whole = len(data) - len(data) % _FD_SIZE
            into.extend(array.array("i", data[:whole]))
        else:
            other = True
    return other


def _recv_exactly(
    sock: socket.socket,
    view: memoryview,
    *,
    fds: list[int],
    fd_room: int,
    part: str,
    one_record: bool,
    in_frame: bool,
) -> None:
    """Fill `view` from the socket, collecting descriptors into `fds`.

    Args:
        sock: the socket.
        view: where the bytes go; filled completely or an exception is raised.
        fds: owner of every received descriptor (the caller closes them on error).
        fd_room: how many descriptors the ancillary buffer is sized for (0: none expected,
            but room for one is kept to receive and close a stray one).
        part: ``"header"`` or ``"body"``, for error messages.
        one_record: SEQPACKET header: the bytes must come in a single record.
        in_frame: whether bytes of this frame were received before this part.

    Raises:
        ChannelClosed: end of the channel before `view` is full.
        ProtocolError: truncated records or control data, unexpected descriptors or
            control messages.
    """
    seqpacket = _is_seqpacket(sock)
    ancsize = socket.CMSG_SPACE(_FD_SIZE * max(fd_room, 1))
    expected = view.nbytes
    got = 0
    while got < expected:
        try:
            nbytes, ancdata, flags, _ = sock.recvmsg_into([view[got:]], ancsize, _CLOEXEC)
        except ConnectionError as exc:
            raise ChannelClosed(
                f"channel reset while reading a frame {part}: {exc}",
                _eof_evidence(in_frame or got > 0, part, got, expected),
            ) from None
        other = _take_fds(ancdata, fds)  # owned (and closed on error) before any check
        if flags & socket.MSG_CTRUNC:
            raise ProtocolError(
                f"descriptors or control data truncated on a frame {part} "
                "(more descriptors than allowed)",
                {"part": part, "received_fds": len(fds)},
            )
        if other:
            raise ProtocolError(f"unexpected control message on a frame {part}", {"part": part})
        if len(fds) > fd_room:
            raise ProtocolError(
                f"{len(fds)} descriptors on a frame {part}, at most {fd_room} allowed",
                {"part": part, "received_fds": len(fds), "max_fds": fd_room},
            )
        if nbytes == 0:
            raise ChannelClosed(
                "channel closed" + (f" in the middle of a frame {part}" if in_frame or got else ""),
                _eof_evidence(in_frame or got > 0, part, got, expected),
            )
        if seqpacket and flags & socket.MSG_TRUNC:
            raise ProtocolError(
                f"record longer than the {expected - got} bytes left of the frame {part}",
                {"part": part},
            )
        got += nbytes
        if one_record and got < expected:
            raise ProtocolError(
                f"frame header record of {got} bytes, expected {expected}",
                {"part": part, "received": got, "expected": expected},
            )


def _eof_evidence(mid_frame: bool, part: str, received: int, expected: int) -> dict[str, Any]:
    """Evidence of a `ChannelClosed`."""
    return {
        "eof": True,
        "mid_frame": mid_frame,
        "part": part,
        "received": received,
        "expected": expected,
    }


def recv_frame(sock: socket.socket, max_len: int, max_fds: int) -> tuple[int, bytes, list[int]]:
    """Receive one frame, checking its header before reading its body.

    Args:
        sock: a connected ``AF_UNIX`` socket, ``SOCK_STREAM`` or ``SOCK_SEQPACKET``.
        max_len: the largest body accepted; a longer declared length is refused before a
            byte of the body is read or allocated.
        max_fds: the most descriptors accepted with this frame (0: none).

    Returns:
        ``(kind, body, fds)``: kind is a `FrameKind`; the caller owns (and must close)
        the descriptors.

    Raises:
        ChannelClosed: the peer closed or reset the channel (``evidence["mid_frame"]`` says
            whether a frame had begun).
        ProtocolError: bad magic, unknown kind, a body longer than `max_len`, more
            descriptors than `max_fds` or than the header declares, descriptors arriving with
            the body, truncated or unexpected control data, a malformed record.
        OSError: the socket failed; ``TimeoutError`` when the socket's timeout expires.
        ValueError: `max_len` or `max_fds` is negative, or `max_fds` exceeds `MAX_FDS`.
    """
    if max_len < 0 or not 0 <= max_fds <= MAX_FDS:
        raise ValueError(f"bad limits: max_len={max_len}, max_fds={max_fds}")
    fds: list[int] = []
    try:
        header = bytearray(HEADER.size)
        _recv_exactly(
            sock,
            memoryview(header),
            fds=fds,
            fd_room=max_fds,
            part="header",
            one_record=_is_seqpacket(sock),
            in_frame=False,
        )
        magic, kind, declared_fds, length = HEADER.unpack(header)
        if magic != MAGIC:
            raise ProtocolError(
                f"bad frame magic {bytes(magic)!r}: the channel is out of step",
                {"magic": bytes(magic).hex()},
            )
        try:
            frame_kind = FrameKind(kind)
        except ValueError:
            raise ProtocolError(f"unknown frame kind {kind}", {"kind": kind}) from None
        if declared_fds > max_fds:
            raise ProtocolError(
                f"{frame_kind.name} frame declares {declared_fds} descriptors, "
                f"at most {max_fds} allowed",
                {"kind": frame_kind.name, "declared_fds": declared_fds, "max_fds": max_fds},
            )
        if declared_fds != len(fds):
            raise ProtocolError(
                f"{frame_kind.name} frame declares {declared_fds} descriptors "
                f"but {len(fds)} arrived",
                {"kind": frame_kind.name, "declared_fds": declared_fds, "received_fds": len(fds)},
            )
        if length > max_len:
            raise ProtocolError(
                f"{frame_kind.name} frame of {length} bytes exceeds the limit of {max_len}",
                {"kind": frame_kind.name, "length": length, "max_len": max_len},
            )
        body = bytearray(length)
        if length:
            _recv_exactly(
                sock,
                memoryview(body),
                fds=fds,
                fd_room=declared_fds,  # nothing more may arrive
                part="body",
                one_record=False,
                in_frame=True,
            )
        return frame_kind, bytes(body), fds
    except BaseException:
        for fd in fds:
            with contextlib.suppress(OSError):  # ours and open: only EIO could fail it
                os.close(fd)
        raise
