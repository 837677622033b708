"""Ready recipes: widely used parsers of untrusted data, run in a fresh sandbox per call.

Each recipe is a `sandboxmode.sandboxed` entry point (calling it runs the parser in a
fresh, locked-down process; ``recipe.direct(...)`` runs the same code here) with a plain
twin ``*_direct`` for trusted input. Inputs are bytes (a read-only memoryview inside the
sandbox); results are plain data. Refusals are typed `errors.RecipeError` subclasses, seen
from the host as `sandboxmode.TargetError` whose ``remote_type`` names the class.

- `compression`: ``gunzip``, ``zlib_decompress``, ``bunzip2``, ``unxz`` /
  ``lzma_decompress`` - streaming, output capped (``max_output``, 64 MiB):
  `errors.OutputTooLarge`.
- `archives`: ``list_tar`` (plain, .gz, .bz2, .xz), ``list_zip`` - member dicts, at most
  ``max_members`` (10,000): `errors.TooManyMembers`; ``read_zip_member`` - one member,
  capped and CRC-checked. No extraction.
- `xmltree`: ``parse_xml`` - a plain element tree; refuses any DOCTYPE (so entity bombs and
  external entities): `errors.ForbiddenDTD`; depth and element count limited.
- `pickles`: ``unpickle`` - the value if it is plain data, else `errors.NotPlainData`. A
  hostile pickle runs, but only inside the sandbox (its system calls are refused).
- `images`: ``image_info`` - format, size, mode via Pillow if installed, else
  `errors.DependencyMissing`; pixel count limited.

Modules are imported on demand (``from sandboxmode.recipes import compression``): each
imports, at its top, everything its parser imports lazily, since an import inside the
sandbox is a `sandboxmode.PolicyViolation`.
"""

from __future__ import annotations

from sandboxmode.recipes.errors import (
    CorruptInput,
    DependencyMissing,
    ForbiddenDTD,
    LimitExceeded,
    MemberNotFound,
    NotPlainData,
    OutputTooLarge,
    RecipeError,
    TooDeep,
    TooManyElements,
    TooManyMembers,
    Unsupported,
)

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
