"""The recipes: real inputs give the same answer sandboxed as called directly; hostile
inputs (decompression bombs, billion laughs, a zip with 100k members, a pickle that runs a
command) are stopped by the recipe's typed limit or contained by the sandbox."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

import sandboxmode as sbm
from sandboxmode.recipes import archives, compression, images, pickles, xmltree
from sandboxmode.recipes.errors import OutputTooLarge, RecipeError

pytestmark = pytest.mark.isolation

ERR = "sandboxmode.recipes.errors."
GiB = 1 << 30
MiB = 1 << 20

# Real bytes: text, binary noise and runs, so every codec has something to do.
REAL = (b"The quick brown fox jumps over the lazy dog.\n" * 2000 + os.urandom(50_000)
        + bytes(range(256)) * 400)


def remote(fn: Any, *args: Any, **kwargs: Any) -> str:
    """Run ``fn`` sandboxed, expecting a recipe error: its remote type."""
    with pytest.raises(sbm.TargetError) as info:
        fn(*args, **kwargs)
    return info.value.remote_type


def gzip_bomb() -> bytes:
    """1 GiB of zeros as one valid gzip member, made in half a second: the deflate block
    for 1 MiB of zeros after a full flush is the same every time, so repeat it."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    z.compress(zeros)
    z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(zeros) + z.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(1024):
        crc = zlib.crc32(zeros, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + block * 1024 + z.flush()
            + struct.pack("<LL", crc, GiB & 0xFFFFFFFF))


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


# --------------------------------------------------------------------------- compression

@pytest.mark.parametrize(("fn", "direct", "compress"), [
    (compression.gunzip, compression.gunzip_direct, gzip.compress),
    (compression.zlib_decompress, compression.zlib_decompress_direct, zlib.compress),
    (compression.bunzip2, compression.bunzip2_direct, bz2.compress),
    (compression.unxz, compression.unxz_direct, lzma.compress),
    (compression.lzma_decompress, compression.lzma_decompress_direct,
     lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE)),
], ids=["gzip", "zlib", "bzip2", "xz", "lzma-alone"])
def test_decompression_same_sandboxed_as_direct(fn: Any, direct: Any, compress: Any) -> None:
    packed = compress(REAL)
    assert direct(memoryview(packed)) == REAL
    assert fn(packed) == REAL
    # A cap just below the size: refused, the same way on both sides.
    with pytest.raises(OutputTooLarge):
        direct(packed, max_output=len(REAL) - 1)
    assert remote(fn, packed, max_output=len(REAL) - 1) == ERR + "OutputTooLarge"


def test_concatenated_streams_and_gzip_padding() -> None:
    assert compression.gunzip(gzip.compress(b"ab") + gzip.compress(b"cd") + bytes(8)) == b"abcd"
    assert compression.bunzip2(bz2.compress(b"ab") + bz2.compress(b"cd")) == b"abcd"
    assert compression.unxz(lzma.compress(b"ab") + lzma.compress(b"cd")) == b"abcd"


@pytest.mark.parametrize(("fn", "data"), [
    (compression.gunzip, b""),
    (compression.gunzip, gzip.compress(REAL)[:-9]),
    (compression.gunzip, gzip.compress(b"x") + b"garbage"),
    (compression.zlib_decompress, zlib.compress(b"x") + b"junk"),
    (compression.bunzip2, b"BZh9" + b"\0" * 40),
    (compression.unxz, b"not xz at all"),
], ids=["empty", "truncated", "trailing-garbage", "zlib-trailing", "bad-bzip2", "not-xz"])
def test_corrupt_compressed_input_is_a_typed_error(fn: Any, data: bytes) -> None:
    assert remote(fn, data) == ERR + "CorruptInput"


def test_gzip_bomb_stopped_by_the_cap(bomb: bytes) -> None:
    # 1 GiB of zeros in 1 MiB: the cap (64 MiB) stops it with the typed error, inside the
    # sandbox's 1 GiB memory budget.
    assert len(bomb) < 2 * MiB
    assert remote(compression.gunzip, bomb) == ERR + "OutputTooLarge"
    with pytest.raises(OutputTooLarge):
        compression.gunzip_direct(bomb, max_output=8 * MiB)


def test_gzip_bomb_without_a_useful_cap_stopped_by_the_memory_limit(bomb: bytes) -> None:
    # Asking for a 2 GiB cap in a sandbox allowed 256 MiB: the memory limit stops it.
    policy = sbm.Policy(memory=256 * MiB, max_result_bytes=3 * GiB)
    with pytest.raises(sbm.SandboxMemoryError):
        sbm.run(compression.gunzip, bomb, max_output=2 * GiB, policy=policy)


@pytest.mark.parametrize(("fn", "stream"), [
    (compression.bunzip2, bz2.compress(bytes(8 * MiB), 9)),
    (compression.unxz, lzma.compress(bytes(8 * MiB))),
], ids=["bzip2", "xz"])
def test_bzip2_and_xz_bombs_stopped_by_the_cap(fn: Any, stream: bytes) -> None:
    # 128 concatenated streams of 8 MiB of zeros: 1 GiB out of a few kilobytes.
    assert remote(fn, stream * 128) == ERR + "OutputTooLarge"


# --------------------------------------------------------------------------- archives

def make_tar(mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        d = tarfile.TarInfo("pkg/")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
        tf.addfile(d)
        f = tarfile.TarInfo("pkg/readme.txt")
        f.size, f.mode, f.uid, f.uname = len(REAL), 0o644, 1000, "alice"
        tf.addfile(f, io.BytesIO(REAL))
        s = tarfile.TarInfo("pkg/link")
        s.type, s.linkname = tarfile.SYMTYPE, "readme.txt"
        tf.addfile(s)
        h = tarfile.TarInfo("pkg/hard")
        h.type, h.linkname = tarfile.LNKTYPE, "pkg/readme.txt"
        tf.addfile(h)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["w:", "w:gz", "w:bz2", "w:xz"])
def test_list_tar_same_sandboxed_as_direct(mode: str) -> None:
    data = make_tar(mode)
    listed = archives.list_tar_direct(memoryview(data))
    assert archives.list_tar(data) == listed
    assert [(m["name"], m["type"], m["size"], m["link"]) for m in listed] == [
        ("pkg", "dir", 0, None), ("pkg/readme.txt", "file", len(REAL), None),
        ("pkg/link", "symlink", 0, "readme.txt"), ("pkg/hard", "hardlink", 0, "pkg/readme.txt")]
    assert listed[0]["mode"] == 0o755 and listed[0]["mtime"] == 1_700_000_000
    assert listed[1]["uname"] == "alice" and listed[1]["uid"] == 1000


def test_list_tar_limits(bomb: bytes) -> None:
    data = make_tar("w:")
    assert remote(archives.list_tar, data, max_members=3) == ERR + "TooManyMembers"
    assert remote(archives.list_tar, b"not a tar" * 100) == ERR + "CorruptInput"
    # A .tar.gz that is a gzip bomb: decompressed under the cap first.
    assert remote(archives.list_tar, bomb) == ERR + "OutputTooLarge"


def make_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                       zipfile.ZIP_LZMA):
            zf.writestr(f"data/{method}.bin", REAL, compress_type=method)
        zf.writestr("data/", b"")
        link = zipfile.ZipInfo("data/link", (2024, 1, 2, 3, 4, 6))
        link.create_system, link.external_attr = 3, 0o120777 << 16
        zf.writestr(link, "0.bin")
    return buf.getvalue()


def test_list_zip_and_read_members_same_sandboxed_as_direct() -> None:
    data = make_zip()
    listed = archives.list_zip_direct(memoryview(data))
    assert archives.list_zip(data) == listed
    kinds = {m["name"]: (m["type"], m["method"], m["size"], m["link"]) for m in listed}
    assert kinds["data/12.bin"] == ("file", "bzip2", len(REAL), None)
    assert kinds["data/"][0] == "dir"
    assert kinds["data/link"] == ("symlink", "stored", 5, "0.bin")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            expected = zf.read(name)
            assert archives.read_zip_member(data, name) == expected, name
            assert archives.read_zip_member_direct(data, name) == expected, name
    assert remote(archives.read_zip_member, data, "absent") == ERR + "MemberNotFound"
    assert (remote(archives.read_zip_member, data, "data/14.bin", max_size=1000)
            == ERR + "OutputTooLarge")


def test_zip_member_bomb_stopped_by_the_cap() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("zeros", bytes(80 * MiB), compress_type=zipfile.ZIP_BZIP2)
    data = buf.getvalue()
    assert len(data) < 64 * 1024
    assert remote(archives.read_zip_member, data, "zeros") == ERR + "OutputTooLarge"


@pytest.fixture(scope="module")
def many_members() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(100_000):
            zf.writestr(zipfile.ZipInfo(str(i)), b"")
    return buf.getvalue()


def test_zip_with_100k_members_refused(many_members: bytes) -> None:
    assert remote(archives.list_zip, many_members) == ERR + "TooManyMembers"
    assert remote(archives.read_zip_member, many_members, "1") == ERR + "TooManyMembers"


def test_zip_lying_about_its_member_count_still_refused(many_members: bytes) -> None:
    # The end record says 1 member; the central directory holds 100,000.
    at = many_members.rindex(b"PK\x05\x06")
    lying = bytearray(many_members)
    lying[at + 8:at + 12] = struct.pack("<2H", 1, 1)
    assert remote(archives.list_zip, bytes(lying)) == ERR + "TooManyMembers"


def test_corrupt_zip_is_a_typed_error() -> None:
    data = make_zip()
    assert remote(archives.list_zip, data[: len(data) // 2]) == ERR + "CorruptInput"
    flipped = bytearray(data)
    flipped[100] ^= 0xFF  # inside the first (stored) member's data: CRC mismatch
    assert (remote(archives.read_zip_member, bytes(flipped), "data/0.bin")
            == ERR + "CorruptInput")


# --------------------------------------------------------------------------- XML

DOC = ("<?xml version='1.0' encoding='UTF-8'?>\n"
       "<catalog xmlns:x='urn:x' version='2'>\n"
       "  <book id='b1'>Caf\u00e9 &amp; <x:em>cr\u00e8me</x:em> br\u00fbl\u00e9e</book>"
       "<!-- a comment --><?pi data?>\n"
       "  <empty/>\n"
       "</catalog>").encode()


def test_parse_xml_same_sandboxed_as_direct() -> None:
    tree = xmltree.parse_xml_direct(memoryview(DOC))
    assert xmltree.parse_xml(DOC) == tree
    assert tree["tag"] == "catalog" and tree["attrib"] == {"xmlns:x": "urn:x", "version": "2"}
    book, empty = tree["children"]
    assert book["text"] == "Caf\u00e9 & " and book["children"][0]["tag"] == "x:em"
    assert book["children"][0]["tail"] == " br\u00fbl\u00e9e"
    assert empty == {"tag": "empty", "attrib": {}, "text": None, "tail": "\n",
                     "children": []}
    latin = '<?xml version="1.0" encoding="windows-1252"?><a>caf\xe9</a>'.encode("cp1252")
    assert xmltree.parse_xml(latin)["text"] == "caf\u00e9"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>"""


@pytest.mark.parametrize(("doc", "error"), [
    (BILLION_LAUGHS, "ForbiddenDTD"),
    (XXE, "ForbiddenDTD"),
    (b'<!DOCTYPE r SYSTEM "http://example.invalid/r.dtd"><r/>', "ForbiddenDTD"),
    (b"<r>&undeclared;</r>", "CorruptInput"),
    (b"<r><a></r>", "CorruptInput"),
    (b"", "CorruptInput"),
    (b"<a>" * 101 + b"</a>" * 101, "TooDeep"),
    (b"<r>" + b"<a/>" * 100_000 + b"</r>", "TooManyElements"),
    (b'<?xml version="1.0" encoding="koi8-r"?><r/>', "Unsupported"),
], ids=["billion-laughs", "xxe", "external-dtd", "undeclared-entity", "mismatched", "empty",
        "too-deep", "too-many-elements", "unloaded-encoding"])
def test_hostile_xml_refused_with_a_typed_error(doc: bytes, error: str) -> None:
    assert remote(xmltree.parse_xml, doc) == ERR + error
    with pytest.raises(RecipeError):
        xmltree.parse_xml_direct(doc)


# --------------------------------------------------------------------------- pickle

class RunsCommand:
    """Pickles to ``os.system(command)``: what a hostile pickle looks like."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


PLAIN = {"name": "x", "n": [1, -2**70, 2.5, None, True], "raw": b"\x00\xff",
         "t": (1, ("a",)), 7: {"nested": []}}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_unpickle_plain_data_same_sandboxed_as_direct(protocol: int) -> None:
    data = pickle.dumps(PLAIN, protocol)
    assert pickles.unpickle_direct(memoryview(data)) == PLAIN
    assert pickles.unpickle(data) == PLAIN


@pytest.mark.parametrize(("value", "error"), [
    ({1, 2}, "NotPlainData"),
    (Path("/x"), "NotPlainData"),
    ([[[[[[[[[[[]]]]]]]]]]], None),
], ids=["set", "path", "nested"])
def test_unpickle_refuses_what_is_not_plain(value: Any, error: str | None) -> None:
    data = pickle.dumps(value)
    if error is None:
        assert pickles.unpickle(data) == value
        assert remote(pickles.unpickle, data, max_depth=5) == ERR + "TooDeep"
    else:
        assert remote(pickles.unpickle, data) == ERR + error
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert remote(pickles.unpickle, pickle.dumps(cyclic)) == ERR + "NotPlainData"
    assert remote(pickles.unpickle, b"\x80\x05garbage") == ERR + "CorruptInput"


def test_pickle_running_a_command_is_contained(tmp_path: Path) -> None:
    sentinel = tmp_path / "ran"
    payload = pickle.dumps(RunsCommand(f"touch {sentinel}"))
    # Inside the sandbox: the process the command needs is refused, nothing runs.
    with pytest.raises(sbm.PolicyViolation) as info:
        pickles.unpickle(payload)
    assert "clone" in str(info.value) or "fork" in str(info.value) or "exec" in str(info.value)
    assert not sentinel.exists()
    # Unsandboxed (in a child process, harmless command) it WOULD run.
    subprocess.run([sys.executable, "-c", "import pickle, sys; "
                    "pickle.loads(sys.stdin.buffer.read())"],
                   input=payload, check=True, timeout=30)
    assert sentinel.exists()


# --------------------------------------------------------------------------- images

def test_image_info_without_pillow_says_so() -> None:
    if images.PIL_Image is not None:
        pytest.skip("Pillow is installed: the missing-dependency path is not reachable")
    assert remote(images.image_info, b"GIF89a\x01\x00\x01\x00") == ERR + "DependencyMissing"


@pytest.mark.skipif(images.PIL_Image is None, reason="Pillow is not installed (optional)")
def test_image_info_same_sandboxed_as_direct() -> None:  # pragma: no cover - needs Pillow
    buf = io.BytesIO()
    images.PIL_Image.new("RGB", (7, 3), (1, 2, 3)).save(buf, format="PNG")
    data = buf.getvalue()
    info = images.image_info_direct(memoryview(data), decode=True)
    assert info == {"format": "PNG", "size": [7, 3], "mode": "RGB", "frames": 1}
    assert images.image_info(data, decode=True) == info
    assert remote(images.image_info, data, max_pixels=20) == ERR + "LimitExceeded"
    assert remote(images.image_info, b"\x89PNG\r\n\x1a\nbroken") == ERR + "CorruptInput"
