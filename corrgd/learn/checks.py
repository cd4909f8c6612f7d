"""Parameter checks for the constructors of `corrgd.learn` (scikit-learn style: at the
edge, never in a training step): a TypeError for a value of the wrong kind, a ValueError
for one out of range, each naming the parameter, what it got and what is allowed."""

from __future__ import annotations

import math
import numbers

from torch import Tensor


def check_integer(name: str, value: object, minimum: int = 1) -> None:
    """Refuse anything but an integer >= `minimum` for parameter `name` (a bool is not an
    integer here): a TypeError for another type, a ValueError for a smaller one. For
    constructors (`corrgd.learn` checks its parameters there, never in a step)."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_flag(name: str, value: object, *, none: bool = False) -> None:
    """Refuse anything but True or False (or None where `none`) for parameter `name`: a
    TypeError (a text like 'no' is true to Python)."""
    if not (isinstance(value, bool) or none and value is None):
        allowed = "True, False or None" if none else "True or False"
        raise TypeError(f"{name} must be {allowed}, got {value!r}")


def check_number(name: str, value: object, low: float, high: float = math.inf,
                 closed: str = "left") -> None:
    """Refuse anything but a finite number from `low` to `high` for parameter `name`; `closed`
    says which ends are allowed: "left", "right", "both" or "neither" (a bool is not a
    number here; a one-element tensor is its value). A TypeError for another type, a
    ValueError for NaN, ±inf or a number outside."""
    left, right = closed in ("left", "both"), closed in ("right", "both")
    allowed = f"{'[' if left else '('}{low}, {high}{']' if right else ')'}"
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in {allowed}, got {value!r}")
    inside = (low < value or left and low == value) and (value < high or right and value == high)
    if not (inside and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number in {allowed}, got {value!r}")
