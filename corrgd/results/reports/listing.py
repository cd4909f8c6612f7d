"""TEMPORARY: `corrgd report --list` is `corrgd.experiments.listing.report_list`; this
module goes when corrgd/cli.py imports it from there."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from corrgd.storage import ResultsDB


def report_list(db: ResultsDB | None, console: Console) -> None:
    from corrgd.experiments.listing import report_list

    report_list(db, console)
