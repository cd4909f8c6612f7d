"""`corrgd report --list`: every figure and table and how complete the sweeps they need
are. Its own module so that listing loads no plotting or training code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table as RichTable

from corrgd.experiments.registry import FIGURES, ComputedFigure
from corrgd.results.reports import source
from corrgd.results.reports.registry import TABLES

if TYPE_CHECKING:
    from corrgd.storage import ResultsDB


def report_list(db: ResultsDB | None, console: Console) -> None:
    """Every figure id and table with what it needs, and how complete those sweeps are
    (`db` None: no database yet)."""
    done = source.completion(db) if db is not None else {}

    def needs(sweeps: tuple[str, ...]) -> str:
        parts = []
        for s in sweeps:
            if s not in done:
                parts.append(f"{s} [red](not in database)[/]")
            else:
                finished, total = done[s]
                colour = "green" if finished == total and total else "yellow"
                parts.append(f"{s} [{colour}]({finished}/{total} finished)[/]")
        return ", ".join(parts)

    table = RichTable(title="figures: corrgd report --figure ID", title_justify="left")
    for column in ("id", "paper", "description", "needs"):
        table.add_column(column)
    for spec in FIGURES.values():
        if isinstance(spec, ComputedFigure) and not spec.needs_db:
            what = "nothing (computed on the spot)"
        else:
            what = needs(spec.sweeps)
            if isinstance(spec, ComputedFigure):
                what += " checkpoints"
        table.add_row(spec.id, spec.paper, spec.description, what)
    for name in done:
        table.add_row(name, "sweep", "test accuracy of this sweep's curves",
                      needs((name,)))
    console.print(table)

    tables = RichTable(title="tables: corrgd report --table ID [--sweep NAME]",
                       title_justify="left")
    for column in ("id", "description"):
        tables.add_column(column)
    for key, text in TABLES.items():
        tables.add_row(key, text)
    console.print(tables)
