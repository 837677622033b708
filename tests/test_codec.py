"""The wire layer: the plain-data codec (`sandboxmode._wire.codec`) and the framing
(`sandboxmode._wire.frame`).

The codec decodes what an untrusted sandbox sends back: every hostile input must either
decode to plain data within the limits or raise `ProtocolError`, quickly and without
allocating much. Frames are tested over real socketpairs (stream and seqpacket), including
descriptor passing. Every test checks that no descriptor leaked (`fd_census`).
"""

from __future__ import annotations

import array
import math
import os
import pickle
import socket
import struct
import threading
import time
import tracemalloc
from collections import OrderedDict, namedtuple
from collections.abc import Iterator
from enum import IntEnum
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandboxmode import _spawner
from sandboxmode._errors import ProtocolError
from sandboxmode._wire import codec
from sandboxmode._wire.codec import DEFAULT, EXT_BIGINT, EXT_TUPLE, Limits, decode, encode
from sandboxmode._wire.frame import (
    HEADER,
    MAGIC,
    MAX_FDS,
    ChannelClosed,
    FrameKind,
    recv_frame,
    send_frame,
)

FAST = settings(
    database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)

# --------------------------------------------------------------------------- helpers


def _open_fds() -> set[int]:
    return set(_spawner.open_fds())


@pytest.fixture(autouse=True)
def fd_census() -> Iterator[None]:
    """Every test: the same descriptors open after as before."""
    before = _open_fds()
    yield
    after = _open_fds()
    assert after == before, f"descriptors leaked: {sorted(after - before)}"


def same(a: object, b: object) -> bool:
    """Exact equality of plain data: same types, floats bit for bit (nan, -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    return a == b


def shape(value: object) -> tuple[int, int]:
    """(depth, items) of plain data, counted as the codec counts them."""
    depth = 0
    items = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        obj, level = stack.pop()
        items += 1
        if isinstance(obj, list | tuple):
            depth = max(depth, level + 1)
            stack.extend((x, level + 1) for x in obj)
        elif isinstance(obj, dict):
            depth = max(depth, level + 1)
            for k, v in obj.items():
                stack.append((k, level + 1))
                stack.append((v, level + 1))
    return depth, items


def is_plain(value: object) -> bool:
    """Whether `value` holds only plain data (exact types, hashable keys)."""
    stack = [value]
    while stack:
        obj = stack.pop()
        if type(obj) in (list, tuple):
            assert isinstance(obj, list | tuple)
            stack.extend(obj)
        elif type(obj) is dict:
            assert isinstance(obj, dict)
            for k, v in obj.items():
                if type(k) in (list, dict):
                    return False
                stack += [k, v]
        elif type(obj) not in (type(None), bool, int, float, str, bytes):
            return False
    return True


def decode_or_refuse(data: bytes, limits: Limits = DEFAULT) -> object:
    """Decode; the only acceptable failure is ProtocolError. Checks the result's limits."""
    try:
        value = decode(data, limits)
    except ProtocolError as exc:
        assert isinstance(exc.evidence.get("reason"), str)
        return exc
    assert is_plain(value)
    depth, items = shape(value)
    assert depth <= limits.max_depth
    assert items <= limits.max_items
    # What decodes re-encodes to the very same bytes (one value, one encoding) or, for
    # msgpack's several integer/str/float widths, at least to the same value.
    again = encode(value, limits)
    assert same(decode(again, limits), value)
    return value


def refused(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data, limits)
    return info.value


# --------------------------------------------------------------------------- strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**1000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, -0.0, 5e-324]),
    st.text(),
    st.binary(),
    st.binary(min_size=1).map(lambda b: b"\xff" + b),  # never UTF-8
)

hashables = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=12
)

plain = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=6).map(tuple),
        st.dictionaries(hashables, inner, max_size=5),
    ),
    max_leaves=25,
)


# --------------------------------------------------------------------------- round trips


@FAST
@given(plain)
def test_round_trip_of_plain_data(value: object) -> None:
    data = encode(value)
    assert same(decode(data), value)
    assert same(decode(bytearray(data)), value)
    assert same(decode(memoryview(data)), value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -1,
        2**63,
        -(2**63) - 1,
        2**64 - 1,
        2**64,
        -(2**64),
        2**65534,
        -(2**65534) - 1,
        math.nan,
        -0.0,
        math.inf,
        "",
        "\U0010ffff",
        b"",
        b"\x80\xff\xfe",
        [],
        (),
        ((),),
        [()],
        ([],),
        {(): ()},
        {(1, (2, b"x"), None, 1.5): [1, (2,)], b"k": {}, None: 0, 2**100: "big key"},
        {math.nan: 1, 0.5: 2},
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[(1,)]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    ],
    ids=lambda value: type(value).__name__,
)
def test_round_trip_edge_values(value: object) -> None:
    assert same(decode(encode(value)), value)


def test_tuples_come_back_as_tuples_and_lists_as_lists() -> None:
    value = decode(encode({(1, 2): [(3,), [4]]}))
    assert value == {(1, 2): [(3,), [4]]}
    assert isinstance(value, dict)
    ((key, item),) = value.items()
    assert type(key) is tuple
    assert type(item) is list
    assert type(item[0]) is tuple
    assert type(item[1]) is list


def test_wire_format_is_documented_msgpack() -> None:
    assert encode([1, "a", b"b"]) == b"\x93\x01\xa1a\xc4\x01b"
    assert encode((1,)) == b"\x92\xc7\x00\x02\x01"  # marker: ext 2, empty, first element
    assert encode(2**64) == b"\xc7\x09\x01" + (2**64).to_bytes(9, "big", signed=True)
    assert decode(b"\x92\xc8\x00\x00\x02\x01") == (1,)  # ext 16 spelling of the marker
    assert decode(b"\x92\xc9\x00\x00\x00\x00\x02\x01") == (1,)  # ext 32 spelling
    assert (EXT_BIGINT, EXT_TUPLE) == (1, 2)


@pytest.mark.parametrize("exponent", [63, 64, 65, 100, 1000, 65534])
@pytest.mark.parametrize("sign", [1, -1])
def test_big_integers(exponent: int, sign: int) -> None:
    for value in (sign * 2**exponent, sign * (2**exponent - 1), sign * 2**exponent + 1):
        assert decode(encode(value)) == value


# --------------------------------------------------------------------------- encode errors


class Color(IntEnum):
    RED = 1


Point = namedtuple("Point", "x y")


@pytest.mark.parametrize(
    ("value", "exc", "message"),
    [
        ({1: {2}}, TypeError, "result[1]: type set is not plain data"),
        ([0, 1, 2, {"x": set()}], TypeError, "result[3]['x']: type set is not plain data"),
        ({frozenset(): 1}, TypeError, "result<key 0>: type frozenset is not plain data"),
        ({(1, object()): 1}, TypeError, "result<key 0>[1]: type object is not plain data"),
        (bytearray(b"x"), TypeError, "result: type bytearray is not plain data"),
        ([Color.RED], TypeError, "result[0]: type Color is not plain data"),
        ([Point(1, 2)], TypeError, "result[0]: type Point is not plain data"),
        (OrderedDict(), TypeError, "result: type OrderedDict is not plain data"),
        (["ok", "\ud800"], ValueError, "result[1]: str is not valid Unicode"),
        ({"n": 2**70000}, ValueError, "result['n']: integer of 8751 bytes exceeds"),
        ({2**20000: set()}, TypeError, "result[<int of 20001 bits>]: type set is not"),
        (
            {"k" * 100: set()},
            TypeError,
            "result['" + "k" * 56 + "...]: type set",
        ),
    ],
)
def test_encode_names_the_offending_path(value: object, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc) as info:
        encode(value)
    assert str(info.value).startswith(message)


def test_encode_limits() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match=r"nesting deeper than max_depth \(64\)"):
        encode(cycle)
    dag: list[object] = []
    for _ in range(60):
        dag = [dag, dag]  # 2**61 items if expanded
    with pytest.raises(ValueError, match=r"max_items \(1000\)"):
        encode(dag, Limits(max_items=1000))
    small = Limits(max_bytes=100, max_str=10, max_bin=10, max_int_bytes=9)
    with pytest.raises(ValueError, match=r"result\[0\]: str of 11 UTF-8 bytes"):
        encode(["x" * 11], small)
    with pytest.raises(ValueError, match=r"result\[0\]: str of 12 UTF-8 bytes"):
        encode(["é" * 6], small)
    with pytest.raises(ValueError, match="bytes of length 11"):
        encode([b"x" * 11], small)
    with pytest.raises(ValueError, match="max_bytes"):
        encode(["x" * 10] * 10, small)
    with pytest.raises(ValueError, match="max_int_bytes"):
        encode(2**72, small)
    assert decode(encode(2**71 - 1, small), small) == 2**71 - 1
    with pytest.raises(ValueError, match=r"^args\[0\]"):
        encode(cycle, root="args")


def test_limits_validation() -> None:
    for bad in ({"max_depth": 0}, {"max_items": -1}, {"max_depth": 1001}, {"max_int_bytes": 8}):
        with pytest.raises(ValueError):
            Limits(**bad)
    assert Limits(max_depth=codec.MAX_DEPTH_CAP).max_depth == 1000
    assert (DEFAULT.max_bytes, DEFAULT.max_depth, DEFAULT.max_items) == (2**26, 64, 1_000_000)


@settings(FAST, max_examples=100)
@given(plain, st.integers(1, 6), st.integers(1, 60))
def test_encode_and_decode_agree_on_limits(value: object, max_depth: int, max_items: int) -> None:
    """What the child manages to encode, the host accepts, and nothing else."""
    limits = Limits(max_depth=max_depth, max_items=max_items)
    data = encode(value)  # default limits
    try:
        encode(value, limits)
    except ValueError:
        refused(data, limits)
    else:
        assert same(decode(data, limits), value)


# --------------------------------------------------------------------------- hostile input


@settings(database=None, deadline=None, max_examples=600)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_protocol_error(data: bytes) -> None:
    decode_or_refuse(data)


@settings(database=None, deadline=None, max_examples=400)
@given(st.binary(max_size=60).map(lambda b: bytes([0xDD, 0, 0, 0, 0x10]) + b))
def test_random_bytes_inside_an_array(data: bytes) -> None:
    decode_or_refuse(data, Limits(max_depth=4, max_items=50))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(encode(draw(plain)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(
                st.sampled_from([0x00, 0x7F, 0x80, 0xC1, 0xC7, 0xD4, 0xDD, 0xDF, 0xFF])
            )
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=5))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 5))]
        elif op == "truncate":
            del data[pos:]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=5))
    return bytes(data)


@settings(database=None, deadline=None, max_examples=200)
@given(mutated())
def test_mutated_encodings_decode_or_protocol_error(data: bytes) -> None:
    decode_or_refuse(data)
    decode_or_refuse(data, Limits(max_depth=2, max_items=5, max_str=3, max_bin=3))


@pytest.mark.parametrize(
    "opener",
    [
        b"\x91",
        b"\xdc\x00\x01",
        b"\xdd\x00\x00\x00\x01",
        b"\x81\xc0",
        b"\x81\x91\xc0",
        b"\x92\xc7\x00\x02",
    ],
)
def test_million_level_nesting_is_refused_fast(opener: bytes) -> None:
    data = opener * 1_000_000 + b"\xc0"
    start = time.perf_counter()
    error = refused(data)
    assert "max_depth" in str(error) or "tuple marker" in str(error)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("depth", [63, 64, 65, 1000, 1023, 1024, 1025, 5000])
def test_nesting_around_msgpack_stack_limit(depth: int) -> None:
    """msgpack's C unpacker stops at 1024 levels (StackError): always ProtocolError."""
    data = b"\x91" * depth + b"\x00"
    for limits in (DEFAULT, Limits(max_depth=1000)):
        if depth <= limits.max_depth:
            value = decode(data, limits)
            assert shape(value)[0] == depth
        else:
            assert "max_depth" in str(refused(data, limits))
    with pytest.raises(ProtocolError):
        decode(data + b"\x00")


@pytest.mark.parametrize(
    "header",
    [
        b"\xdd\xff\xff\xff\xff",  # array32
        b"\xdf\xff\xff\xff\xff",  # map32
        b"\xdb\xff\xff\xff\xff",  # str32
        b"\xc6\xff\xff\xff\xff",  # bin32
        b"\xc9\xff\xff\xff\xff\x01",  # ext32 (big int)
        b"\xdc\xff\xff",  # array16
        b"\xde\xff\xff",  # map16
        b"\xda\xff\xff",  # str16
    ],
)
def test_huge_declared_lengths_allocate_nothing(header: bytes) -> None:
    for nesting in (b"", b"\xdd\x00\x0f\x42\x40" * 60):  # 60 arrays declaring 10**6 each
        data = nesting + header + b"\x00" * 1000
        tracemalloc.start()
        try:
            refused(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024


def test_oversized_input_is_refused_before_reading() -> None:
    limits = Limits(max_bytes=10)
    error = refused(b"\x00" * 11, limits)
    assert error.evidence["limit"] == 10
    assert decode(b"\xa9123456789", limits) == "123456789"


def test_many_small_objects() -> None:
    at_limit = b"\xdd" + (999_999).to_bytes(4, "big") + b"\x00" * 999_999
    assert len(decode(at_limit)) == 999_999  # type: ignore[arg-type]
    error = refused(b"\xdd" + (1_000_000).to_bytes(4, "big") + b"\x00" * 1_000_000)
    assert "max_items" in str(error)
    # Items in maps: every key and every value counts.
    pairs = 499_999
    data = (
        b"\xdf"
        + pairs.to_bytes(4, "big")
        + b"".join(b"\xce" + i.to_bytes(4, "big") + b"\xc0" for i in range(pairs))
    )
    assert len(decode(data)) == pairs  # type: ignore[arg-type]
    data = (
        b"\xdf"
        + (pairs + 1).to_bytes(4, "big")
        + b"".join(b"\xce" + i.to_bytes(4, "big") + b"\xc0" for i in range(pairs + 1))
    )
    assert "max_items" in str(refused(data))


def test_tuple_markers_in_nested_arrays() -> None:
    assert decode(b"\x91\x91\xc7\x00\x02") == [()]
    assert decode(b"\x92\xc7\x00\x02\x91\xc7\x00\x02") == ((),)
    refused(b"\x92\x91\xc7\x00\x02\xc7\x00\x02")  # second marker follows a nested array


def test_limits_are_exact() -> None:
    limits = Limits(max_items=3, max_depth=2)
    assert decode(encode((1, 2)), limits) == (1, 2)  # the tuple marker is not an item
    assert decode(encode([(1, 2)], Limits(max_items=4)), Limits(max_items=4)) == [(1, 2)]
    refused(encode([1, 2, 3]), limits)
    refused(encode([[()]]), limits)
    assert decode(encode([[1]]), limits) == [[1]]


@pytest.mark.parametrize("code", range(-128, 128))
def test_unknown_ext_types_are_refused(code: int) -> None:
    if code in (EXT_BIGINT, EXT_TUPLE):
        return
    for payload in (b"", b"x", b"\x00" * 4, b"\x00" * 8, b"\x00" * 12, b"\x00" * 16):
        fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
        head = (
            bytes([fixed[len(payload)]]) if len(payload) in fixed else bytes([0xC7, len(payload)])
        )
        data = head + struct.pack(">b", code) + payload
        assert "ext type" in str(refused(data))
        refused(b"\x92" + data + b"\x00")


def test_timestamps_are_refused() -> None:
    for stamp in (msgpack.Timestamp(0, 0), msgpack.Timestamp(2**40, 5)):
        refused(msgpack.packb(stamp))
    refused(b"\xd6\xff\x00")  # truncated timestamp


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\xc1", "invalid msgpack byte"),
        (b"\x00\x00", "trailing"),
        (b"\x92\x01", "container declares 2 slots but only 1 bytes follow"),
        (b"\x92\x01\xa5ab", "truncated"),
        (b"\x92\x01\xcd\x01", "truncated"),
        (b"\xa2\xff\xfe", "UnicodeDecodeError"),
        (b"\xa1\xed", "UnicodeDecodeError"),  # truncated UTF-8
        (b"\xa3\xed\xa0\x80", "UnicodeDecodeError"),  # an encoded surrogate
        (b"\xc7\x00\x02", "tuple marker"),  # marker at top level
        (b"\x92\x01\xc7\x00\x02", "tuple marker"),  # marker not first
        (b"\x81\xc7\x00\x02\x01", "tuple marker"),  # marker as a map key
        (b"\x81\x01\xc7\x00\x02", "tuple marker"),  # marker as a map value
        (b"\x92\xd4\x02\x00\x01", "tuple marker"),  # marker with a payload
        (b"\x92\xc7\x01\x02\x00\x01", "tuple marker"),
        (b"\xc7\x09\x01" + (5).to_bytes(9, "big"), "canonical"),  # small int as ext 1
        (b"\xc7\x0a\x01" + (2**64).to_bytes(10, "big"), "canonical"),  # not minimal
        (b"\xc7\x08\x01" + b"\x7f" * 8, "big integer of 8 bytes"),
        (b"\xc7\x00\x01", "big integer of 0 bytes"),
        (b"\x81\x90\x01", "unhashable"),  # list key
        (b"\x81\x80\x01", "unhashable"),  # dict key
        (b"\x81\x92\xc7\x00\x02\x90\x01", "unhashable"),  # tuple key holding a list
        (b"\x82\x01\x01\x01\x02", "duplicate"),
        (b"\x82\x01\x01\xc3\x02", "duplicate"),  # True == 1
        (b"\x82\xa1a\x01\xa1a\x02", "duplicate"),
    ],
)
def test_malformed_inputs(data: bytes, reason: str) -> None:
    error = refused(data)
    assert reason in str(error), str(error)
    assert error.evidence["reason"]


class _Boom:
    ran = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (_set_ran, ())


def _set_ran() -> None:
    _Boom.ran = True


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickles_are_not_unpickled(protocol: int) -> None:
    for obj in (_Boom(), [1, 2, 3], {"a": (1, 2)}, "text", None):
        data = pickle.dumps(obj, protocol=protocol)
        decode_or_refuse(data)
    assert not _Boom.ran


def test_decode_never_raises_anything_else_on_odd_arguments() -> None:
    refused(memoryview(b"\x00\x00\x00\x00").cast("I"))  # 1 item of 4 bytes -> 4 bytes
    assert decode(memoryview(b"\x91\x00")) == [0]
    with pytest.raises(ProtocolError):
        decode(memoryview(bytes(range(16)))[::2])  # not contiguous
    with pytest.raises(ProtocolError):
        decode("text")  # type: ignore[arg-type]


def test_decode_time_is_linear_in_depth_times_items() -> None:
    """A deep spine holding many items decodes as fast as a flat list of them."""
    n = 300_000
    flat = encode([0] * n)
    deep = encode(_nest([0] * n, 60))

    def best(data: bytes) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            decode(data)
            times.append(time.perf_counter() - start)
        return min(times)

    assert best(deep) < 3 * best(flat) + 0.05


def _nest(value: object, levels: int) -> object:
    for _ in range(levels):
        value = [value]
    return value


# --------------------------------------------------------------------------- frames

SOCKET_TYPES = [
    pytest.param(socket.SOCK_STREAM, id="stream"),
    pytest.param(socket.SOCK_SEQPACKET, id="seqpacket"),
]


@pytest.fixture(params=SOCKET_TYPES)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, request.param)
    with a, b:
        yield a, b


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(r)
        os.close(w)


def _send_in_thread(fn: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, name="sbm-test-sender")
    thread.start()
    return thread


@pytest.mark.parametrize("size", [0, 1, 4096, 32 * 1024 + 1, 3_000_001])
def test_frame_round_trip(pair: tuple[socket.socket, socket.socket], size: int) -> None:
    a, b = pair
    payload = os.urandom(size)

    def send_both() -> None:
        for kind in (FrameKind.RESULT, FrameKind.PONG):
            send_frame(a, kind, payload)

    sender = _send_in_thread(send_both)
    try:
        for kind in (FrameKind.RESULT, FrameKind.PONG):
            got_kind, body, fds = recv_frame(b, size, 0)
            assert (got_kind, body, fds) == (kind, payload, [])
            assert isinstance(got_kind, FrameKind)
    finally:
        sender.join()


def test_frame_kinds_are_stable() -> None:
    assert [(k.name, k.value) for k in FrameKind] == [
        ("CALL", 1),
        ("RESULT", 2),
        ("ERROR", 3),
        ("FAULT", 4),
        ("READY", 5),
        ("PING", 6),
        ("PONG", 7),
        ("IMPORT_DENIED", 8),
        ("EXIT", 9),
    ]
    assert HEADER.size == 12
    assert HEADER.pack(MAGIC, FrameKind.CALL, 2, 5) == b"SB\x01\x02" + (5).to_bytes(8, "big")


def test_fd_passing(pair: tuple[socket.socket, socket.socket], pipe: tuple[int, int]) -> None:
    a, b = pair
    r, w = pipe
    send_frame(a, FrameKind.CALL, b"call", [r, w])
    kind, body, fds = recv_frame(b, 100, 2)
    try:
        assert (kind, body, len(fds)) == (FrameKind.CALL, b"call", 2)
        assert not set(fds) & {r, w}
        assert all(not os.get_inheritable(fd) for fd in fds)  # close-on-exec
        os.write(fds[1], b"through the passed descriptor")
        assert os.read(r, 100) == b"through the passed descriptor"
    finally:
        for fd in fds:
            os.close(fd)


def test_header_length_checked_before_the_body_is_read(
    pair: tuple[socket.socket, socket.socket], pipe: tuple[int, int]
) -> None:
    a, b = pair
    a.sendmsg(
        [HEADER.pack(MAGIC, FrameKind.RESULT, 1, 2**40)],
        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pipe[0]]).tobytes())],
    )
    a.send(b"first bytes of a body that must stay unread")
    before = _open_fds()
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as info:
            recv_frame(b, 1 << 20, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not isinstance(info.value, ChannelClosed)
    assert info.value.evidence["length"] == 2**40
    assert peak < 64 * 1024
    assert _open_fds() == before  # the descriptor that came with the header is closed
    assert b.recv(100) == b"first bytes of a body that must stay unread"


@pytest.mark.parametrize(("sent", "max_fds"), [(1, 0), (2, 1), (3, 1), (5, 2), (20, 0), (20, 3)])
def test_too_many_fds_are_closed(
    pair: tuple[socket.socket, socket.socket], pipe: tuple[int, int], sent: int, max_fds: int
) -> None:
    a, b = pair
    before = _open_fds()
    send_frame(a, FrameKind.RESULT, b"x", [pipe[0]] * sent)
    with pytest.raises(ProtocolError, match="descriptor"):
        recv_frame(b, 100, max_fds)
    assert _open_fds() == before


def test_declared_fd_count_must_match(
    pair: tuple[socket.socket, socket.socket], pipe: tuple[int, int]
) -> None:
    a, b = pair
    before = _open_fds()
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pipe[0]]).tobytes())]
    a.sendmsg([HEADER.pack(MAGIC, FrameKind.CALL, 0, 0)], rights)  # undeclared fd
    with pytest.raises(ProtocolError, match="declares 0 descriptors but 1 arrived"):
        recv_frame(b, 100, 4)
    a.sendmsg([HEADER.pack(MAGIC, FrameKind.CALL, 2, 0)], rights)  # one missing
    with pytest.raises(ProtocolError, match="declares 2 descriptors but 1 arrived"):
        recv_frame(b, 100, 4)
    a.sendmsg([HEADER.pack(MAGIC, FrameKind.CALL, 2, 0)])
    with pytest.raises(ProtocolError, match="at most 1 allowed"):
        recv_frame(b, 100, 1)
    assert _open_fds() == before


def test_fds_arriving_with_the_body_are_refused_and_closed(
    pair: tuple[socket.socket, socket.socket], pipe: tuple[int, int]
) -> None:
    a, b = pair
    before = _open_fds()
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pipe[1]]).tobytes())]
    a.sendmsg(
        [HEADER.pack(MAGIC, FrameKind.CALL, 1, 4)],
        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pipe[0]]).tobytes())],
    )
    a.sendmsg([b"body"], rights)
    with pytest.raises(ProtocolError, match="descriptors"):
        recv_frame(b, 100, 1)
    assert _open_fds() == before


def test_eof_between_frames(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.close()
    with pytest.raises(ChannelClosed) as info:
        recv_frame(b, 100, 0)
    assert isinstance(info.value, ProtocolError)
    assert isinstance(info.value, EOFError)
    assert info.value.evidence["eof"] is True
    assert info.value.evidence["mid_frame"] is False
    assert pickle.loads(pickle.dumps(info.value)).evidence == info.value.evidence


def test_eof_in_the_middle_of_a_header() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        a.send(HEADER.pack(MAGIC, FrameKind.RESULT, 0, 10)[:5])
        a.close()
        with pytest.raises(ChannelClosed) as info:
            recv_frame(b, 100, 0)
        assert info.value.evidence["mid_frame"] is True
        assert info.value.evidence["part"] == "header"


def test_eof_in_the_middle_of_a_body_closes_received_fds(
    pair: tuple[socket.socket, socket.socket], pipe: tuple[int, int]
) -> None:
    a, b = pair
    before = _open_fds()
    a.sendmsg(
        [HEADER.pack(MAGIC, FrameKind.CALL, 2, 100)],
        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", list(pipe)).tobytes())],
    )
    a.send(b"only part of the body")
    before.discard(a.fileno())
    a.close()
    with pytest.raises(ChannelClosed) as info:
        recv_frame(b, 100, 2)
    assert info.value.evidence == {
        "eof": True,
        "mid_frame": True,
        "part": "body",
        "received": len(b"only part of the body"),
        "expected": 100,
    }
    assert _open_fds() == before


def test_timeout_mid_body_closes_received_fds(
    pair: tuple[socket.socket, socket.socket], pipe: tuple[int, int]
) -> None:
    a, b = pair
    before = _open_fds()
    a.sendmsg(
        [HEADER.pack(MAGIC, FrameKind.CALL, 1, 100)],
        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pipe[0]]).tobytes())],
    )
    b.settimeout(0.05)
    with pytest.raises(TimeoutError):
        recv_frame(b, 100, 1)
    assert _open_fds() == before


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"XX\x02\x00" + bytes(8), "magic"),
        (b"SB\x00\x00" + bytes(8), "unknown frame kind 0"),
        (b"SB\xff\x00" + bytes(8), "unknown frame kind 255"),
        (b"SB\x02\xfe" + bytes(8), "declares 254 descriptors"),
    ],
)
def test_bad_headers(
    pair: tuple[socket.socket, socket.socket], header: bytes, message: str
) -> None:
    a, b = pair
    a.send(header)
    with pytest.raises(ProtocolError, match=message):
        recv_frame(b, 100, 0)


def test_seqpacket_records_must_fit() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        a.send(HEADER.pack(MAGIC, FrameKind.PING, 0, 0) + b"extra")  # header record too long
        with pytest.raises(ProtocolError, match="record longer"):
            recv_frame(b, 100, 0)
        a.send(HEADER.pack(MAGIC, FrameKind.PING, 0, 0)[:7])  # header record too short
        with pytest.raises(ProtocolError, match="header record of 7 bytes"):
            recv_frame(b, 100, 0)
        a.send(HEADER.pack(MAGIC, FrameKind.RESULT, 0, 4))
        a.send(b"12345")  # body record longer than the body
        with pytest.raises(ProtocolError, match="record longer"):
            recv_frame(b, 100, 0)
        a.send(HEADER.pack(MAGIC, FrameKind.RESULT, 0, 4))
        a.send(b"12")
        a.send(b"34")  # the body may come in several records
        assert recv_frame(b, 100, 0) == (FrameKind.RESULT, b"1234", [])


def test_send_frame_argument_errors(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(ValueError):
        send_frame(a, 0, b"")
    with pytest.raises(ValueError):
        send_frame(a, FrameKind.CALL, b"", [0] * (MAX_FDS + 1))
    with pytest.raises(ValueError):
        send_frame(a, FrameKind.CALL, b"", [-1])
    with pytest.raises(ValueError):
        recv_frame(a, 100, MAX_FDS + 1)


def test_send_to_a_closed_peer_raises_oserror(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.close()
    with pytest.raises(OSError):
        send_frame(a, FrameKind.PING, b"")


@settings(database=None, deadline=None, max_examples=200)
@given(st.binary(max_size=300), st.sampled_from([socket.SOCK_STREAM, socket.SOCK_SEQPACKET]))
def test_garbage_on_the_channel_is_a_protocol_error(garbage: bytes, kind: int) -> None:
    before = _open_fds()
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    with a, b:
        if garbage:
            a.send(garbage)
        a.close()
        for _ in range(len(garbage) + 2):
            try:
                recv_frame(b, 64, 0)
            except ChannelClosed:
                break
            except ProtocolError:
                continue
    assert _open_fds() == before


def test_codec_over_frames_end_to_end(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    value = {"rows": [(i, f"name{i}", b"\x00\xff" * i) for i in range(1000)], "n": 2**80}
    sender = _send_in_thread(lambda: send_frame(a, FrameKind.RESULT, encode(value)))
    try:
        kind, body, fds = recv_frame(b, DEFAULT.max_bytes, 0)
    finally:
        sender.join()
    assert (kind, fds) == (FrameKind.RESULT, [])
    assert decode(body) == value
