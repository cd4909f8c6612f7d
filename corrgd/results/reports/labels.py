"""Display names and orderings: how data sets, networks and curves are written in reports.

Everything that turns a stored axis value (``cifar10``, ``crgd-dense``, ``decor=True``)
into the words on a figure or table lives here, so that figures and tables agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

DATASETS = {
    "digits": "Digits",
    "synthetic-correlated": "Synthetic",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "tiny-imagenet": "Tiny ImageNet",
}
NETWORKS = {
    "mlp": "MLP",
    "crgd-dense": "Dense",
    "npd-fc": "FC",
    "copi-mnist": "FC",
    "copi-cifar": "FC",
    "convnet": "Conv",
    "crgd-conv": "Conv",
    "npd-conv": "ConvNet",
    "npd-tiny-conv": "ConvNet",
}
ALGORITHMS = {"bp": "BP", "fa": "FA", "dfa": "DFA", "np": "NP", "anp": "ANP", "inp": "INP",
              "copi": "COPI"}
METRIC_NAMES = {"acc": "accuracy (%)", "loss": "loss"}
SPLIT_NAMES = {"train": "Train", "val": "Validation", "test": "Test"}

# Other swept settings, written the way a reader of the papers expects.
_EXTRA_FORMATS: dict[str, Callable[[Any], str]] = {
    "depth": lambda v: "1 layer" if v == 0 else f"{v} hidden layer{'s' * (v != 1)}",
    "np_samples": lambda v: f"{v} sample{'s' * (v != 1)}",
    "noisy_baseline": lambda v: "noisy baseline" if v else "clean baseline",
    "copi_feedback": lambda v: f"{str(v).upper()} feedback",
    "hidden": lambda v: "hidden " + "-".join(str(w) for w in v),
    "width": lambda v: f"width {v}",
}


def _order(table: dict[str, str], value: Any) -> tuple[int, str]:
    keys = list(table)
    return (keys.index(value), "") if value in keys else (len(keys), str(value))


def dataset_label(name: Any) -> str:
    return DATASETS.get(name, str(name))


def network_label(name: Any) -> str:
    return NETWORKS.get(name, str(name))


def algorithm_label(name: Any) -> str:
    return ALGORITHMS.get(name, str(name).upper())


def extra_label(name: str, value: Any) -> str:
    """A swept setting other than the standard axes, e.g. ``np_samples=10`` -> ``10 samples``."""
    if is_missing(value):
        return f"no {name}"
    try:
        return _EXTRA_FORMATS[name](value)
    except (KeyError, TypeError, ValueError):
        return f"{name}={value}"


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def curve_label(algorithm: Any, decor: Any, extras: Iterable[tuple[str, Any]] = ()) -> str:
    """E.g. ``BP+decor``, ``ANP+decor (10 samples)``: the convention of `RunConfig.label`."""
    text = algorithm_label(algorithm) + ("+decor" if decor is True else "")
    details = [extra_label(k, v) for k, v in extras]
    return text + (f" ({', '.join(details)})" if details else "")


def family_label(algorithm: Any, extras: Iterable[tuple[str, Any]] = ()) -> str:
    """A curve without its decor flag: the plain and decorrelated lines share it (and a colour)."""
    return curve_label(algorithm, False, extras)


def panel_label(dataset: Any, network: Any, extras: Iterable[tuple[str, Any]] = ()) -> str:
    """E.g. ``CIFAR-10 (Dense)``, ``CIFAR-10 (FC, 3 hidden layers)``: CRGD Table 2's headers."""
    inside = [network_label(network), *(extra_label(k, v) for k, v in extras)]
    return f"{dataset_label(dataset)} ({', '.join(inside)})"


DIAGNOSTIC_NAMES = {"offdiag_corr": "residual |correlation|",
                    "input_offdiag_corr": "input |correlation|", "gain": "gain",
                    "norm_ratio": "norm ratio", "angle_to_bp": "angle to BP (°)",
                    "feedback_angle": "angle W to B (°)"}


def metric_label(metric: str) -> str:
    """``test_acc`` -> ``Test accuracy (%)``; ``angle_to_bp@2`` -> ``Angle to BP (°), layer 2``."""
    name, _, layer = metric.partition("@")
    if name in DIAGNOSTIC_NAMES:
        where = f", layer {layer}" if layer else " (mean over layers)"
        label = DIAGNOSTIC_NAMES[name]
        return label[0].upper() + label[1:] + where
    split, _, short = metric.partition("_")
    return f"{SPLIT_NAMES.get(split, split)} {METRIC_NAMES.get(short, short)}"


def metric_name(metric: str) -> str:
    """``test_acc`` -> ``test accuracy``: for titles, without the unit."""
    if metric.partition("@")[0] in DIAGNOSTIC_NAMES:
        return metric_label(metric).replace(" (°)", "")
    split, _, short = metric.partition("_")
    return f"{split} {METRIC_NAMES.get(short, short).removesuffix(' (%)')}"


def format_lr(value: Any) -> str:
    """Learning rates as in CRGD Table 2: ``1e-4``, ``2.5e-3``; missing -> an en dash."""
    if is_missing(value):
        return "–"
    value = float(value)
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "x"


def sort_key(column: str, value: Any) -> tuple[int, Any]:
    """Order of values within one column: the papers' order for known names, else natural."""
    if is_missing(value):
        return (2, "")
    if column == "dataset":
        return (0, _order(DATASETS, value))
    if column == "network":
        return (0, _order(NETWORKS, value))
    if column == "algorithm":
        return (0, _order(ALGORITHMS, value))
    if column == "decor":
        return (0, bool(value))
    if isinstance(value, bool | int | float):
        return (0, float(value))
    return (1, str(value))
