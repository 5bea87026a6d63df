"""A minimal reader for MATLAB level-5 ``.mat`` files: numeric arrays only.

Enough for the official SVHN files (a uint8 image array and a double label array), written
from the public "MAT-File Format" description: a 128-byte header, then data elements, each an
8-byte tag (type, byte count) or a 4-byte "small" tag, padded to 8 bytes; ``miCOMPRESSED``
elements hold one zlib-compressed element; an ``miMATRIX`` element holds array flags,
dimensions, a name and the real part, stored column-major. Cell, struct, sparse, char and
complex arrays are skipped. HDF5-based v7.3 files are refused with a clear error.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Literal

import numpy as np

_MI_MATRIX = 14
_MI_COMPRESSED = 15
_MI_DTYPES: dict[int, str] = {
    1: "i1",
    2: "u1",
    3: "i2",
    4: "u2",
    5: "i4",
    6: "u4",
    7: "f4",
    9: "f8",
    12: "i8",
    13: "u8",
}
# mxClass -> numpy dtype for numeric classes
_MX_DTYPES: dict[int, str] = {
    6: "f8",
    7: "f4",
    8: "i1",
    9: "u1",
    10: "i2",
    11: "u2",
    12: "i4",
    13: "u4",
    14: "i8",
    15: "u8",
}
_COMPLEX_FLAG = 0x0800


class _Stream:
    """Bounds-checked reading of data elements from a byte buffer."""

    def __init__(self, data: bytes, order: Literal["<", ">"], path: Path) -> None:
        self.data, self.order, self.path = data, order, path

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: corrupt or truncated MATLAB file ({what})")

    def tag(self, pos: int) -> tuple[int, int, int, int]:
        """(type, data start, data end, next element position) of the element at ``pos``.

        The next position is padded to 8 bytes, except after a compressed element."""
        if pos + 8 > len(self.data):
            raise self.fail(f"element tag at byte {pos} past the end")
        first, second = (int(v) for v in np.frombuffer(self.data, f"{self.order}u4", 2, pos))
        if first >> 16:  # small data element: type and size packed in 4 bytes
            if first >> 16 > 4:
                raise self.fail(f"small element at byte {pos} claims {first >> 16} > 4 bytes")
            return first & 0xFFFF, pos + 4, pos + 4 + (first >> 16), pos + 8
        end = pos + 8 + second
        if end > len(self.data):
            raise self.fail(f"element at byte {pos} needs {second} bytes, file too short")
        padded = end if first == _MI_COMPRESSED else pos + 8 + (second + 7) // 8 * 8
        return first, pos + 8, end, padded

    def numbers(self, pos: int) -> tuple[np.ndarray, int]:
        """The numeric payload of the element at ``pos`` and the position after it (padded)."""
        mi_type, start, end, after = self.tag(pos)
        nbytes = end - start
        if mi_type not in _MI_DTYPES:
            raise self.fail(f"unsupported data type {mi_type} at byte {pos}")
        dtype = np.dtype(_MI_DTYPES[mi_type]).newbyteorder(self.order)
        if nbytes % dtype.itemsize:
            raise self.fail(f"{nbytes} bytes is not a whole number of {dtype} values")
        values = np.frombuffer(self.data, dtype, nbytes // dtype.itemsize, start)
        return values, after


def _parse_matrix(stream: _Stream, start: int) -> tuple[str, np.ndarray | None]:
    """Name and value (None if not a real numeric array) of the miMATRIX body at ``start``."""
    flags, pos = stream.numbers(start)
    if flags.size < 1:
        raise stream.fail("missing array flags")
    mx_class = int(flags[0]) & 0xFF
    dims, pos = stream.numbers(pos)
    name_bytes, pos = stream.numbers(pos)
    name = name_bytes.astype(np.uint8).tobytes().decode("ascii", "replace")
    if mx_class not in _MX_DTYPES or int(flags[0]) & _COMPLEX_FLAG:
        return name, None
    real, _ = stream.numbers(pos)
    shape = tuple(int(d) for d in dims)
    if int(np.prod(shape)) != real.size:
        raise stream.fail(f"variable {name!r}: {real.size} values for dimensions {shape}")
    value = real.astype(np.dtype(_MX_DTYPES[mx_class]).newbyteorder("="), copy=False)
    return name, value.reshape(shape, order="F")


def read_mat(path: Path, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Read the real numeric variables of a MATLAB v5 ``.mat`` file.

    Args:
        path: the file.
        names: variables to return (all numeric ones if None).

    Returns:
        name -> array with MATLAB's dimensions (column-major order preserved, i.e. an array
        of shape (32, 32, 3, N) indexes as X[row, col, channel, sample]).

    Raises:
        ValueError: naming the file, if it is not a v5 file, is truncated or corrupt.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:8] == b"\x89HDF\r\n\x1a\n" or data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; save with -v7")
    if len(data) < 128:
        raise ValueError(f"{path}: too short for a MATLAB file header")
    order: Literal["<", ">"]
    if data[126:128] == b"IM":
        order = "<"
    elif data[126:128] == b"MI":
        order = ">"
    else:
        raise ValueError(f"{path}: not a MATLAB v5 .mat file (no endian indicator)")
    out: dict[str, np.ndarray] = {}
    stream = _Stream(data, order, path)
    pos = 128
    while pos < len(data):
        mi_type, start, end, after = stream.tag(pos)
        if mi_type == _MI_COMPRESSED:
            try:
                inner = zlib.decompress(data[start:end])
            except zlib.error as err:
                raise stream.fail(f"bad compressed element at byte {pos}: {err}") from err
            sub = _Stream(inner, order, path)
            sub_type, sub_start, _, _ = sub.tag(0)
            if sub_type == _MI_MATRIX:
                name, value = _parse_matrix(sub, sub_start)
                if value is not None and (names is None or name in names):
                    out[name] = value
            pos = after
            continue
        if mi_type == _MI_MATRIX:
            name, value = _parse_matrix(stream, start)
            if value is not None and (names is None or name in names):
                out[name] = value
        pos = after
    return out
