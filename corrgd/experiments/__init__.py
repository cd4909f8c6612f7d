"""The papers' figures computed on the spot rather than read from a sweep: CRGD Figs. 2-3,
NPD Figs. 2 and 7, COPI Fig. 3 (from finished runs' checkpoints).
"""
