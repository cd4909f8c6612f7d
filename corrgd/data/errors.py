"""The one error a loader raises when a data set's files are not where they should be."""

from __future__ import annotations


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with all whitespace runs collapsed to single spaces, cut to ``limit`` chars."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class DataNotFoundError(FileNotFoundError):
    """A data set's files are missing and could not be downloaded.

    The message is a single line: which files were expected where, and why no download
    happened (``reason``, e.g. "download disabled" or "download failed: <error>").
    """

    def __init__(self, name: str, expected: str, reason: str) -> None:
        self.name = name
        self.expected = expected
        self.reason = one_line(reason)
        super().__init__(
            f"{name}: expected {expected} ({self.reason}); set --data-dir or CORRGD_DATA"
        )

    def __reduce__(self) -> tuple[type[DataNotFoundError], tuple[str, str, str]]:
        # Rebuild from the three fields, so the error survives pickling (e.g. by a job runner).
        return type(self), (self.name, self.expected, self.reason)
