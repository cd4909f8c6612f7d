"""How big a run is, without building it: its data set's shape (`corrgd.data.catalog`), its
memory as one member of a group, and how many members fit on a device (the default of
`corrgd sweep --group-size`).

Everything here is arithmetic on `corrgd.architectures` (no torch import), so a dry
run of a large grid answers at once.
"""

from __future__ import annotations

import math
import os

from corrgd.architectures import LayerShape, layer_shapes, network_input
from corrgd.config import RunConfig
from corrgd.data import catalog
from corrgd.data.catalog import DATASET_SHAPES, DatasetShape

__all__ = ["DATASET_SHAPES", "DatasetShape", "auto_group_size", "dataset_shape", "free_bytes",
           "layers_of", "member_bytes"]

BYTES = 4  # float32
MEMORY_SHARE = 0.5  # of the device's free memory a worker sizes its groups for
MAX_GROUP = {"cpu": 32, "cuda": 128}  # beyond these, larger groups stop paying off


def dataset_shape(config: RunConfig) -> DatasetShape:
    """The splits, input shape and outputs of a run's data set with its `data` options."""
    return catalog.dataset_shape(config.dataset, config.data)


def layers_of(config: RunConfig) -> list[LayerShape]:
    """The weight layers of a run's network, for its data set's inputs."""
    data = dataset_shape(config)
    return layer_shapes(config.network, network_input(config.network, data.input_shape),
                        data.outputs, padding=config.padding, **config.architecture_options())


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
    train = config.batch_size * (2 * inputs + 6 * units * min(passes, 3))
    evaluation = config.eval_batch_size * (2 * inputs + 2 * units)
    return BYTES * (copies * params + decor + max(train, evaluation))


def free_bytes(device: str) -> int:
    """Free memory of a device: a GPU's (torch.cuda.mem_get_info), else this machine's
    available RAM."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index
        return int(torch.cuda.mem_get_info(index if index is not None else 0)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def auto_group_size(config: RunConfig, device: str, free: int | None = None) -> int:
    """Members per group on `device`: as many as fit in half its free memory, at most
    `MAX_GROUP` for the device type, at least one."""
    free = free_bytes(device) if free is None else free
    fits = int(MEMORY_SHARE * free // max(1, member_bytes(config)))
    cap = MAX_GROUP["cuda" if device.startswith("cuda") else "cpu"]
    return max(1, min(cap, fits))
