"""Archive recipes: list tar and zip archives, read one zip member, all in memory.

Nothing is extracted (there is no disk in the sandbox). Members are counted before they
are parsed: a zip's central directory is walked first (no `zipfile.ZipInfo` is built
beyond the limit), a tar is read member by member. Compressed tars (gzip, bzip2, xz) are
decompressed first with the capped decompressors of `sandboxmode.recipes.compression`.
Zip members are decompressed by those same capped decompressors, never by `zipfile`
(whose bzip2 and lzma readers are not bounded by the size they declare).
"""

from __future__ import annotations

# Pre-imported: tarfile and zipfile import these lazily, and an import inside the
# sandbox is a PolicyViolation.
import bz2
import gzip  # noqa: F401
import io
import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from typing import Any

from sandboxmode._target import sandboxed
from sandboxmode.policy import Policy
from sandboxmode.recipes.compression import (
    DEFAULT_MAX_OUTPUT,
    LZMA_MEMLIMIT,
    Decompressor,
    ZlibStream,
    bunzip2_direct,
    decompress_capped,
    gunzip_direct,
    lzma_decompress_direct,
)
from sandboxmode.recipes.errors import (
    CorruptInput,
    MemberNotFound,
    OutputTooLarge,
    TooManyMembers,
    Unsupported,
)

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "DEFAULT_MAX_UNCOMPRESSED",
    "list_tar",
    "list_tar_direct",
    "list_zip",
    "list_zip_direct",
    "read_zip_member",
    "read_zip_member_direct",
]

DEFAULT_MAX_MEMBERS = 10_000
"""Default cap on the number of members listed."""

DEFAULT_MAX_UNCOMPRESSED = 256 << 20
"""Default cap on a compressed tar's decompressed size (256 MiB)."""

_SYMLINK_MAX = 4096

_TAR_TYPES = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file",
    tarfile.GNUTYPE_SPARSE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "chardev", tarfile.BLKTYPE: "blockdev",
    tarfile.FIFOTYPE: "fifo",
}

_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated",
                zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}

_LIST_POLICY = Policy(max_items=4_000_000)
_READ_POLICY = Policy(max_result_bytes=DEFAULT_MAX_OUTPUT + (1 << 20))


def _text(s: str) -> str:
    """A name as valid UTF-8 text (undecodable bytes shown as backslash escapes)."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _check_limit(name: str, value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be an int >= 0, not {value!r}")


# --------------------------------------------------------------------------- tar

def _tar_plain(data: bytes | memoryview, max_uncompressed: int) -> bytes | memoryview:
    """``data`` decompressed if it starts like gzip, bzip2 or xz; else ``data`` itself."""
    head = bytes(memoryview(data)[:6])
    if head.startswith(b"\x1f\x8b"):
        return gunzip_direct(data, max_uncompressed)
    if head.startswith(b"BZh"):
        return bunzip2_direct(data, max_uncompressed)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma_decompress_direct(data, max_uncompressed)
    return data


def list_tar_direct(data: bytes | memoryview, max_members: int = DEFAULT_MAX_MEMBERS,
                    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> list[dict[str, Any]]:
    """List a tar archive (plain, or compressed with gzip, bzip2 or xz).

    Args:
        data: the archive's bytes.
        max_members: most members listed; one more is an error (default 10,000).
        max_uncompressed: cap on a compressed archive's decompressed size (256 MiB).

    Returns:
        One dict per member, in archive order: ``name``, ``type`` (``file``, ``dir``,
        ``symlink``, ``hardlink``, ``chardev``, ``blockdev``, ``fifo`` or ``other``),
        ``size``, ``mode``, ``mtime`` (seconds since the epoch), ``link`` (target of a
        link, else None), ``uid``, ``gid``, ``uname``, ``gname``.

    Raises:
        TooManyMembers: more than ``max_members`` members.
        OutputTooLarge: a compressed archive decompresses past ``max_uncompressed``.
        CorruptInput: not a tar archive, or a malformed header.
    """
    _check_limit("max_members", max_members)
    plain = _tar_plain(data, max_uncompressed)
    buf = plain if isinstance(plain, bytes) else bytes(plain)
    out: list[dict[str, Any]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(buf), mode="r:") as tf:
            while True:
                member = tf.next()
                if member is None:
                    break
                if len(out) >= max_members:
                    raise TooManyMembers(f"tar: more than max_members ({max_members}) members")
                out.append({
                    "name": _text(member.name),
                    "type": _TAR_TYPES.get(member.type, "other"),
                    "size": member.size,
                    "mode": member.mode,
                    "mtime": member.mtime,
                    "link": _text(member.linkname) if member.issym() or member.islnk() else None,
                    "uid": member.uid,
                    "gid": member.gid,
                    "uname": _text(member.uname),
                    "gname": _text(member.gname),
                })
    except (tarfile.TarError, EOFError, OSError, UnicodeError, struct.error) as e:
        raise CorruptInput(f"tar: {e}") from None
    return out


# --------------------------------------------------------------------------- zip

def _count_zip_entries(view: memoryview, limit: int) -> None:
    """Walk the central directory as `zipfile` will, raising past ``limit`` entries.

    Malformed directories are left for `zipfile` to report.
    """
    n = len(view)
    tail_start = max(0, n - (22 + 0xFFFF))
    tail = bytes(view[tail_start:])
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return
    eocd = tail_start + at
    fields = struct.unpack("<4s4H2LH", tail[at:at + 22])
    count, size_cd = fields[4], fields[5]
    cd_end = eocd
    if eocd >= 76 and bytes(view[eocd - 20:eocd - 16]) == b"PK\x06\x07":
        # zip64: the real counts are in the record just before the locator.
        rec = bytes(view[eocd - 76:eocd - 20])
        if rec[:4] == b"PK\x06\x06":
            fields = struct.unpack("<4sQ2H2L4Q", rec)
            count, size_cd = fields[7], fields[8]
            cd_end = eocd - 76
    if count > limit:
        raise TooManyMembers(f"zip: {count} members declared, more than max_members ({limit})")
    pos = max(0, cd_end - size_cd)
    end = min(cd_end, n)
    seen = 0
    while pos + 46 <= end:
        if bytes(view[pos:pos + 4]) != b"PK\x01\x02":
            return
        seen += 1
        if seen > limit:
            raise TooManyMembers(f"zip: more than max_members ({limit}) members")
        name_len, extra_len, comment_len = struct.unpack("<3H", bytes(view[pos + 28:pos + 34]))
        pos += 46 + name_len + extra_len + comment_len


def _zip_open(data: bytes | memoryview, max_members: int) -> zipfile.ZipFile:
    _check_limit("max_members", max_members)
    view = memoryview(data).cast("B")
    _count_zip_entries(view, max_members)
    try:
        zf = zipfile.ZipFile(io.BytesIO(view.tobytes()))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, UnicodeError,
            struct.error, ValueError) as e:
        raise CorruptInput(f"zip: {e}") from None
    if len(zf.filelist) > max_members:  # belt and braces: the walk above should have said
        zf.close()
        raise TooManyMembers(f"zip: more than max_members ({max_members}) members")
    return zf


def _zip_type(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.is_dir():
        return "dir"
    if info.create_system == 3 and stat.S_ISLNK(mode):
        return "symlink"
    return "file"


class _ZipLzma:
    """Zip's LZMA member format: a 4-byte version/size header, LZMA1 properties, raw data."""

    def __init__(self) -> None:
        self._d: lzma.LZMADecompressor | None = None
        self._head = b""

    @property
    def eof(self) -> bool:
        return self._d is not None and self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data if self._d is not None else b""

    @property
    def needs_input(self) -> bool:
        return self._d is None or self._d.needs_input

    def decompress(self, data: bytes | memoryview, max_length: int = -1) -> bytes:
        if self._d is None:
            self._head += bytes(data)
            if len(self._head) < 4:
                return b""
            (psize,) = struct.unpack("<H", self._head[2:4])
            if len(self._head) < 4 + psize:
                return b""
            props = self._head[4:4 + psize]
            if psize != 5 or props[0] >= 9 * 5 * 5:
                raise lzma.LZMAError("bad LZMA properties")
            pb, rest = divmod(props[0], 9 * 5)
            lp, lc = divmod(rest, 9)
            (dict_size,) = struct.unpack("<L", props[1:5])
            if dict_size > LZMA_MEMLIMIT:
                raise lzma.LZMAError(f"LZMA dictionary of {dict_size} bytes is too large")
            filt = {"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp,
                    "pb": pb}
            self._d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])
            data = self._head[4 + psize:]
            self._head = b""
        return self._d.decompress(data, max_length)


def _read_member(view: memoryview, info: zipfile.ZipInfo, max_size: int) -> bytes:
    """The member's bytes, decompressed by the capped decompressors and CRC-checked."""
    if info.flag_bits & 0x1:
        raise Unsupported(f"zip: {info.filename!r} is encrypted")
    off = info.header_offset
    head = bytes(view[off:off + 30])
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise CorruptInput(f"zip: bad local header for {info.filename!r}")
    name_len, extra_len = struct.unpack("<2H", head[26:30])
    start = off + 30 + name_len + extra_len
    raw = view[start:start + info.compress_size]
    if len(raw) < info.compress_size:
        raise CorruptInput(f"zip: {info.filename!r} is truncated")
    what = f"zip member {info.filename!r}"
    method = info.compress_type
    if method == zipfile.ZIP_STORED:
        if len(raw) > max_size:
            raise OutputTooLarge(f"{what}: larger than max_size ({max_size} bytes)")
        out = raw.tobytes()
    else:
        make: Any
        if method == zipfile.ZIP_DEFLATED:
            def make() -> Decompressor:
                return ZlibStream(-15)
        elif method == zipfile.ZIP_BZIP2:
            make = bz2.BZ2Decompressor
        elif method == zipfile.ZIP_LZMA:
            make = _ZipLzma
        else:
            raise Unsupported(f"{what}: compression method {method} is not supported")
        out = decompress_capped(raw, make, max_output=max_size, what=what, multi=False)
    if len(out) != info.file_size or zlib.crc32(out) != info.CRC:
        raise CorruptInput(f"{what}: size or CRC does not match the directory")
    return out


def list_zip_direct(data: bytes | memoryview,
                    max_members: int = DEFAULT_MAX_MEMBERS) -> list[dict[str, Any]]:
    """List a zip archive.

    Args:
        data: the archive's bytes.
        max_members: most members listed; one more is an error (default 10,000),
            checked on the central directory before any member is parsed.

    Returns:
        One dict per member, in directory order: ``name``, ``type`` (``file``, ``dir`` or
        ``symlink``), ``size``, ``compressed_size``, ``method`` (``stored``,
        ``deflated``, ``bzip2``, ``lzma`` or the number), ``mode`` (Unix permission bits,
        or None), ``mtime`` (the DOS timestamp as ``YYYY-MM-DDTHH:MM:SS``, no time zone),
        ``link`` (a symlink's target, else None), ``encrypted``, ``crc``.

    Raises:
        TooManyMembers: more than ``max_members`` members.
        CorruptInput: not a zip archive, or a malformed directory.
    """
    view = memoryview(data).cast("B")
    with _zip_open(view, max_members) as zf:
        out: list[dict[str, Any]] = []
        for info in zf.infolist():
            kind = _zip_type(info)
            link = None
            if kind == "symlink" and info.file_size <= _SYMLINK_MAX:
                try:
                    link = _read_member(view, info, _SYMLINK_MAX).decode("utf-8",
                                                                          "backslashreplace")
                except (CorruptInput, Unsupported, OutputTooLarge):
                    link = None
            out.append({
                "name": _text(info.filename),
                "type": kind,
                "size": info.file_size,
                "compressed_size": info.compress_size,
                "method": _ZIP_METHODS.get(info.compress_type, info.compress_type),
                "mode": (info.external_attr >> 16) & 0o7777 if info.create_system == 3
                        else None,
                "mtime": "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}".format(*info.date_time),
                "link": link,
                "encrypted": bool(info.flag_bits & 0x1),
                "crc": info.CRC,
            })
    return out


def read_zip_member_direct(data: bytes | memoryview, name: str,
                           max_size: int = DEFAULT_MAX_OUTPUT,
                           max_members: int = DEFAULT_MAX_MEMBERS) -> bytes:
    """Read one member of a zip archive, bounded and CRC-checked.

    Args:
        data: the archive's bytes.
        name: the member's name, as `list_zip` gives it.
        max_size: most bytes of output allowed (default 64 MiB), enforced while
            decompressing whatever size the archive declares.
        max_members: as in `list_zip_direct`.

    Returns:
        The member's contents.

    Raises:
        MemberNotFound: no member of that name.
        OutputTooLarge: the member decompresses past ``max_size``.
        Unsupported: encrypted, or an unknown compression method.
        CorruptInput: malformed archive, or size/CRC mismatch.
        TooManyMembers: more than ``max_members`` members.
    """
    _check_limit("max_size", max_size)
    view = memoryview(data).cast("B")
    with _zip_open(view, max_members) as zf:
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise MemberNotFound(f"zip: no member named {name!r}") from None
        return _read_member(view, info, max_size)


@sandboxed(policy=_LIST_POLICY)
def list_tar(data: bytes | memoryview, max_members: int = DEFAULT_MAX_MEMBERS,
             max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> list[dict[str, Any]]:
    """`list_tar_direct` in a fresh sandbox.

    Args:
        data: the archive's bytes.
        max_members: most members listed (default 10,000).
        max_uncompressed: cap on a compressed archive's decompressed size (256 MiB).

    Returns:
        One dict per member (see `list_tar_direct`).

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised.
    """
    return list_tar_direct(data, max_members, max_uncompressed)


@sandboxed(policy=_LIST_POLICY)
def list_zip(data: bytes | memoryview, max_members: int = DEFAULT_MAX_MEMBERS) -> list[dict[str, Any]]:
    """`list_zip_direct` in a fresh sandbox.

    Args:
        data: the archive's bytes.
        max_members: most members listed (default 10,000).

    Returns:
        One dict per member (see `list_zip_direct`).

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised.
    """
    return list_zip_direct(data, max_members)


@sandboxed(policy=_READ_POLICY)
def read_zip_member(data: bytes | memoryview, name: str, max_size: int = DEFAULT_MAX_OUTPUT,
                    max_members: int = DEFAULT_MAX_MEMBERS) -> bytes:
    """`read_zip_member_direct` in a fresh sandbox.

    Args:
        data: the archive's bytes.
        name: the member's name.
        max_size: most bytes of output allowed (default 64 MiB).
        max_members: most members in the archive (default 10,000).

    Returns:
        The member's contents.

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised.
    """
    return read_zip_member_direct(data, name, max_size, max_members)
