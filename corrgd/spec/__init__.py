"""What to run: one run's validated settings, sweep specs and their runs, what a run
costs and how many train together. No torch, no database.

    config.py   RunConfig: one run's settings, validated; its identity (hash, group key)
    sweeps.py   YAML spec -> runs (expand), or counted without expanding (plan)
    sizing.py   a run's memory and MACs; the group size a device fits
    cost.py     what a sweep costs (`corrgd sweep --dry-run`) and the order runs queue in
"""
