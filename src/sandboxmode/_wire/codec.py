"""The plain-data codec for values that cross the sandbox boundary.

Everything the sandbox sends back is untrusted. The host never unpickles it: results cross
as *plain data* encoded with msgpack, and `decode` checks every limit before the C unpacker
builds a single object.

Plain data is exactly these types (exact types, not subclasses):
``None``, `bool`, `int` (any size), `float` (including nan and infinities), `str`, `bytes`,
`list`, `tuple` and `dict`. Dict keys may be any hashable plain value (``None``, `bool`,
`int`, `float`, `str`, `bytes`, and tuples of those); a key that is a list or a dict is a
`ProtocolError` on decode (and cannot exist on encode).

Wire format: standard msgpack (``use_bin_type=True``: `str` is msgpack str, `bytes` is
msgpack bin; floats are float64) plus two extension types, and no others:

* ext type ``1`` (`EXT_BIGINT`): an integer outside the range msgpack represents natively
  (``-2**63 <= i < 2**64``). The payload is the integer as **signed, big-endian two's
  complement** in the minimal number of bytes, at most `Limits.max_int_bytes` bytes.
  Integers inside the native range must use the native encoding; a non-minimal or in-range
  ext 1 is a `ProtocolError` (one value, one encoding).
* ext type ``2`` (`EXT_TUPLE`): the *tuple marker*, with an empty payload. A tuple of n items
  is a msgpack array of n + 1 elements whose **first** element is the marker; a plain array
  is a list. The marker anywhere else (top level, a map key or value, a later array
  element) is a `ProtocolError`. The marker is not an item and adds no depth.

Limits (see `Limits`): the encoded size, the nesting depth (every list, tuple and dict is
one level; a top-level scalar has depth 0), the total number of items (every value counts
once: the top-level value, each list or tuple element, each dict key and each dict value),
the size of each str (in UTF-8 bytes), bytes and big integer. `encode` enforces the same
limits as `decode`, so that what the sandbox manages to encode, the host accepts; a result
that is too big fails inside the sandbox with a message that names where.

How `decode` stays linear and bounded: a single iterative pass over the bytes with an
explicit stack (no recursion, no object built) checks the structure, the depth, the item
count, every declared length against the bytes that remain (so that a 5-byte header
declaring 2**32 elements is refused at once, and the C unpacker never preallocates a list
that the input does not back), the extension types and the placement of tuple markers, and
that there are no trailing bytes. Only then does msgpack's C unpacker (with its own limits
set as a second line of defence) build the objects; its hooks turn marked arrays into
tuples, decode big integers and build dicts (refusing unhashable and duplicate keys). Each
byte is looked at a constant number of times, whatever the nesting.

Memory: `decode` refuses input longer than `Limits.max_bytes` before reading it, and builds
only what the input holds: about ``4 * max_bytes`` (a str's characters can take up to four
bytes each) plus a bounded Python object overhead per item (at most `Limits.max_items`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Final, cast

import msgpack  # type: ignore[import-untyped]  # msgpack ships no type information

from sandboxmode._errors import ProtocolError

__all__ = [
    "DEFAULT",
    "EXT_BIGINT",
    "EXT_TUPLE",
    "MAX_DEPTH_CAP",
    "Limits",
    "decode",
    "encode",
]

_MIB: Final = 1024 * 1024

EXT_BIGINT: Final = 1
"""msgpack ext type of integers outside ``-2**63 .. 2**64 - 1`` (signed big-endian bytes)."""

EXT_TUPLE: Final = 2
"""msgpack ext type of the (empty) tuple marker, the first element of an array that is a tuple."""

MAX_DEPTH_CAP: Final = 1000
"""Largest accepted `Limits.max_depth`: msgpack's C packer and unpacker stop at 1024 levels."""

_INT_MIN: Final = -(2**63)
_INT_END: Final = 2**64


@dataclass(frozen=True)
class Limits:
    """Bounds on one encoded value. The same limits apply to `encode` and `decode`.

    Attributes:
        max_bytes: largest encoded size, in bytes (default 64 MiB).
        max_depth: deepest nesting of lists, tuples and dicts (default 64; a top-level scalar
            has depth 0, ``[[1]]`` has depth 2). At most `MAX_DEPTH_CAP`.
        max_items: most values in total (default 1,000,000): the top-level value, every
            element, every dict key and every dict value count once.
        max_str: longest str, in UTF-8 bytes (default 16 MiB: decoding can take up to four
            bytes of memory per byte of UTF-8).
        max_bin: longest bytes value (default 64 MiB).
        max_int_bytes: longest big integer, in bytes of two's complement (default 8192,
            that is 65,536 bits). Integers in ``-2**63 .. 2**64 - 1`` always pass.
    """

    max_bytes: int = 64 * _MIB
    max_depth: int = 64
    max_items: int = 1_000_000
    max_str: int = 16 * _MIB
    max_bin: int = 64 * _MIB
    max_int_bytes: int = 8192

    def __post_init__(self) -> None:
        """Validate the limits.

        Raises:
            ValueError: a limit is not a positive int, or `max_depth` exceeds `MAX_DEPTH_CAP`.
        """
        for name in ("max_bytes", "max_depth", "max_items", "max_str", "max_bin"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, not {value!r}")
        if type(self.max_int_bytes) is not int or self.max_int_bytes < 9:
            raise ValueError(
                f"Limits.max_int_bytes must be an int >= 9, not {self.max_int_bytes!r}"
            )
        if self.max_depth > MAX_DEPTH_CAP:
            raise ValueError(
                f"Limits.max_depth must be at most {MAX_DEPTH_CAP}, not {self.max_depth}"
            )


DEFAULT: Final = Limits()
"""The default limits."""


# --------------------------------------------------------------------------- encoding

_TUPLE_EXT: Final = msgpack.ExtType(EXT_TUPLE, b"")
_PLAIN_SCALARS: Final = frozenset({type(None), bool, float})


def _int_nbytes(value: int) -> int:
    """Return the minimal length of `value` as signed two's complement, in bytes."""
    return ((value if value >= 0 else ~value).bit_length() + 8) // 8


# (parent, index or key, "this step enters a dict key rather than a value")
_PathNode = tuple["_PathNode | None", object, bool]


_Container = list[object] | tuple[object, ...] | dict[object, object]


def _short_repr(value: object) -> str:
    """``repr`` for error messages: at most 60 characters, and never raises for huge ints."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return f"<int of {value.bit_length() if isinstance(value, int) else '?'} bits>"
    return text if len(text) <= 60 else text[:57] + "..."


def _render_path(root: str, node: _PathNode | None) -> str:
    """Render a path such as ``result[3]['x']<key 0>[1]`` from a chain of path nodes."""
    parts: list[str] = []
    while node is not None:
        parent, step, is_key = node
        if is_key:
            parts.append(f"<key {_short_repr(step)}>")
        else:
            parts.append(f"[{_short_repr(step)}]")
        node = parent
    parts.reverse()
    if len(parts) > 16:  # a reference cycle, say
        parts[8:-7] = [f"...{len(parts) - 15} more..."]
    return root + "".join(parts)


def _scalar_problem(obj: object, limits: Limits) -> TypeError | ValueError | None:
    """Return what is wrong with a value that is not a container (without its path), or None."""
    kind = type(obj)
    if kind in _PLAIN_SCALARS:
        return None
    if isinstance(obj, int) and kind is int:
        if _INT_MIN <= obj < _INT_END or _int_nbytes(obj) <= limits.max_int_bytes:
            return None
        return ValueError(
            f"integer of {_int_nbytes(obj)} bytes exceeds max_int_bytes ({limits.max_int_bytes})"
        )
    if isinstance(obj, str) and kind is str:
        try:
            size = len(obj.encode("utf-8"))
        except UnicodeEncodeError as exc:
            return ValueError(f"str is not valid Unicode (lone surrogate at index {exc.start})")
        if size > limits.max_str:
            return ValueError(f"str of {size} UTF-8 bytes exceeds max_str ({limits.max_str})")
        return None
    if isinstance(obj, bytes) and kind is bytes:
        if len(obj) > limits.max_bin:
            return ValueError(f"bytes of length {len(obj)} exceeds max_bin ({limits.max_bin})")
        return None
    return TypeError(f"type {kind.__qualname__} is not plain data")


def _check_plain(value: object, limits: Limits, root: str) -> None:
    """Check that `value` is plain data within `limits`, in one iterative pass.

    Counts items and depth exactly as `decode` does, so both accept the same values.

    Args:
        value: the value to check.
        limits: the limits to enforce.
        root: the name of the value in error messages.

    Raises:
        TypeError: a value is not plain data (the message names its path).
        ValueError: a limit is exceeded (the message names the path where).
    """
    max_depth = limits.max_depth
    max_items = limits.max_items
    max_str = limits.max_str
    max_bin = limits.max_bin
    int_min = _INT_MIN
    int_end = _INT_END
    scalars = _PLAIN_SCALARS
    if type(value) not in (list, tuple, dict):
        problem = _scalar_problem(value, limits)
        if problem is not None:
            raise type(problem)(f"{root}: {problem}")
        return
    items = 1
    # Containers still to visit: (container, its depth, its path).
    stack: list[tuple[_Container, int, _PathNode | None]] = [(cast(_Container, value), 1, None)]
    while stack:
        obj, depth, path = stack.pop()
        is_dict = type(obj) is dict
        items += 2 * len(obj) if is_dict else len(obj)
        if items > max_items:
            raise ValueError(
                f"{_render_path(root, path)}: more than max_items ({max_items}) values"
            )
        # A dict's children are key, value, key, value...
        children: Iterable[Any] = chain.from_iterable(obj.items()) if isinstance(obj, dict) else obj
        for index, item in enumerate(children):
            kind = type(item)
            # The common cases first, inline; anything else gets a closer look.
            if kind is int:
                if int_min <= item < int_end:
                    continue
            elif kind is str:
                if len(item) <= max_str and item.isascii():
                    continue
            elif kind in scalars:
                continue
            elif kind is bytes:
                if len(item) <= max_bin:
                    continue
            elif kind is list or kind is tuple or kind is dict:
                if depth >= max_depth:
                    raise ValueError(
                        f"{_render_path(root, _child_path(obj, path, index))}: nesting deeper "
                        f"than max_depth ({max_depth}) (a reference cycle?)"
                    )
                stack.append((item, depth + 1, _child_path(obj, path, index)))
                continue
            problem = _scalar_problem(item, limits)
            if problem is not None:
                where = _render_path(root, _child_path(obj, path, index))
                raise type(problem)(f"{where}: {problem}")


def _child_path(container: _Container, path: _PathNode | None, index: int) -> _PathNode:
    """Return the path of child number `index` (keys and values alternate in a dict)."""
    if isinstance(container, dict):
        number, is_value = divmod(index, 2)
        if is_value:
            return (path, next(islice(iter(container), number, None)), False)
        return (path, number, True)
    return (path, index, False)


def _pack_default(obj: object) -> object:
    """msgpack ``default`` hook: tuples become marked arrays, big ints become ext 1."""
    if type(obj) is tuple:
        return [_TUPLE_EXT, *obj]
    if type(obj) is int:
        return msgpack.ExtType(EXT_BIGINT, obj.to_bytes(_int_nbytes(obj), "big", signed=True))
    raise TypeError(f"type {type(obj).__qualname__} is not plain data")  # pragma: no cover


def encode(value: object, limits: Limits = DEFAULT, *, root: str = "result") -> bytes:
    """Encode plain data for the trip out of the sandbox.

    Used inside the sandbox on the sandboxed function's result. The whole value is checked
    first (one iterative pass), so the error names the first offending place found.

    Args:
        value: plain data (see the module docstring).
        limits: the limits the receiving side will enforce.
        root: the name of `value` in error messages, e.g. ``"result"``.

    Returns:
        The msgpack encoding of `value`, at most ``limits.max_bytes`` long.

    Raises:
        TypeError: something in `value` is not plain data, e.g.
            ``"result[3]['x']: type set is not plain data"``.
        ValueError: a limit is exceeded (too deep, too many items, a str, bytes or integer
            too long, or the encoding longer than ``limits.max_bytes``), or a str holds a
            lone surrogate; the message names the path.
    """
    _check_plain(value, limits, root)
    try:
        data: bytes = msgpack.packb(
            value, use_bin_type=True, strict_types=True, default=_pack_default, datetime=False
        )
    except (TypeError, ValueError, OverflowError) as exc:  # pragma: no cover - checked above
        raise ValueError(f"{root}: cannot encode: {exc}") from None
    if len(data) > limits.max_bytes:
        raise ValueError(
            f"{root}: encoding of {len(data)} bytes exceeds max_bytes ({limits.max_bytes})"
        )
    return data


# --------------------------------------------------------------------------- decoding


class _Reject(Exception):
    """Internal: the input is refused; turned into `ProtocolError` by `decode`."""

    def __init__(self, message: str, **evidence: object) -> None:
        super().__init__(message)
        self.message = message
        self.evidence = evidence


# Kinds of msgpack first bytes.
_SCALAR: Final = 0  # fixed size; arg = total size in bytes
_STR: Final = 1  # arg >= 0: length inline (fixstr); arg < 0: -arg length bytes follow
_BIN: Final = 2
_ARRAY: Final = 3
_MAP: Final = 4
_EXT: Final = 5  # arg >= 0: fixext with arg data bytes; arg < 0: -arg length bytes follow
_INVALID: Final = 6


def _first_byte_table() -> tuple[tuple[int, int], ...]:
    """Build the table of (kind, arg) for every possible first byte of a msgpack object."""
    table: list[tuple[int, int]] = [(_INVALID, 0)] * 256
    for byte in range(0x00, 0x80):
        table[byte] = (_SCALAR, 1)  # positive fixint
    for byte in range(0xE0, 0x100):
        table[byte] = (_SCALAR, 1)  # negative fixint
    for byte in range(0x80, 0x90):
        table[byte] = (_MAP, byte & 0x0F)
    for byte in range(0x90, 0xA0):
        table[byte] = (_ARRAY, byte & 0x0F)
    for byte in range(0xA0, 0xC0):
        table[byte] = (_STR, byte & 0x1F)
    for byte, size in (
        (0xC0, 1),  # nil
        (0xC2, 1),  # false
        (0xC3, 1),  # true
        (0xCA, 5),  # float 32
        (0xCB, 9),  # float 64
        (0xCC, 2),  # uint 8
        (0xCD, 3),  # uint 16
        (0xCE, 5),  # uint 32
        (0xCF, 9),  # uint 64
        (0xD0, 2),  # int 8
        (0xD1, 3),  # int 16
        (0xD2, 5),  # int 32
        (0xD3, 9),  # int 64
    ):
        table[byte] = (_SCALAR, size)
    for byte, kind, arg in (
        (0xC4, _BIN, -1),
        (0xC5, _BIN, -2),
        (0xC6, _BIN, -4),
        (0xC7, _EXT, -1),
        (0xC8, _EXT, -2),
        (0xC9, _EXT, -4),
        (0xD4, _EXT, 1),
        (0xD5, _EXT, 2),
        (0xD6, _EXT, 4),
        (0xD7, _EXT, 8),
        (0xD8, _EXT, 16),
        (0xD9, _STR, -1),
        (0xDA, _STR, -2),
        (0xDB, _STR, -4),
        (0xDC, _ARRAY, -2),
        (0xDD, _ARRAY, -4),
        (0xDE, _MAP, -2),
        (0xDF, _MAP, -4),
    ):
        table[byte] = (kind, arg)
    # 0xC1 stays invalid ("never used").
    return tuple(table)


_FIRST_BYTE: Final = _first_byte_table()


_MARKER_ENCODINGS: Final = (b"\xc7\x00\x02", b"\xc8\x00\x00\x02", b"\xc9\x00\x00\x00\x00\x02")
"""The ways to encode the tuple marker (ext 8, 16 and 32 with an empty payload)."""


def _scan(data: bytes | memoryview, limits: Limits) -> None:
    """Check the structure of one msgpack value without building it.

    A single pass over the bytes with an explicit stack of the open containers' remaining
    slots: constant work per object, whatever the nesting.

    Items are counted when a container is opened (its declared slots, each of which must
    then hold an object), which refuses a huge declared length at once. A tuple marker
    occupies a slot but is not an item; it is only valid as the object that starts right
    after the header of the most recently opened array (that is, as its first element).

    Args:
        data: the whole input (one msgpack object, nothing after it).
        limits: the limits to enforce.

    Raises:
        _Reject: anything malformed or over a limit.
    """
    table = _FIRST_BYTE
    end = len(data)
    max_depth = limits.max_depth
    max_items = limits.max_items
    max_str = limits.max_str
    max_bin = limits.max_bin
    max_int_bytes = limits.max_int_bytes
    stack: list[int] = []  # the remaining slots of the enclosing containers
    top = 1  # remaining slots of the innermost open container (1: the top-level value)
    items = 1  # the top-level value
    array_body = -1  # where the body of the most recently opened array starts
    pos = 0
    try:
        while True:
            byte = data[pos]  # IndexError: truncated
            if byte < 0x80 or byte >= 0xE0:  # positive or negative fixint
                pos += 1
            elif 0xA0 <= byte < 0xC0:  # fixstr
                length = byte & 0x1F
                if length > max_str:
                    raise _Reject(f"str of length {length} exceeds max_str ({max_str})", offset=pos)
                pos += 1 + length
            else:
                start = pos
                if byte < 0xA0:  # fixmap, fixarray
                    kind = _MAP if byte < 0x90 else _ARRAY
                    length = byte & 0x0F
                    pos += 1
                elif byte == 0xC7 and data[pos + 1] == 0 and data[pos + 2] == EXT_TUPLE:
                    # The tuple marker, as `encode` writes it (other spellings: below).
                    if start != array_body:
                        raise _Reject("misplaced tuple marker", offset=start)
                    items -= 1
                    pos += 3
                    kind = _EXT
                else:
                    kind, arg = table[byte]
                    if kind == _SCALAR:
                        pos += arg
                    elif kind == _INVALID:
                        raise _Reject(f"invalid msgpack byte 0x{byte:02x}", offset=pos)
                    else:
                        if arg >= 0:
                            length = arg
                            pos += 1
                        else:
                            pos += 1 - arg
                            if pos > end:
                                raise IndexError
                            length = int.from_bytes(data[start + 1 : pos], "big")
                        if kind in (_STR, _BIN):
                            limit = max_str if kind == _STR else max_bin
                            if length > limit:
                                what = "str" if kind == _STR else "bin"
                                raise _Reject(
                                    f"{what} of length {length} exceeds max_{what} ({limit})",
                                    offset=start,
                                    length=length,
                                    limit=limit,
                                )
                            pos += length
                        elif kind == _EXT:
                            code = data[pos]  # IndexError: truncated
                            pos += 1 + length
                            if code == EXT_BIGINT:
                                if not 9 <= length <= max_int_bytes:
                                    raise _Reject(
                                        f"big integer of {length} bytes outside "
                                        f"9..max_int_bytes ({max_int_bytes})",
                                        offset=start,
                                    )
                            elif code == EXT_TUPLE:
                                if length or start != array_body:
                                    raise _Reject(
                                        "misplaced or malformed tuple marker", offset=start
                                    )
                                items -= 1
                            else:
                                signed = code - 256 if code >= 128 else code
                                raise _Reject(
                                    f"unknown msgpack ext type {signed}", offset=start, ext=signed
                                )
                if kind in (_ARRAY, _MAP):
                    if len(stack) >= max_depth:
                        raise _Reject(
                            f"nesting deeper than max_depth ({max_depth})",
                            offset=start,
                            limit=max_depth,
                        )
                    if length:
                        if kind == _MAP:
                            length *= 2
                        else:
                            array_body = pos
                        if length > end - pos:
                            raise _Reject(
                                f"container declares {length} slots but only "
                                f"{end - pos} bytes follow",
                                offset=start,
                            )
                        items += length
                        # An array's own tuple marker, if it has one, is not an item.
                        if items > max_items and not (
                            items == max_items + 1
                            and kind == _ARRAY
                            and bytes(data[pos : pos + 6]).startswith(_MARKER_ENCODINGS)
                        ):
                            raise _Reject(
                                f"more than max_items ({max_items}) values",
                                offset=start,
                                limit=max_items,
                            )
                        stack.append(top)
                        top = length
                        continue  # complete only once its slots are
            # One object is complete: it fills a slot; a full container fills one above.
            top -= 1
            if top:
                continue
            while stack:
                top = stack.pop() - 1
                if top:
                    break
            else:
                break  # the top-level value is complete
    except IndexError:
        raise _Reject("truncated input", offset=end) from None
    if pos > end:
        raise _Reject("truncated input", offset=end)
    if pos < end:
        raise _Reject(f"{end - pos} trailing bytes after the value", offset=pos)


class _TupleMarker:
    """The object the ext hook returns for the tuple marker (never escapes `decode`)."""

    __slots__ = ()


_MARK: Final = _TupleMarker()


def _ext_hook(code: int, payload: bytes) -> object:
    """Decode ext types for the C unpacker: big integers and the tuple marker."""
    if code == EXT_TUPLE and not payload:
        return _MARK
    if code == EXT_BIGINT:
        value = int.from_bytes(payload, "big", signed=True)
        if _INT_MIN <= value < _INT_END or _int_nbytes(value) != len(payload):
            raise _Reject("big integer not in canonical form")
        return value
    raise _Reject(f"unknown msgpack ext type {code}")  # pragma: no cover - _scan refuses it


def _list_hook(items: list[object]) -> object:
    """Turn arrays that start with the tuple marker into tuples."""
    if items and items[0] is _MARK:
        del items[0]
        return tuple(items)
    return items


def _pairs_hook(pairs: list[tuple[object, object]]) -> dict[object, object]:
    """Build a dict, refusing unhashable and duplicate keys."""
    try:
        result = dict(pairs)
    except TypeError:
        raise _Reject("unhashable dict key (a list or a dict)") from None
    if len(result) != len(pairs):
        raise _Reject("duplicate dict key")
    return result


def decode(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT) -> object:
    """Decode plain data that came out of the sandbox. Untrusted input is expected.

    Never raises anything but `ProtocolError`, never recurses on the input, takes time
    linear in ``len(data)`` and memory bounded by the limits (see the module docstring).

    Args:
        data: exactly one encoded value, as produced by `encode`.
        limits: the limits to enforce; ``len(data) > limits.max_bytes`` is refused before
            anything is read.

    Returns:
        The decoded plain data.

    Raises:
        ProtocolError: the input is malformed, truncated, followed by trailing bytes, over a
            limit, uses an unknown ext type, a misplaced tuple marker, a non-canonical big
            integer, invalid UTF-8, or an unhashable or duplicate dict key. ``evidence`` holds
            ``reason`` and, where known, ``offset``.
    """
    try:
        if isinstance(data, bytes):
            view: bytes | memoryview = data
        else:
            view = memoryview(data).cast("B")
        size = len(view)
        if size > limits.max_bytes:
            raise _Reject(
                f"{size} bytes exceeds max_bytes ({limits.max_bytes})",
                length=size,
                limit=limits.max_bytes,
            )
        _scan(view, limits)
        return msgpack.unpackb(
            view,
            use_list=True,
            raw=False,
            strict_map_key=False,
            list_hook=_list_hook,
            object_pairs_hook=_pairs_hook,
            ext_hook=_ext_hook,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=min(size, limits.max_items + 1),
            max_map_len=min(size // 2, limits.max_items),
            max_ext_len=limits.max_int_bytes + 1,
        )
    except _Reject as exc:
        raise ProtocolError(
            f"malformed sandbox output: {exc.message}",
            {"reason": exc.message, **exc.evidence},
        ) from None
    except Exception as exc:  # invalid UTF-8, msgpack's own limits, MemoryError...
        reason = f"{type(exc).__name__}: {exc}"[:500]
        raise ProtocolError(f"malformed sandbox output: {reason}", {"reason": reason}) from None
