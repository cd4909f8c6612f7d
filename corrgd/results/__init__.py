"""What the database says: LR selection and peaks (analysis.py), the tables of `corrgd
status`, `runs`, `show` and `export` (listings.py), the papers' figures and tables of
sweeps (reports/). Pandas, matplotlib and rich; no torch.
"""
