"""Unpacker for AppArmor binary policy blobs (what ``apparmor_parser -S`` writes).

This is a restatement, in Python, of the Linux kernel's own unpacker
(``security/apparmor/policy_unpack.c`` and ``security/apparmor/match.c``): the same
element probing, the same order of fields, the same header, DFA table and state checks.
It is meant to run inside the sandbox on hostile bytes, so it uses the standard library
only, imports everything at module load, reads no files, starts no threads, never
recurses, and bounds every loop and allocation by the input size and the limits below.

Data flow::

    bytes --_Ext (kernel aa_ext probing reader)--> records
      record: _verify_header -> _unpack_profile -> _verify_profile
      _unpack_profile: name, xmatch pdb, flags, caps, xattrs, rlimits, secmark,
                       policydb pdb, file pdb, data
      pdb:    perms table?, aadfa blob -> _unpack_dfa (table headers, verify_dfa)
    -> plain dict (None, bool, int, str, bytes, list, dict with str keys)

Every rejection is an `AppArmorError` subclass whose ``check`` names the kernel check
that failed (the kernel's audit ``info`` string, or for DFAs the ``match.c`` function and
condition); ``info`` is what the kernel itself would log; ``offset`` is where in the input
the reader stood. See ``docs/apparmor.md`` for what is checked and where this module is
deliberately stricter than the kernel.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "MAX_INPUT_SIZE",
    "MAX_LIST_ENTRIES",
    "MAX_PROFILES",
    "AppArmorError",
    "BadDFA",
    "BadElement",
    "BadHeader",
    "BadProfile",
    "BadVersion",
    "LimitExceeded",
    "unpack",
]

# --------------------------------------------------------------------------- limits

MAX_INPUT_SIZE: Final = 16 * 1024 * 1024
"""Largest blob accepted. The kernel has no limit of its own but memory; real policy
cache files are a few hundred KiB. 16 MiB keeps the DFA checks well under a second."""

MAX_PROFILES: Final = 2048
"""Most records (profiles) in one blob; keeps the result inside the wire codec's budget."""

MAX_LIST_ENTRIES: Final = 100_000
"""Most entries, over the whole blob, of the lists copied into the result (transition
tables, xattrs, secmark rules, data entries). Each u16-counted array is also bounded by
the kernel's own encoding (at most 65535)."""

_MAX_CLASS_CHAIN: Final = 256
"""Longest diff-encode chain walked from a policydb start state to list the mediation
classes (255 * chain steps); beyond it ``classes`` is reported as None."""

# --------------------------------------------------------------------------- encoding

AA_U8: Final = 0
AA_U16: Final = 1
AA_U32: Final = 2
AA_U64: Final = 3
AA_NAME: Final = 4
AA_STRING: Final = 5
AA_BLOB: Final = 6
AA_STRUCT: Final = 7
AA_STRUCTEND: Final = 8
AA_LIST: Final = 9
AA_LISTEND: Final = 10
AA_ARRAY: Final = 11
AA_ARRAYEND: Final = 12

K_ABI_MASK: Final = 0x3FF
FORCE_COMPLAIN_FLAG: Final = 0x800
_ABI_MIN: Final = 5
_ABI_MAX: Final = 9

PACKED_FLAG_HAT: Final = 1
PACKED_FLAG_DEBUG1: Final = 2
PACKED_FLAG_DEBUG2: Final = 4
_MODES: Final = {0: "enforce", 1: "complain", 2: "kill", 3: "unconfined", 4: "user"}

RLIM_NLIMITS: Final = 16
_RLIMIT_NAMES: Final = (
    "cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile",
    "memlock", "as", "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime",
)  # fmt: skip

CAPABILITY_NAMES: Final = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)  # fmt: skip
"""Linux capability names by bit number (include/uapi/linux/capability.h, up to 40)."""

# DFA (match.h): table set / table headers, all big-endian.
YYTH_MAGIC: Final = 0x1B5E783D
YYTH_FLAG_DIFF_ENCODE: Final = 1
YYTH_FLAG_OOB_TRANS: Final = 2
_YYTH_FLAGS: Final = YYTH_FLAG_DIFF_ENCODE | YYTH_FLAG_OOB_TRANS
_TABLE_SET_HEADER_SIZE: Final = 16  # sizeof(struct table_set_header), padded to u32
_TABLE_HEADER_SIZE: Final = 12  # sizeof(struct table_header)
YYTD_ID_ACCEPT: Final = 0
YYTD_ID_BASE: Final = 1
YYTD_ID_CHK: Final = 2
YYTD_ID_DEF: Final = 3
YYTD_ID_EC: Final = 4
YYTD_ID_META: Final = 5
YYTD_ID_ACCEPT2: Final = 6
YYTD_ID_NXT: Final = 7
YYTD_ID_MAX: Final = 8
_TABLE_KINDS: Final = ("ACCEPT", "BASE", "CHK", "DEF", "EC", "META", "ACCEPT2", "NXT", "TSIZE")
YYTD_DATA8: Final = 1
YYTD_DATA16: Final = 2
YYTD_DATA32: Final = 4
MATCH_FLAG_DIFF_ENCODE: Final = 0x80000000
MARK_DIFF_ENCODE: Final = 0x40000000
MATCH_FLAG_OOB_TRANSITION: Final = 0x20000000
MATCH_FLAGS_MASK: Final = 0xFF000000
MATCH_FLAGS_INVALID: Final = MATCH_FLAGS_MASK & ~(
    MATCH_FLAG_DIFF_ENCODE | MATCH_FLAG_OOB_TRANSITION
)
_BASE_IDX_MASK: Final = 0x00FFFFFF
_MAX_OOB: Final = 1  # the kernel hard-codes dfa->max_oob = 1
DFA_START: Final = 1

# Exec transition encoding (file.h, current kernels) and the compat remap of packed perms.
AA_X_INDEX_MASK: Final = 0x00FFFFFF
AA_X_TYPE_MASK: Final = 0x0C000000
AA_X_TABLE: Final = 0x08000000

_KERNEL_SPACE: Final = frozenset(b"\t\n\v\f\r \xa0")  # lib/ctype.c isspace()
_U32_CODE: Final = "I" if array("I").itemsize == 4 else "L"
_SWAP: Final = sys.byteorder == "little"

# --------------------------------------------------------------------------- errors


class AppArmorError(ValueError):
    """A blob the kernel would refuse (or that exceeds this module's limits).

    Attributes:
        check: machine name of the failed check, e.g. ``"unsupported interface version"``
            or ``"verify_dfa: default state out of bounds"``.
        detail: human-readable specifics (which DFA, which state, which value).
        offset: byte offset of the reader in the input when the check failed, or None.
        info: the ``info`` string the kernel would audit for this failure.

    Not raised for a wrong argument type (that is a `TypeError`).
    """

    check: str

    def __init__(
        self, check: str, detail: str = "", offset: int | None = None, info: str | None = None
    ) -> None:
        super().__init__(check, detail, offset, info)
        self.check = check
        self.detail = detail
        self.offset = offset
        self.info = check if info is None else info

    def __str__(self) -> str:
        text = self.check
        if self.detail:
            text = f"{text}: {self.detail}"
        if self.offset is not None:
            text = f"{text} (at byte {self.offset})"
        return text


class BadHeader(AppArmorError):
    """The load header is wrong: missing version, empty namespace, empty input."""


class BadVersion(AppArmorError):
    """The interface version is outside the kernel ABIs v5..v9."""


class BadElement(AppArmorError):
    """An expected element is missing, mistyped, out of bounds or has a bad value."""


class BadDFA(AppArmorError):
    """A DFA blob fails ``aa_dfa_unpack``, ``verify_table_headers`` or ``verify_dfa``."""


class BadProfile(AppArmorError):
    """The profile unpacked but fails ``verify_profile`` (transition/permission indexes)."""


class LimitExceeded(AppArmorError):
    """The blob exceeds one of this module's resource limits (not a kernel check)."""


# --------------------------------------------------------------------------- reader


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


class _Ext:
    """The kernel's ``struct aa_ext``: a position that probes can move and restore."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.end = len(buf)
        self.pos = 0

    def inbounds(self, size: int) -> bool:
        return size <= self.end - self.pos

    def x(self, code: int) -> bool:
        if self.pos < self.end and self.buf[self.pos] == code:
            self.pos += 1
            return True
        return False

    def u16_chunk(self) -> tuple[int, int]:
        """aa_unpack_u16_chunk: (size, offset); size 0 on failure (position restored)."""
        pos = self.pos
        if not self.inbounds(2):
            return 0, pos
        size = self.buf[pos] | (self.buf[pos + 1] << 8)
        self.pos = pos + 2
        if not self.inbounds(size):
            self.pos = pos
            return 0, pos
        self.pos += size
        return size, pos + 2

    def cstr(self, off: int, size: int) -> bytes:
        """The C string (up to the first NUL) in ``buf[off:off+size]``."""
        nul = self.buf.find(b"\0", off, off + size)
        return self.buf[off : (off + size if nul < 0 else nul)]

    def name_x(self, code: int, name: bytes | None) -> bool:
        """aa_unpack_nameX: optional name tag (must equal ``name`` if given), then ``code``."""
        pos = self.pos
        if self.x(AA_NAME):
            size, off = self.u16_chunk()
            if name is not None and (
                size == 0 or self.buf[off + size - 1] != 0 or self.cstr(off, size) != name
            ):
                self.pos = pos
                return False
        elif name is not None:
            return False
        if self.x(code):
            return True
        self.pos = pos
        return False

    def _fixed(self, code: int, width: int, name: bytes | None) -> int | None:
        pos = self.pos
        if self.name_x(code, name) and self.inbounds(width):
            value = int.from_bytes(self.buf[self.pos : self.pos + width], "little")
            self.pos += width
            return value
        self.pos = pos
        return None

    def u8(self, name: bytes | None = None) -> int | None:
        return self._fixed(AA_U8, 1, name)

    def u32(self, name: bytes | None = None) -> int | None:
        return self._fixed(AA_U32, 4, name)

    def u64(self, name: bytes | None = None) -> int | None:
        return self._fixed(AA_U64, 8, name)

    def array(self, name: bytes | None = None) -> int | None:
        return self._fixed(AA_ARRAY, 2, name)

    def blob(self, name: bytes | None) -> tuple[int, int] | None:
        """aa_unpack_blob: (offset, size) of the payload, or None if absent or short.

        Like the kernel, an empty blob is consumed and reported as size 0, which callers
        treat as "no blob" (unpack_dfa tests ``if (size)``).
        """
        pos = self.pos
        if self.name_x(AA_BLOB, name) and self.inbounds(4):
            size = int.from_bytes(self.buf[self.pos : self.pos + 4], "little")
            self.pos += 4
            if self.inbounds(size):
                off = self.pos
                self.pos += size
                return off, size
        self.pos = pos
        return None

    def string(self, name: bytes | None) -> tuple[int, int] | None:
        """aa_unpack_str: (offset, size incl. the NUL) or None; size 0 or no NUL fails."""
        pos = self.pos
        if self.name_x(AA_STRING, name):
            size, off = self.u16_chunk()
            if size and self.buf[off + size - 1] == 0:
                return off, size
        self.pos = pos
        return None

    def cstring(self, name: bytes | None) -> bytes | None:
        got = self.string(name)
        return None if got is None else self.cstr(*got)


class _Budget:
    """Counts list entries copied into the result, over the whole blob."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_LIST_ENTRIES

    def take(self, count: int, e: _Ext, what: str) -> None:
        self.left -= count
        if self.left < 0:
            raise LimitExceeded(
                "too many list entries", f"{what}: more than {MAX_LIST_ENTRIES} in total", e.pos
            )


# --------------------------------------------------------------------------- DFA


def _table(buf: bytes, off: int, count: int, width: int) -> array[int]:
    code = {YYTD_DATA8: "B", YYTD_DATA16: "H", YYTD_DATA32: _U32_CODE}[width]
    values: array[int] = array(code)
    values.frombytes(buf[off : off + count * width])
    if width > 1 and _SWAP:
        values.byteswap()
    return values


def _first(values: array[int], limit: int) -> int:
    """Index of the first entry >= limit (caller knows one exists)."""
    return next(i for i, v in enumerate(values) if v >= limit)


class _DFA:
    """A DFA that passed aa_dfa_unpack, verify_table_headers and verify_dfa."""

    __slots__ = ("accept", "accept2", "base", "chk", "dfn", "ec", "nxt", "summary")

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}
        self.accept: array[int] | None = None
        self.accept2: array[int] | None = None
        self.base: array[int] = array(_U32_CODE)
        self.chk: array[int] = array(_U32_CODE)
        self.dfn: array[int] = array(_U32_CODE)
        self.nxt: array[int] = array(_U32_CODE)
        self.ec: array[int] | None = None

    def next(self, state: int, char: int) -> int:
        """aa_dfa_next / match_char, following diff-encoded defaults (verified acyclic)."""
        if self.ec is not None:
            char = self.ec[char]
        while True:
            b = self.base[state]
            pos = (b & _BASE_IDX_MASK) + char
            if self.chk[pos] == state:
                return self.nxt[pos]
            state = self.dfn[state]
            if not b & MATCH_FLAG_DIFF_ENCODE:
                return state


def _unpack_dfa(buf: bytes, off: int, size: int, accept2: bool, where: str) -> _DFA:
    """aa_dfa_unpack() with DFA_FLAG_VERIFY_STATES (paranoid_load, the default)."""

    def fail(check: str, detail: str, at: int) -> BadDFA:
        return BadDFA(check, f"{where} dfa: {detail}", at, "failed to unpack - dfa")

    dfa = _DFA()
    if size < _TABLE_SET_HEADER_SIZE:
        raise fail("failed to unpack - dfa: blob smaller than header", f"{size} bytes", off)
    magic = int.from_bytes(buf[off : off + 4], "big")
    if magic != YYTH_MAGIC:
        raise fail("failed to unpack - dfa: bad magic", f"0x{magic:08x}", off)
    hsize = int.from_bytes(buf[off + 4 : off + 8], "big")
    if size < hsize:
        raise fail("failed to unpack - dfa: header larger than blob", f"{hsize} > {size}", off)
    hflags = int.from_bytes(buf[off + 12 : off + 14], "big")
    if hflags & ~_YYTH_FLAGS:
        raise fail("failed to unpack - dfa: invalid header flags", f"0x{hflags:x}", off)
    version = buf[off + 14 : off + min(hsize, 64)].split(b"\0", 1)[0] if hsize > 14 else b""

    tables: list[tuple[int, int, int, int] | None] = [None] * (YYTD_ID_MAX + 1)
    listing: list[dict[str, Any]] = []
    pos, left = off + hsize, size - hsize
    while left > 0:
        # unpack_table()
        if left < _TABLE_HEADER_SIZE:
            raise fail("failed to unpack - dfa: truncated table header", f"{left} bytes left", pos)
        stored = int.from_bytes(buf[pos : pos + 2], "big")
        tid = (stored - 1) & 0xFFFF
        if tid > YYTD_ID_MAX:
            raise fail("failed to unpack - dfa: invalid table id", f"id {stored}", pos)
        width = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        count = int.from_bytes(buf[pos + 8 : pos + 12], "big")
        if width not in (YYTD_DATA8, YYTD_DATA16, YYTD_DATA32):
            raise fail("failed to unpack - dfa: invalid table element size", f"{width}", pos)
        if count == 0:
            raise fail("failed to unpack - dfa: empty table", _TABLE_KINDS[tid], pos)
        tsize = (_TABLE_HEADER_SIZE + count * width + 7) & ~7
        if left < tsize:
            raise fail(
                "failed to unpack - dfa: table larger than blob",
                f"{_TABLE_KINDS[tid]} needs {tsize} bytes, {left} left",
                pos,
            )
        # aa_dfa_unpack(): which element size each table may have
        kind = _TABLE_KINDS[tid]
        if tid == YYTD_ID_ACCEPT:
            ok = width == YYTD_DATA32
        elif tid == YYTD_ID_ACCEPT2:
            ok = accept2 and width == YYTD_DATA32
        elif tid == YYTD_ID_BASE:
            ok = width == YYTD_DATA32
        elif tid in (YYTD_ID_DEF, YYTD_ID_NXT, YYTD_ID_CHK):
            ok = width in (YYTD_DATA16, YYTD_DATA32)
        elif tid == YYTD_ID_EC:
            ok = width == YYTD_DATA8
        else:
            raise fail("failed to unpack - dfa: unsupported table", kind, pos)
        if not ok:
            raise fail(
                f"failed to unpack - dfa: {kind} table element size",
                f"{width}" if tid != YYTD_ID_ACCEPT2 or accept2 else "ACCEPT2 not expected",
                pos,
            )
        if tables[tid] is not None:
            raise fail("failed to unpack - dfa: duplicate table", kind, pos)
        tables[tid] = (pos + _TABLE_HEADER_SIZE, count, width, pos)
        listing.append({"id": stored, "kind": kind, "elem_size": width, "length": count})
        pos += tsize
        left -= tsize

    # verify_table_headers()
    def vth(detail: str) -> BadDFA:
        return fail("verify_table_headers", detail, off)

    base_t, def_t, nxt_t, chk_t = (tables[i] for i in (1, 3, 7, 2))
    if base_t is None or def_t is None or nxt_t is None or chk_t is None:
        raise vth("missing DEF, BASE, NXT or CHK table")
    states = base_t[1]
    acc_t, acc2_t, ec_t = tables[YYTD_ID_ACCEPT], tables[YYTD_ID_ACCEPT2], tables[YYTD_ID_EC]
    if acc_t is None:
        raise vth("missing ACCEPT table")
    if acc_t[1] != states:
        raise vth(f"ACCEPT has {acc_t[1]} entries, {states} states")
    if accept2:
        if acc2_t is None:
            raise vth("missing ACCEPT2 table")
        if acc2_t[1] != states:
            raise vth(f"ACCEPT2 has {acc2_t[1]} entries, {states} states")
    if def_t[1] != states:
        raise vth(f"DEF has {def_t[1]} entries, {states} states")
    trans = nxt_t[1]
    if chk_t[1] != trans:
        raise vth(f"NXT has {trans} entries, CHK {chk_t[1]}")
    if ec_t is not None and ec_t[1] != 256:
        raise vth(f"EC has {ec_t[1]} entries, not 256")

    dfa.base = _table(buf, base_t[0], states, YYTD_DATA32)
    dfa.dfn = _table(buf, def_t[0], states, def_t[2])
    dfa.nxt = _table(buf, nxt_t[0], trans, nxt_t[2])
    dfa.chk = _table(buf, chk_t[0], trans, chk_t[2])
    dfa.accept = _table(buf, acc_t[0], states, YYTD_DATA32)
    if acc2_t is not None:
        dfa.accept2 = _table(buf, acc2_t[0], states, YYTD_DATA32)
    if ec_t is not None:
        dfa.ec = _table(buf, ec_t[0], 256, YYTD_DATA8)
    _verify_dfa(dfa, hflags, base_t[3], nxt_t[3], buf[base_t[0] : base_t[0] + 4 * states], fail)

    dfa.summary = {
        "size": size,
        "header_size": hsize,
        "set_size": int.from_bytes(buf[off + 8 : off + 12], "big"),
        "header_version": _text(version),
        "flags": hflags,
        "diff_encode": bool(hflags & YYTH_FLAG_DIFF_ENCODE),
        "oob_transitions": bool(hflags & YYTH_FLAG_OOB_TRANS),
        "tables": listing,
        "states": states,
        "transitions": trans,
        "equivalence_classes": ec_t is not None,
        "accept": _accept_summary(dfa.accept),
        "accept2": None if dfa.accept2 is None else _accept_summary(dfa.accept2),
    }
    return dfa


def _verify_dfa(
    dfa: _DFA,
    hflags: int,
    base_at: int,
    nxt_at: int,
    base_raw: bytes,
    fail: Callable[[str, str, int], BadDFA],
) -> None:
    """verify_dfa(): the per-state and per-transition checks, then diff-encode chains.

    The common all-good case is decided with C-speed reductions (max, bytes.translate);
    only when one of them fails does a Python loop look for the first bad entry, in the
    kernel's order, to name the same check the kernel would.
    """
    base, dfn, nxt, chk = dfa.base, dfa.dfn, dfa.nxt, dfa.chk
    states, trans = len(base), len(nxt)
    if states < 2:
        raise fail("verify_dfa: too few states", f"{states} state(s)", base_at)
    tops = base_raw[0::4]
    has_diff = b"\x80" in tops or b"\xa0" in tops
    has_oob = b"\x20" in tops or b"\xa0" in tops
    indexes = bytearray(base_raw)
    indexes[0::4] = bytes(states)
    idx: array[int] = array(_U32_CODE)
    idx.frombytes(indexes)
    if _SWAP:
        idx.byteswap()
    suspect = (
        max(dfn) >= states
        or bool(tops.translate(None, b"\x00\x20\x80\xa0"))
        or (has_diff and not hflags & YYTH_FLAG_DIFF_ENCODE)
        or has_oob
        or max(idx) + 255 >= trans
    )
    if suspect:
        for i in range(states):
            b = base[i]
            where = f"state {i}"
            if dfn[i] >= states:
                raise fail(
                    "verify_dfa: default state out of bounds", f"{where}: DEF {dfn[i]}", base_at
                )
            if b & MATCH_FLAGS_INVALID:
                raise fail("verify_dfa: invalid match flags", f"{where}: BASE 0x{b:08x}", base_at)
            if b & MATCH_FLAG_DIFF_ENCODE and not hflags & YYTH_FLAG_DIFF_ENCODE:
                raise fail(
                    "verify_dfa: diff encoded transition state without header flag", where, base_at
                )
            if b & MATCH_FLAG_OOB_TRANSITION:
                if b & _BASE_IDX_MASK < _MAX_OOB:
                    raise fail("verify_dfa: out of band transition out of range", where, base_at)
                if not hflags & YYTH_FLAG_OOB_TRANS:
                    raise fail(
                        "verify_dfa: out of band transition state without header flag",
                        where,
                        base_at,
                    )
            if (b & _BASE_IDX_MASK) + 255 >= trans:
                raise fail(
                    "verify_dfa: next/check upper bounds error",
                    f"{where}: base {b & _BASE_IDX_MASK}, {trans} transitions",
                    base_at,
                )
    if max(nxt) >= states or max(chk) >= states:
        first_n = _first(nxt, states) if max(nxt) >= states else trans
        first_c = _first(chk, states) if max(chk) >= states else trans
        if first_n <= first_c:
            raise fail("verify_dfa: next state out of bounds", f"NXT[{first_n}]", nxt_at)
        raise fail("verify_dfa: check state out of bounds", f"CHK[{first_c}]", nxt_at)
    if has_diff:
        # Stricter than the kernel's walk (which only catches a state defaulting to itself
        # and trusts chains that step to a lower state): any cycle of diff-encoded states
        # would make match_char loop forever, so every cycle is refused.
        color = bytearray(states)
        for i in range(states):
            if color[i] or not base[i] & MATCH_FLAG_DIFF_ENCODE:
                continue
            path = []
            j = i
            while base[j] & MATCH_FLAG_DIFF_ENCODE and not color[j]:
                color[j] = 1
                path.append(j)
                k = dfn[j]
                if k == j:
                    raise fail(
                        "verify_dfa: diff encoding loop", f"state {j} defaults to itself", base_at
                    )
                j = k
            if base[j] & MATCH_FLAG_DIFF_ENCODE and color[j] == 1:
                raise fail("verify_dfa: diff encoding loop", f"cycle through state {j}", base_at)
            for p in path:
                color[p] = 2


def _accept_summary(values: array[int]) -> dict[str, Any]:
    union = 0
    distinct = set(values)
    for v in distinct:
        union |= v
    distinct.discard(0)
    return {
        "accepting_states": len(values) - values.count(0),
        "distinct_values": len(distinct),
        "union": union,
    }


def _compat_xtable_refs(accept: array[int]) -> list[int]:
    """Transition-table indexes named by packed file permissions (dfa_map_xindex)."""
    refs: set[int] = set()
    for v in set(accept):
        for mask in (v & 0x3FFF, (v >> 14) & 0x3FFF):
            old = (mask >> 10) & 0xF
            if old >= 4:  # 1 unconfined, 2 name, 3 name|child, >= 4 table entry old - 4
                refs.add(old - 4)
    return sorted(refs)


def _classes(dfa: _DFA, start: int) -> list[int] | None:
    """Classes c in 1..255 with aa_dfa_next(start, c) != 0: what the policydb mediates."""
    chain, state = 1, start
    while dfa.base[state] & MATCH_FLAG_DIFF_ENCODE:
        state = dfa.dfn[state]
        chain += 1
        if chain > _MAX_CLASS_CHAIN:
            return None
    return [c for c in range(1, 256) if dfa.next(start, c)]


# --------------------------------------------------------------------------- profile


def _perms_table(e: _Ext, where: str, budget: _Budget) -> dict[str, Any] | None:
    """unpack_perms_table(): the optional ``perms`` struct of newer userspace."""
    pos = e.pos
    if not e.name_x(AA_STRUCT, b"perms"):
        return None

    def fail(detail: str) -> BadElement:
        at = e.pos
        e.pos = pos
        return BadElement("failed to unpack - perms", f"{where}: {detail}", at)

    version = e.u32(b"version")
    if version is None:
        raise fail("missing version")
    if version != 1:
        raise fail(f"perms version {version}")
    count = e.array()
    if count is None:
        raise fail("missing array")
    budget.take(count, e, "perms")
    fields = (
        "reserved", "allow", "deny", "subtree", "cond", "kill", "complain", "prompt",
        "audit", "quiet", "hide", "xindex", "tag", "label",
    )  # fmt: skip
    perms: list[dict[str, int]] = []
    for i in range(count):
        entry: dict[str, int] = {}
        for field in fields:
            value = e.u32()
            if value is None:
                raise fail(f"entry {i} field {field}")
            entry[field] = value
        perms.append(entry)
    if not e.name_x(AA_ARRAYEND, None) or not e.name_x(AA_STRUCTEND, None):
        raise fail("missing end of array/struct")
    union = {f: 0 for f in ("allow", "deny", "audit", "quiet", "kill", "complain")}
    for entry in perms:
        for f in union:
            union[f] |= entry[f]
    return {"version": version, "count": count, "entries": perms, "union": union}


def _trans_table(e: _Ext, budget: _Budget) -> tuple[bool, list[str] | None]:
    """unpack_trans_table(): (ok, names). Not ok means present but malformed (pos reset)."""
    saved = e.pos
    if not e.name_x(AA_STRUCT, b"xtable"):
        return True, None
    count = e.array()
    if count is None:
        e.pos = saved
        return False, None
    budget.take(count, e, "xtable")
    names: list[str] = []
    for _ in range(count):
        got = e.string(None)
        if got is None:
            e.pos = saved
            return False, None
        off, size = got
        raw = e.buf[off : off + size - 1]
        if raw[:1] == b"" or raw[0] in _KERNEL_SPACE:
            e.pos = saved
            return False, None
        nuls = raw.count(0)
        if raw[0] == 0x3A:  # ':' namespace-qualified: exactly one embedded NUL, -> ':'
            if len(raw) < 2 or raw[1] == 0 or nuls != 1:
                e.pos = saved
                return False, None
            raw = raw.replace(b"\0", b":")
        elif nuls:
            e.pos = saved
            return False, None
        names.append(_text(raw))
    if not e.name_x(AA_ARRAYEND, None) or not e.name_x(AA_STRUCTEND, None):
        e.pos = saved
        return False, None
    return True, names


def _unpack_pdb(
    e: _Ext, where: str, required_dfa: bool, required_trans: bool, budget: _Budget
) -> tuple[dict[str, Any] | None, _DFA | None]:
    """unpack_pdb(): perms?, aadfa?, start?, dfa_start?, xtable?."""
    perms = _perms_table(e, where, budget)
    accept2 = True
    permsv = None
    if perms is not None:
        permsv = e.u32(b"permsv")
        accept2 = permsv is not None and permsv > 2
    at = e.pos
    blob = e.blob(b"aadfa")
    dfa = None
    if blob is not None and blob[1]:
        boff, bsize = blob
        # The DFA is 8-byte aligned relative to the start of the *record* (userspace); the
        # kernel recovers the pad from the blob's end, see unpack_dfa().
        sz = boff - (e.pos & 7)
        pad = ((sz + 7) & ~7) - sz
        if pad > bsize:  # the kernel would compute size - pad < 0; refuse it
            raise BadDFA(
                "failed to unpack - dfa: blob smaller than its alignment pad",
                f"{where} dfa: {bsize} bytes, pad {pad}",
                boff,
                "failed to unpack - dfa",
            )
        dfa = _unpack_dfa(e.buf, boff + pad, bsize - pad, accept2, where)
        dfa.summary["pad"] = pad
        dfa.summary["offset"] = boff + pad
    elif required_dfa:
        raise BadElement("missing required dfa", where, at)
    if dfa is not None:
        start = e.u32(b"start")
        dfa_start = e.u32(b"dfa_start")
        states = dfa.summary["states"]
        for label, value in (("start", start), ("dfa_start", dfa_start)):
            if value is not None and value >= states:
                # The kernel indexes its tables with these unchecked; refuse them.
                raise BadDFA(
                    "start state out of bounds",
                    f"{where} dfa: {label} {value}, {states} states",
                    e.pos,
                    "failed to unpack - dfa",
                )
        dfa.summary["start"] = DFA_START if start is None else start
        dfa.summary["dfa_start"] = DFA_START if dfa_start is None else dfa_start
    ok, trans = _trans_table(e, budget)
    if not ok and required_trans:
        raise BadElement("failed to unpack profile transition table", where, e.pos)
    if dfa is None:
        return None, None
    summary = dfa.summary
    summary["perms"] = None
    if perms is not None:
        summary["perms"] = {k: perms[k] for k in ("version", "count", "union")}
        summary["perms"]["permsv"] = permsv
        summary["_perms"] = perms["entries"]
    summary["xtable"] = trans
    return summary, dfa


def _split_fqname(name: bytes) -> tuple[bytes | None, bytes | None]:
    """aa_splitn_fqname(): (namespace, name) of ``:ns:name`` / ``:ns://name``."""
    n = len(name)
    i = 0
    while i < n and name[i] in _KERNEL_SPACE:
        i += 1
    if i == n:
        return None, None
    if name[i] != 0x3A:
        return None, name[i:]
    rest = name[i + 1 :]
    j = 0
    while j < len(rest) and rest[j] in _KERNEL_SPACE:
        j += 1
    if j == len(rest):
        return None, None
    ns_start = j
    split = rest.find(b":")
    tail: bytes | None
    if split >= 0:
        ns = rest[ns_start:split] if split > ns_start else None
        after = rest[split + 1 :]
        if len(after) > 1 and after.startswith(b"//"):
            after = after[2:]
        k = 0
        while k < len(after) and after[k] in _KERNEL_SPACE:
            k += 1
        tail = after[k:] if k < len(after) else None
    else:
        ns, tail = rest[ns_start:], None
    if tail == b"":
        tail = None
    return ns, tail


def _caps(
    allow: int, audit: int, quiet: int, discarded: int, extended: int | None
) -> dict[str, Any]:
    def names(mask: int) -> list[str]:
        return [
            CAPABILITY_NAMES[b] if b < len(CAPABILITY_NAMES) else f"cap{b}"
            for b in range(64)
            if mask >> b & 1
        ]

    return {
        "allow": allow,
        "audit": audit,
        "quiet": quiet,
        "discarded": discarded,
        "extended": extended,
        "allow_names": names(allow),
        "audit_names": names(audit),
        "quiet_names": names(quiet),
        "extended_names": None if extended is None else names(extended),
    }


def _unpack_profile(
    e: _Ext, version: int, budget: _Budget
) -> tuple[dict[str, Any], dict[str, _DFA]]:
    """unpack_profile(): the fields of one record, in the kernel's order."""

    def bad(check: str, detail: str = "") -> BadElement:
        return BadElement(check, detail, e.pos)

    prof: dict[str, Any] = {}
    dfas: dict[str, _DFA] = {}
    if not e.name_x(AA_STRUCT, b"profile"):
        raise bad("failed to unpack profile", "missing 'profile' struct")
    got = e.string(None)
    if got is None:
        raise bad("failed to unpack profile", "missing or malformed profile name")
    fqname = e.cstr(*got)
    if not fqname:
        raise BadElement("empty profile name", "", e.pos, "failed to unpack profile")
    ns_name, tmpname = _split_fqname(fqname)
    name = fqname
    if ns_name is not None:
        if tmpname is None:
            raise bad("empty profile name", "namespace without a profile name")
        name = tmpname
    prof["name"] = _text(name)
    prof["fqname"] = _text(fqname)
    prof["ns_name"] = None if ns_name is None else _text(ns_name)
    # The kernel's basename(): skip "//" separators left to right, so that a child named
    # by a path keeps its leading '/': "a///bin/x" is "/bin/x" under parent "a".
    cut, leaf = -1, 0
    while (found := name.find(b"//", leaf)) >= 0:
        cut, leaf = found, found + 2
    prof["basename"] = _text(name[leaf:])
    prof["parent"] = _text(name[:cut]) if cut >= 0 else None

    rename = e.cstring(b"rename")
    attach = e.cstring(b"attach")
    prof["rename"] = None if rename is None else _text(rename)
    prof["attach"] = None if attach is None else _text(attach)

    try:
        xmatch, xdfa = _unpack_pdb(e, "xmatch", False, False, budget)
    except AppArmorError as exc:
        exc.info = "bad xmatch"  # the kernel audits every xmatch pdb failure so
        raise
    prof["xmatch"] = xmatch
    prof["xmatch_len"] = None
    if xdfa is not None:
        dfas["xmatch"] = xdfa
        xlen = e.u32(None)
        if xlen is None:
            raise bad("missing xmatch len")
        prof["xmatch_len"] = xlen

    disconnected = e.cstring(b"disconnected")
    prof["disconnected"] = None if disconnected is None else _text(disconnected)
    disconnected_ipc = e.cstring(b"disconnected_ipc")
    prof["disconnected_ipc"] = None if disconnected_ipc is None else _text(disconnected_ipc)
    prof["kill_signal"] = e.u32(b"kill")
    prof["error"] = e.u32(b"error")

    if not e.name_x(AA_STRUCT, b"flags"):
        raise bad("profile missing flags")
    flags = e.u32(None)
    if flags is None:
        raise bad("failed to unpack profile flags", "flags word")
    packed_mode = e.u32(None)
    if packed_mode is None:
        raise bad("failed to unpack profile flags", "mode word")
    forced = bool(version & FORCE_COMPLAIN_FLAG)
    # The kernel tests for complain (or the force bit) first: a forced load turns any
    # mode word, even an invalid one, into complain.
    if packed_mode == 1 or forced:
        mode = "complain"
    elif packed_mode in _MODES:
        mode = _MODES[packed_mode]
    else:
        raise bad("failed to unpack profile flags", f"invalid mode {packed_mode}")
    audit = e.u32(None)
    if audit is None:
        raise bad("failed to unpack profile flags", "audit word")
    if not e.name_x(AA_STRUCTEND, None):
        raise bad("failed to unpack profile flags", "missing end of flags struct")
    prof["flags"] = {
        "raw": flags,
        "hat": bool(flags & PACKED_FLAG_HAT),
        "debug1": bool(flags & PACKED_FLAG_DEBUG1),
        "debug2": bool(flags & PACKED_FLAG_DEBUG2),
    }
    prof["packed_mode"] = packed_mode
    prof["mode"] = mode
    prof["forced_complain"] = forced
    prof["audit"] = bool(audit)
    prof["path_flags"] = e.u32(b"path_flags")

    low = [e.u32(None) for _ in range(4)]
    words: list[int] = []
    for value in low:
        if value is None:
            raise bad("failed to unpack profile capabilities")
        words.append(value)
    prof["caps64"] = False
    if e.name_x(AA_STRUCT, b"caps64"):
        for i in range(4):
            high = e.u32(None)
            if high is None:
                raise bad("failed to unpack upper profile capabilities")
            words[i] |= high << 32
        if not e.name_x(AA_STRUCTEND, None):
            raise bad("failed to unpack upper profile capabilities", "missing end of struct")
        prof["caps64"] = True
    extended = None
    if e.name_x(AA_STRUCT, b"capsx"):
        lo, hi = e.u32(None), None
        if lo is not None:
            hi = e.u32(None)
        if lo is None or hi is None or not e.name_x(AA_STRUCTEND, None):
            raise bad("failed to unpack extended profile capabilities")
        extended = lo | hi << 32
    prof["caps"] = _caps(words[0], words[1], words[2], words[3], extended)

    prof["xattrs"] = _xattrs(e, budget)
    prof["rlimits"] = _rlimits(e)
    prof["secmark"] = _secmark(e, budget)

    prof["policydb"] = None
    if e.name_x(AA_STRUCT, b"policydb"):
        policydb, pdfa = _unpack_pdb(e, "policydb", True, False, budget)
        if pdfa is None or policydb is None:  # pragma: no cover - required_dfa raised
            raise bad("missing required dfa", "policydb")
        if not e.name_x(AA_STRUCTEND, None):
            raise bad("failed to unpack policydb", "missing end of struct")
        policydb["classes"] = _classes(pdfa, policydb["start"])
        prof["policydb"] = policydb
        dfas["policydb"] = pdfa

    fsum, fdfa = _unpack_pdb(e, "file", False, True, budget)
    prof["file"] = fsum
    if fdfa is not None:
        dfas["file"] = fdfa
        if fsum is not None and fsum["perms"] is None and fdfa.accept is not None:
            fsum["xtable_refs"] = _compat_xtable_refs(fdfa.accept)

    prof["data"] = None
    if e.name_x(AA_STRUCT, b"data"):
        entries: list[list[Any]] = []
        while True:
            key = e.string(None)
            if key is None:
                break
            budget.take(1, e, "data")
            blob = e.blob(None)  # a key without a blob is kept with an empty value
            raw = b"" if blob is None else e.buf[blob[0] : blob[0] + blob[1]]
            entries.append([_text(e.cstr(*key)), raw])
        if not e.name_x(AA_STRUCTEND, None):
            raise bad("failed to unpack end of key, value data table")
        prof["data"] = entries

    if not e.name_x(AA_STRUCTEND, None):
        raise bad("failed to unpack end of profile")
    return prof, dfas


def _xattrs(e: _Ext, budget: _Budget) -> list[str] | None:
    pos = e.pos
    if not e.name_x(AA_STRUCT, b"xattrs"):
        return None
    count = e.array()
    values: list[str] = []
    if count is not None:
        budget.take(count, e, "xattrs")
        for _ in range(count):
            value = e.cstring(None)
            if value is None:
                break
            values.append(_text(value))
        else:
            if e.name_x(AA_ARRAYEND, None) and e.name_x(AA_STRUCTEND, None):
                return values
    at = e.pos
    e.pos = pos
    raise BadElement("failed to unpack profile xattrs", "", at)


def _rlimits(e: _Ext) -> dict[str, Any] | None:
    pos = e.pos
    if not e.name_x(AA_STRUCT, b"rlimits"):
        return None
    mask = e.u32(None)
    count = None if mask is None else e.array()
    if mask is not None and count is not None and count <= RLIM_NLIMITS:
        values: list[int] = []
        for _ in range(count):
            value = e.u64(None)
            if value is None:
                break
            values.append(value)
        else:
            if e.name_x(AA_ARRAYEND, None) and e.name_x(AA_STRUCTEND, None):
                return {
                    "mask": mask,
                    "values": values,
                    "set": {_RLIMIT_NAMES[i]: v for i, v in enumerate(values) if mask >> i & 1},
                }
    at = e.pos
    e.pos = pos
    detail = (
        f"{count} limits (max {RLIM_NLIMITS})" if count is not None and count > RLIM_NLIMITS else ""
    )
    raise BadElement("failed to unpack profile rlimits", detail, at)


def _secmark(e: _Ext, budget: _Budget) -> list[dict[str, Any]] | None:
    pos = e.pos
    if not e.name_x(AA_STRUCT, b"secmark"):
        return None
    count = e.array()
    rules: list[dict[str, Any]] = []
    if count is not None:
        budget.take(count, e, "secmark")
        for _ in range(count):
            audit = e.u8(None)
            deny = None if audit is None else e.u8(None)
            label = None if deny is None else e.cstring(None)
            if audit is None or deny is None or label is None:
                break
            rules.append({"audit": audit, "deny": deny, "label": _text(label)})
        else:
            if e.name_x(AA_ARRAYEND, None) and e.name_x(AA_STRUCTEND, None):
                return rules
    at = e.pos
    e.pos = pos
    raise BadElement("failed to unpack profile secmark rules", "", at)


_PERM_RULES: Final = (
    ("allow", "deny"),
    ("subtree", None),
    ("cond", "allow|deny"),
    ("kill", "allow"),
    ("complain", "allow|deny"),
    ("prompt", "allow|deny"),
    ("complain", "prompt"),
    ("hide", "allow"),
)


def _verify_perms(summary: dict[str, Any] | None, where: str, at: int) -> None:
    """verify_perms(): self-consistent perms, in-range xindex/tag/label (perms tables only)."""
    if summary is None or summary.get("_perms") is None:
        return
    size = len(summary["xtable"] or ())
    for i, p in enumerate(summary["_perms"]):
        bad = (
            p["allow"] & p["deny"]
            or p["subtree"] & ~p["allow"]
            or p["cond"] & (p["allow"] | p["deny"])
            or p["kill"] & p["allow"]
            or p["complain"] & (p["allow"] | p["deny"])
            or p["prompt"] & (p["allow"] | p["deny"])
            or p["complain"] & p["prompt"]
            or p["hide"] & p["allow"]
        )
        if bad:
            raise BadProfile("Unpack: Invalid perm index", f"{where} perms[{i}] inconsistent", at)
        if (p["xindex"] & AA_X_TYPE_MASK) == AA_X_TABLE and (p["xindex"] & AA_X_INDEX_MASK) >= size:
            raise BadProfile("Unpack: Invalid perm index", f"{where} perms[{i}] xindex", at)
        if (p["tag"] and p["tag"] >= size) or (p["label"] and p["label"] >= size):
            raise BadProfile("Unpack: Invalid perm index", f"{where} perms[{i}] tag/label", at)


def _verify_profile(prof: dict[str, Any], dfas: dict[str, _DFA], at: int) -> None:
    """verify_profile(): accept indexes and exec transition indexes in range."""
    for where in ("file", "policydb"):
        summary = prof[where]
        dfa = dfas.get(where)
        if summary is None or dfa is None or dfa.accept is None:
            continue
        if summary["perms"] is not None and max(dfa.accept) >= summary["perms"]["count"]:
            raise BadProfile(
                f"Unpack: {where} Invalid named transition",
                f"ACCEPT index {max(dfa.accept)} >= {summary['perms']['count']} perms",
                at,
            )
    file_sum = prof["file"]
    if file_sum is not None and "xtable_refs" in file_sum:
        size = len(file_sum["xtable"] or ())
        bad = [i for i in file_sum["xtable_refs"] if i >= size]
        if bad:
            raise BadProfile(
                "Invalid named transition",
                f"file dfa names exec transition {bad[0]}, table has {size}",
                at,
            )
    _verify_perms(file_sum, "file", at)
    _verify_perms(prof["policydb"], "policydb", at)
    _verify_perms(prof["xmatch"], "xmatch", at)
    for where in ("xmatch", "policydb", "file"):
        if prof[where] is not None:
            prof[where].pop("_perms", None)


# --------------------------------------------------------------------------- entry point


def unpack(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Unpack an AppArmor binary policy blob the way the kernel would, into plain data.

    Args:
        data: the blob, as written by ``apparmor_parser -S`` (one or more records).

    Returns:
        ``{"size", "version", "abi", "namespace", "profiles": [...]}`` where ``version`` and
        ``abi`` (``version & 0x3ff``) are those of the first record, and each profile dict has
        ``name``, ``fqname``, ``ns_name``, ``basename``, ``parent``, ``namespace``,
        ``version``, ``abi``, ``offset``, ``end``, ``attach``, ``xmatch``, ``flags``
        (``raw``, ``hat``, ``debug1``, ``debug2``), ``mode`` (``enforce``, ``complain``,
        ``kill``, ``unconfined``, ``user``), ``packed_mode``, ``audit``, ``path_flags``,
        ``caps`` (64-bit ``allow``/``audit``/``quiet`` masks, ``extended``, and name lists),
        ``xattrs``, ``rlimits``, ``secmark``, ``policydb``, ``file`` (DFA summaries: tables,
        states, transitions, start states, accept summary, transition table) and ``data``.

    Raises:
        TypeError: ``data`` is not bytes, bytearray or memoryview.
        AppArmorError: the blob is malformed (a subclass naming the failed check in
            ``check``), or exceeds a limit (`LimitExceeded`).

    Example:
        >>> unpack(open("profile.bin", "rb").read())["profiles"][0]["mode"]  # doctest: +SKIP
        'enforce'
    """
    if isinstance(data, memoryview):
        if data.nbytes > MAX_INPUT_SIZE:
            raise LimitExceeded("input too large", f"{data.nbytes} > {MAX_INPUT_SIZE} bytes", 0)
        buf = data.tobytes()
    elif isinstance(data, bytes | bytearray):
        buf = bytes(data)
    else:
        raise TypeError(f"unpack() needs bytes, bytearray or memoryview, not {type(data).__name__}")
    if len(buf) > MAX_INPUT_SIZE:
        raise LimitExceeded("input too large", f"{len(buf)} > {MAX_INPUT_SIZE} bytes", 0)
    if not buf:
        raise BadHeader("empty policy", "no records", 0)

    e = _Ext(buf)
    budget = _Budget()
    version = 0
    first_ns: str | None = None
    profiles: list[dict[str, Any]] = []
    while e.pos < e.end:
        if len(profiles) >= MAX_PROFILES:
            raise LimitExceeded("too many profiles", f"more than {MAX_PROFILES}", e.pos)
        start = e.pos
        # verify_header(): the version is required only at the start of the buffer; later
        # records inherit the previous one.
        value = e.u32(b"version")
        if value is None:
            if start == 0:
                raise BadHeader("invalid profile format", "missing interface version", e.pos)
        else:
            version = value
        if not _ABI_MIN <= version & K_ABI_MASK <= _ABI_MAX:
            raise BadVersion(
                "unsupported interface version",
                f"0x{version:08x} (abi {version & K_ABI_MASK}, supported v5..v9)",
                start,
            )
        namespace = None
        ns = e.cstring(b"namespace")
        if ns is not None:
            if not ns:
                raise BadHeader("invalid namespace name", "empty namespace", e.pos)
            namespace = _text(ns)
            if not profiles:
                first_ns = namespace
        prof, dfas = _unpack_profile(e, version, budget)
        _verify_profile(prof, dfas, e.pos)
        record = {
            "record": len(profiles),
            "offset": start,
            "end": e.pos,
            "version": version,
            "abi": version & K_ABI_MASK,
            "namespace": namespace,
        }
        record.update(prof)
        profiles.append(record)
    return {
        "size": len(buf),
        "version": profiles[0]["version"],
        "abi": profiles[0]["abi"],
        "namespace": first_ns,
        "profiles": profiles,
    }
