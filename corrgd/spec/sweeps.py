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
file, the field and what is allowed, raised before anything is written anywhere:
YAML syntax and duplicate keys, the sweep name (it names folders), unknown fields
(with the nearest known one) and every run's settings (`corrgd.spec.config`).

`expand` gives every run as a `RunConfig`; `plan` counts and validates the runs of
even a huge grid without building them all, for dry runs (`corrgd.spec.cost`).
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import ValidationError

from corrgd.data import catalog
from corrgd.spec.config import CURVE_KEYS, PER_MEMBER, FieldError, RunConfig, field_names
from corrgd.spec.pruning import LR_SETTINGS, Pruning, prune_key
from corrgd.spec.pruning import METRICS as PRUNE_METRICS

RESERVED = ("name", "description", "select", "prune", "grids")
SELECT_METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc", "train_loss")
SELECTED_PARAMS = ("lr", "decor_lr")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,100}")
NAME_RULE = ("a sweep name names folders: use 1 to 100 characters from A-Z a-z 0-9 . _ -, "
             "not starting with '.' or '-' and without '..'")
CONFIRM_ABOVE = 10_000  # runs; enqueuing more asks first (`needs_confirmation`)

# best(source_sweep, metric) -> [(curve conditions {dataset: .., network: .., algorithm: ..,
#                                  decor: .., and any other axis}, {"lr": .., "decor_lr": ..})];
# LookupError for a source sweep the database does not have
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
    prune: Pruning | None = None  # successive halving of its learning rates (`spec.pruning`)

    @property
    def axes(self) -> list[str]:
        """Every setting swept in some grid, in order of first appearance."""
        return list(dict.fromkeys(a for g in self.grids for a in g.axes))


def load_spec(path: str | Path) -> Sweep:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(str(path), "file", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SpecError(str(path), "file", f"not UTF-8 text (byte {e.object[e.start]:#04x} at "
                                           f"position {e.start}): a spec is a YAML file") \
            from None
    return parse_spec(text, source=str(path), default_name=path.stem)


def parse_spec(text: str, *, source: str = "<spec>", default_name: str = "sweep") -> Sweep:
    try:
        doc = yaml.load(text, Loader=SpecLoader)  # a safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(source, where, f"invalid YAML: {problem}") from None
    if not isinstance(doc, dict):
        raise SpecError(source, "spec", "must be a mapping of settings (key: value)")
    _check_keys(doc, source, "", RESERVED)
    name = doc.get("name", default_name)
    _check_name(name, source, given="name" in doc)
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
        select = {"metric": _default_metric(grids), **select}
        _check_metric_task(select["metric"], grids, source, "select.metric")
        _check_selected_unset(select, grids, source, "grids" in doc)
    prune = _pruning(doc["prune"], grids, source) if "prune" in doc else None
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise SpecError(source, "description", "must be text (a string), got a "
                                               f"{type(description).__name__}")
    return Sweep(name=name, text=text, source=source, grids=grids, select=select,
                 description=description, prune=prune)


class SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML's safe loader that reads 1e-3 as a number, as YAML 1.2 does (1.1, PyYAML's, wants
    1.0e-3 and reads 1e-3 as text), and refuses a key given twice in one mapping (YAML would
    keep the last silently), naming the key and both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges; the keys given here override it
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the constructor refuses it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key} (first on line {seen[key]}); give each "
                    "key once per mapping", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# YAML 1.2's floats that 1.1 reads as text: an exponent without a dot (1e-3, 2E+5) and a
# sign before a leading dot (+.5). Integers match YAML's own resolver first. add_implicit_
# resolver copies the inherited resolvers first, so YAML's own SafeLoader is left as it is.
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."))


def load_value(text: str) -> Any:
    """One YAML value as a spec reads it (e.g. `corrgd train --set lr=1e-3`)."""
    return yaml.load(text, Loader=SpecLoader)


def _check_name(name: Any, source: str, *, given: bool) -> None:
    """A sweep's name names folders (checkpoints, results): plain characters only."""
    where = "name" if given else "name (the file's name without .yaml)"
    if isinstance(name, bool | int | float):  # YAML reads off, yes, 123 as these
        raise SpecError(source, where, f"YAML reads it as the {type(name).__name__} "
                                       f"{str(name).lower()}, not text: put the name in quotes")
    if not isinstance(name, str) or not name.strip():
        raise SpecError(source, where, f"must be a non-empty string: {NAME_RULE}")
    if len(name) > 100:
        raise SpecError(source, where, f"{len(name)} characters is too long: {NAME_RULE}")
    if not NAME_PATTERN.fullmatch(name) or name.startswith((".", "-")) or ".." in name:
        raise SpecError(source, where, f"{name!r} is not allowed: {NAME_RULE}")


def _check_keys(doc: dict, source: str, where: str, reserved: tuple[str, ...]) -> None:
    allowed = [*reserved, *field_names()]
    for key in doc:
        if key not in allowed:
            name = yaml.safe_dump(key).removesuffix("\n...\n").strip()  # true, null: as written
            raise SpecError(source, f"{where}{name}", unknown_field(name, allowed))


def unknown_field(key: str, allowed: Iterable[str], what: str = "field") -> str:
    """'unknown field; did you mean decor_lr? allowed: ...' (difflib's nearest name)."""
    allowed = list(allowed)
    near = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {near[0]}?" if near else ";"
    return f"unknown {what}{hint} allowed: {', '.join(allowed)}"


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
        key = sorted(unknown, key=str)[0]
        raise SpecError(source, f"select.{key}",
                        unknown_field(str(key), ("from", "metric", "params"), "key"))
    if not isinstance(select["from"], str) or not select["from"].strip():
        raise SpecError(source, "select.from", "must be the name of a sweep in the results "
                                               f"database (got {select['from']!r})")
    metric = select.get("metric", "val_acc")
    if not isinstance(metric, str) or metric not in SELECT_METRICS:
        raise SpecError(source, "select.metric",
                        f"{metric!r} is not one of: {', '.join(SELECT_METRICS)}")
    params = select.get("params", list(SELECTED_PARAMS))
    if (not isinstance(params, list) or not params
            or not all(isinstance(p, str) and p in SELECTED_PARAMS for p in params)):
        raise SpecError(source, "select.params",
                        f"must be a list drawn from: {', '.join(SELECTED_PARAMS)}")


def _check_selected_unset(select: dict, grids: list[Grid], source: str, listed: bool) -> None:
    """A setting `select` takes from another sweep is not given here too: it would be
    replaced without a word."""
    for i, grid in enumerate(grids):
        for param in select.get("params", SELECTED_PARAMS):
            if param in grid.settings:
                where = f"grids[{i}].{param} (or {param})" if listed else param
                raise SpecError(source, where, f"select takes {param} from sweep "
                                               f"{select['from']!r}; leave it out here, or "
                                               "out of select.params")


def _pruning(value: Any, grids: list[Grid], source: str) -> Pruning:
    """`prune:` as a `Pruning`: {metric, min_epochs, reduction}, every key optional (metric:
    val_acc, or val_loss where the data are a regression's)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise SpecError(source, "prune", "must be a mapping like {metric: val_acc, "
                                         "min_epochs: 1, reduction: 3}")
    keys = ("metric", "min_epochs", "reduction")
    for key in value:
        if key not in keys:
            raise SpecError(source, f"prune.{key}", unknown_field(str(key), keys, "key"))
    metric = value.get("metric")
    if metric is None:
        metric = _default_metric(grids)
    if not isinstance(metric, str) or metric not in PRUNE_METRICS:
        raise SpecError(source, "prune.metric",
                        f"{metric!r} is not one of: {', '.join(PRUNE_METRICS)}")
    _check_metric_task(metric, grids, source, "prune.metric")
    _check_val_split(metric, grids, source, "prune.metric")
    for key, least in (("min_epochs", 1), ("reduction", 2)):
        number = value.get(key, getattr(Pruning, key))
        if isinstance(number, bool) or not isinstance(number, int) or number < least:
            raise SpecError(source, f"prune.{key}",
                            f"must be an integer >= {least} (got {number!r})")
    return Pruning(metric, value.get("min_epochs", Pruning.min_epochs),
                   value.get("reduction", Pruning.reduction))


def _default_metric(grids: list[Grid]) -> str:
    """What `select:` and `prune:` rank by unless told: val_acc; val_loss for regression."""
    return "val_loss" if _regression_data(grids) else "val_acc"


def _check_metric_task(metric: str, grids: list[Grid], source: str, where: str) -> None:
    """An accuracy cannot rank regression runs: they log no accuracy."""
    name = _regression_data(grids)
    if metric.endswith("_acc") and name is not None:
        loss = metric.removesuffix("_acc") + "_loss"
        raise SpecError(source, where, f"{metric} on regression data ({name}), which logs no "
                                       f"accuracy: use {loss} (lowest is best)")


def _check_val_split(metric: str, grids: list[Grid], source: str, where: str) -> None:
    """A validation metric needs a validation split: `val_size` > 0 in every run (its
    default, 0, holds nothing out, and such a run logs no val rows)."""
    if not metric.startswith("val_"):
        return
    for grid in grids:
        sizes = grid.settings.get("val_size", RunConfig.model_fields["val_size"].default)
        if any(isinstance(size, int) and size == 0
               for size in (sizes if isinstance(sizes, list) else [sizes])):
            raise SpecError(source, where, f"{metric} needs a validation split, but some "
                                           "runs have val_size 0 (the default: nothing held "
                                           "out); set val_size to the samples to hold out of "
                                           "training, e.g. val_size: 10000")


def _regression_data(grids: list[Grid]) -> str | None:
    """The name of a data set of the grids whose task is regression, if any."""
    for grid in grids:
        names = grid.settings.get("dataset", RunConfig.model_fields["dataset"].default)
        options = grid.settings.get("data") or {}
        for name in names if isinstance(names, list) else [names]:
            for option in options if isinstance(options, list) else [options]:
                if (isinstance(name, str) and isinstance(option, dict)
                        and name in catalog.DATASETS
                        and catalog.dataset_task(name, option) == "regression"):
                    return name
    return None


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
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            raise SpecError(source, cause.field, cause.message) from None
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_field(str(err["loc"][0]), field_names())
        value = settings.get(err["loc"][0]) if err["loc"] else None
        shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
        raise SpecError(source, loc, msg + shown) from None


# -- plan: count and validate a sweep's runs without building each -----------------------

Box = tuple[frozenset[str], ...]
"""Runs of one group key as a product set: per `PER_MEMBER` setting, its canonical values."""
MAX_CUTS = 1_000_000  # work on overlapping grids before their runs are bounded, not counted


@dataclass(frozen=True)
class GroupCount:
    """The runs of one group key (`RunConfig.group_key`): one of them and how many."""

    config: RunConfig
    runs: int
    lr_combos: int = 1  # runs of a rung group: learning-rate settings per seed (`pruning`)

    @property
    def epochs(self) -> int:
        return self.runs * self.config.epochs


@dataclass(frozen=True)
class Plan:
    """What a sweep will enqueue, counted without building every run: its groups of runs by
    group key, in order of first appearance. `exact` is False when grids of the union
    overlap too intricately to count: each group's `runs` is then an upper bound."""

    sweep: Sweep
    groups: dict[str, GroupCount]
    exact: bool = True

    @property
    def runs(self) -> int:
        return sum(g.runs for g in self.groups.values())

    @property
    def epochs(self) -> int:
        return sum(g.epochs for g in self.groups.values())

    @classmethod
    def of_runs(cls, sweep: Sweep, runs: Iterable[RunConfig]) -> Plan:
        """The plan of runs already expanded (e.g. `expand(sweep)` of a small sweep)."""
        configs: dict[str, RunConfig] = {}
        counts: dict[str, Counter[str]] = {}  # group key -> runs per rung group
        for run in runs:
            key = run.group_key()
            configs.setdefault(key, run)
            counts.setdefault(key, Counter())[prune_key(run)] += 1
        return cls(sweep, {k: GroupCount(configs[k], n.total(), max(n.values()))
                           for k, n in counts.items()})


def needs_confirmation(count: int) -> bool:
    """Whether enqueuing `count` runs should ask first (`corrgd sweep --yes`)."""
    return count > CONFIRM_ABOVE


def plan(sweep: Sweep, best_params: BestParamsLookup | None = None) -> Plan:
    """Count and validate the runs `expand(sweep, best_params)` would give, without building
    each: fast, in little memory, for grids of millions of runs.

    Per grid, every combination of the axes that are not `PER_MEMBER` settings (few) is one
    block of runs sharing a group key; it is validated with each value of each per-member
    axis (validation never ties two per-member settings together, see `corrgd.spec.config`), so
    any run `expand` would refuse is refused here too. A block's runs are the product of its
    per-member values after validation (`decor: false` collapses the decor LRs to one);
    blocks of one group key (overlapping grids) are counted as a union of product sets.
    """
    chosen = _selection(sweep, best_params) if sweep.select else None
    split = _split_settings(chosen)
    selected = set(sweep.select.get("params", SELECTED_PARAMS)) if sweep.select else set()
    configs: dict[str, RunConfig] = {}
    boxes: dict[str, list[Box]] = {}
    for grid in sweep.grids:
        axes = [k for k in grid.axes if k not in split | selected]
        for settings in _blocks(grid, split):
            if chosen is not None:
                settings = _apply_selection(sweep, settings, chosen)
            config, box = _validate_block(settings, axes, sweep.source)
            key = config.group_key()
            configs.setdefault(key, config)
            boxes.setdefault(key, []).append(box)
    groups, exact = {}, True
    lrs = [PER_MEMBER.index(k) for k in LR_SETTINGS]
    for key, config in configs.items():
        runs, counted = _union_size(boxes[key])
        combos = max(math.prod(len(box[i]) for i in lrs) for box in boxes[key])
        groups[key] = GroupCount(config, runs, combos)
        exact = exact and counted
    return Plan(sweep, groups, exact)


def _split_settings(chosen: list | None) -> set[str]:
    """Settings whose values split a grid into blocks: those outside `PER_MEMBER`, and the
    per-member ones a selection's conditions read (its choice may differ by their value)."""
    read = {k for conditions, _ in chosen or [] for k in conditions}
    return (set(field_names()) - set(PER_MEMBER)) | (read & set(PER_MEMBER))


def _blocks(grid: Grid, split: set[str]) -> Iterable[dict[str, Any]]:
    """The grid's settings with every splitting axis fixed, one combination at a time."""
    fixed = [k for k in grid.axes if k in split]
    for combo in itertools.product(*(grid.settings[k] for k in fixed)):
        yield {**grid.settings, **dict(zip(fixed, combo, strict=True))}


def _validate_block(settings: dict[str, Any], axes: list[str], source: str
                    ) -> tuple[RunConfig, Box]:
    """A block's first run, validated, and its runs as a product set: each of its `axes`
    (per-member settings) validated value by value, the others at their first values."""
    first = {**settings, **{k: settings[k][0] for k in axes}}
    config = validate(first, source)
    values = {k: {_canonical(config, k)} for k in PER_MEMBER}
    for k in axes:
        values[k] = {_canonical(validate({**first, k: v}, source), k) for v in settings[k]}
    return config, tuple(frozenset(values[k]) for k in PER_MEMBER)


def _canonical(config: RunConfig, name: str) -> str:
    """A setting's value as the run's canonical JSON writes it (its identity)."""
    return json.dumps(config.model_dump(mode="json", include={name})[name], sort_keys=True)


def _size(box: Box) -> int:
    return math.prod(len(values) for values in box)


def _union_size(boxes: list[Box]) -> tuple[int, bool]:
    """(runs in the union of the product sets `boxes`, True), counted by cutting each box
    into pieces disjoint from the boxes before it; (the sum of their sizes, an upper bound,
    False) when that takes more than `MAX_CUTS` cuts."""
    distinct = list(dict.fromkeys(boxes))
    disjoint: list[Box] = []
    cuts = 0
    for box in distinct:
        pieces = [box]
        for other in disjoint:
            cuts += len(pieces)
            if cuts > MAX_CUTS:
                return sum(_size(b) for b in distinct), False
            pieces = [p for piece in pieces for p in _subtract(piece, other)]
            if not pieces:
                break
        disjoint.extend(pieces)
    return sum(_size(b) for b in disjoint), True


def _subtract(box: Box, other: Box) -> list[Box]:
    """box minus other, as at most one disjoint product set per setting."""
    if any(not (mine & theirs) for mine, theirs in zip(box, other, strict=True)):
        return [box]
    pieces: list[Box] = []
    inside = list(box)  # settings before i: values in both
    for i, (mine, theirs) in enumerate(zip(box, other, strict=True)):
        if rest := mine - theirs:
            pieces.append((*inside[:i], rest, *box[i + 1:]))
        inside[i] = mine & theirs
    return pieces


def _selection(sweep: Sweep, best_params: BestParamsLookup | None) -> list:
    assert sweep.select is not None
    source, metric = sweep.select["from"], sweep.select["metric"]
    if best_params is None:
        raise SpecError(sweep.source, "select.from", "needs a results database to read from")
    try:
        chosen = best_params(source, metric)
    except LookupError as e:  # no such sweep
        raise SpecError(sweep.source, "select.from", str(e)) from None
    if not chosen:
        raise SpecError(sweep.source, "select.from",
                        f"sweep {source!r} has no finished runs to select {metric} from "
                        "(runs that diverged are not eligible)")
    return chosen


def _apply_selection(sweep: Sweep, settings: dict[str, Any], chosen: list) -> dict[str, Any]:
    assert sweep.select is not None
    defaults = {k: f.get_default(call_default_factory=True)
                for k, f in RunConfig.model_fields.items()}
    matches = [params for conditions, params in chosen
               if all(_same(settings.get(k, defaults.get(k)), v) for k, v in conditions.items())]
    if not matches:
        curve = ", ".join(f"{k}={settings.get(k, defaults.get(k))}" for k in CURVE_KEYS)
        raise SpecError(sweep.source, "select.from",
                        f"sweep {sweep.select['from']!r} has no finished run for {curve} "
                        "that did not diverge")
    params = sweep.select.get("params", list(SELECTED_PARAMS))
    return {**settings, **{p: matches[0][p] for p in params}}


def _same(a: Any, b: Any) -> bool:
    """Setting equality across YAML and database types (lists vs tuples, 1 vs 1.0)."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
