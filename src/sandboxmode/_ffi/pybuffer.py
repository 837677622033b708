"""The address of a buffer's first byte, read-only buffers included (Py_buffer.buf).

Declared once here: ``ctypes.pythonapi.X`` is one shared function object per process, so
two modules setting its ``argtypes`` to their own structure types would break each other.
"""

from __future__ import annotations

import ctypes
from typing import Any

__all__ = ["buffer_address"]


class PyBuffer(ctypes.Structure):
    """``Py_buffer`` (Include/pybuffer.h)."""

    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.py_object), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int),
                ("ndim", ctypes.c_int), ("format", ctypes.c_char_p),
                ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_get = ctypes.pythonapi["PyObject_GetBuffer"]  # [] makes a private function object
_get.argtypes = [ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int]
_get.restype = ctypes.c_int
_release = ctypes.pythonapi["PyBuffer_Release"]
_release.argtypes = [ctypes.POINTER(PyBuffer)]
_release.restype = None


def buffer_address(obj: Any) -> int:
    """Address of the first byte of ``obj``'s buffer (0 for an empty one).

    Raises:
        TypeError: ``obj`` does not support the buffer protocol.
    """
    b = PyBuffer()
    if _get(obj, ctypes.byref(b), 0) != 0:
        raise TypeError("not a buffer")
    try:
        return int(b.buf or 0)
    finally:
        _release(ctypes.byref(b))
