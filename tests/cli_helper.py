"""The CLI run in-process from a given folder, as the CLI tests call it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from corrgd.cli import app


def cli(*args: str, cwd: Path, input: str | None = None, env: dict[str, str] | None = None,
        columns: int = 250) -> Any:
    """`corrgd ARGS` in folder `cwd`, in a terminal `columns` wide (`env` on top): its
    typer result."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args), input=input,
                                  env={"COLUMNS": str(columns), **(env or {})})
    finally:
        os.chdir(old)
