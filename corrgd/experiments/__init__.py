"""The papers' figures: which there are, and those computed on the spot rather than read
from a sweep.

    registry.py   figure ids: the papers' figures, the sweeps each needs, what makes it
    report.py     what `corrgd report --figure ID` does: dispatch on the registry
    listing.py    what `corrgd report --list` does (no torch, no matplotlib)

One module per computed figure, each with ``compute_*`` (the numbers: arrays and
frames, no plotting), ``draw_*`` (a matplotlib figure from those numbers) and
``write_*`` (the figure as PNG, PDF and SVG and its numbers as CSV, under
``out/figures``, by `corrgd.results.reports.figures.save`):

    crgd2.py      CRGD Fig. 2: GD on correlated vs decorrelated inputs
    crgd3.py      CRGD Fig. 3: CRGD rule vs anti-Hebbian decorrelation
    npd2.py       NPD Fig. 2 (and Fig. 6): NP / ANP / INP vs BP angles vs noise samples
    npd7.py       NPD Fig. 7: those angles vs the noise variance σ², float32 and float64
    copi3.py      COPI Fig. 3: from checkpoints of finished COPI runs
"""
