"""Arrays a loader decoded or split once, kept in one ``.npz`` file under the data folder."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np


def read_cache(cache: Path, keys: set[str] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None if there is none, it cannot be read or it lacks
    one of `keys` (the caller then makes the arrays again and overwrites it)."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return None if keys is not None and not keys <= arrays.keys() else arrays


def write_cache(cache: Path, arrays: dict[str, np.ndarray], what: str) -> None:
    """Write the cache atomically (workers may race to write it: each through its own
    temporary file); a read-only data folder only costs a warning."""
    partial_file = cache.with_name(f"{cache.name}.partial{os.getpid()}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with partial_file.open("wb") as f:
            np.savez(f, **arrays)
        os.replace(partial_file, cache)
    except OSError as error:
        partial_file.unlink(missing_ok=True)
        warnings.warn(f"could not cache {what} in {cache}: {error}", stacklevel=3)
