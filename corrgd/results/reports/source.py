"""Which sweep a report is about, and its runs and epochs out of the database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from corrgd.results.reports import ReportError
from corrgd.results.reports.progress import ENDED

if TYPE_CHECKING:
    from corrgd.storage import ResultsDB


def sweep_names(db: ResultsDB) -> list[str]:
    return [str(s) for s in db.list_sweeps()["sweep"]]


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "none; run `corrgd sweep SPEC` first"


def run_first(sweeps: list[str]) -> str:
    """How to make the missing `sweeps`: `corrgd sweep sweeps/NAME.yaml` where that spec is
    here (the papers' sweeps are), else a spec of that name."""
    commands = [f"`corrgd sweep sweeps/{s}.yaml`" if Path(f"sweeps/{s}.yaml").is_file()
                else f"`corrgd sweep SPEC` with a spec named {s}" for s in sweeps]
    return "run " + " and ".join(commands) + " first"


def resolve_sweep(db: ResultsDB, sweep: str | None, *, preferred: str | None = None) -> str:
    """``sweep`` if the database has it; without one, the only sweep (or ``preferred``)."""
    names = sweep_names(db)
    if sweep is not None:
        if sweep not in names:
            raise ReportError(f"no sweep {sweep!r} in the database (sweeps: {_listing(names)})")
        return sweep
    if len(names) == 1:
        return names[0]
    if preferred is not None and preferred in names:
        return preferred
    if not names:
        raise ReportError(f"the database has no sweeps ({_listing(names)})")
    raise ReportError(f"the database has {len(names)} sweeps; choose one with --sweep: "
                      f"{_listing(names)}")


def load(db: ResultsDB, sweep: str, *, diagnostics: bool = False
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of ``sweep`` and their per-epoch metrics (diagnostics only if asked)."""
    return db.runs_frame(sweep), db.epochs_frame(sweep, diagnostics=diagnostics)


def completion(db: ResultsDB) -> dict[str, tuple[int, int]]:
    """Per sweep: (runs that have ended, total runs); ended: `progress.ENDED`."""
    counts = db.sweep_counts()
    return {str(r["sweep"]): (int(sum(r[s] for s in ENDED)), int(r["total"]))
            for _, r in counts.iterrows()}
