"""Buffers (SPEC 6-12) and persistent/one-shot sandboxes, over real processes."""

from __future__ import annotations

import pytest

import sandboxmode as sbm
import targets
from sandboxmode import Isolation

pytestmark = pytest.mark.isolation

LEVELS = [Isolation.STRONG, Isolation.WEAK, Isolation.NONE]


@pytest.mark.parametrize("level", LEVELS, ids=[lv.name for lv in LEVELS])
def test_inputs_are_snapshotted_at_call_time(level: Isolation) -> None:
    data = bytearray(b"before")
    with sbm.Sandbox(isolation=level) as box:
        h = box.copy_in(data)
        data[:] = b"after!"
        assert box.call(targets.read_shared, h) == b"after!"


@pytest.mark.parametrize("level", LEVELS[:2], ids=[lv.name for lv in LEVELS[:2]])
def test_outputs_are_zero_filled_at_every_call(level: Isolation) -> None:
    out = bytearray(b"\xff" * 8)
    with sbm.Sandbox(isolation=level) as box:
        assert box.call(targets.read_shared, box.copy_out(out)) == bytes(8)


@pytest.mark.parametrize("level", LEVELS, ids=[lv.name for lv in LEVELS])
def test_zero_length_buffers(level: Isolation) -> None:
    with sbm.Sandbox(isolation=level) as box:
        assert box.call(targets.copy, box.copy_in(b""), box.copy_out(bytearray())) == 0


@pytest.mark.parametrize("level", LEVELS, ids=[lv.name for lv in LEVELS])
def test_shared_writable_is_visible_at_once_even_if_the_call_fails(level: Isolation) -> None:
    with sbm.SharedBuffer(4096) as shared, sbm.Sandbox(isolation=level) as box:
        with pytest.raises(sbm.TargetError):
            box.call(targets.write_shared, box.map_writable(shared), b"seen", True)
        assert bytes(shared.view[:4]) == b"seen"


def test_shared_readonly_write_aborts() -> None:
    with sbm.SharedBuffer(4096) as shared, sbm.Sandbox() as box:
        shared.view[:4] = b"host"
        assert box.call(targets.read_shared, box.map_readonly(shared))[:4] == b"host"
        with pytest.raises(sbm.SandboxFault):
            box.call(targets.write_input, box.map_readonly(shared))
        assert bytes(shared.view[:4]) == b"host"


def test_handles_do_not_cross_sandboxes() -> None:
    with sbm.Sandbox() as a, sbm.Sandbox() as b:
        h = a.copy_in(b"mine")
        with pytest.raises(ValueError, match="another Sandbox"):
            b.call(targets.read_shared, h)


def test_large_input_round_trip() -> None:
    data = bytes(range(256)) * (64 * 1024)  # 16 MiB
    out = bytearray(len(data))
    with sbm.Sandbox() as box:
        assert box.call(targets.copy, box.copy_in(data), box.copy_out(out)) == len(data)
    assert out == data


def test_persistent_sandbox_keeps_state_one_shot_does_not() -> None:
    with sbm.Sandbox() as box:
        assert [box.call(targets.counter) for _ in range(3)] == [1, 2, 3]
    with sbm.Sandbox(max_calls=1) as box:
        assert [box.call(targets.counter) for _ in range(3)] == [1, 1, 1]
    assert targets._COUNT == 0  # the host's module never ran it


def test_two_sandboxes_do_not_share_state() -> None:
    with sbm.Sandbox() as a, sbm.Sandbox() as b:
        assert a.call(targets.counter) == 1
        assert b.call(targets.counter) == 1
        assert a.call(targets.counter) == 2
