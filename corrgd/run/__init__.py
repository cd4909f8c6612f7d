"""Execution: train groups of runs, checkpoint them, drain the queue, start and watch
workers where they run (local processes or SLURM).

    runner.py     a group of runs: build, train, evaluate, checkpoint, report each epoch
    worker.py     claim groups from the queue, train them, log every epoch
    launch.py     start workers for a sweep and follow them
    executors/    local processes or a SLURM job array, behind one interface
    malloc.py     workers keep the memory they free
"""
