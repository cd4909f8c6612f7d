"""Execution: train groups of runs, checkpoint them, drain the queue, start and watch
workers where they run (local processes or SLURM).

    runner.py     a group of runs: build, train, evaluate, checkpoint, report each epoch
    worker.py     claim groups from the queue, train them, log every epoch
    launch.py     start workers for a sweep and follow them
    executors/    local processes or a SLURM job array, behind one interface
    malloc.py     workers keep the memory they free
"""

# What a worker does unless told otherwise (`corrgd sweep`, `corrgd worker`, the API).
DEFAULT_LEASE = 120.0  # seconds without a heartbeat before a run is handed to another worker
DEFAULT_CHECKPOINT_DIR = "results/checkpoints"  # on storage every worker can read
DEFAULT_MAX_ATTEMPTS = 3  # claims of a run whose workers keep dying before it is failed
