"""The maths: decorrelated layers, learning rules, optimizers, losses, the papers'
networks, one training step, diagnostics. Torch only: it knows nothing of specs,
databases or the command line.

    nn/            decorrelating matrices, decorrelated dense and conv layers, the network
    rules/         BP, FA, DFA, NP, INP, ANP, COPI: a batch -> gradients
    optim.py       Adam and SGD with hyperparameters per member
    losses.py      per-sample losses
    streams.py     a run's named random streams
    kernels.py     the CPU and GPU kernel sets (CORRGD_KERNELS)
    architectures.py  the papers' networks as layer specs (no torch: specs size them)
    models.py      build them
    training.py    one training step, one evaluation
    diagnostics.py what an epoch logs besides loss and accuracy
    checks.py      the constructors' parameter checks (a clear error, at the edge)

This package imports nothing itself, so `corrgd.learn.architectures` loads without torch.
"""
