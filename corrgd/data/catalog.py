"""What every data set is, without loading it (and without importing torch): its task, the
sizes of its official splits, its input shape and outputs, and the options its loader takes,
with their types and ranges.

`corrgd.spec.config` checks a run's `dataset` and `data` options here,
`corrgd.spec.sizing` sizes runs from it, and `corrgd.data.registry` maps the same names to loaders
(tests/test_validation.py checks that the options below are exactly the loaders' keyword
parameters, so the two cannot drift apart).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")

LOADER_ARGUMENTS = ("root", "download")
"""Loader parameters that `load_dataset` passes itself: not data options."""
NOT_DATA_OPTIONS = ("data_dir", "val_size", "seed", "download", "flatten")
"""`load_dataset` keywords that are not data options: where the files are and whether to
fetch them, the validation hold-out (a run's own `val_size` and `seed`) and the input
layout (the network's)."""


class OptionError(ValueError):
    """A data option that the data set's loader would refuse; `option` names it."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(message)


@dataclass(frozen=True)
class Option:
    """One option of a data set: its kind, default and allowed range.

    kind: "int", "float", "bool", "choice" (one of `choices`) or "shape" ([C, H, W]).
    low/high: inclusive bounds; `high_open` excludes `high`.
    nullable: null (None) is allowed too.
    """

    kind: Literal["int", "float", "bool", "choice", "shape"]
    default: Any = None
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def allowed(self) -> str:
        """The allowed values in words, e.g. 'a number in [0, 1)'."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = f"one of {', '.join(self.choices)}"
        elif self.kind == "shape":
            text = "[C, H, W], three integers >= 1"
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            text = noun + self._range()
        return text + (" or null" if self.nullable else "")

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            return f" in [{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f" >= {_num(self.low)}"
        if self.high is not None:
            return f" {'<' if self.high_open else '<='} {_num(self.high)}"
        return ""

    def accepts(self, value: Any) -> bool:
        """Whether `value` (as YAML gives it) is allowed."""
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "shape":
            return (isinstance(value, list | tuple) and len(value) == 3
                    and all(_is_int(v) and v >= 1 for v in value))
        if self.kind == "int" and not _is_int(value):
            return False
        if not _is_number(value):
            return False
        return self._in_range(value)

    def _in_range(self, value: float) -> bool:
        if self.low is not None and value < self.low:
            return False
        if self.high is None:
            return True
        return value < self.high if self.high_open else value <= self.high


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class DatasetShape:
    """The official splits of a data set as a run gets it: sizes, input shape (without the
    batch axis) and outputs (classes, or regression targets)."""

    train: int
    test: int
    input_shape: tuple[int, ...]
    outputs: int


@dataclass(frozen=True)
class DatasetInfo:
    """One data set: its task (None: the `task` option picks it), official split sizes,
    input shape and outputs (for the default options), and its loader's options."""

    description: str
    task: Task | None
    shape: DatasetShape
    options: Mapping[str, Option] = field(default_factory=dict)
    check: Callable[[Mapping[str, Any]], None] | None = None  # rules between options
    resolve: Callable[[DatasetShape, Mapping[str, Any]], DatasetShape] | None = None


LOAD_OPTIONS: dict[str, Option] = {"normalize": Option("bool", True)}
"""Options of `load_dataset` itself, allowed for every data set."""


def _synthetic_rules(options: Mapping[str, Any]) -> None:
    """The loader's rules between options of synthetic-correlated."""
    task = options.get("task", "classification")
    if options.get("shape") is not None and task != "classification":
        raise OptionError("shape", f"needs task classification (got task {task})")
    if task == "classification":
        for name in ("num_outputs", "noise", "standardize_targets"):
            if options.get(name):  # set (types and ranges are checked before)
                raise OptionError(name, f"needs task regression (got task {task}); "
                                        "classification takes num_classes")
    elif options.get("num_classes") is not None:
        raise OptionError("num_classes", "regression has no classes: give num_outputs "
                                         "(an integer >= 1)")


def _synthetic_shape(shape: DatasetShape, options: Mapping[str, Any]) -> DatasetShape:
    image = options.get("shape")
    inputs = tuple(int(v) for v in image) if image else (int(options.get("dim", 64)),)
    if options.get("task", "classification") == "regression":
        outputs = options.get("num_outputs") or 7
    else:
        outputs = options.get("num_classes") or 10
    return DatasetShape(int(options.get("n_train", shape.train)),
                        int(options.get("n_test", shape.test)), inputs, int(outputs))


def _tiny_imagenet_shape(shape: DatasetShape, options: Mapping[str, Any]) -> DatasetShape:
    crop = options.get("crop", 56)
    size = int(crop) if crop else 64
    return DatasetShape(shape.train, shape.test, (3, size, size), shape.outputs)


_STANDARDIZE = {"standardize_targets": Option("bool", False)}
MOST_SAMPLES = 10**8  # a generated set larger than this would not fit in memory anyway

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("scikit-learn's 8x8 handwritten digits (offline)", "classification",
                          DatasetShape(1437, 360, (1, 8, 8), 10)),
    "synthetic-correlated": DatasetInfo(
        "equicorrelated Gaussian inputs, labels or targets from a random linear teacher", None,
        DatasetShape(10000, 2000, (64,), 10),
        {"n_train": Option("int", 10_000, low=1, high=MOST_SAMPLES),
         "n_test": Option("int", 2_000, low=0, high=MOST_SAMPLES),
         "dim": Option("int", 64, low=2),
         "correlation": Option("float", 0.8, low=0, high=1, high_open=True),
         "task": Option("choice", "classification", choices=TASKS),
         "num_classes": Option("int", None, low=2, nullable=True),
         "num_outputs": Option("int", None, low=1, nullable=True),
         "noise": Option("float", 0.0, low=0),
         "standardize_targets": Option("bool", False),
         "data_seed": Option("int", 0, low=0),
         "shape": Option("shape", None, nullable=True)},
        check=_synthetic_rules, resolve=_synthetic_shape),
    "mnist": DatasetInfo("MNIST handwritten digits", "classification",
                         DatasetShape(60000, 10000, (1, 28, 28), 10)),
    "fashion-mnist": DatasetInfo("Fashion-MNIST", "classification",
                                 DatasetShape(60000, 10000, (1, 28, 28), 10)),
    "cifar10": DatasetInfo("CIFAR-10", "classification",
                           DatasetShape(50000, 10000, (3, 32, 32), 10)),
    "cifar100": DatasetInfo("CIFAR-100", "classification",
                            DatasetShape(50000, 10000, (3, 32, 32), 100)),
    "tiny-imagenet": DatasetInfo(
        "Tiny ImageNet, 64x64 images of 200 classes; `crop` (null: none) in training and "
        "evaluation", "classification", DatasetShape(100000, 10000, (3, 56, 56), 200),
        {"crop": Option("int", 56, low=1, high=64, nullable=True)},
        resolve=_tiny_imagenet_shape),
    "diabetes": DatasetInfo("scikit-learn's diabetes regression (offline)", "regression",
                            DatasetShape(353, 89, (10,), 1),
                            {"standardize_targets": Option("bool", True)}),
    "sarcos": DatasetInfo("SARCOS inverse dynamics (GPML), 7 torques", "regression",
                          DatasetShape(44484, 4449, (21,), 7), _STANDARDIZE),
}

DATASET_SHAPES: dict[str, DatasetShape] = {name: info.shape for name, info in DATASETS.items()}
NO_FILES = ("digits", "synthetic-correlated", "diabetes")
"""Data sets that need no files of their own: shipped in scikit-learn, or generated."""
"""The official splits of each data set (synthetic-correlated: with its default options)."""

REGRESSION_DATASETS = frozenset(n for n, info in DATASETS.items() if info.task == "regression")
"""Sets whose targets are always float32 ``(N, k)``."""
EITHER_TASK = frozenset(n for n, info in DATASETS.items() if info.task is None)
"""Sets whose ``task`` loader option picks classification (default) or regression."""


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def info(name: str) -> DatasetInfo:
    """The catalog entry of data set `name`; ValueError naming the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(dataset_names())}")
    return DATASETS[name]


def options_of(name: str) -> dict[str, Option]:
    """Every data option data set `name` takes: its loader's and `load_dataset`'s."""
    return {**info(name).options, **LOAD_OPTIONS}


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise `OptionError` for an option of data set `name` its loader would refuse: an
    unknown name (with the nearest known one), a wrong type or range, or a combination its
    loader does not take."""
    allowed = options_of(name)
    for key, value in options.items():
        if key not in allowed:
            raise OptionError(str(key), _unknown(name, str(key), list(allowed)))
        if not allowed[key].accepts(value):
            raise OptionError(str(key), f"must be {allowed[key].allowed()} (got {value!r})")
    check = info(name).check
    if check is not None:
        check(options)


def _unknown(name: str, key: str, allowed: list[str]) -> str:
    near = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {near[0]}?" if near else ";"
    return f"unknown option {key} of data set {name}{hint} allowed: {', '.join(allowed)}"


def dataset_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """The task of data set `name` loaded with `options`, without loading it."""
    entry = info(name)
    if entry.task is not None:
        return entry.task
    task = (options or {}).get("task", "classification")
    if task not in TASKS:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    return task


def dataset_shape(name: str, options: Mapping[str, Any] | None = None) -> DatasetShape:
    """Split sizes, input shape and outputs of data set `name` loaded with `options`."""
    entry = info(name)
    if entry.resolve is None:
        return entry.shape
    return entry.resolve(entry.shape, options or {})
