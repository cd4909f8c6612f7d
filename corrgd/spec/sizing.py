"""How big a run is, without building it: its data set's shape (`corrgd.data.catalog`), its
memory as one member of a group, and how many members fit on a device (the default of
`corrgd sweep --group-size`).

Everything here is arithmetic on `corrgd.learn.architectures` (no torch import), so a dry
run of a large grid answers at once.
"""

from __future__ import annotations

import math

from corrgd.data import catalog
from corrgd.data.catalog import DATASET_SHAPES, DatasetShape
from corrgd.learn.architectures import LayerShape, layer_shapes, network_input
from corrgd.spec.config import RunConfig

__all__ = ["DATASET_SHAPES", "PLANNING_GPU_BYTES", "DatasetShape", "auto_group_size",
           "dataset_shape", "forward_macs", "layers_of", "member_bytes", "passes_per_sample",
           "step_macs"]

BYTES = 4  # float32
MEMORY_SHARE = 0.5  # of the device's free memory a worker sizes its groups for
MAX_GROUP = {"cpu": 32, "cuda": 128}  # beyond these, larger groups stop paying off
PLANNING_GPU_BYTES = 80 * 2**30  # what a dry run sizes groups for on a GPU it cannot see
# A CPU core is busy with a group's training step of this many multiply-accumulates; more
# members only make the step longer. Measured on a 2-core Xeon (digits, decorrelated BP,
# batch 64): members of a 2 x 256 MLP (42 M MACs a step each) train 1.9x faster per run in
# eights than alone; of a 2 x 512 MLP (159 M) 1.3x in fours and 1.0x in eights; of a
# 2 x 1024 MLP (619 M) 0.9x in eights.
CPU_GROUP_STEP_MACS = 6e8


def dataset_shape(config: RunConfig) -> DatasetShape:
    """The splits, input shape and outputs of a run's data set with its `data` options."""
    return catalog.dataset_shape(config.dataset, config.data)


def layers_of(config: RunConfig) -> list[LayerShape]:
    """The weight layers of a run's network, for its data set's inputs."""
    data = dataset_shape(config)
    return layer_shapes(config.network, network_input(config.network, data.input_shape),
                        data.outputs, padding=config.padding, **config.architecture_options())


def forward_macs(config: RunConfig) -> tuple[int, int]:
    """(MACs of one forward pass per sample, number of weight layers)."""
    layers = layers_of(config)
    macs = 0
    for layer in layers:
        macs += layer.positions * layer.out * layer.fan_in
        if config.decor:
            # decorrelated inputs: d² per row (dense) or per patch (conv, folded: once)
            macs += layer.fan_in**2 * (layer.positions if layer.kind == "dense" else 1)
    return macs, len(layers)


def passes_per_sample(config: RunConfig, layers: int) -> float:
    """Forward-pass equivalents per training sample (a backward pass counts as two)."""
    k = config.np_samples
    return {"np": 3 + k, "anp": 3 + k, "inp": 3 + k * layers}.get(config.algorithm, 3)


def batch_samples(config: RunConfig) -> int:
    """Samples in a training batch: `batch_size`, or the training split where that is
    smaller (a batch larger than the data is all of it)."""
    return max(1, min(config.batch_size, dataset_shape(config).train - config.val_size))


def step_macs(config: RunConfig) -> float:
    """MACs of one member's training step: a batch through its rule's passes."""
    macs, layers = forward_macs(config)
    return batch_samples(config) * macs * passes_per_sample(config, layers)


def member_bytes(config: RunConfig) -> int:
    """Device memory one run needs as a member of a group, roughly: its weights with their
    gradients, optimizer state and feedback matrices, its decorrelating matrices with the
    temporaries of their update, and the activations of a training step or an evaluation
    chunk, whichever is larger."""
    layers = layers_of(config)
    params = sum(layer.fan_in * layer.out + layer.out for layer in layers)
    copies = 4 + (config.algorithm in ("fa", "dfa") or config.copi_feedback == "fa")
    decor = sum(4 * layer.fan_in**2 for layer in layers) if config.decor else 0
    units = sum(layer.out * layer.positions for layer in layers)
    inputs = math.prod(dataset_shape(config).input_shape)
    passes = {"np": 2 + config.np_samples, "anp": 2 + config.np_samples,
              "inp": 1 + config.np_samples * len(layers)}.get(config.algorithm, 1)
    train = batch_samples(config) * (2 * inputs + 6 * units * min(passes, 3))
    evaluation = config.eval_batch_size * (2 * inputs + 2 * units)
    return BYTES * (copies * params + decor + max(train, evaluation))


def auto_group_size(config: RunConfig, device: str, free: int) -> int:
    """Members per group on `device` with `free` bytes of memory free
    (`corrgd.run.devices.free_bytes`): as many as fit in half of them, at most `MAX_GROUP`
    for the device type, at least one. On a CPU also no more than keep a core busy with
    one step (`CPU_GROUP_STEP_MACS`): a network whose step alone does that trains one run
    at a time."""
    fits = int(MEMORY_SHARE * free // max(1, member_bytes(config)))
    if device.startswith("cuda"):
        return max(1, min(MAX_GROUP["cuda"], fits))
    busy = int(CPU_GROUP_STEP_MACS // max(1.0, step_macs(config)))
    return max(1, min(MAX_GROUP["cpu"], fits, busy))
