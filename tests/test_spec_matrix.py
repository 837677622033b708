"""SPEC §5: the kernel series' 17 KUnit cases, over the three isolation levels.

"abort" = the call raises a SandboxError with errno EFAULT, ``box.error == -EFAULT``, and
the caller's buffers and objects are unchanged afterwards. Where the SPEC says a level
cannot do a case ("skip") the test is skipped with the reason, and where it says
"documented", the test asserts the documented behaviour, so that it cannot silently change.
"""

from __future__ import annotations

import ctypes
import errno

import pytest

import sandboxmode as sbm
import targets
from sandboxmode import Isolation

pytestmark = pytest.mark.isolation

LEVELS = [Isolation.STRONG, Isolation.WEAK, Isolation.NONE]
ids = [lv.name for lv in LEVELS]


@pytest.fixture(params=LEVELS, ids=ids)
def box(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    with sbm.Sandbox(isolation=request.param) as b:
        yield b


def assert_abort(box: sbm.Sandbox, excinfo: pytest.ExceptionInfo[sbm.SandboxError]) -> None:
    assert excinfo.value.errno == errno.EFAULT, excinfo.value
    assert box.error == -errno.EFAULT
    # sticky: the next call fails the same way without running anything
    with pytest.raises(type(excinfo.value)):
        box.call(targets.good)


def skip_unless(box: sbm.Sandbox, *levels: Isolation, why: str) -> None:
    if box.isolation not in levels:
        pytest.skip(f"{box.isolation.name}: {why}")


def test_01_write_marker(box: sbm.Sandbox) -> None:
    out = bytearray(8)
    assert box.call(targets.write_marker, box.copy_out(out)) == 0
    assert out == b"\xde\xad\xbe\xef" + bytes(4)
    assert box.error == 0


def test_02_write_past_end_python(box: sbm.Sandbox) -> None:
    big = bytearray(b"AB")
    with pytest.raises(sbm.TargetError) as ei:
        box.call(targets.write_past_py, box.copy_out(memoryview(big)[:1]))
    assert ei.value.remote_type == "IndexError"
    assert big == b"AB"  # no copy-back after a TargetError (SPEC-9)
    assert box.error == 0  # not sticky
    assert box.call(targets.good) == 0x600D600D


def test_02_write_past_end_native_within_page(box: sbm.Sandbox) -> None:
    big = bytearray(b"AB")
    assert box.call(targets.write_past_native, box.copy_out(memoryview(big)[:1])) == 0
    if box.isolation == Isolation.NONE:
        assert big == b"AA"  # documented: no isolation, the neighbour is hit
    else:
        assert big == b"\x00B"  # zero-filled output copied back, the neighbour untouched


def test_03_native_write_page_past(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, Isolation.WEAK, why="undefined behaviour without isolation")
    out = bytearray(b"Z")
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.write_page_past, box.copy_out(out))
    assert_abort(box, ei)
    assert out == b"Z"


def test_04_native_write_before(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, Isolation.WEAK, why="undefined behaviour without isolation")
    out = bytearray(b"Z")
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.write_before, box.copy_out(out))
    assert_abort(box, ei)
    assert out == b"Z"


def test_05_host_global_passed_directly(box: sbm.Sandbox) -> None:
    saved = bytes(targets.HOST_GLOBAL)
    try:
        assert box.call(targets.mutate_arg, targets.HOST_GLOBAL) == 0
        if box.isolation == Isolation.STRONG:
            assert targets.HOST_GLOBAL == saved  # the sandbox only had a copy
        else:
            assert targets.HOST_GLOBAL == b"X" + saved[1:]  # documented: in-process
    finally:
        targets.HOST_GLOBAL[:] = saved


def test_06_host_object_through_default_argument(box: sbm.Sandbox) -> None:
    saved = list(targets.HOST_LIST)
    try:
        assert box.call(targets.mutate_default) == 4
        if box.isolation == Isolation.STRONG:
            assert targets.HOST_LIST == saved  # the sandbox has its own module state
        else:
            assert targets.HOST_LIST == [*saved, 4]  # documented: in-process
    finally:
        targets.HOST_LIST[:] = saved


def test_07_native_write_raw_host_address(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, why="in-process levels share the address space: "
                "the write would corrupt the host")
    host = ctypes.create_string_buffer(b"host", 4096)
    addr = ctypes.addressof(host)
    # Unsandboxed, the same write lands (shown on a copy we own, so the test stays sane):
    scratch = ctypes.create_string_buffer(b"host", 16)
    targets.write_raw(ctypes.addressof(scratch))
    assert scratch.raw[:1] == b"A"
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.write_raw, addr)
    assert_abort(box, ei)
    assert host.raw[:4] == b"host"


def test_08_host_bytearray_passed_directly(box: sbm.Sandbox) -> None:
    host = bytearray(b"host")
    assert box.call(targets.mutate_arg, host) == 0
    if box.isolation == Isolation.STRONG:
        assert host == b"host"
    else:
        assert host == b"Xost"  # documented: in-process levels pass the object itself


def test_09_copy_in_to_out(box: sbm.Sandbox) -> None:
    data = bytes(range(256)) * 5
    out = bytearray(len(data))
    assert box.call(targets.copy, box.copy_in(data), box.copy_out(out)) == len(data)
    assert out == data


def test_10_read_past_end_python(box: sbm.Sandbox) -> None:
    with pytest.raises(sbm.TargetError) as ei:
        box.call(targets.read_past_py, box.copy_in(b"A"))
    assert ei.value.remote_type == "IndexError"


def test_10_read_past_end_native_within_page(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, Isolation.WEAK, why="reads the caller's neighbour")
    assert box.call(targets.read_past_native, box.copy_in(b"A")) == 0


def test_11_native_read_page_past(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, why="WEAK has no memory protection: the read sees the "
                "red zone (documented in sandboxmode.weak); NONE: undefined")
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.read_page_past, box.copy_in(b"A"))
    assert_abort(box, ei)


def test_11_weak_read_page_past_reads_red_zone(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.WEAK, why="WEAK-only documentation of row 11")
    assert box.call(targets.read_page_past, box.copy_in(b"A")) == 0xA5


def test_12_native_read_before(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, why="WEAK has no memory protection (reads the red "
                "zone); NONE: undefined")
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.read_before, box.copy_in(b"A"))
    assert_abort(box, ei)


def test_13_native_read_raw_host_address(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, why="in-process levels can read the host: that is "
                "what they are")
    secret = ctypes.create_string_buffer(b"S", 4096)
    assert targets.read_raw(ctypes.addressof(secret)) == ord("S")  # works unsandboxed
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.read_raw, ctypes.addressof(secret))
    assert_abort(box, ei)


def test_14_inout_flip(box: sbm.Sandbox) -> None:
    buf = bytearray(b"\x0f\x01")
    assert box.call(targets.flip, box.copy_inout(buf)) == 0
    assert buf == b"\xf0\x01"


def test_15_zero_args_good(box: sbm.Sandbox) -> None:
    assert box.call(targets.good) == 0x600D600D
    assert box.error == 0


def test_16_unbounded_recursion(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, Isolation.WEAK, why="NONE does not capture faults")
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.recurse)
    assert_abort(box, ei)
    assert "recursion" in str(ei.value).lower()


def test_16_native_stack_overflow(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, why="a native stack overflow kills the process it "
                "runs in: only a separate process contains it")
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.native_stack_overflow)
    assert_abort(box, ei)
    assert ei.value.evidence.get("signal_name") == "SIGSEGV(-11)"


def test_17_native_write_noncanonical(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, why="the fault would kill the host process")
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.write_noncanonical)
    assert_abort(box, ei)


def test_input_write_aborts_and_caller_unchanged(box: sbm.Sandbox) -> None:
    skip_unless(box, Isolation.STRONG, Isolation.WEAK, why="NONE writes the original")
    data = bytearray(b"input")
    with pytest.raises(sbm.SandboxFault) as ei:
        box.call(targets.write_input, box.copy_in(data))
    assert_abort(box, ei)
    assert data == b"input"
