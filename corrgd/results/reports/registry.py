"""Table ids for `corrgd report --table ID`. (The figure ids, the papers' figures, are in
`corrgd.experiments.registry`.)"""

from __future__ import annotations

from corrgd.results.reports.peaks import SPREAD

TABLES = {"peak": "peak train and test accuracy per curve, mean " + SPREAD
                  + " (NPD Tables 3-4)",
          "2": "forward and decor LRs with the best validation score per curve "
               "(CRGD Table 2; default sweep table2)"}
