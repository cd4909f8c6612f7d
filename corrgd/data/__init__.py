"""Data sets for the experiments: ``load_dataset(name, ...) -> DataSplits``.

Every set comes as whole tensors (``Split.x``, ``Split.y``) plus batch-wise transforms that
turn stored inputs into float32 model inputs; see ``DataSplits`` for the contract.
"""

from corrgd.data.errors import DataNotFoundError
from corrgd.data.registry import (
    DATASETS,
    dataset_names,
    default_data_dir,
    load_dataset,
)
from corrgd.data.splits import DataSplits, Split
from corrgd.data.transforms import BatchTransform

__all__ = [
    "DATASETS",
    "BatchTransform",
    "DataNotFoundError",
    "DataSplits",
    "Split",
    "dataset_names",
    "default_data_dir",
    "load_dataset",
]
