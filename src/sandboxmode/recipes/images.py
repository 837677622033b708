"""Image recipe: identify an image (format, size, mode) with Pillow, inside the sandbox.

Pillow is optional and not a dependency of sandboxmode: when it is missing the recipe
raises `DependencyMissing`. When it is present, this module imports ``PIL.Image`` and
all its format plugins at import time (Pillow loads plugins lazily, and an import inside
the sandbox is a `sandboxmode.PolicyViolation`).
"""

from __future__ import annotations

import importlib
import io
import warnings
from typing import Any

from sandboxmode._target import sandboxed
from sandboxmode.recipes.errors import CorruptInput, DependencyMissing, LimitExceeded

__all__ = ["DEFAULT_MAX_PIXELS", "PIL_Image", "image_info", "image_info_direct"]

DEFAULT_MAX_PIXELS = 64_000_000
"""Default most pixels (width x height, per frame) accepted."""

PIL_Image: Any
try:
    PIL_Image = importlib.import_module("PIL.Image")
except ImportError:
    PIL_Image = None
else:
    PIL_Image.init()  # import every format plugin now, not inside the sandbox


def image_info_direct(data: bytes | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS,
                      decode: bool = False) -> dict[str, Any]:
    """Identify an image; with ``decode`` also decode its pixels (first frame).

    Args:
        data: the image file's bytes.
        max_pixels: most pixels allowed, checked from the header before decoding.
        decode: decode the pixels too (finds truncated or corrupt data, costs time).

    Returns:
        ``{"format": str | None, "size": [width, height], "mode": str,
        "frames": int}``.

    Raises:
        DependencyMissing: Pillow is not installed.
        LimitExceeded: more than ``max_pixels`` pixels.
        CorruptInput: Pillow cannot identify or decode the image.
    """
    if PIL_Image is None:
        raise DependencyMissing("images: Pillow is not installed (pip install Pillow)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL_Image.DecompressionBombWarning)
            img = PIL_Image.open(io.BytesIO(bytes(data)))
            with img:
                width, height = img.size
                if width * height > max_pixels:
                    raise LimitExceeded(f"images: {width}x{height} is more than max_pixels "
                                        f"({max_pixels})")
                if decode:
                    img.load()
                return {"format": img.format, "size": [width, height], "mode": img.mode,
                        "frames": int(getattr(img, "n_frames", 1))}
    except LimitExceeded:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError,
            PIL_Image.DecompressionBombError, PIL_Image.DecompressionBombWarning) as e:
        raise CorruptInput(f"images: {type(e).__name__}: {e}") from None


@sandboxed
def image_info(data: bytes | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS,
               decode: bool = False) -> dict[str, Any]:
    """`image_info_direct` in a fresh sandbox.

    Args:
        data: the image file's bytes.
        max_pixels: most pixels allowed (default 64 million).
        decode: decode the pixels too.

    Returns:
        ``{"format", "size", "mode", "frames"}``.

    Raises:
        sandboxmode.TargetError: ``remote_type`` names the `RecipeError` raised
            (``DependencyMissing`` when Pillow is not installed).
    """
    return image_info_direct(data, max_pixels, decode)
