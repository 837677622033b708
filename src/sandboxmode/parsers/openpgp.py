"""Bounded, hostile-input-safe OpenPGP certificate parser (RFC 9580, RFC 4880, LibrePGP v5).

Runs inside the sandbox: standard library only, every import at module top, no file access,
no threads, no recursion deeper than `MAX_NESTING_DEPTH`. The result is plain data
(None, bool, int, str, bytes, list, dict) ready for msgpack.

Data flow::

    bytes ──► _split_input ──► armor blocks (BEGIN/END, headers, base64, CRC24) or one binary stream
          ──► _read_packets ──► flat list of _Packet (old/new framing, partial lengths,
                                 compressed packets inflated into the stream, <= 16 MiB total)
          ──► _assemble ──────► one _CertBuilder per primary-key packet (tag 5 or 6):
                                 direct signatures, user IDs, user attributes, subkeys,
                                 each with the signatures that follow it
          ──► _CertBuilder.result ──► self-signature selection the way gpg 2.2 does it
                                 (latest wins, revocations, key flags, key expiry,
                                 primary user ID), *without* checking signatures
          ──► {"certificates": [...], "warnings": [...]}

What is fatal and what is not: anything that makes the packet stream itself untrustworthy
(armor errors, framing errors, truncation, a primary key that cannot be read, a limit) raises
an `OpenPGPError` subclass. Parts that OpenPGP says a reader may ignore (signatures of an
unknown version or with a malformed subpacket area, unknown non-critical packets, subkeys that
cannot be read, message packets) are skipped and reported in ``warnings``: a third party can
append such packets to anybody's certificate, so they must not make the whole input fail.

Nothing here verifies a signature. A signature counts as a self-signature when it is well
formed, names the primary key as its issuer, uses the primary key's algorithm, has a hashed
creation time not older than the key and carries no unknown critical subpacket. docs/openpgp.md
lists where this makes the answer differ from ``gpg --show-keys``.
"""

from __future__ import annotations

import binascii
import bz2
import hashlib
import re
import zlib
from typing import Any, Final

__all__ = [
    "MAX_CERTIFICATES",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_INPUT_BYTES",
    "MAX_NESTING_DEPTH",
    "MAX_PACKETS",
    "MAX_SUBPACKETS",
    "ArmorError",
    "LimitExceeded",
    "MalformedPacket",
    "NoCertificate",
    "OpenPGPError",
    "UnsupportedAlgorithm",
    "UnsupportedVersion",
    "parse",
    "parse_certificates",
]

# --------------------------------------------------------------------------------------------
# Limits. Each one, when hit, raises LimitExceeded with the check name given in the comment.

MAX_INPUT_BYTES: Final = 64 * 1024 * 1024  # "input-size": armored or binary input
MAX_DECOMPRESSED_BYTES: Final = 16 * 1024 * 1024  # "decompression-size": all compressed packets
MAX_PACKETS: Final = 200_000  # "packet-count": packets in the whole input, nested ones included
MAX_CERTIFICATES: Final = 10_000  # "certificate-count"
MAX_SUBPACKETS: Final = 1_024  # "subpacket-count": per signature / per user attribute
MAX_NESTING_DEPTH: Final = 16  # "nesting-depth": compressed packets inside compressed packets


# --------------------------------------------------------------------------------------------
# Exceptions


class OpenPGPError(ValueError):
    """Root of every error this parser raises for bad input.

    The input is at fault, never the caller or the parser. ``check`` names the check that
    failed (``"packet-length"``, ``"armor-crc"`` ...) so programs need not parse messages.
    Picklable; the message says where (offset) and what was found.
    Not raised for a wrong argument type (that is `TypeError`).
    """

    check: str = "openpgp"

    def __init__(self, message: str, check: str | None = None) -> None:
        super().__init__(message)
        if check is not None:
            self.check = check


class ArmorError(OpenPGPError):
    """The ASCII armor is broken: missing END line, mismatched labels, bad base64, CRC24
    mismatch. Not raised for text around the armor or for a missing CRC line (RFC 9580
    makes it optional)."""

    check = "armor"


class MalformedPacket(OpenPGPError):
    """The packet stream or a primary-key packet is malformed: bad packet tag octet,
    truncated header or body, a length that runs past the input, partial lengths on a
    non-data packet, broken compressed data, a truncated MPI or OID. Not raised for
    malformed signatures, subkeys or user attributes: those are skipped with a warning."""

    check = "packet"


class LimitExceeded(OpenPGPError):
    """A resource limit was hit (input size, decompressed size, packet, certificate or
    subpacket count, nesting depth). The input may be valid; it is too big to handle here."""

    check = "limit"


class UnsupportedVersion(OpenPGPError):
    """A primary-key packet has a version other than 2, 3, 4, 5 or 6."""

    check = "key-version"


class UnsupportedAlgorithm(OpenPGPError):
    """A primary-key packet cannot be read because of its algorithm (a v3 key that is not
    RSA, a v4 secret key of an unknown algorithm) or a compressed packet uses an unknown
    compression algorithm."""

    check = "algorithm"


class NoCertificate(OpenPGPError):
    """The input is well formed but holds no certificate (empty input, only a revocation
    signature, an armored block that is not a key block...)."""

    check = "no-certificate"


class _BadSignature(Exception):
    """Internal: a signature packet that cannot be read; it is skipped with a warning."""

    def __init__(self, message: str, check: str) -> None:
        super().__init__(message)
        self.check = check


# --------------------------------------------------------------------------------------------
# Tables

_RSA: Final = frozenset({1, 2, 3})

# gpg's openpgp_pk_algo_name() where gpg has a name; RFC 9580 / draft-ietf-openpgp-pqc names
# for the algorithms gpg 2.2 does not know.
_ALGO_NAMES: Final[dict[int, str]] = {
    1: "RSA",
    2: "RSA",
    3: "RSA",
    16: "ELG",
    17: "DSA",
    18: "ECDH",
    19: "ECDSA",
    20: "ELG",
    22: "EDDSA",
    25: "X25519",
    26: "X448",
    27: "Ed25519",
    28: "Ed448",
    30: "ML-DSA-65+Ed25519",
    31: "ML-DSA-87+Ed448",
    35: "ML-KEM-768+X25519",
    36: "ML-KEM-1024+X448",
}

# Usage bits, as gpg keeps them internally.
_U_CERT: Final = 1
_U_SIG: Final = 2
_U_ENC: Final = 4
_U_AUTH: Final = 8
_U_UNKNOWN: Final = 16  # key flags with bits we do not interpret
_U_NONE: Final = 32  # key flags present but empty

# gpg's openpgp_pk_algo_usage(): what an algorithm can do. Key flags are masked with it.
# 25-28 are RFC 9580 additions (gpg 2.2 does not know them and does not mask).
_ALGO_USAGE: Final[dict[int, int]] = {
    1: _U_CERT | _U_SIG | _U_ENC | _U_AUTH,
    2: _U_ENC,
    3: _U_CERT | _U_SIG,
    16: _U_ENC,
    17: _U_CERT | _U_SIG | _U_AUTH,
    18: _U_ENC,
    19: _U_CERT | _U_SIG | _U_AUTH,
    22: _U_CERT | _U_SIG | _U_AUTH,
    25: _U_ENC,
    26: _U_ENC,
    27: _U_CERT | _U_SIG | _U_AUTH,
    28: _U_CERT | _U_SIG | _U_AUTH,
}

# RFC 9580 native ECC algorithms: fixed-size public key, reported like gpg reports the curve.
_NATIVE_ECC: Final[dict[int, tuple[int, str, int]]] = {
    25: (32, "cv25519", 255),
    26: (56, "cv448", 448),
    27: (32, "ed25519", 255),
    28: (57, "ed448", 456),
}

# Hashed-subpacket types we understand well enough to honour the critical bit
# (RFC 9580 5.2.3.7 and gpg's can_handle_critical); notations (20) are not among them.
_KNOWN_SUBPACKETS: Final = frozenset(
    {2, 3, 4, 5, 6, 7, 9, 11, 12, 16, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
     35, 37, 38, 39}
)

# Packet tags (RFC 9580 5): message packets are skipped with a warning; marker (10),
# trust (12) and padding (21) silently.
_KEY_TAGS: Final = frozenset({2, 5, 6, 7, 13, 14, 17})
_MESSAGE_TAGS: Final = frozenset({1, 3, 4, 9, 11, 18, 19, 20})
_SILENT_TAGS: Final = frozenset({10, 12, 21})
_DATA_TAGS: Final = frozenset({8, 9, 11, 18, 20})  # the only ones allowed partial lengths

# Signature types (RFC 9580 5.2.1) that matter for a certificate, by where they belong.
_DIRECT_TYPES: Final = frozenset({0x1F, 0x20})
_UID_TYPES: Final = frozenset({0x10, 0x11, 0x12, 0x13, 0x30})
_SUBKEY_TYPES: Final = frozenset({0x18, 0x28})
_SELF_SIG_TYPES: Final = _DIRECT_TYPES | _UID_TYPES | _SUBKEY_TYPES
_TAG_NAMES: Final[dict[int, str]] = {
    1: "public-key encrypted session key",
    2: "signature",
    3: "symmetric-key encrypted session key",
    4: "one-pass signature",
    5: "secret key",
    6: "public key",
    7: "secret subkey",
    8: "compressed data",
    9: "symmetrically encrypted data",
    10: "marker",
    11: "literal data",
    12: "trust",
    13: "user ID",
    14: "public subkey",
    17: "user attribute",
    18: "encrypted and integrity protected data",
    19: "modification detection code",
    20: "AEAD encrypted data",
    21: "padding",
}

_ARMOR_KEY_LABELS: Final = frozenset({b"PUBLIC KEY BLOCK", b"PRIVATE KEY BLOCK", b"SECRET KEY BLOCK"})
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_BEGIN_RE: Final = re.compile(rb"-----BEGIN PGP ([A-Z0-9 ,/]{1,64})-----")
_END_RE: Final = re.compile(rb"-----END PGP ([A-Z0-9 ,/]{1,64})-----")


def _oid_encode(dotted: str) -> bytes:
    """Encode a dotted OID the way OpenPGP stores it (DER contents, no tag or length)."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


# gpg's common/openpgp-oid.c table: OID -> (name gpg prints in colons field 17, nominal bits).
_CURVES: Final[dict[bytes, tuple[str, int]]] = {
    _oid_encode(oid): (name, bits)
    for oid, name, bits in (
        ("1.3.6.1.4.1.3029.1.5.1", "cv25519", 255),
        ("1.3.6.1.4.1.11591.15.1", "ed25519", 255),
        ("1.3.101.110", "cv25519", 255),
        ("1.3.101.112", "ed25519", 255),
        ("1.3.101.111", "cv448", 448),
        ("1.3.101.113", "ed448", 456),
        ("1.2.840.10045.3.1.7", "nistp256", 256),
        ("1.3.132.0.34", "nistp384", 384),
        ("1.3.132.0.35", "nistp521", 521),
        ("1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1", 256),
        ("1.3.36.3.3.2.8.1.1.11", "brainpoolP384r1", 384),
        ("1.3.36.3.3.2.8.1.1.13", "brainpoolP512r1", 512),
        ("1.3.132.0.10", "secp256k1", 256),
    )
}


# --------------------------------------------------------------------------------------------
# Parse context: counters, budgets and warnings for one call.


class _Context:
    __slots__ = ("decompress_budget", "n_packets", "warnings")

    def __init__(self) -> None:
        self.decompress_budget = MAX_DECOMPRESSED_BYTES
        self.n_packets = 0
        # check -> [first message, count]; repeated warnings are folded so that the
        # output stays small whatever the input repeats.
        self.warnings: dict[str, list[Any]] = {}

    def warn(self, check: str, message: str) -> None:
        entry = self.warnings.get(check)
        if entry is None:
            self.warnings[check] = [message, 1]
        else:
            entry[1] += 1

    def warning_list(self) -> list[dict[str, Any]]:
        return [{"check": c, "message": m, "count": n} for c, (m, n) in self.warnings.items()]


# --------------------------------------------------------------------------------------------
# ASCII armor (RFC 9580 6)


def _crc24(data: bytes) -> int:
    """CRC24 with a 256-entry table (the bitwise version is too slow for big keyrings)."""
    crc = 0xB704CE
    table = _CRC24_TABLE
    for octet in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ table[((crc >> 16) ^ octet) & 0xFF]
    return crc


def _make_crc24_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
        table.append(crc & 0xFFFFFF)
    return tuple(table)


_CRC24_TABLE: Final = _make_crc24_table()


def _split_input(data: bytes, ctx: _Context) -> list[bytes]:
    """Return the binary OpenPGP streams of the input: the armored key blocks, or the
    input itself when it is binary."""
    if data[0] & 0x80 and not data.startswith(_UTF8_BOM):
        return [data]  # a packet tag octet: binary
    if _BEGIN_RE.search(data) is None:
        return [data]  # no armor: let the packet parser report the bad tag octet
    return _dearmor(data, ctx)


def _dearmor(data: bytes, ctx: _Context) -> list[bytes]:
    lines = data.removeprefix(_UTF8_BOM).splitlines()
    n = len(lines)
    i = 0
    streams: list[bytes] = []
    labels: list[str] = []
    while i < n:
        line = lines[i].strip()
        i += 1
        begin = _BEGIN_RE.fullmatch(line)
        if begin is None:
            continue  # text around armor blocks is allowed and ignored
        label = begin.group(1)
        where = f"armor block {label.decode('ascii')!r} at line {i}"
        if label == b"SIGNED MESSAGE":
            # Cleartext signature framework: the text is not base64; the signature
            # block that follows has its own BEGIN line.
            ctx.warn("armor-label", f"{where}: cleartext-signed text skipped")
            continue
        # Armor headers ("Key: value") up to a blank line. Some writers leave the blank
        # line out; the first line without a colon then starts the body (gpg refuses).
        while i < n:
            header = lines[i].strip()
            if not header:
                i += 1
                break
            if b":" not in header:
                ctx.warn("armor-header", f"{where}: no blank line after the armor headers")
                break
            i += 1
        body: list[bytes] = []
        crc: bytes | None = None
        while i < n:
            text = lines[i].strip()
            if text.startswith(b"-----"):
                break
            i += 1
            if not text:
                continue
            if text.startswith(b"="):
                if crc is not None:
                    raise ArmorError(f"{where}: two checksum lines", check="armor-crc-format")
                crc = text[1:]
                continue
            if crc is not None:
                raise ArmorError(f"{where}: data after the checksum line", check="armor-crc-format")
            body.append(text)
        if i >= n:
            raise ArmorError(f"{where}: no END line", check="armor-end-missing")
        end = _END_RE.fullmatch(lines[i].strip())
        i += 1
        if end is None:
            raise ArmorError(f"{where}: malformed END line at line {i}", check="armor-end")
        if end.group(1) != label:
            raise ArmorError(
                f"{where}: ends with END PGP {end.group(1).decode('ascii')!r}",
                check="armor-label-mismatch",
            )
        try:
            decoded = binascii.a2b_base64(b"".join(body), strict_mode=True)
        except binascii.Error as exc:
            raise ArmorError(f"{where}: invalid base64 ({exc})", check="armor-base64") from None
        if crc is not None:
            try:
                want = binascii.a2b_base64(crc, strict_mode=True)
            except binascii.Error:
                want = b""
            if len(want) != 3:
                raise ArmorError(f"{where}: malformed checksum line", check="armor-crc-format")
            got = _crc24(decoded)
            if got != int.from_bytes(want, "big"):
                raise ArmorError(
                    f"{where}: CRC24 mismatch (line says {want.hex()}, data gives {got:06x})",
                    check="armor-crc",
                )
        labels.append(label.decode("ascii"))
        if label not in _ARMOR_KEY_LABELS:
            ctx.warn("armor-label", f"{where}: not a key block, skipped")
            continue
        streams.append(decoded)
    if not streams:
        if labels:
            found = ", ".join(sorted(set(labels))[:4])
            raise NoCertificate(
                f"no key block in the armored input (found: {found})", check="armor-label"
            )
        raise ArmorError("no armor BEGIN line on a line of its own", check="armor-begin")
    return streams


# --------------------------------------------------------------------------------------------
# Packet framing (RFC 9580 4.2)


class _Packet:
    __slots__ = ("body", "depth", "offset", "tag")

    def __init__(self, tag: int, body: bytes, offset: int, depth: int) -> None:
        self.tag = tag
        self.body = body
        self.offset = offset
        self.depth = depth

    def where(self) -> str:
        name = _TAG_NAMES.get(self.tag, "unknown")
        inside = f" inside compressed data (level {self.depth})" if self.depth else ""
        return f"{name} packet (tag {self.tag}) at offset {self.offset}{inside}"


def _read_packets(buf: bytes, depth: int, ctx: _Context, out: list[_Packet]) -> None:
    """Frame ``buf`` into packets and append the key-related ones to ``out``.

    Compressed packets are inflated and their packets appended in place (one level of
    recursion per nesting level, bounded by MAX_NESTING_DEPTH).
    """
    n = len(buf)
    pos = 0
    inside = f" inside compressed data (level {depth})" if depth else ""
    while pos < n:
        start = pos
        ctb = buf[pos]
        pos += 1
        if not ctb & 0x80:
            raise MalformedPacket(
                f"offset {start}{inside}: octet 0x{ctb:02x} is not a packet tag (bit 7 clear)",
                check="packet-ctb",
            )
        chunks: list[bytes] = []
        if ctb & 0x40:  # new format: tag in 6 bits, one or more length headers
            tag = ctb & 0x3F
            while True:
                if pos >= n:
                    raise MalformedPacket(
                        f"offset {start}{inside}: packet header truncated",
                        check="packet-header-truncated",
                    )
                first = buf[pos]
                if first < 192:
                    length, pos, partial = first, pos + 1, False
                elif first < 224:
                    if pos + 2 > n:
                        raise MalformedPacket(
                            f"offset {start}{inside}: packet header truncated",
                            check="packet-header-truncated",
                        )
                    length = ((first - 192) << 8) + buf[pos + 1] + 192
                    pos, partial = pos + 2, False
                elif first == 255:
                    if pos + 5 > n:
                        raise MalformedPacket(
                            f"offset {start}{inside}: packet header truncated",
                            check="packet-header-truncated",
                        )
                    length = int.from_bytes(buf[pos + 1 : pos + 5], "big")
                    pos, partial = pos + 5, False
                else:
                    if tag not in _DATA_TAGS:
                        raise MalformedPacket(
                            f"offset {start}{inside}: partial body length on a "
                            f"{_TAG_NAMES.get(tag, 'unknown')} packet (tag {tag}); RFC 9580 "
                            "allows it on data packets only",
                            check="partial-length",
                        )
                    length, pos, partial = 1 << (first & 0x1F), pos + 1, True
                if length > n - pos:
                    raise MalformedPacket(
                        f"offset {start}{inside}: packet (tag {tag}) length {length} runs "
                        f"past the end of the data ({n - pos} octets left)",
                        check="packet-length",
                    )
                chunks.append(buf[pos : pos + length])
                pos += length
                if not partial:
                    break
                # Each partial chunk costs like a packet: 1-octet chunks must not buy an
                # unbounded list for two octets of input each.
                ctx.n_packets += 1
                if ctx.n_packets > MAX_PACKETS:
                    raise LimitExceeded(
                        f"more than {MAX_PACKETS} packets and partial-length chunks",
                        check="packet-count",
                    )
        else:  # old format: tag in 4 bits, length type in 2 bits
            tag = (ctb >> 2) & 0x0F
            ltype = ctb & 3
            if ltype == 3:
                if tag not in _DATA_TAGS:
                    raise MalformedPacket(
                        f"offset {start}{inside}: indeterminate length on a "
                        f"{_TAG_NAMES.get(tag, 'unknown')} packet (tag {tag}); only data "
                        "packets may use it",
                        check="indeterminate-length",
                    )
                length = n - pos
            else:
                width = 1 << ltype
                if pos + width > n:
                    raise MalformedPacket(
                        f"offset {start}{inside}: packet header truncated",
                        check="packet-header-truncated",
                    )
                length = int.from_bytes(buf[pos : pos + width], "big")
                pos += width
            if length > n - pos:
                raise MalformedPacket(
                    f"offset {start}{inside}: packet (tag {tag}) length {length} runs past "
                    f"the end of the data ({n - pos} octets left)",
                    check="packet-length",
                )
            chunks.append(buf[pos : pos + length])
            pos += length
        ctx.n_packets += 1
        if ctx.n_packets > MAX_PACKETS:
            raise LimitExceeded(f"more than {MAX_PACKETS} packets", check="packet-count")
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if tag == 0:
            raise MalformedPacket(
                f"offset {start}{inside}: packet tag 0 is reserved", check="packet-tag-reserved"
            )
        if tag in _KEY_TAGS:
            out.append(_Packet(tag, body, start, depth))
        elif tag == 8:
            inflated = _inflate(body, start, depth, ctx)
            _read_packets(inflated, depth + 1, ctx, out)
        elif tag in _SILENT_TAGS:
            pass
        elif tag in _MESSAGE_TAGS:
            ctx.warn(
                "packet-ignored",
                f"offset {start}{inside}: {_TAG_NAMES[tag]} packet (tag {tag}) is not part "
                "of a certificate; skipped",
            )
        elif tag >= 40:
            # RFC 9580 4.3: packet types 40-63 are non-critical; unknown ones are ignored.
            ctx.warn("packet-ignored", f"offset {start}{inside}: unknown non-critical tag {tag}")
        else:
            raise MalformedPacket(
                f"offset {start}{inside}: unknown critical packet tag {tag} (RFC 9580 4.3)",
                check="packet-tag-unknown-critical",
            )


def _inflate(body: bytes, offset: int, depth: int, ctx: _Context) -> bytes:
    where = f"compressed packet at offset {offset}" + (f" (level {depth})" if depth else "")
    if depth + 1 > MAX_NESTING_DEPTH:
        raise LimitExceeded(
            f"{where}: compressed packets nested more than {MAX_NESTING_DEPTH} deep",
            check="nesting-depth",
        )
    if not body:
        raise MalformedPacket(f"{where}: empty", check="compressed-data")
    algo = body[0]
    data = body[1:]
    if algo == 0:
        return data
    budget = ctx.decompress_budget
    eof = False
    unused = b""
    # max_length = budget + 1: one octet over the budget is enough to know it is exceeded,
    # and nothing bigger is ever allocated.
    try:
        if algo in (1, 2):
            zobj = zlib.decompressobj(-15 if algo == 1 else 15)
            out = zobj.decompress(data, budget + 1)
            eof = zobj.eof
            unused = zobj.unused_data
        elif algo == 3:
            bobj = bz2.BZ2Decompressor()
            out = bobj.decompress(data, budget + 1)
            eof = bobj.eof
            unused = bobj.unused_data
        else:
            out = b""
    except (zlib.error, OSError, EOFError, ValueError, MemoryError) as exc:
        raise MalformedPacket(f"{where}: corrupt data ({exc})", check="compressed-data") from None
    if algo not in (1, 2, 3):
        raise UnsupportedAlgorithm(
            f"{where}: unknown compression algorithm {algo}", check="compression-algorithm"
        )
    if len(out) > budget:
        raise LimitExceeded(
            f"{where}: decompressed data exceeds {MAX_DECOMPRESSED_BYTES} octets in total",
            check="decompression-size",
        )
    if not eof:
        raise MalformedPacket(f"{where}: compressed stream is truncated", check="compressed-truncated")
    if unused:
        ctx.warn("compressed-trailing-data", f"{where}: {len(unused)} octets after the stream")
    ctx.decompress_budget -= len(out)
    return out


# --------------------------------------------------------------------------------------------
# Key packets (RFC 9580 5.5.2, RFC 4880 5.5.2, LibrePGP v5)


class _Key:
    __slots__ = ("algo", "bits", "created", "curve", "fpr", "keyid", "secret", "v3_days", "version")

    def __init__(
        self,
        version: int,
        created: int,
        algo: int,
        bits: int,
        curve: str | None,
        fpr: bytes,
        keyid: bytes,
        v3_days: int,
        secret: bool,
    ) -> None:
        self.version = version
        self.created = created
        self.algo = algo
        self.bits = bits
        self.curve = curve
        self.fpr = fpr
        self.keyid = keyid
        self.v3_days = v3_days
        self.secret = secret


def _read_mpi(body: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket(f"{what}: MPI header truncated", check="key-mpi")
    bits = (body[pos] << 8) | body[pos + 1]
    size = (bits + 7) >> 3
    if pos + 2 + size > end:
        raise MalformedPacket(
            f"{what}: MPI of {bits} bits needs {size} octets, {end - pos - 2} left",
            check="key-mpi",
        )
    return body[pos + 2 : pos + 2 + size], pos + 2 + size


def _oid_text(oid: bytes) -> str:
    """Dotted form of an OID body; the hex form when it is not valid base-128."""
    arcs: list[int] = []
    value = 0
    for octet in oid:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or oid[-1] & 0x80:
        return oid.hex()
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def _read_oid(body: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    if pos >= end:
        raise MalformedPacket(f"{what}: curve OID missing", check="key-oid")
    size = body[pos]
    if size in (0, 0xFF):
        raise MalformedPacket(f"{what}: curve OID length {size} is reserved", check="key-oid")
    if pos + 1 + size > end:
        raise MalformedPacket(
            f"{what}: curve OID of {size} octets runs past the packet", check="key-oid"
        )
    return body[pos + 1 : pos + 1 + size], pos + 1 + size


def _read_material(
    body: bytes, pos: int, end: int, algo: int, what: str
) -> tuple[int, str | None, int] | None:
    """Read the public key material of ``algo`` in body[pos:end].

    Returns (bits as gpg reports them, curve name or None, end offset), or None for an
    algorithm whose layout is unknown.
    """
    if algo in _RSA:
        n, pos = _read_mpi(body, pos, end, what)
        _, pos = _read_mpi(body, pos, end, what)
        return int.from_bytes(n, "big").bit_length(), None, pos
    if algo == 17:  # DSA: p q g y
        p, pos = _read_mpi(body, pos, end, what)
        for _ in range(3):
            _, pos = _read_mpi(body, pos, end, what)
        return int.from_bytes(p, "big").bit_length(), None, pos
    if algo in (16, 20):  # ElGamal: p g y
        p, pos = _read_mpi(body, pos, end, what)
        for _ in range(2):
            _, pos = _read_mpi(body, pos, end, what)
        return int.from_bytes(p, "big").bit_length(), None, pos
    if algo in (18, 19, 22):  # ECDH, ECDSA, EdDSA(legacy): OID, point [, KDF parameters]
        oid, pos = _read_oid(body, pos, end, what)
        _, pos = _read_mpi(body, pos, end, what)
        if algo == 18:
            if pos >= end:
                raise MalformedPacket(f"{what}: ECDH KDF parameters missing", check="key-ecdh-kdf")
            size = body[pos]
            if size < 3 or pos + 1 + size > end or body[pos + 1] != 1:
                raise MalformedPacket(f"{what}: malformed ECDH KDF parameters", check="key-ecdh-kdf")
            pos += 1 + size
        curve = _CURVES.get(oid)
        if curve is None:
            return 0, _oid_text(oid), pos
        return curve[1], curve[0], pos
    native = _NATIVE_ECC.get(algo)
    if native is not None:
        size, name, bits = native
        if pos + size > end:
            raise MalformedPacket(f"{what}: {size}-octet public key truncated", check="key-truncated")
        return bits, name, pos + size
    return None


def _parse_key(packet: _Packet, ctx: _Context) -> _Key:
    """Read a key packet (tags 5, 6, 7, 14). Only the public part of a secret key is read."""
    body = packet.body
    secret = packet.tag in (5, 7)
    what = packet.where()
    n = len(body)
    if n < 1:
        raise MalformedPacket(f"{what}: empty key packet", check="key-truncated")
    version = body[0]
    v3_days = 0
    if version in (2, 3):
        if n < 8:
            raise MalformedPacket(f"{what}: key packet truncated", check="key-truncated")
        created = int.from_bytes(body[1:5], "big")
        v3_days = int.from_bytes(body[5:7], "big")
        algo = body[7]
        if algo not in _RSA:
            raise UnsupportedAlgorithm(
                f"{what}: version {version} key with algorithm {algo} (v3 keys are RSA only)",
                check="key-algorithm",
            )
        modulus, pos = _read_mpi(body, 8, n, what)
        exponent, pos = _read_mpi(body, pos, n, what)
        value = int.from_bytes(modulus, "big")
        fpr = hashlib.md5(modulus + exponent, usedforsecurity=False).digest()
        keyid = (value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")
        bits, curve, pub_end = value.bit_length(), None, pos
    elif version == 4:
        if n < 6:
            raise MalformedPacket(f"{what}: key packet truncated", check="key-truncated")
        created = int.from_bytes(body[1:5], "big")
        algo = body[5]
        material = _read_material(body, 6, n, algo, what)
        if material is None:
            if secret:
                raise UnsupportedAlgorithm(
                    f"{what}: v4 secret key with unknown algorithm {algo}: the public part "
                    "cannot be told from the secret part",
                    check="key-algorithm",
                )
            bits, curve, pub_end = 0, None, n
        else:
            bits, curve, pub_end = material
        if pub_end > 0xFFFF:
            raise MalformedPacket(f"{what}: v4 key longer than 65535 octets", check="key-too-large")
        if not secret and pub_end != n:
            ctx.warn("key-trailing-data", f"{what}: {n - pub_end} octets after the key material")
        public = body[:pub_end]
        fpr = hashlib.sha1(b"\x99" + pub_end.to_bytes(2, "big") + public, usedforsecurity=False).digest()
        keyid = fpr[-8:]
    elif version in (5, 6):
        if n < 10:
            raise MalformedPacket(f"{what}: key packet truncated", check="key-truncated")
        created = int.from_bytes(body[1:5], "big")
        algo = body[5]
        mend = 10 + int.from_bytes(body[6:10], "big")
        if mend > n or (not secret and mend != n):
            raise MalformedPacket(
                f"{what}: key material length {mend - 10} does not match the packet "
                f"({n - 10} octets)",
                check="key-material-length",
            )
        material = _read_material(body, 10, mend, algo, what)
        if material is None:
            bits, curve = 0, None
        else:
            bits, curve, end = material
            if end != mend:
                raise MalformedPacket(
                    f"{what}: key material is {end - 10} octets, header says {mend - 10}",
                    check="key-material-length",
                )
        public = body[:mend]
        prefix = b"\x9a" if version == 5 else b"\x9b"
        fpr = hashlib.sha256(prefix + mend.to_bytes(4, "big") + public).digest()
        keyid = fpr[:8]
    else:
        raise UnsupportedVersion(f"{what}: unknown key version {version}", check="key-version")
    return _Key(version, created, algo, bits, curve, fpr, keyid, v3_days, secret)


# --------------------------------------------------------------------------------------------
# Signatures (RFC 9580 5.2)


class _Sig:
    __slots__ = (
        "created",
        "issuer_fprs",
        "issuer_keyids",
        "key_expire",
        "key_flags",
        "pkalgo",
        "primary_uid",
        "problem",
        "rev_code",
        "rev_keys",
        "rev_text",
        "sigtype",
        "version",
    )

    def __init__(self, version: int, sigtype: int, pkalgo: int) -> None:
        self.version = version
        self.sigtype = sigtype
        self.pkalgo = pkalgo
        self.created: int | None = None
        self.key_expire = 0
        self.key_flags: bytes | None = None
        self.primary_uid = False
        self.rev_code: int | None = None
        self.rev_text: str | None = None
        self.rev_keys: list[tuple[int, int, bytes]] = []
        self.issuer_keyids: set[bytes] = set()
        self.issuer_fprs: set[bytes] = set()
        self.problem: str | None = None  # why it cannot count as a self-signature


def _subpackets(area: bytes, what: str) -> list[tuple[int, bool, bytes]]:
    """Split a subpacket area into (type, critical, data); RFC 9580 5.2.3.7."""
    out: list[tuple[int, bool, bytes]] = []
    pos = 0
    n = len(area)
    while pos < n:
        if len(out) >= MAX_SUBPACKETS:
            raise LimitExceeded(
                f"{what}: more than {MAX_SUBPACKETS} subpackets", check="subpacket-count"
            )
        first = area[pos]
        if first < 192:
            length, pos = first, pos + 1
        elif first < 255:
            if pos + 2 > n:
                raise _BadSignature(f"{what}: subpacket length truncated", "subpacket-length")
            length, pos = ((first - 192) << 8) + area[pos + 1] + 192, pos + 2
        else:
            if pos + 5 > n:
                raise _BadSignature(f"{what}: subpacket length truncated", "subpacket-length")
            length, pos = int.from_bytes(area[pos + 1 : pos + 5], "big"), pos + 5
        if length == 0:
            raise _BadSignature(f"{what}: subpacket of length 0", "subpacket-length")
        if length > n - pos:
            raise _BadSignature(
                f"{what}: subpacket length {length} runs past its area ({n - pos} left)",
                "subpacket-length",
            )
        out.append((area[pos] & 0x7F, bool(area[pos] & 0x80), area[pos + 1 : pos + length]))
        pos += length
    return out


def _fixed(data: bytes, size: int, stype: int, what: str) -> bytes:
    if len(data) != size:
        raise _BadSignature(
            f"{what}: subpacket type {stype} has {len(data)} octets, expected {size}",
            "subpacket-size",
        )
    return data


def _parse_signature(packet: _Packet) -> _Sig:
    body = packet.body
    what = packet.where()
    n = len(body)
    if n < 1:
        raise _BadSignature(f"{what}: empty signature packet", "signature-truncated")
    version = body[0]
    if version in (2, 3):
        if n < 19 or body[1] != 5:
            raise _BadSignature(f"{what}: malformed v{version} signature", "signature-truncated")
        sig = _Sig(version, body[2], body[15])
        sig.created = int.from_bytes(body[3:7], "big")
        sig.issuer_keyids.add(body[7:15])
        return sig
    if version in (4, 5, 6):
        if n < 4:
            raise _BadSignature(f"{what}: signature truncated", "signature-truncated")
        sig = _Sig(version, body[1], body[2])
        width = 4 if version == 6 else 2
        pos = 4
        areas: list[bytes] = []
        for _ in range(2):
            if pos + width > n:
                raise _BadSignature(f"{what}: signature truncated", "signature-truncated")
            size = int.from_bytes(body[pos : pos + width], "big")
            pos += width
            if size > n - pos:
                raise _BadSignature(
                    f"{what}: subpacket area of {size} octets runs past the packet",
                    "signature-area-length",
                )
            areas.append(body[pos : pos + size])
            pos += size
        if pos + 2 > n:
            raise _BadSignature(f"{what}: signature truncated", "signature-truncated")
        if version == 6:
            pos += 2
            if pos >= n or pos + 1 + body[pos] > n:
                raise _BadSignature(f"{what}: signature salt truncated", "signature-truncated")
        hashed = _subpackets(areas[0], what)
        unhashed = _subpackets(areas[1], what)
        if len(hashed) + len(unhashed) > MAX_SUBPACKETS:
            raise LimitExceeded(
                f"{what}: more than {MAX_SUBPACKETS} subpackets", check="subpacket-count"
            )
        seen: set[int] = set()
        for stype, critical, data in hashed:
            if critical and stype not in _KNOWN_SUBPACKETS:
                sig.problem = f"unknown critical subpacket type {stype}"
            first = stype not in seen  # like gpg, the first occurrence counts
            seen.add(stype)
            if stype == 2:
                value = int.from_bytes(_fixed(data, 4, stype, what), "big")
                if first:
                    sig.created = value
            elif stype == 9:
                value = int.from_bytes(_fixed(data, 4, stype, what), "big")
                if first:
                    sig.key_expire = value
            elif stype == 27:
                if first:
                    sig.key_flags = data
            elif stype == 25:
                if first:
                    sig.primary_uid = _fixed(data, 1, stype, what)[0] != 0
            elif stype == 29:
                if not data:
                    raise _BadSignature(f"{what}: empty revocation reason", "subpacket-size")
                if first:
                    sig.rev_code = data[0]
                    sig.rev_text = data[1:].decode("utf-8", errors="replace")
            elif stype == 12:
                if len(data) < 3:
                    raise _BadSignature(f"{what}: short revocation key", "subpacket-size")
                sig.rev_keys.append((data[0], data[1], data[2:]))
            elif stype in (16, 33):
                _add_issuer(sig, stype, data, what)
        for stype, critical, data in unhashed:
            if critical and stype not in _KNOWN_SUBPACKETS:
                sig.problem = f"unknown critical subpacket type {stype}"
            if stype in (16, 33):
                _add_issuer(sig, stype, data, what)
        if sig.created is None and sig.problem is None:
            sig.problem = "no hashed signature creation time"
        return sig
    raise _BadSignature(f"{what}: unknown signature version {version}", "signature-version")


def _add_issuer(sig: _Sig, stype: int, data: bytes, what: str) -> None:
    if stype == 16:
        sig.issuer_keyids.add(_fixed(data, 8, stype, what))
        return
    if len(data) < 2:
        raise _BadSignature(f"{what}: short issuer fingerprint", "subpacket-size")
    fpr = data[1:]
    sig.issuer_fprs.add(fpr)
    sig.issuer_keyids.add(fpr[-8:] if data[0] == 4 else fpr[:8])


# --------------------------------------------------------------------------------------------
# Certificates


def _usage_from_flags(flags: bytes | None) -> int:
    """gpg's parse_key_usage(): key-flags subpacket -> usage bits (0 = no subpacket)."""
    if flags is None:
        return 0
    if not flags:
        return _U_NONE
    octet = flags[0]
    usage = 0
    if octet & 0x01:
        usage |= _U_CERT
    if octet & 0x02:
        usage |= _U_SIG
    if octet & 0x0C:
        usage |= _U_ENC
    if octet & 0x20:
        usage |= _U_AUTH
    if octet & ~0x2F:
        usage |= _U_UNKNOWN
    return usage or _U_NONE


def _effective_usage(flags_usage: int, algo: int) -> int:
    """No key flags: what the algorithm can do; else the flags masked with it (gpg)."""
    algo_usage = _ALGO_USAGE.get(algo, 0)
    if not flags_usage:
        return algo_usage
    return flags_usage & algo_usage if algo_usage else flags_usage


def _capabilities(usage: int, primary: bool) -> str:
    """Letters of gpg's colons field 12 (lower case part) in gpg's order."""
    letters = ""
    c_printed = False
    if usage & _U_ENC:
        letters += "e"
    if usage & _U_SIG:
        letters += "s"
        if primary:
            letters += "c"
            c_printed = True
    if usage & _U_CERT and not c_printed:
        letters += "c"
    if usage & _U_AUTH:
        letters += "a"
    return letters


def _flags_int(flags: bytes | None) -> int | None:
    if flags is None:
        return None
    return int.from_bytes(flags[:4], "little")


def _revocation(sig: _Sig | None) -> dict[str, Any] | None:
    if sig is None:
        return None
    return {"code": sig.rev_code, "text": sig.rev_text, "created": sig.created}


def _key_fields(key: _Key) -> dict[str, Any]:
    return {
        "version": key.version,
        "secret": key.secret,
        "fingerprint": key.fpr.hex().upper(),
        "keyid": key.keyid.hex().upper(),
        "algorithm": key.algo,
        "algorithm_name": _ALGO_NAMES.get(key.algo, "?"),
        "bits": key.bits,
        "curve": key.curve,
        "created": key.created,
    }


class _Component:
    """A user ID, user attribute or subkey with the signatures that follow it."""

    __slots__ = ("body", "key", "kind", "sigs")

    def __init__(self, kind: str, body: bytes, key: _Key | None) -> None:
        self.kind = kind  # "uid", "uat", "subkey" or "dead" (unreadable subkey)
        self.body = body
        self.key = key
        self.sigs: list[_Sig] = []


def _uat_subpackets(body: bytes) -> int | None:
    """Number of image/attribute subpackets, or None when the packet is malformed."""
    count = 0
    pos = 0
    n = len(body)
    while pos < n:
        if count >= MAX_SUBPACKETS:
            raise LimitExceeded(
                f"user attribute with more than {MAX_SUBPACKETS} subpackets",
                check="subpacket-count",
            )
        first = body[pos]
        if first < 192:
            length, pos = first, pos + 1
        elif first < 255:
            if pos + 2 > n:
                return None
            length, pos = ((first - 192) << 8) + body[pos + 1] + 192, pos + 2
        else:
            if pos + 5 > n:
                return None
            length, pos = int.from_bytes(body[pos + 1 : pos + 5], "big"), pos + 5
        if length == 0 or length > n - pos:
            return None
        pos += length
        count += 1
    return count


def _cmp_uids(a: bytes, b: bytes) -> int:
    """gpg's cmp_user_ids(): longer first, then bytewise."""
    if len(a) != len(b):
        return len(a) - len(b)
    return (a > b) - (a < b)


class _CertBuilder:
    def __init__(self, primary: _Key, ctx: _Context) -> None:
        self.primary = primary
        self.ctx = ctx
        self.direct: list[_Sig] = []
        self.components: list[_Component] = []
        self.seen_subkey = False

    # -- assembly --------------------------------------------------------------------------

    def add(self, packet: _Packet) -> None:
        tag = packet.tag
        if tag == 2:
            try:
                sig = _parse_signature(packet)
            except _BadSignature as exc:
                self.ctx.warn(exc.check, f"{exc}; signature skipped")
                return
            if self.components:
                self.components[-1].sigs.append(sig)
            else:
                self.direct.append(sig)
        elif tag in (13, 17):
            if self.seen_subkey:
                self.ctx.warn(
                    "packet-order", f"{packet.where()}: user ID after a subkey (RFC 9580 10.1)"
                )
            self.components.append(_Component("uid" if tag == 13 else "uat", packet.body, None))
        else:  # 7, 14
            self.seen_subkey = True
            try:
                key = _parse_key(packet, self.ctx)
            except (MalformedPacket, UnsupportedVersion, UnsupportedAlgorithm) as exc:
                self.ctx.warn("subkey-skipped", f"{exc}; subkey and its signatures skipped")
                self.components.append(_Component("dead", b"", None))
                return
            self.components.append(_Component("subkey", b"", key))

    # -- evaluation ------------------------------------------------------------------------

    def _usable(self, sig: _Sig) -> bool:
        """Could this be a valid self-signature? (Everything but the cryptography.)"""
        pk = self.primary
        if pk.fpr not in sig.issuer_fprs and pk.keyid not in sig.issuer_keyids:
            return False  # a third-party signature
        problem = sig.problem
        if problem is None and sig.pkalgo != pk.algo and not (
            sig.pkalgo in _RSA and pk.algo in _RSA
        ):
            problem = f"algorithm {sig.pkalgo} differs from the key's {pk.algo}"
        if problem is None and (sig.created or 0) < pk.created:
            # gpg: "public key is N days newer than the signature" makes it invalid.
            problem = "older than the key"
        if problem is not None:
            self.ctx.warn(
                "self-signature-ignored",
                f"self-signature type 0x{sig.sigtype:02x} ignored: {problem}",
            )
            return False
        return True

    def _self_sigs(self, sigs: list[_Sig], types: frozenset[int], where: str) -> list[_Sig]:
        """The usable self-signatures of the given types, warning about misplaced ones."""
        out = []
        for sig in sigs:
            if not self._usable(sig):
                continue
            if sig.sigtype in types:
                out.append(sig)
            elif sig.sigtype in _SELF_SIG_TYPES:
                self.ctx.warn(
                    "signature-misplaced",
                    f"self-signature type 0x{sig.sigtype:02x} {where}; ignored",
                )
        return out

    def result(self) -> dict[str, Any]:
        pk = self.primary

        # 1. Direct-key section (gpg merge_selfsigs_main, first pass): any key revocation
        #    revokes; the latest direct-key signature gives usage and expiry if it has them.
        revoked_by: _Sig | None = None
        direct: _Sig | None = None
        rev_keys: list[dict[str, Any]] = []
        seen_rev_keys: set[tuple[int, int, bytes]] = set()
        for sig in self._self_sigs(self.direct, _DIRECT_TYPES, "directly after the primary key"):
            if sig.sigtype == 0x20:
                revoked_by = sig
                continue
            # gpg gathers designated revokers from every direct-key self-signature.
            for rev_key in sig.rev_keys:
                if rev_key not in seen_rev_keys:
                    seen_rev_keys.add(rev_key)
                    rclass, ralgo, rfpr = rev_key
                    rev_keys.append(
                        {"class": rclass, "algorithm": ralgo, "fingerprint": rfpr.hex().upper()}
                    )
            if direct is None or _created(sig) >= _created(direct):
                direct = sig
        key_usage = 0
        usage_flags: bytes | None = None
        key_expire = 0
        expire_seen = False
        valid = direct is not None
        if direct is not None:
            key_usage = _usage_from_flags(direct.key_flags)
            usage_flags = direct.key_flags
            if direct.key_expire:
                key_expire = pk.created + direct.key_expire
                expire_seen = True

        # 2. User IDs and attributes: the latest self-certification or certification
        #    revocation decides (a later certification undoes a user ID revocation).
        uids: list[_UidInfo] = []
        uats: list[dict[str, Any]] = []
        for comp in self.components:
            if comp.kind not in ("uid", "uat"):
                continue
            chosen: _Sig | None = None
            for sig in self._self_sigs(comp.sigs, _UID_TYPES, "after a user ID"):
                if chosen is None or _created(sig) >= _created(chosen):
                    chosen = sig
            if chosen is not None:
                valid = True
            info = _UidInfo(comp.body, chosen, pk.created)
            if comp.kind == "uid":
                uids.append(info)
            else:
                count = _uat_subpackets(comp.body)
                if count is None:
                    self.ctx.warn(
                        "user-attribute-malformed", "user attribute with a malformed subpacket"
                    )
                uats.append({"size": len(comp.body), "subpackets": count, **info.status()})

        # 3. Usage and expiry from the user ID with the latest self-signature that has
        #    them, unless the direct-key signature gave them (gpg compares uid->created).
        if not key_usage:
            date = 0
            for info in uids:
                if info.help_usage and (info.created > date or (not info.created and not date)):
                    key_usage, usage_flags, date = info.help_usage, info.key_flags, info.created
        usage = _effective_usage(key_usage, pk.algo) | _U_CERT
        if not expire_seen:
            date = 0
            for info in uids:
                if info.help_expire and (info.created > date or (not info.created and not date)):
                    key_expire, date = info.help_expire, info.created
        max_expire = pk.created + pk.v3_days * 86400 if pk.v3_days else 0
        if key_expire == 0 or (max_expire and key_expire > max_expire):
            key_expire = max_expire

        # 4. Primary user ID: among those flagged primary the latest, else the latest;
        #    equal dates are decided by gpg's cmp_user_ids (longer, then bytewise greater).
        primary: _UidInfo | None = None
        for flagged in (True, False):
            for info in uids:
                if info.flagged != flagged or (not flagged and not info.created):
                    continue
                if primary is None or info.created > primary.created or (
                    info.created == primary.created and _cmp_uids(info.raw, primary.raw) > 0
                ):
                    primary = info
            if primary is not None:
                break
        if primary is None and uids:
            primary = uids[0]

        result = _key_fields(pk)
        result.update(
            {
                "expires": key_expire or None,
                "valid": valid,
                "revoked": revoked_by is not None,
                "revocation": _revocation(revoked_by),
                "capabilities": _capabilities(usage, primary=True),
                "key_flags": _flags_int(usage_flags),
                "revocation_keys": rev_keys,
                "user_ids": [
                    {"uid": i.text, "raw": i.raw, "primary": i is primary, **i.status()}
                    for i in uids
                ],
                "user_attribute_count": len(uats),
                "user_attributes": uats,
                "subkeys": [
                    self._subkey(c.key, c.sigs)
                    for c in self.components
                    if c.kind == "subkey" and c.key is not None
                ],
            }
        )
        return result

    def _subkey(self, key: _Key, sigs: list[_Sig]) -> dict[str, Any]:
        """gpg merge_selfsigs_subkey: latest binding; any subkey revocation revokes."""
        binding: _Sig | None = None
        revoked_by: _Sig | None = None
        for sig in self._self_sigs(sigs, _SUBKEY_TYPES, "after a subkey"):
            if sig.sigtype == 0x28:
                revoked_by = sig  # whatever its date: a revocation is not undone
            elif binding is None or _created(sig) >= _created(binding):
                binding = sig
        result = _key_fields(key)
        if binding is None:
            usage, expires, flags = 0, None, None
        else:
            usage = _effective_usage(_usage_from_flags(binding.key_flags), key.algo)
            expires = key.created + binding.key_expire if binding.key_expire else None
            flags = binding.key_flags
        result.update(
            {
                "expires": expires,
                "valid": binding is not None,
                "revoked": revoked_by is not None,
                "revocation": _revocation(revoked_by),
                "capabilities": _capabilities(usage, primary=False),
                "key_flags": _flags_int(flags),
            }
        )
        return result


class _UidInfo:
    """What the chosen self-signature of a user ID (or attribute) says (gpg fixup_uidnode)."""

    __slots__ = ("chosen", "created", "flagged", "help_expire", "help_usage", "key_flags", "raw",
                 "revoked", "text")

    def __init__(self, raw: bytes, chosen: _Sig | None, key_created: int) -> None:
        self.raw = raw
        self.text = raw.decode("utf-8", errors="replace")
        self.chosen = chosen
        self.revoked = chosen is not None and chosen.sigtype == 0x30
        good = chosen is not None and not self.revoked
        self.created = _created(chosen) if good and chosen is not None else 0
        self.key_flags = chosen.key_flags if good and chosen is not None else None
        self.help_usage = _usage_from_flags(self.key_flags)
        self.help_expire = (
            key_created + chosen.key_expire if good and chosen is not None and chosen.key_expire
            else 0
        )
        self.flagged = good and chosen is not None and chosen.primary_uid

    def status(self) -> dict[str, Any]:
        return {
            "valid": self.chosen is not None and not self.revoked,
            "revoked": self.revoked,
            "revocation": _revocation(self.chosen) if self.revoked else None,
            "created": self.created or None,
        }


def _created(sig: _Sig) -> int:
    return sig.created or 0


def _assemble(packets: list[_Packet], ctx: _Context, certs: list[dict[str, Any]]) -> None:
    builder: _CertBuilder | None = None
    for packet in packets:
        if packet.tag in (5, 6):
            if builder is not None:
                certs.append(builder.result())
            if len(certs) >= MAX_CERTIFICATES:
                raise LimitExceeded(
                    f"more than {MAX_CERTIFICATES} certificates", check="certificate-count"
                )
            builder = _CertBuilder(_parse_key(packet, ctx), ctx)
            if packet.tag == 5:
                ctx.warn("secret-key", "secret-key packets: only their public part is read")
        elif builder is None:
            ctx.warn("orphan-packet", f"{packet.where()}: not preceded by a primary key; skipped")
        else:
            builder.add(packet)
    if builder is not None:
        certs.append(builder.result())


# --------------------------------------------------------------------------------------------
# Public API


def parse_certificates(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Parse OpenPGP certificates (transferable public keys) from armored or binary input.

    Args:
        data: the input: binary packets, or text holding one or more ASCII-armored
            ``PGP PUBLIC KEY BLOCK`` (or ``PRIVATE KEY BLOCK``: only public parts are read)
            blocks. Several certificates may follow each other.

    Returns:
        ``{"certificates": [cert, ...], "warnings": [{"check", "message", "count"}, ...]}``,
        plain data only. Each ``cert`` has the primary key's ``version``, ``fingerprint``
        and ``keyid`` (upper-case hex), ``algorithm`` / ``algorithm_name``, ``bits``,
        ``curve``, ``created``, ``expires`` (unix time or None), ``capabilities``
        (gpg's letters e/s/c/a), ``key_flags``, ``valid``, ``revoked``, ``revocation``
        (``{"code", "text", "created"}`` or None), ``secret``, ``revocation_keys``,
        ``user_ids`` (``{"uid", "raw", "primary", "valid", "revoked", "revocation",
        "created"}``), ``user_attribute_count``, ``user_attributes`` and ``subkeys`` (same
        key fields). Signatures are not verified; see docs/openpgp.md.

    Raises:
        TypeError: ``data`` is not bytes-like.
        ArmorError: broken armor (END line, labels, base64, CRC24).
        MalformedPacket: broken packet framing, compressed data or primary-key packet.
        UnsupportedVersion: a primary key of an unknown version.
        UnsupportedAlgorithm: a primary key that cannot be read because of its algorithm,
            or an unknown compression algorithm.
        LimitExceeded: one of the MAX_* limits of this module was hit.
        NoCertificate: nothing in the input is a certificate.

    Example:
        >>> parse_certificates(b"")  # doctest: +SKIP
        Traceback (most recent call last):
        NoCertificate: empty input
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, bytearray or memoryview, not {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > MAX_INPUT_BYTES:
        raise LimitExceeded(
            f"input of {size} octets exceeds {MAX_INPUT_BYTES}", check="input-size"
        )
    buf = bytes(data)
    if not buf:
        raise NoCertificate("empty input", check="empty-input")
    ctx = _Context()
    certs: list[dict[str, Any]] = []
    for stream in _split_input(buf, ctx):
        packets: list[_Packet] = []
        _read_packets(stream, 0, ctx, packets)
        _assemble(packets, ctx, certs)
    if not certs:
        raise NoCertificate("no primary-key packet in the input", check="no-certificate")
    return {"certificates": certs, "warnings": ctx.warning_list()}


def parse(data: bytes | bytearray | memoryview) -> list[dict[str, Any]]:
    """Parse OpenPGP certificates; like `parse_certificates` without the warnings.

    Args:
        data: armored or binary OpenPGP data holding one or more certificates.

    Returns:
        One plain-data dict per certificate, in input order (see `parse_certificates`).

    Raises:
        TypeError: ``data`` is not bytes-like.
        OpenPGPError: a subclass naming the failed check (``.check``) for malformed,
            oversized or certificate-free input.

    Example:
        >>> [c["fingerprint"] for c in parse(armored_key)]  # doctest: +SKIP
        ['4D64FEC119C2029067D6E791F8D2585B8783D481']
    """
    result: list[dict[str, Any]] = parse_certificates(data)["certificates"]
    return result
