"""A reader for the IDX format of MNIST-style files (optionally gzip-compressed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# IDX type code (third byte of the header) -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file; ``.gz`` files are decompressed on the fly.

    Layout: two zero bytes, a type code, the number of dimensions ``n``, ``n`` big-endian
    uint32 sizes, then the values in row-major order.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (header {data[:4]!r})")
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    values = np.frombuffer(data, dtype, offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {values.size} values")
    return values.reshape(shape).astype(dtype.newbyteorder("="))
