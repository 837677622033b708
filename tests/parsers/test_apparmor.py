"""`sandboxmode.parsers.apparmor` against the real AppArmor corpus.

The corpus lives in ``shared/corpora/apparmor``, ``shared`` being a sibling of the repository
root; it is read in place, never copied. What is compared:

* every blob (nokernel, abi-3.0, abi-3.0-diffenc-equiv) against ``apparmor_parser -N`` (full
  profile names) and ``apparmor_parser -d`` (leaf names, mode, Hat flag, capabilities);
* every blob against the corpus' cross-check decoder (record bounds, version, DFA sizes). That
  decoder is not an oracle; agreement is still worth keeping;
* every file of ``malformed/`` against the kernel verdict of ``MALFORMED.md``, one table row each;
* hand-built blobs for the parts the corpus never exercises (rlimits, secmark, perms tables,
  diff-encode loops, limits...);
* mutated real blobs (hypothesis): they unpack or raise `AppArmorError`, quickly.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import MUTATION_SETTINGS, assert_plain
from sandboxmode.parsers import apparmor
from sandboxmode.parsers.apparmor import (
    AppArmorError,
    BadDFA,
    BadElement,
    BadHeader,
    BadProfile,
    BadVersion,
    LimitExceeded,
    unpack,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "apparmor"
NO_CORPUS = f"AppArmor corpus not found at {CORPUS} (shared/ must sit next to the repo root)"
HAVE_CORPUS = (CORPUS / "FORMAT.md").is_file()
needs_corpus = pytest.mark.skipif(not HAVE_CORPUS, reason=NO_CORPUS)

VARIANTS = ("nokernel", "abi-3.0", "abi-3.0-diffenc-equiv")
VARIANT_ABI = {"nokernel": 5, "abi-3.0": 7, "abi-3.0-diffenc-equiv": 7}
NAMED_CAPS = frozenset(apparmor.CAPABILITY_NAMES)


def _reference_cases() -> list[Any]:
    if not HAVE_CORPUS:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=NO_CORPUS))]
    cases = []
    for ref in sorted((CORPUS / "reference").glob("*/*.json")):
        for variant in VARIANTS:
            if (CORPUS / "blobs" / variant / ref.parent.name / f"{ref.stem}.bin").is_file():
                cases.append(
                    pytest.param(ref, variant, id=f"{variant}/{ref.parent.name}/{ref.stem}")
                )
    return cases


REFERENCE_CASES = _reference_cases()


def _load(ref: Path, variant: str) -> tuple[dict[str, Any], dict[str, Any]]:
    reference = json.loads(ref.read_text())
    blob = (CORPUS / reference["blobs"][variant]["file"]).read_bytes()
    return reference, unpack(blob)


_assert_plain = assert_plain


# --------------------------------------------------------------------------- reference


def test_corpus_is_complete() -> None:
    """Every blob in the corpus is covered by a reference case (no silent gaps)."""
    if not HAVE_CORPUS:
        pytest.skip(NO_CORPUS)
    blobs = sorted(p.relative_to(CORPUS / "blobs") for p in (CORPUS / "blobs").glob("*/*/*.bin"))
    covered = sorted(
        Path(variant, ref.parent.name, f"{ref.stem}.bin")
        for ref, variant in (p.values for p in REFERENCE_CASES)
    )
    assert blobs == covered
    assert len(blobs) == 233  # 107 nokernel + 107 abi-3.0 + 19 diffenc-equiv


@pytest.mark.parametrize(("ref", "variant"), REFERENCE_CASES)
def test_agrees_with_apparmor_parser(ref: Path, variant: str) -> None:
    """Names (-N, -d), mode, Hat flag and capabilities agree with apparmor_parser.

    Capabilities: ``-d`` prints the profile's *rule sets* before serialization, the blob holds
    what the kernel enforces. apparmor_parser writes ``allow & ~deny``, ``allow & audit`` and
    ``deny & quiet`` (parser_interface.c), so the exact relation checked is

        blob.allow (named bits) == set(-d Capabilities) - set(-d Deny Caps)
        blob.quiet              == set(-d Quiet Caps) & set(-d Deny Caps)
        blob.audit              == set(-d Audit Caps)   (empty everywhere in the corpus)

    ``-d`` does list denied capabilities under Capabilities (firejail-default: ``capability,``
    with ``deny`` rules for audit_*, mac_*), and it only names the 41 capabilities it knows:
    a bare ``capability,`` sets all 64 allow bits, so bits 41..63 are set exactly when -d
    lists every known name.
    """
    reference, result = _load(ref, variant)
    _assert_plain(result)
    profiles = result["profiles"]
    debug = reference["apparmor_parser_debug"]
    assert [p["fqname"] for p in profiles] == reference["apparmor_parser_names"]
    assert [p["basename"] for p in profiles] == [d["name"] for d in debug]
    assert result["abi"] == VARIANT_ABI[variant]
    for prof, dbg in zip(profiles, debug, strict=True):
        assert prof["mode"] == dbg["mode"], prof["name"]
        assert prof["flags"]["hat"] == ("Hat" in dbg["mode_flags"]), prof["name"]
        caps = prof["caps"]
        allow = set(dbg["capabilities"])
        deny = set(dbg["deny_caps"])
        assert set(caps["allow_names"]) & NAMED_CAPS == allow - deny, prof["name"]
        assert set(caps["quiet_names"]) == set(dbg["quiet_caps"]) & deny, prof["name"]
        assert set(caps["audit_names"]) == set(dbg["audit_caps"]), prof["name"]
        high = caps["allow"] >> len(apparmor.CAPABILITY_NAMES)
        assert high in (0, (1 << (64 - len(apparmor.CAPABILITY_NAMES))) - 1), hex(caps["allow"])
        assert (high != 0) == (allow == NAMED_CAPS), prof["name"]
        assert caps["discarded"] == 0
        assert prof["caps64"] is True


@pytest.mark.parametrize(("ref", "variant"), REFERENCE_CASES)
def test_agrees_with_crosscheck_decoder(ref: Path, variant: str) -> None:
    """Record bounds, versions, cap masks and DFA geometry match the corpus' decoder."""
    reference, result = _load(ref, variant)
    records = reference["blobs"][variant]["decode"]["records"]
    assert len(result["profiles"]) == len(records)
    for prof, rec in zip(result["profiles"], records, strict=True):
        assert (prof["offset"], prof["end"]) == (rec["offset"], rec["end"])
        assert prof["version"] == int(rec["version_raw"], 16)
        assert prof["abi"] == rec["abi"]
        assert prof["name"] == rec["name"]
        assert prof["flags"]["raw"] == rec["flags"]["raw"]
        assert prof["audit"] == rec["flags"]["audit"]
        assert hex(prof["caps"]["allow"]) == rec["caps"]["allow_mask"]
        assert {k for k in ("xmatch", "policydb", "file") if prof[k]} == set(rec["dfa"])
        for kind, dfa in rec["dfa"].items():
            ours = prof[kind]
            assert ours["states"] == dfa["states"]
            assert ours["transitions"] == dfa["transitions"]
            assert ours["flags"] == dfa["flags"]
            assert ours["pad"] == dfa["pad"]
            assert sorted(t["id"] for t in ours["tables"]) == dfa["tables"]
            assert all(
                t["elem_size"] == dfa["accept_width"]
                for t in ours["tables"]
                if t["kind"].startswith("ACCEPT")
            )
        assert (prof["file"] or {}).get("xtable") == rec.get("xtable")


@needs_corpus
def test_variant_properties_match_format_md() -> None:
    """FORMAT.md section 4: diff-encode and EC only in the diffenc-equiv variant, on every file
    and policydb DFA and on some of its xmatch DFAs; every exec index named by a file DFA is
    inside its transition table; start states are the default 1."""
    seen: dict[tuple[str, str], list[bool]] = {}
    for path in sorted((CORPUS / "blobs").glob("*/*/*.bin")):
        variant = path.parent.parent.name
        for prof in unpack(path.read_bytes())["profiles"]:
            for kind in ("xmatch", "policydb", "file"):
                dfa = prof[kind]
                if dfa is None:
                    continue
                seen.setdefault((variant, kind), []).append(dfa["diff_encode"])
                assert dfa["equivalence_classes"] == (variant == "abi-3.0-diffenc-equiv")
                assert (dfa["start"], dfa["dfa_start"]) == (1, 1)
                assert dfa["perms"] is None
                assert dfa["header_version"] == "notflex"
            if prof["file"] is not None:
                assert all(
                    i < len(prof["file"]["xtable"] or ()) for i in prof["file"]["xtable_refs"]
                )
            if prof["policydb"] is not None:
                assert 2 in prof["policydb"]["classes"]  # AA_CLASS_FILE
    diffenc = "abi-3.0-diffenc-equiv"
    assert all(seen[(diffenc, "file")]) and all(seen[(diffenc, "policydb")])
    # FORMAT.md says "3 of the 20 xmatch DFAs"; the blobs hold 13 xmatch DFAs in this variant,
    # 2 of them diff-encoded, and the corpus' own decoder (reference/*.json) counts the same.
    # FORMAT.md's figure is wrong, not the unpacker; pinned here so a corpus change shows.
    assert (sum(seen[(diffenc, "xmatch")]), len(seen[(diffenc, "xmatch")])) == (2, 13)
    assert not any(any(v) for (var, _), v in seen.items() if var != diffenc)
    assert ("nokernel", "policydb") not in seen  # the nokernel variant has no policydb


# --------------------------------------------------------------------------- malformed

DFA = "failed to unpack - dfa"
# file -> (error class, check), or None for "the kernel accepts it". Where the check is more
# specific than MALFORMED.md's verdict, ``info`` still carries the kernel's audit string.
MALFORMED: dict[str, tuple[type[AppArmorError], str] | None] = {
    "caps-wrong-width.bin": (BadElement, "failed to unpack profile capabilities"),
    "dfa-base-diffenc-without-header.bin": (
        BadDFA,
        "verify_dfa: diff encoded transition state without header flag",
    ),
    "dfa-base-invalid-match-flag.bin": (BadDFA, "verify_dfa: invalid match flags"),
    "dfa-check-out-of-bounds.bin": (BadDFA, "verify_dfa: check state out of bounds"),
    "dfa-def-out-of-bounds.bin": (BadDFA, "verify_dfa: default state out of bounds"),
    "dfa-diffenc-header-flag-cleared.bin": (
        BadDFA,
        "verify_dfa: diff encoded transition state without header flag",
    ),
    "dfa-ec-16bit.bin": (BadDFA, f"{DFA}: EC table element size"),
    "dfa-ec-size-255.bin": (BadDFA, "verify_table_headers"),
    "dfa-header-flags-4.bin": (BadDFA, f"{DFA}: invalid header flags"),
    "dfa-next-out-of-bounds.bin": (BadDFA, "verify_dfa: next state out of bounds"),
    # MALFORMED.md: "duplicate table / missing DEF". The DEF table turned BASE is 16-bit, and
    # aa_dfa_unpack() checks BASE's element size before the duplicate: same kernel verdict
    # ("failed to unpack - dfa"), reached one check earlier.
    "dfa-table-duplicate.bin": (BadDFA, f"{DFA}: BASE table element size"),
    "dfa-table-elemsize-3.bin": (BadDFA, f"{DFA}: invalid table element size"),
    "dfa-table-id-0.bin": (BadDFA, f"{DFA}: invalid table id"),
    "dfa-table-id-10.bin": (BadDFA, f"{DFA}: invalid table id"),
    "dfa-table-lolen-0.bin": (BadDFA, f"{DFA}: empty table"),
    "dfa-table-lolen-huge.bin": (BadDFA, f"{DFA}: table larger than blob"),
    "multi-record-second-version-4.bin": (BadVersion, "unsupported interface version"),
    "name-len-65535.bin": (BadHeader, "invalid profile format"),
    "namespace-empty.bin": (BadHeader, "invalid namespace name"),
    "profile-name-empty.bin": (BadElement, "empty profile name"),
    "profile-name-not-nul-terminated.bin": (BadElement, "failed to unpack profile"),
    # MALFORMED.md: "unexpected element". Like the kernel, the unpacker never recurses: the
    # nested structs are simply not the element expected after the file DFA (the profile's
    # STRUCTEND), so the kernel's check is "failed to unpack end of profile".
    "struct-nesting-5000.bin": (BadElement, "failed to unpack end of profile"),
    "trunc-5.bin": (BadHeader, "invalid profile format"),
    "trunc-last-byte.bin": (BadElement, "failed to unpack end of profile"),
    "two-records-second-without-version.bin": None,
    "unknown-type-code-13.bin": (BadElement, "failed to unpack profile"),
    "version-abi-1023.bin": (BadVersion, "unsupported interface version"),
    "version-force-complain-bit.bin": None,
    "version-name-misspelled.bin": (BadHeader, "invalid profile format"),
    "version-v10.bin": (BadVersion, "unsupported interface version"),
    "xtable-count-too-large.bin": (BadElement, "failed to unpack profile transition table"),
    "xtable-name-leading-space.bin": (BadElement, "failed to unpack profile transition table"),
}


@needs_corpus
def test_malformed_table_covers_the_corpus() -> None:
    listed = json.loads((CORPUS / "malformed" / "MALFORMED.json").read_text())
    on_disk = {p.name for p in (CORPUS / "malformed").glob("*.bin")}
    assert set(MALFORMED) == set(listed) == on_disk
    for name, expected in MALFORMED.items():
        assert listed[name]["expect"].startswith("accept" if expected is None else "reject"), name


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_verdict(name: str) -> None:
    if not HAVE_CORPUS:
        pytest.skip(NO_CORPUS)
    data = (CORPUS / "malformed" / name).read_bytes()
    expected = MALFORMED[name]
    if expected is None:
        result = unpack(data)
        _assert_plain(result)
        return
    cls, check = expected
    with pytest.raises(AppArmorError) as info:
        unpack(data)
    assert type(info.value) is cls
    assert info.value.check == check
    if cls is BadDFA:
        assert info.value.info == DFA
    assert isinstance(info.value.offset, int) and 0 <= info.value.offset <= len(data)


@needs_corpus
def test_accepted_malformed_details() -> None:
    two = unpack((CORPUS / "malformed" / "two-records-second-without-version.bin").read_bytes())
    first, second = two["profiles"]
    assert first["name"] == second["name"] == "ping"
    assert second["version"] == first["version"] == 5  # inherited from the first record
    assert second["offset"] == first["end"]
    forced = unpack((CORPUS / "malformed" / "version-force-complain-bit.bin").read_bytes())
    (prof,) = forced["profiles"]
    assert forced["version"] == 0x805 and forced["abi"] == 5
    assert prof["forced_complain"] is True and prof["mode"] == "complain"


# --------------------------------------------------------------------------- hand-built blobs


def dfa_bytes(
    states: int = 2,
    *,
    flags: int = 0,
    base: list[int] | None = None,
    dfn: list[int] | None = None,
    nxt: list[int] | None = None,
    chk: list[int] | None = None,
    accept: list[int] | None = None,
    accept2: list[int] | None = None,
    with_accept2: bool = True,
    extra: tuple[tuple[int, int, list[int]], ...] = (),
    magic: int = 0x1B5E783D,
    hsize: int = 24,
) -> bytes:
    """A table set as apparmor_parser writes it: 24-byte header, tables padded to 8."""

    def table(stored_id: int, width: int, values: list[int]) -> bytes:
        if width == 2 and max(values) > 0xFFFF:
            width = 4
        body = b"".join(v.to_bytes(width, "big") for v in values)
        raw = stored_id.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes(4)
        raw += len(values).to_bytes(4, "big") + body
        return raw + bytes(-len(raw) % 8)

    trans = 256
    tables = [
        table(1, 4, accept if accept is not None else [0] * states),
        table(2, 4, base if base is not None else [0] * states),
        table(3, 2, chk if chk is not None else [0] * trans),
        table(4, 2, dfn if dfn is not None else [0] * states),
        table(8, 2, nxt if nxt is not None else [0] * trans),
    ]
    if with_accept2:
        tables.append(table(7, 4, accept2 if accept2 is not None else [0] * states))
    tables += [table(i, w, v) for i, w, v in extra]
    body = b"".join(tables)
    header = magic.to_bytes(4, "big") + hsize.to_bytes(4, "big")
    header += (24 + len(body)).to_bytes(4, "big") + flags.to_bytes(2, "big") + b"notflex\0"
    return header + bytes(24 - len(header)) + body


class W:
    """A tiny sd_write_* : builds records the way parser_interface.c does."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.record = 0

    def data(self) -> bytes:
        return bytes(self.buf)

    def name(self, name: str | None) -> W:
        if name is not None:
            raw = name.encode() + b"\0"
            self.buf += b"\x04" + len(raw).to_bytes(2, "little") + raw
        return self

    def u8(self, value: int, name: str | None = None) -> W:
        self.name(name).buf += b"\x00" + value.to_bytes(1, "little")
        return self

    def u32(self, value: int, name: str | None = None) -> W:
        self.name(name).buf += b"\x02" + value.to_bytes(4, "little")
        return self

    def u64(self, value: int, name: str | None = None) -> W:
        self.name(name).buf += b"\x03" + value.to_bytes(8, "little")
        return self

    def string(self, value: str | bytes, name: str | None = None) -> W:
        raw = (value.encode() if isinstance(value, str) else value) + b"\0"
        self.name(name).buf += b"\x05" + len(raw).to_bytes(2, "little") + raw
        return self

    def blob(self, value: bytes, name: str | None = None) -> W:
        self.name(name).buf += b"\x06" + len(value).to_bytes(4, "little") + value
        return self

    def struct(self, name: str | None) -> W:
        self.name(name).buf += b"\x07"
        return self

    def end(self) -> W:
        self.buf += b"\x08"
        return self

    def array(self, count: int) -> W:
        self.buf += b"\x0b" + count.to_bytes(2, "little")
        return self

    def arrayend(self) -> W:
        self.buf += b"\x0c"
        return self

    def aadfa(self, dfa: bytes) -> W:
        self.name("aadfa").buf += b"\x06"
        start = len(self.buf) + 4
        pad = -(start - self.record) % 8
        self.buf += (pad + len(dfa)).to_bytes(4, "little") + bytes(pad) + dfa
        return self

    def header(self, version: int | None = 0x00202007, namespace: str | None = None) -> W:
        self.record = len(self.buf)
        if version is not None:
            self.u32(version, "version")
        if namespace is not None:
            self.string(namespace, "namespace")
        return self

    def profile_start(self, name: str | bytes = "test") -> W:
        return self.struct("profile").string(name)

    def flags(self, flags: int = 0, mode: int = 0, audit: int = 0) -> W:
        return self.struct("flags").u32(flags).u32(mode).u32(audit).end()

    def caps(self, allow: int = 0, audit: int = 0, quiet: int = 0) -> W:
        for value in (allow, audit, quiet, 0):
            self.u32(value & 0xFFFFFFFF)
        self.struct("caps64")
        for value in (allow, audit, quiet, 0):
            self.u32(value >> 32)
        return self.end()


def minimal(name: str | bytes = "test", *, version: int | None = 0x00202007, **flags: int) -> W:
    return W().header(version).profile_start(name).flags(**flags).caps()


def test_minimal_profile() -> None:
    result = unpack(minimal().end().data())
    _assert_plain(result)
    (prof,) = result["profiles"]
    assert prof["name"] == "test" and prof["mode"] == "enforce"
    assert prof["file"] is None and prof["policydb"] is None and prof["xmatch"] is None
    assert result["abi"] == 7 and result["namespace"] is None


def test_every_optional_field() -> None:
    w = W().header(0x00202007, namespace="outer").profile_start(":inner://parent//hat")
    w.string("renamed", "rename").string("/usr/bin/*", "attach")
    w.aadfa(dfa_bytes()).u32(10)  # xmatch DFA and its unnamed xmatch_len
    w.string("/disc", "disconnected").u32(9, "kill")
    w.flags(flags=0b111, mode=2, audit=1).u32(0x10, "path_flags")
    w.caps(allow=(1 << 40) | 1, audit=1, quiet=2)
    w.struct("capsx").u32(4).u32(1).end()
    w.struct("xattrs").array(2).string("security.a").string("user.b").arrayend().end()
    w.struct("rlimits").u32(0b1000_0000_0000_0001).array(16)
    for i in range(16):
        w.u64(1000 + i)
    w.arrayend().end()
    w.struct("secmark").array(1).u8(1).u8(0).string("system_u:obj").arrayend().end()
    w.struct("policydb").aadfa(dfa_bytes(3, nxt=[2] * 256, chk=[1] * 256)).u32(1, "start").end()
    w.aadfa(dfa_bytes(accept=[0, 4 << 10])).u32(1, "start").u32(1, "dfa_start")  # x -> table[0]
    w.struct("xtable").array(1).string(b":ns\0target").arrayend().end()
    w.struct("data").string("k").blob(b"v1").string("k").blob(b"v2").string("empty").end()
    result = unpack(w.end().data())
    _assert_plain(result)
    (prof,) = result["profiles"]
    assert result["namespace"] == prof["namespace"] == "outer"
    assert (prof["ns_name"], prof["name"]) == ("inner", "parent//hat")
    assert (prof["parent"], prof["basename"]) == ("parent", "hat")
    assert (prof["rename"], prof["attach"], prof["xmatch_len"]) == ("renamed", "/usr/bin/*", 10)
    assert prof["xmatch"]["states"] == 2
    assert (prof["disconnected"], prof["kill_signal"]) == ("/disc", 9)
    assert prof["flags"] == {"raw": 7, "hat": True, "debug1": True, "debug2": True}
    assert (prof["mode"], prof["audit"], prof["path_flags"]) == ("kill", True, 0x10)
    assert prof["caps"]["allow_names"] == ["chown", "checkpoint_restore"]
    assert prof["caps"]["extended"] == (1 << 32) | 4
    assert prof["xattrs"] == ["security.a", "user.b"]
    assert prof["rlimits"]["set"] == {"cpu": 1000, "rttime": 1015}
    assert prof["secmark"] == [{"audit": 1, "deny": 0, "label": "system_u:obj"}]
    assert prof["policydb"]["classes"] == list(range(1, 256))  # every class byte leads to 2
    assert prof["file"]["xtable"] == [":ns:target"]
    assert prof["file"]["xtable_refs"] == [0]
    # The kernel keeps duplicate keys (rhashtable_insert_fast does not compare keys) and a key
    # without a blob gets an empty value.
    assert prof["data"] == [["k", b"v1"], ["k", b"v2"], ["empty", b""]]


def _perms_pdb(w: W, entries: list[dict[str, int]], accept: list[int], permsv: int = 1) -> W:
    fields = (
        "reserved", "allow", "deny", "subtree", "cond", "kill", "complain", "prompt",
        "audit", "quiet", "hide", "xindex", "tag", "label",
    )  # fmt: skip
    w.struct("perms").u32(1, "version").array(len(entries))
    for entry in entries:
        for field in fields:
            w.u32(entry.get(field, 0))
    w.arrayend().end().u32(permsv, "permsv")
    return w.aadfa(dfa_bytes(accept=accept, with_accept2=permsv > 2))


def test_perms_table() -> None:
    w = _perms_pdb(minimal(), [{}, {"allow": 4, "audit": 4}], [0, 1])
    (prof,) = unpack(w.end().data())["profiles"]
    assert prof["file"]["perms"] == {
        "version": 1,
        "count": 2,
        "permsv": 1,
        "union": {"allow": 4, "deny": 0, "audit": 4, "quiet": 0, "kill": 0, "complain": 0},
    }
    assert "xtable_refs" not in prof["file"]


def _rejects(data: bytes | memoryview, cls: type[AppArmorError], check: str) -> AppArmorError:
    with pytest.raises(AppArmorError) as info:
        unpack(data)
    assert (type(info.value), info.value.check) == (cls, check), str(info.value)
    return info.value


def _dfa_profile(dfa: bytes) -> bytes:
    return minimal().aadfa(dfa).end().data()


# Hand-built rejections, one per check the corpus does not reach: (id, blob, class, check).
BUILT_REJECTIONS = [
    ("empty-input", b"", BadHeader, "empty policy"),
    ("mode-5", minimal(mode=5).end().data(), BadElement, "failed to unpack profile flags"),
    (
        "missing-flags",
        W().header().profile_start().caps().end().data(),
        BadElement,
        "profile missing flags",
    ),
    ("ns-only-name", minimal(":ns:").end().data(), BadElement, "empty profile name"),
    ("no-end", minimal().data(), BadElement, "failed to unpack end of profile"),
    (
        "rlimits-17",
        minimal().struct("rlimits").u32(1).array(17).data(),
        BadElement,
        "failed to unpack profile rlimits",
    ),
    (
        "xattr-not-string",
        minimal().struct("xattrs").array(1).u32(1).arrayend().end().end().data(),
        BadElement,
        "failed to unpack profile xattrs",
    ),
    (
        "secmark-short",
        minimal().struct("secmark").array(1).u8(1).string("x").arrayend().end().end().data(),
        BadElement,
        "failed to unpack profile secmark rules",
    ),
    (
        "capsx-short",
        minimal().struct("capsx").u32(1).end().end().data(),
        BadElement,
        "failed to unpack extended profile capabilities",
    ),
    (
        "caps64-short",
        W()
        .header()
        .profile_start()
        .flags()
        .u32(0)
        .u32(0)
        .u32(0)
        .u32(0)
        .struct("caps64")
        .u32(0)
        .end()
        .end()
        .data(),
        BadElement,
        "failed to unpack upper profile capabilities",
    ),
    (
        "policydb-without-dfa",
        minimal().struct("policydb").end().end().data(),
        BadElement,
        "missing required dfa",
    ),
    (
        "policydb-empty-dfa",
        minimal().struct("policydb").blob(b"", "aadfa").end().end().data(),
        BadElement,
        "missing required dfa",
    ),
    (
        "policydb-unterminated",
        minimal().struct("policydb").aadfa(dfa_bytes()).u32(0).end().data(),
        BadElement,
        "failed to unpack policydb",
    ),
    (
        "xmatch-without-len",
        W().header().profile_start().aadfa(dfa_bytes()).flags().caps().end().data(),
        BadElement,
        "missing xmatch len",
    ),
    (
        "data-unterminated",
        minimal().struct("data").string("k").u32(1).end().data(),
        BadElement,
        "failed to unpack end of key, value data table",
    ),
    (
        "perms-version-2",
        minimal().struct("perms").u32(2, "version").array(0).arrayend().end().end().data(),
        BadElement,
        "failed to unpack - perms",
    ),
    (
        "perms-accept-index",
        _perms_pdb(minimal(), [{}], [0, 1]).end().data(),
        BadProfile,
        "Unpack: file Invalid named transition",
    ),
    (
        "perms-allow-and-deny",
        _perms_pdb(minimal(), [{"allow": 1, "deny": 1}], [0, 0]).end().data(),
        BadProfile,
        "Unpack: Invalid perm index",
    ),
    (
        "perms-xindex-out-of-table",
        _perms_pdb(minimal(), [{"xindex": 0x08000000}], [0, 0]).end().data(),
        BadProfile,
        "Unpack: Invalid perm index",
    ),
    (
        "perms-accept2-unexpected",
        minimal()
        .struct("perms")
        .u32(1, "version")
        .array(0)
        .arrayend()
        .end()
        .aadfa(dfa_bytes())
        .end()
        .data(),
        BadDFA,
        "failed to unpack - dfa: ACCEPT2 table element size",
    ),
    (
        "compat-exec-index-out-of-table",
        _dfa_profile(dfa_bytes(accept=[0, 5 << 10])),
        BadProfile,
        "Invalid named transition",
    ),
    (
        "xtable-two-nuls",
        minimal()
        .aadfa(dfa_bytes())
        .struct("xtable")
        .array(1)
        .string(b":a\0b\0c")
        .arrayend()
        .end()
        .end()
        .data(),
        BadElement,
        "failed to unpack profile transition table",
    ),
    (
        "xtable-embedded-nul",
        minimal()
        .aadfa(dfa_bytes())
        .struct("xtable")
        .array(1)
        .string(b"a\0b")
        .arrayend()
        .end()
        .end()
        .data(),
        BadElement,
        "failed to unpack profile transition table",
    ),
    (
        "start-out-of-bounds",
        minimal().aadfa(dfa_bytes()).u32(2, "start").end().data(),
        BadDFA,
        "start state out of bounds",
    ),
    ("dfa-bad-magic", _dfa_profile(dfa_bytes(magic=0xF13C57B1)), BadDFA, f"{DFA}: bad magic"),
    (
        "dfa-hsize-huge",
        _dfa_profile(dfa_bytes(hsize=1 << 31)),
        BadDFA,
        f"{DFA}: header larger than blob",
    ),
    ("dfa-too-small", _dfa_profile(bytes(8)), BadDFA, f"{DFA}: blob smaller than header"),
    (
        "dfa-trailing",
        _dfa_profile(dfa_bytes() + bytes(8)),
        BadDFA,
        f"{DFA}: truncated table header",
    ),
    (
        "dfa-meta",
        _dfa_profile(dfa_bytes(extra=((6, 4, [0]),))),
        BadDFA,
        f"{DFA}: unsupported table",
    ),
    (
        "dfa-dup",
        _dfa_profile(dfa_bytes(extra=((2, 4, [0, 0]),))),
        BadDFA,
        f"{DFA}: duplicate table",
    ),
    ("dfa-no-accept2", _dfa_profile(dfa_bytes(with_accept2=False)), BadDFA, "verify_table_headers"),
    ("dfa-one-state", _dfa_profile(dfa_bytes(1)), BadDFA, "verify_dfa: too few states"),
    (
        "dfa-base-past-transitions",
        _dfa_profile(dfa_bytes(base=[0, 1])),
        BadDFA,
        "verify_dfa: next/check upper bounds error",
    ),
    (
        "dfa-oob-index-0",
        _dfa_profile(dfa_bytes(base=[0, 0x20000000])),
        BadDFA,
        "verify_dfa: out of band transition out of range",
    ),
    (
        "dfa-oob-header-missing",
        _dfa_profile(dfa_bytes(base=[0, 0x20000001])),
        BadDFA,
        "verify_dfa: out of band transition state without header flag",
    ),
    (
        "dfa-diff-self-loop",
        _dfa_profile(dfa_bytes(flags=1, base=[0, 0x80000000], dfn=[0, 1])),
        BadDFA,
        "verify_dfa: diff encoding loop",
    ),
    (
        "dfa-diff-cycle",
        # 1 -> 2 -> 1: the kernel's walk only catches self loops; match_char would spin here.
        _dfa_profile(dfa_bytes(3, flags=1, base=[0, 0x80000000, 0x80000000], dfn=[0, 2, 1])),
        BadDFA,
        "verify_dfa: diff encoding loop",
    ),
]


@pytest.mark.parametrize(
    ("blob", "cls", "check"), [pytest.param(*c[1:], id=c[0]) for c in BUILT_REJECTIONS]
)
def test_built_rejections(blob: bytes, cls: type[AppArmorError], check: str) -> None:
    _rejects(blob, cls, check)


def test_empty_dfa_blob_is_consumed_as_no_dfa() -> None:
    """aa_unpack_blob returns 0 for an empty blob without rewinding; unpack_dfa sees no DFA."""
    (prof,) = unpack(minimal().blob(b"", "aadfa").end().data())["profiles"]
    assert prof["file"] is None


def test_forced_complain_overrides_an_invalid_mode() -> None:
    """verify_header/unpack_profile test complain-or-forced first: mode 5 is then accepted."""
    (prof,) = unpack(minimal(version=0x805, mode=5).end().data())["profiles"]
    assert (prof["mode"], prof["packed_mode"], prof["forced_complain"]) == ("complain", 5, True)


def test_diff_encoding_chain_is_followed() -> None:
    """A diff-encoded state defers to its default for bytes it has no transition on."""
    nxt, chk = [0] * 256, [0] * 256
    nxt[ord("a")], chk[ord("a")] = 2, 2  # state 2 on 'a' -> 2; states 1 (diff) defaults to 2
    dfa = dfa_bytes(3, flags=1, base=[0, 0x80000000, 0], dfn=[0, 2, 0], nxt=nxt, chk=chk)
    w = minimal().struct("policydb").aadfa(dfa).end()
    (prof,) = unpack(w.end().data())["profiles"]
    assert prof["policydb"]["classes"] == [ord("a")]


def test_multi_record_namespace_and_version_inheritance() -> None:
    w = minimal(version=0x00202007).end()
    w.header(None, namespace="ns2").profile_start("second").flags().caps().end()
    result = unpack(w.data())
    first, second = result["profiles"]
    assert (first["namespace"], second["namespace"], result["namespace"]) == (None, "ns2", None)
    assert second["version"] == 0x00202007


def test_limits() -> None:
    too_big = memoryview(bytes(apparmor.MAX_INPUT_SIZE + 1))
    _rejects(too_big, LimitExceeded, "input too large")
    one = minimal().end().data()
    many = one + minimal(version=None).end().data() * apparmor.MAX_PROFILES
    _rejects(many, LimitExceeded, "too many profiles")
    w = minimal().struct("data")
    entry = b"\x05\x01\x00\x00"  # an empty key, no blob
    w.buf += entry * (apparmor.MAX_LIST_ENTRIES + 1)
    _rejects(w.end().end().data(), LimitExceeded, "too many list entries")


def test_nesting_is_not_recursion() -> None:
    """A million nested structs cost one failed probe, not a recursion."""
    w = minimal()
    w.buf += b"\x07" * 1_000_000
    started = time.monotonic()
    _rejects(w.data(), BadElement, "failed to unpack end of profile")
    assert time.monotonic() - started < 1.0


def test_argument_types_and_pickling() -> None:
    with pytest.raises(TypeError):
        unpack("not bytes")  # type: ignore[arg-type]
    data = minimal().end().data()
    assert unpack(bytearray(data)) == unpack(memoryview(data)) == unpack(data)
    err = _rejects(minimal(mode=5).end().data(), BadElement, "failed to unpack profile flags")
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), copy.check, copy.detail, copy.offset, copy.info, str(copy)) == (
        type(err),
        err.check,
        err.detail,
        err.offset,
        err.info,
        str(err),
    )
    assert isinstance(err, ValueError)


# --------------------------------------------------------------------------- mutation


def _mutation_bases() -> list[bytes]:
    if not HAVE_CORPUS:
        return []
    picks = [
        "nokernel/etc/usr.bin.man.bin",  # 3 records, xtable
        "abi-3.0/extra/usr.sbin.httpd2-prefork.bin",  # hats, policydb
        "abi-3.0-diffenc-equiv/etc/firejail-default.bin",  # diff-encode, EC, all caps
    ]
    return [(CORPUS / "blobs" / p).read_bytes() for p in picks]


BASES = _mutation_bases()


@st.composite
def mutated_blobs(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(BASES))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "truncate", "splice", "word", "header"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            src = draw(st.integers(0, len(base) - 1))
            piece = base[src : src + draw(st.integers(1, 64))]
            length = draw(st.integers(0, 64))
            data[at : at + length] = piece
        elif op == "word":
            value = draw(
                st.sampled_from([0, 1, 2, 0xFF, 0xFFFF, 0x80000000, 0xFFFFFFFF, len(data)])
            )
            data[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["big", "little"])))
        else:  # aim at the first 64 bytes: version, namespace, profile name, flags
            data[at % 64 if len(data) > 64 else at] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.skipif(not HAVE_CORPUS, reason=NO_CORPUS)
@MUTATION_SETTINGS
@given(mutated_blobs())
def test_mutated_blobs_unpack_or_raise(data: bytes) -> None:
    try:
        result = unpack(data)
    except AppArmorError as exc:
        assert exc.check and isinstance(exc.check, str)
        assert exc.offset is None or 0 <= exc.offset <= len(data)
        return
    _assert_plain(result)
