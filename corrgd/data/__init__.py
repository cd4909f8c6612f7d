"""Data sets for the experiments: ``load_dataset(name, ...) -> DataSplits``.

Every set comes as whole tensors (``Split.x``, ``Split.y``) plus batch-wise transforms that
turn stored inputs into float32 model inputs; see ``DataSplits`` for the contract. Targets are
int64 class labels ``(N,)`` or, for regression sets, float32 ``(N, k)`` (``DataSplits.task``).

The names below are imported on first use, so that ``corrgd.data.catalog`` (what each set
is, for validating configs) can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corrgd.data.errors import DataNotFoundError
    from corrgd.data.registry import (
        DATASETS,
        REGRESSION_DATASETS,
        dataset_names,
        dataset_task,
        default_data_dir,
        load_dataset,
    )
    from corrgd.data.splits import DataSplits, Split, Task
    from corrgd.data.transforms import BatchTransform

_HOMES = {
    "DataNotFoundError": "corrgd.data.errors",
    "DATASETS": "corrgd.data.registry",
    "REGRESSION_DATASETS": "corrgd.data.registry",
    "dataset_names": "corrgd.data.registry",
    "dataset_task": "corrgd.data.registry",
    "default_data_dir": "corrgd.data.registry",
    "load_dataset": "corrgd.data.registry",
    "DataSplits": "corrgd.data.splits",
    "Split": "corrgd.data.splits",
    "Task": "corrgd.data.splits",
    "BatchTransform": "corrgd.data.transforms",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "DATASETS",
    "REGRESSION_DATASETS",
    "BatchTransform",
    "DataNotFoundError",
    "DataSplits",
    "Split",
    "Task",
    "dataset_names",
    "dataset_task",
    "default_data_dir",
    "load_dataset",
]
