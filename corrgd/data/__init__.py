"""Data sets for the experiments: ``load_dataset(name, ...) -> DataSplits``.

Every set comes as whole tensors (``Split.x``, ``Split.y``) plus batch-wise transforms that
turn stored inputs into float32 model inputs; see ``DataSplits`` for the contract. Targets are
int64 class labels ``(N,)`` or, for regression sets, float32 ``(N, k)`` (``DataSplits.task``).
"""

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
