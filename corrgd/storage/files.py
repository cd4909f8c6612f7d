"""Files corrgd writes (figures, tables, exports, checkpoints), written so that a crash or a
full disk leaves either the old file or the new one, never a part of one."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write `path` by `write(temporary)`, a file beside it with the same suffix, then rename
    that into place. On any error the temporary file is removed, the old file stays as it
    was, and the error (an OSError names the file) goes on."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        if e.filename is None:  # a failed write() names no file: name the one meant
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def nearest_existing(path: str | Path) -> Path:
    """`path` made absolute, or its nearest folder that exists (where a file system can be
    asked about a file yet to be written)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
