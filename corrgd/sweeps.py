"""Sweep specs: a YAML file of run settings where lists mean "sweep over".

    name: quickstart                 # optional, default: the file's stem
    description: BP, FA, NP with and without decorrelation on digits
    dataset: digits
    network: mlp
    hidden: [64, 64]                 # a list-valued setting: a list of lists sweeps it
    algorithm: [bp, fa, np]          # axis
    decor: [false, true]             # axis: decorrelation off / on
    decor_lr: [1.0e-3, 1.0e-4]       # axis (collapses to 0 where decor is off)
    lr: [1.0e-2, 1.0e-3]
    seed: [0, 1]
    epochs: 10
    select: {from: grid, metric: val_acc}   # optional: take lr / decor_lr from another
                                            # sweep's best runs, per curve
    grids:                                  # optional: a union of grids; each entry's
      - {network: mlp, algorithm: [bp, np]} # settings override the ones above
      - {network: convnet, algorithm: bp}

Every key other than name, description, select and grids is a field of
`RunConfig`. Expansion is the cartesian product of the axes (per grid);
duplicates (same config hash) are dropped. Errors are `SpecError`s naming the
file, the field and what is allowed, raised before anything is written anywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import ValidationError

from corrgd.config import CURVE_KEYS, RunConfig, field_names

RESERVED = ("name", "description", "select", "grids")
SELECT_METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss")
SELECTED_PARAMS = ("lr", "decor_lr")

# best(source_sweep, metric) -> [(curve conditions {dataset: .., network: .., algorithm: ..,
#                                  decor: .., and any other axis}, {"lr": .., "decor_lr": ..})]
BestParamsLookup = Callable[[str, str], list[tuple[dict[str, Any], dict[str, float]]]]


class SpecError(ValueError):
    """Invalid sweep spec: one line naming the file, the field and what is allowed."""

    def __init__(self, source: str, fieldname: str, message: str) -> None:
        self.source, self.field, self.message = source, fieldname, message
        super().__init__(f"{source}: {fieldname}: {message}")


@dataclass
class Grid:
    settings: dict[str, Any]  # every setting; the axes among them are lists
    axes: list[str]


@dataclass
class Sweep:
    name: str
    text: str
    source: str
    grids: list[Grid]
    select: dict[str, Any] | None = None
    description: str = ""

    @property
    def axes(self) -> list[str]:
        """Every setting swept in some grid, in order of first appearance."""
        return list(dict.fromkeys(a for g in self.grids for a in g.axes))


def load_spec(path: str | Path) -> Sweep:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(str(path), "file", f"cannot read: {e.strerror}") from None
    return parse_spec(text, source=str(path), default_name=path.stem)


def parse_spec(text: str, *, source: str = "<spec>", default_name: str = "sweep") -> Sweep:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(source, where, f"invalid YAML: {problem}") from None
    if not isinstance(doc, dict):
        raise SpecError(source, "spec", "must be a mapping of settings (key: value)")
    _check_keys(doc, source, "", RESERVED)
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise SpecError(source, "name", "must be a non-empty string")
    base = {k: v for k, v in doc.items() if k not in RESERVED}
    entries = doc.get("grids", [{}])
    if not isinstance(entries, list) or not entries:
        raise SpecError(source, "grids", "must be a non-empty list of mappings of settings")
    grids = []
    for i, entry in enumerate(entries):
        where = f"grids[{i}]." if "grids" in doc else ""
        if not isinstance(entry, dict):
            raise SpecError(source, f"grids[{i}]", "must be a mapping of settings")
        _check_keys(entry, source, where, ())
        grids.append(_grid({**base, **entry}, source, where))
    select = doc.get("select")
    if select is not None:
        _check_select(select, source)
    return Sweep(name=name, text=text, source=source, grids=grids, select=select,
                 description=str(doc.get("description", "")))


def _check_keys(doc: dict, source: str, where: str, reserved: tuple[str, ...]) -> None:
    allowed = field_names()
    for key in doc:
        if key not in allowed and key not in reserved:
            raise SpecError(source, f"{where}{key}",
                            f"unknown field; allowed: {', '.join([*reserved, *allowed])}")


def _grid(settings: dict[str, Any], source: str, where: str) -> Grid:
    for key in ("dataset", "network", "algorithm"):
        if key not in settings:
            raise SpecError(source, f"{where}{key}", "required")
    axes = [k for k, v in settings.items() if _is_axis(k, v)]
    for k in axes:
        if not settings[k]:
            raise SpecError(source, f"{where}{k}", "empty grid: an axis needs at least one value")
    return Grid(settings, axes)


def _check_select(select: Any, source: str) -> None:
    if not isinstance(select, dict) or "from" not in select:
        raise SpecError(source, "select", "must be a mapping like {from: <sweep>, metric: val_acc}")
    unknown = set(select) - {"from", "metric", "params"}
    if unknown:
        raise SpecError(source, f"select.{sorted(unknown)[0]}",
                        "unknown key; allowed: from, metric, params")
    metric = select.get("metric", "val_acc")
    if metric not in SELECT_METRICS:
        raise SpecError(source, "select.metric",
                        f"{metric!r} is not one of: {', '.join(SELECT_METRICS)}")
    params = select.get("params", list(SELECTED_PARAMS))
    if not isinstance(params, list) or not set(params) <= set(SELECTED_PARAMS) or not params:
        raise SpecError(source, "select.params",
                        f"must be a list drawn from: {', '.join(SELECTED_PARAMS)}")


def _is_list_field(name: str) -> bool:
    annotation = RunConfig.model_fields[name].annotation
    if get_origin(annotation) in (list, tuple):  # e.g. betas: tuple[float, float]
        return True
    types = get_args(annotation) or (annotation,)
    return any(get_origin(t) in (list, tuple) or t in (list, tuple) for t in types)


def _is_axis(name: str, value: Any) -> bool:
    if not isinstance(value, list):
        return False
    if _is_list_field(name):  # e.g. hidden: [64, 64] is one value; [[64], [64, 64]] an axis
        return bool(value) and all(isinstance(v, list) for v in value)
    return True


def expand(sweep: Sweep, best_params: BestParamsLookup | None = None) -> list[RunConfig]:
    """All runs of a sweep, validated, without duplicates, in grid order."""
    chosen = _selection(sweep, best_params) if sweep.select else None
    runs: dict[str, RunConfig] = {}
    for grid in sweep.grids:
        for combo in itertools.product(*(grid.settings[k] for k in grid.axes)):
            settings = {**grid.settings, **dict(zip(grid.axes, combo, strict=True))}
            if chosen is not None:
                settings = _apply_selection(sweep, settings, chosen)
            config = validate(settings, sweep.source)
            runs.setdefault(config.hash(), config)
    return list(runs.values())


def validate(settings: dict[str, Any], source: str) -> RunConfig:
    """One run's settings as a RunConfig, or a SpecError naming `source` and the field."""
    try:
        return RunConfig(**settings)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field; allowed: {', '.join(field_names())}"
        value = settings.get(err["loc"][0]) if err["loc"] else None
        shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
        raise SpecError(source, loc, msg + shown) from None


def _selection(sweep: Sweep, best_params: BestParamsLookup | None) -> list:
    assert sweep.select is not None
    source, metric = sweep.select["from"], sweep.select.get("metric", "val_acc")
    if best_params is None:
        raise SpecError(sweep.source, "select.from", "needs a results database to read from")
    chosen = best_params(source, metric)
    if not chosen:
        raise SpecError(sweep.source, "select.from",
                        f"sweep {source!r} has no finished runs to select {metric} from")
    return chosen


def _apply_selection(sweep: Sweep, settings: dict[str, Any], chosen: list) -> dict[str, Any]:
    assert sweep.select is not None
    defaults = {k: f.default for k, f in RunConfig.model_fields.items()}
    matches = [params for conditions, params in chosen
               if all(_same(settings.get(k, defaults.get(k)), v) for k, v in conditions.items())]
    if not matches:
        curve = ", ".join(f"{k}={settings.get(k, defaults.get(k))}" for k in CURVE_KEYS)
        raise SpecError(sweep.source, "select.from",
                        f"sweep {sweep.select['from']!r} has no finished run for {curve}")
    params = sweep.select.get("params", list(SELECTED_PARAMS))
    return {**settings, **{p: matches[0][p] for p in params}}


def _same(a: Any, b: Any) -> bool:
    """Setting equality across YAML and database types (lists vs tuples, 1 vs 1.0)."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
