"""A host program for tests that kill or starve the host itself (run as a subprocess).

    python host_script.py spare      -> prints "<zygote pid> <sandbox pid>" then blocks
    python host_script.py nomem N    -> with N MiB of address space to spare, copies 64 MiB
                                        in and out of a sandbox; prints
                                        the outcome's type name (never a traceback)
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import sandboxmode as sbm
import targets


def spare() -> None:
    from sandboxmode import _spawner

    box = sbm.Sandbox()
    assert box.call(targets.good) == 0x600D600D
    zh = _spawner.zygote_for(box.policy)
    assert zh.proc is not None
    print(zh.proc.pid, box._backend.proc.pid, flush=True)
    sys.stdin.read()  # until killed


def nomem(mib: int) -> None:
    data, out = bytes(64 << 20), bytearray(64 << 20)
    sbm.run(targets.good)  # the zygote is up: what follows is the call's own set-up
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (vm + (mib << 20), vm + (mib << 20)))
    try:
        with sbm.Sandbox(max_calls=1) as box:
            box.call(targets.copy, box.copy_in(data), box.copy_out(out))
    except sbm.SandboxError as e:
        print(type(e).__name__, e.errno)
    except MemoryError:
        import traceback

        where = traceback.extract_tb(sys.exc_info()[2])[-1]
        print("MemoryError", f"{Path(where.filename).name}:{where.name}")
    else:
        print("ok")


if __name__ == "__main__":
    if sys.argv[1] == "spare":
        spare()
    else:
        nomem(int(sys.argv[2]))
