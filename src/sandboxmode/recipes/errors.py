"""The recipes' typed errors: one root, `RecipeError` (a `ValueError`).

Raised inside the sandbox they arrive as `sandboxmode.TargetError` whose ``remote_type``
names the class, e.g. ``"sandboxmode.recipes.errors.OutputTooLarge"``; called directly
(the plain twins) they are raised as themselves.
"""

from __future__ import annotations

__all__ = [
    "CorruptInput",
    "DependencyMissing",
    "ForbiddenDTD",
    "LimitExceeded",
    "MemberNotFound",
    "NotPlainData",
    "OutputTooLarge",
    "RecipeError",
    "TooDeep",
    "TooManyElements",
    "TooManyMembers",
    "Unsupported",
]


class RecipeError(ValueError):
    """Root of the recipes' errors: the input was refused, with the reason in the message."""


class CorruptInput(RecipeError):
    """The input is malformed, truncated or fails its checksum."""


class LimitExceeded(RecipeError):
    """The input would go past one of the recipe's limits (output size, count, depth)."""


class OutputTooLarge(LimitExceeded):
    """Decompressed output would exceed the cap (checked before it is allocated)."""


class TooManyMembers(LimitExceeded):
    """An archive has more members than allowed (counted before they are parsed)."""


class TooManyElements(LimitExceeded):
    """An XML document has more elements than allowed."""


class TooDeep(LimitExceeded):
    """Nesting deeper than allowed (XML elements, pickled containers)."""


class ForbiddenDTD(RecipeError):
    """An XML document has a DOCTYPE or declares entities: refused, never expanded."""


class NotPlainData(RecipeError):
    """An unpickled value is not plain data (or contains a reference cycle)."""


class MemberNotFound(RecipeError):
    """The archive has no member of that name."""


class Unsupported(RecipeError):
    """A feature the recipe does not handle (encryption, an unknown compression method)."""


class DependencyMissing(RecipeError):
    """An optional dependency the recipe needs (Pillow) is not installed."""
