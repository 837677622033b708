"""Decompression recipes: gzip, zlib, bzip2, xz/lzma, with a hard cap on the output.

Decompression is streaming: input is fed in slices and every step asks the decompressor
for at most ``room + 1`` bytes, so a decompression bomb never makes more than
``max_output + 1`` bytes exist at once before `OutputTooLarge` is raised.

The sandbox entry points (`gunzip`, `zlib_decompress`, `bunzip2`, `unxz`,
`lzma_decompress`) run in a fresh sandbox per call; the ``*_direct`` twins are the same
code called here, for trusted input.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Protocol

from sandboxmode._target import sandboxed
from sandboxmode.policy import Policy
from sandboxmode.recipes.errors import CorruptInput, OutputTooLarge

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "Decompressor",
    "ZlibStream",
    "decompress_capped",
    "LZMA_MEMLIMIT",
    "bunzip2",
    "bunzip2_direct",
    "gunzip",
    "gunzip_direct",
    "lzma_decompress",
    "lzma_decompress_direct",
    "unxz",
    "unxz_direct",
    "zlib_decompress",
    "zlib_decompress_direct",
]

DEFAULT_MAX_OUTPUT = 64 << 20
"""Default cap on decompressed output: 64 MiB (the largest bytes value a result may carry)."""

LZMA_MEMLIMIT = 256 << 20
"""Memory the xz/lzma decoder may use for its dictionary (an xz header can ask for 4 GiB)."""

_IN_CHUNK = 64 << 10
_OUT_CHUNK = 1 << 20

# A 64 MiB bytes result plus the codec's framing must fit the result limit.
POLICY = Policy(max_result_bytes=DEFAULT_MAX_OUTPUT + (1 << 20))


class Decompressor(Protocol):
    """What `decompress_capped` drives: the interface of bz2/lzma decompressors."""

    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    @property
    def needs_input(self) -> bool: ...
    def decompress(self, data: bytes | memoryview, max_length: int = -1) -> bytes: ...


class ZlibStream:
    """A zlib decompressobj with the bz2/lzma interface (``needs_input``, internal tail)."""

    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)
        self._tail = b""
        self._full = False

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    @property
    def needs_input(self) -> bool:
        # zlib may hold output back even with no input left when the last call filled
        # max_length: ask again before asking for more input.
        return not self._tail and not self._full

    def decompress(self, data: bytes | memoryview, max_length: int = -1) -> bytes:
        buf = self._tail + bytes(data) if self._tail else data
        out = self._d.decompress(buf, max(max_length, 0))
        self._tail = self._d.unconsumed_tail
        self._full = max_length > 0 and len(out) >= max_length and not self._d.eof
        return out


def _check_cap(max_output: int) -> None:
    if type(max_output) is not int or max_output < 0:
        raise ValueError(f"max_output must be an int >= 0, not {max_output!r}")


def decompress_capped(data: bytes | memoryview, make: Callable[[], Decompressor], *,
                      max_output: int, what: str, multi: bool,
                      zero_padding: bool = False) -> bytes:
    """Decompress ``data`` with decompressors from ``make``, never past ``max_output``.

    Args:
        data: the compressed bytes.
        make: returns a fresh decompressor (one per stream).
        max_output: most bytes of output allowed.
        what: the format's name, for error messages.
        multi: accept several concatenated streams (as gzip, bzip2 and xz tools do).
        zero_padding: accept trailing zero bytes after the last stream (gzip).

    Returns:
        The decompressed bytes.

    Raises:
        OutputTooLarge: the output would exceed ``max_output``.
        CorruptInput: malformed or truncated input, or trailing data.
    """
    _check_cap(max_output)
    view = memoryview(data).cast("B")
    n = len(view)
    out = bytearray()
    pos = 0
    pending: bytes = b""
    d = make()
    streams = 0
    started = False
    try:
        while True:
            if d.needs_input:
                if pending:
                    chunk: bytes | memoryview = pending
                    pending = b""
                elif pos < n:
                    chunk = view[pos:pos + _IN_CHUNK]
                    pos += len(chunk)
                else:
                    break
                started = True
            else:
                chunk = b""
            room = max_output - len(out)
            piece = d.decompress(chunk, min(room + 1, _OUT_CHUNK))
            if len(piece) > room:
                raise OutputTooLarge(f"{what}: decompressed output exceeds max_output "
                                     f"({max_output} bytes)")
            out += piece
            if d.eof:
                streams += 1
                pending = d.unused_data
                if not pending and pos >= n:
                    return bytes(out)
                if zero_padding and not pending.strip(b"\0") and not any(view[pos:]):
                    return bytes(out)
                if not multi:
                    raise CorruptInput(f"{what}: trailing data after the end of the stream")
                d = make()
                started = False
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise CorruptInput(f"{what}: {e}") from None
    if streams and not started:
        return bytes(out)
    if n == 0 and not streams:
        raise CorruptInput(f"{what}: empty input")
    raise CorruptInput(f"{what}: compressed data ends before the end-of-stream marker")


def gunzip_direct(data: bytes | memoryview, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """Decompress gzip data (concatenated members and trailing zero padding accepted).

    Args:
        data: the gzip file's bytes.
        max_output: most bytes of output allowed (default 64 MiB).

    Returns:
        The decompressed bytes.

    Raises:
        OutputTooLarge: the output would exceed ``max_output``.
        CorruptInput: not gzip, bad CRC or length, truncated, trailing garbage.
    """
    return decompress_capped(data, lambda: ZlibStream(31), max_output=max_output, what="gzip",
                             multi=True, zero_padding=True)


def zlib_decompress_direct(data: bytes | memoryview,
                           max_output: int = DEFAULT_MAX_OUTPUT, wbits: int = 15) -> bytes:
    """Decompress one zlib stream (``wbits`` as in `zlib.decompressobj`: 15 zlib,
    -15 raw deflate, 31 gzip, 47 automatic zlib or gzip).

    Args:
        data: the compressed bytes.
        max_output: most bytes of output allowed (default 64 MiB).
        wbits: window size and header format.

    Returns:
        The decompressed bytes.

    Raises:
        OutputTooLarge: the output would exceed ``max_output``.
        CorruptInput: malformed, truncated, or trailing data after the stream.
    """
    return decompress_capped(data, lambda: ZlibStream(wbits), max_output=max_output, what="zlib",
                             multi=False)


def bunzip2_direct(data: bytes | memoryview, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """Decompress bzip2 data (concatenated streams accepted).

    Args:
        data: the .bz2 file's bytes.
        max_output: most bytes of output allowed (default 64 MiB).

    Returns:
        The decompressed bytes.

    Raises:
        OutputTooLarge: the output would exceed ``max_output``.
        CorruptInput: malformed, truncated, trailing garbage.
    """
    return decompress_capped(data, bz2.BZ2Decompressor, max_output=max_output, what="bzip2",
                             multi=True)


def lzma_decompress_direct(data: bytes | memoryview, max_output: int = DEFAULT_MAX_OUTPUT,
                           memlimit: int = LZMA_MEMLIMIT) -> bytes:
    """Decompress .xz or legacy .lzma data (format detected; concatenated streams accepted).

    Args:
        data: the compressed bytes.
        max_output: most bytes of output allowed (default 64 MiB).
        memlimit: most memory the decoder may use (default 256 MiB).

    Returns:
        The decompressed bytes.

    Raises:
        OutputTooLarge: the output would exceed ``max_output``.
        CorruptInput: malformed, truncated, trailing garbage, or needs more than
            ``memlimit`` of decoder memory.
    """
    return decompress_capped(
        data, lambda: lzma.LZMADecompressor(lzma.FORMAT_AUTO, memlimit=memlimit),
        max_output=max_output, what="lzma", multi=True)


unxz_direct = lzma_decompress_direct


@sandboxed(policy=POLICY)
def gunzip(data: bytes | memoryview, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """`gunzip_direct` in a fresh sandbox: ``gunzip(data)``.

    Args:
        data: the gzip file's bytes (a memoryview inside the sandbox).
        max_output: most bytes of output allowed (default 64 MiB; above that, also raise
            the policy's ``max_result_bytes`` by calling ``sbm.run(gunzip, data,
            max_output=..., policy=...)``).

    Returns:
        The decompressed bytes.

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised.
        sandboxmode.SandboxMemoryError, SandboxTimeout: the sandbox's limits stopped it.
    """
    return gunzip_direct(data, max_output)


@sandboxed(policy=POLICY)
def zlib_decompress(data: bytes | memoryview, max_output: int = DEFAULT_MAX_OUTPUT,
                    wbits: int = 15) -> bytes:
    """`zlib_decompress_direct` in a fresh sandbox.

    Args:
        data: the compressed bytes.
        max_output: most bytes of output allowed (default 64 MiB).
        wbits: window size and header format, as in `zlib.decompressobj`.

    Returns:
        The decompressed bytes.

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised.
    """
    return zlib_decompress_direct(data, max_output, wbits)


@sandboxed(policy=POLICY)
def bunzip2(data: bytes | memoryview, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """`bunzip2_direct` in a fresh sandbox.

    Args:
        data: the .bz2 file's bytes.
        max_output: most bytes of output allowed (default 64 MiB).

    Returns:
        The decompressed bytes.

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised.
    """
    return bunzip2_direct(data, max_output)


@sandboxed(policy=POLICY)
def lzma_decompress(data: bytes | memoryview, max_output: int = DEFAULT_MAX_OUTPUT,
                    memlimit: int = LZMA_MEMLIMIT) -> bytes:
    """`lzma_decompress_direct` in a fresh sandbox (``unxz`` is the same entry point).

    Args:
        data: the .xz or .lzma file's bytes.
        max_output: most bytes of output allowed (default 64 MiB).
        memlimit: most memory the decoder may use (default 256 MiB).

    Returns:
        The decompressed bytes.

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised.
    """
    return lzma_decompress_direct(data, max_output, memlimit)


unxz = lzma_decompress
