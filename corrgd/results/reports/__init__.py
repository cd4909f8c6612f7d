"""Reports: tables and figures of the papers, from the results database.

One concept per module, data flowing downwards::

    source.py     which sweep; runs and epochs out of the database
    curves.py     which runs form a curve, a panel, a line; choosing among LRs
    progress.py   how complete each curve is ("FA+decor: 3 of 5 seeds finished")
    envelopes.py  pure pandas: per-epoch mean / min / max over seeds
    figures.py    matplotlib (Agg, no pyplot): envelope figures; the figure style and
                  PNG/PDF/SVG + CSV saving shared with `corrgd.experiments`
    tables.py     a table's numbers and display; rich, Markdown, CSV and LaTeX writers
    best_params.py  CRGD Table 2: the selected forward and decor LRs per curve
    peaks.py      NPD Tables 3-4: peak train / test accuracy per curve
    registry.py   table ids
    commands.py   what `corrgd best-params` and `corrgd report --table/--compare` do;
                  the sweep figures
    labels.py     display names and orderings shared by all of the above

The papers' figure ids, and the figures computed on the spot, are in
`corrgd.experiments`.
"""

from __future__ import annotations


class ReportError(ValueError):
    """A report cannot be made; the message is one line for the user. A `ValueError`: what
    was asked for (a sweep, a metric, ...) does not fit the results."""
