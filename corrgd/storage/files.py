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
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
