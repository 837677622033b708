"""Pickle recipe: unpickle untrusted data inside the sandbox, keep only plain data.

Unpickling runs whatever the pickle says (``os.system``, ``eval``, any importable callable):
no check can make `pickle.loads` safe. Here it runs in a fresh sandbox, where such a pickle
can only hurt the sandbox: its system calls (new processes, files, network) are refused
and reported as `sandboxmode.PolicyViolation`, and an import of a module not already
loaded is refused too. What comes back is the value only if it is plain data (None, bool,
int, float, str, bytes, list, tuple, dict, nothing else, no cycles), else `NotPlainData`.
The ``unpickle_direct`` twin is for pickles you trust: it is `pickle.loads` plus the check.
"""

from __future__ import annotations

import pickle
from typing import Any

from sandboxmode._target import sandboxed
from sandboxmode.recipes.errors import CorruptInput, NotPlainData, TooDeep

__all__ = ["DEFAULT_MAX_DEPTH", "check_plain", "unpickle", "unpickle_direct"]

DEFAULT_MAX_DEPTH = 48
"""Default deepest nesting of containers accepted (the sandbox's result limit is 64)."""

_SCALARS = (type(None), bool, int, float, str, bytes)


def check_plain(value: object, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Check that ``value`` is plain data, iteratively.

    Args:
        value: the value to check.
        max_depth: deepest container nesting allowed.

    Raises:
        NotPlainData: some value is of another type (subclasses included), or a container
            contains itself.
        TooDeep: containers nested deeper than ``max_depth``.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind not in (list, tuple, dict):
            raise NotPlainData(f"pickle: a {kind.__module__}.{kind.__qualname__} is not "
                               "plain data")
        if depth >= max_depth:
            raise TooDeep(f"pickle: containers nested deeper than max_depth ({max_depth})")
        if id(item) in seen:
            # Shared or cyclic: refuse cycles; shared subtrees are fine but the results
            # codec copies them, so refuse them too rather than multiply the output.
            raise NotPlainData("pickle: a container appears twice (shared or cyclic)")
        seen.add(id(item))
        if isinstance(item, dict):
            for k, v in item.items():
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
        else:
            assert isinstance(item, (list, tuple))
            stack.extend((x, depth + 1) for x in item)


def unpickle_direct(data: bytes | memoryview, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """`pickle.loads` then `check_plain`. Runs the pickle's code here: trusted data only.

    Args:
        data: the pickle's bytes.
        max_depth: deepest container nesting allowed.

    Returns:
        The unpickled value, plain data.

    Raises:
        NotPlainData: the value is not plain data.
        TooDeep: nested deeper than ``max_depth``.
        CorruptInput: not a valid pickle.
    """
    try:
        # Untrusted bytes only ever reach this inside a sandbox (`unpickle`); the host
        # side of that call receives plain data through the codec, never a pickle.
        value = pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError, KeyError,
            TypeError, AttributeError, UnicodeError, OverflowError) as e:
        raise CorruptInput(f"pickle: {type(e).__name__}: {e}") from None
    check_plain(value, max_depth)
    return value


@sandboxed
def unpickle(data: bytes | memoryview, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """`unpickle_direct` in a fresh sandbox: for pickles from strangers.

    Args:
        data: the pickle's bytes.
        max_depth: deepest container nesting allowed.

    Returns:
        The unpickled value, plain data.

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised.
        sandboxmode.PolicyViolation: the pickle tried a forbidden system call or import.
    """
    return unpickle_direct(data, max_depth)
