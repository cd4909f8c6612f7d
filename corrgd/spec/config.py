"""The resolved configuration of one training run: plain, validated, hashable data.

Every field is a scalar (or a short list such as `betas`), so that a sweep spec
can name any of them as an axis. `decor: false` means no decorrelation layer;
`decor_lr` is then 0 whatever the spec said, so such runs are not duplicated
across decor LRs.

Validation covers everything a run will need before it is queued: known names, ranges,
the data set's options (`corrgd.data.catalog`), the network's options and whether it fits
the data's inputs, the validation hold-out and the loss for the task. None of it imports
torch. No rule here ties two `PER_MEMBER` settings together (each is checked alone, given
the others): `corrgd.spec.sweeps.plan` relies on that to validate a grid axis by axis.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corrgd.data import catalog
from corrgd.learn.architectures import (
    ARCHITECTURES,
    layer_shapes,
    network_input,
    network_names,
    takes_flat_input,
)

ALGORITHMS = ("bp", "fa", "dfa", "np", "inp", "anp", "copi")
"""The learning rules, as `corrgd.learn.rules.RULES` names them (tested equal)."""
ARCHITECTURE_OPTIONS = ("width", "depth", "hidden")
"""Run settings that shape a network; each architecture takes some of them."""
CLASSIFICATION_LOSSES = ("ce",)
"""Losses that need class labels (squared errors also take one-hot codes of labels)."""
LOSSES = ("ce", "mse", "sse", "half_sse")

# The columns a run's axes are stored under, in the order reports group by.
CURVE_KEYS = ("dataset", "network", "algorithm", "decor")
AXIS_COLUMNS = (*CURVE_KEYS, "decor_lr", "lr", "seed")
# Settings that may differ between the runs that train together as one group
# (corrgd.run.runner): scalars that change neither a tensor's shape nor the sequence
# of operations.
PER_MEMBER = ("seed", "lr", "first_epoch_lr", "decor_lr", "first_epoch_decor_lr",
              "decor_conv_lr", "sigma2", "betas", "eps", "momentum")


def canonical_json(values: Any) -> str:
    """JSON with sorted keys and no spaces, the one serialisation corrgd hashes and stores:
    the same settings give the same text whatever their key order, and numpy or torch
    scalars the text of Python's. NaN and infinities are refused (ValueError)."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=_to_builtin)


def config_hash(values: Any) -> str:
    """SHA-256 hex digest (64 characters) of `canonical_json(values)`: a run's identity."""
    return hashlib.sha256(canonical_json(values).encode()).hexdigest()


def _to_builtin(value: Any) -> Any:
    """`json.dumps` fallback for numpy and torch scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class FieldError(ValueError):
    """An invalid setting; `field` names it (e.g. `data.correlation`), for the one-line
    error of `corrgd.spec.sweeps.validate`."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(message)


SEED_LIMIT = 2**63  # seeds are 0 .. 2**63 - 1: a signed 64-bit integer, as stored


class RunConfig(BaseModel):
    # every number finite, not a boolean and not quoted text (`_plain_number`)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # data
    dataset: str
    data: dict[str, Any] = Field(default_factory=dict)  # dataset options, e.g. correlation
    val_size: int = Field(0, ge=0)  # samples held out of training for validation
    # network
    network: str
    width: int | None = Field(None, gt=0)
    depth: int | None = Field(None, ge=0)
    hidden: list[int] | None = None
    padding: int | None = Field(None, ge=0)  # paper 0; CRGD reference code 1
    bias: bool | None = None
    last_hidden_activation: bool = True  # CRGD reference dense net: False
    output_activation: bool = False  # COPI: y_L = f(a_L)
    # learning rule
    algorithm: str
    loss: Literal["ce", "mse", "sse", "half_sse"] = "ce"  # LOSSES; COPI: sse, ‖y − y*‖²
    sigma2: float = Field(1e-6, gt=0)  # NP family noise variance (reference code: 1e-12)
    np_samples: int = Field(1, ge=1, le=10_000)  # NPD: 1 to 100; each is a forward pass
    noisy_baseline: bool = False
    copi_feedback: Literal["bp", "fa"] = "bp"
    # decorrelation
    decor: bool = False
    decor_lr: float = Field(0.0, ge=0)
    decor_rule: Literal["crgd", "copi"] = "crgd"
    decor_sample_frac: float | None = Field(None, gt=0, le=1)  # None: crgd 0.1, copi 1
    decor_demean: bool | None = None  # None: crgd yes, copi no
    decor_update_order: Literal["CM", "MC"] = "CM"  # CRGD paper, NPD: CM; COPI, CRGD code: MC
    decor_conv_update_order: Literal["CM", "MC"] | None = None  # None: decor_update_order
    decor_conv_lr: float | None = Field(None, gt=0)  # None: decor_lr; CRGD code: 1e-5
    decor_channel_mean: bool = False  # conv: demean by channel (CRGD code), not by patch
    decor_mean_in_graph: bool = False  # batch mean in the autograd graph (CRGD code)
    first_epoch_decor_lr: float | None = Field(None, gt=0)  # COPI: lateral LR of epoch 1
    # optimisation
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0)
    first_epoch_lr: float | None = Field(None, gt=0)  # COPI: a different LR in epoch 1
    betas: tuple[float, float] = (0.9, 0.999)  # reference code: (0.9, 0.9999)
    eps: float = Field(1e-8, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    epochs: int = Field(10, ge=0, le=1_000_000)  # a bound: 10**23 was taken, and trained on
    batch_size: int = Field(256, gt=0, le=catalog.MOST_SAMPLES)  # more: the whole set anyway
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    # bookkeeping
    eval_batch_size: int = Field(1000, gt=0, le=catalog.MOST_SAMPLES)
    diagnostics: bool = True  # log decorrelation stats and update/BP angles per epoch

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        return _one_of(v, catalog.dataset_names())

    @field_validator("network")
    @classmethod
    def _known_network(cls, v: str) -> str:
        return _one_of(v, network_names())

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, v: str) -> str:
        return _one_of(v, list(ALGORITHMS))

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(w < 1 for w in v):
            raise ValueError("layer widths must be integers >= 1")
        return v

    @field_validator("betas")
    @classmethod
    def _adam_betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("Adam's betas must be two numbers in [0, 1)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers_and_decor_off(cls, data: Any) -> Any:
        """Refuse what YAML reads as something else where a number is meant (`_plain_number`)
        and anything but true or false (or null where allowed) for a flag (pydantic would
        take 1 or 'yes'); then set the decor LRs of a run without decorrelation to 0 (after
        the check: a NaN there is refused even though it would be unused)."""
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            if name in _NUMERIC:
                for v in value if isinstance(value, list | tuple) else [value]:
                    _plain_number(name, v, value)
            elif name in _BOOLEAN and not isinstance(value, bool | None):
                raise FieldError(name, f"must be true or false, not {value!r}")
        if not data.get("decor", False):
            data = {**data, "decor_lr": 0.0, "decor_conv_lr": None, "first_epoch_decor_lr": None}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.decor and self.decor_lr <= 0:
            raise FieldError("decor_lr", f"must be > 0 when decor is true (got {self.decor_lr})")
        if self.noisy_baseline and self.algorithm not in ("np", "anp"):
            raise FieldError("noisy_baseline", "applies to algorithm np or anp (this run: "
                                               f"{self.algorithm})")
        _check_data_options(self)
        _check_architecture_options(self)
        _check_val_size(self)
        _check_loss(self)
        _check_network_fits(self)
        return self

    def architecture_options(self) -> dict[str, Any]:
        """The settings of `ARCHITECTURE_OPTIONS` this run sets, for `layer_shapes`."""
        return {k: v for k in ARCHITECTURE_OPTIONS if (v := getattr(self, k)) is not None}

    def hash(self) -> str:
        return config_hash(self.model_dump(mode="json"))

    def group_key(self) -> str:
        """Runs with equal keys can train as one group: their configs agree on everything
        but the `PER_MEMBER` settings."""
        return config_hash({k: v for k, v in self.model_dump(mode="json").items()
                            if k not in PER_MEMBER})

    @property
    def label(self) -> str:
        """Short curve name, e.g. 'BP+decor'."""
        return self.algorithm.upper() + ("+decor" if self.decor else "")


def _check_data_options(config: RunConfig) -> None:
    try:
        catalog.check_options(config.dataset, config.data)
    except catalog.OptionError as e:
        raise FieldError(f"data.{e.option}", str(e)) from None


def _check_architecture_options(config: RunConfig) -> None:
    if config.padding is not None and takes_flat_input(config.network):
        conv = [n for n in network_names() if not takes_flat_input(n)]
        raise FieldError("padding", f"network {config.network} has no conv layers; padding "
                                    f"applies to {', '.join(conv)}")
    takes = ARCHITECTURES[config.network].options
    for name in ARCHITECTURE_OPTIONS:
        if getattr(config, name) is not None and name not in takes:
            allowed = ", ".join(takes) or f"none of {', '.join(ARCHITECTURE_OPTIONS)}"
            raise FieldError(name, f"network {config.network} takes {allowed}; got {name}")


def _check_val_size(config: RunConfig) -> None:
    train = catalog.dataset_shape(config.dataset, config.data).train
    if config.val_size >= train:
        raise FieldError("val_size", f"must be less than the {train} training samples of "
                                     f"{config.dataset}: 0 to {train - 1} "
                                     f"(got {config.val_size})")


def _check_loss(config: RunConfig) -> None:
    if catalog.dataset_task(config.dataset, config.data) != "regression":
        return  # squared-error losses take one-hot codes of class labels
    if config.loss in CLASSIFICATION_LOSSES:
        data = config.dataset + (" with task regression"
                                 if config.dataset in catalog.EITHER_TASK else "")
        fits = [name for name in LOSSES if name not in CLASSIFICATION_LOSSES]
        raise FieldError("loss", f"{config.loss} needs class labels but {data} has regression "
                                 f"targets: choose from {', '.join(fits)}")


def _check_network_fits(config: RunConfig) -> None:
    data = catalog.dataset_shape(config.dataset, config.data)
    options = tuple((k, tuple(v) if isinstance(v, list) else v)
                    for k, v in config.architecture_options().items())
    reason = _misfit(config.network, data, config.padding, options)
    if reason is not None:
        fits = [name for name in network_names() if _misfit(name, data, config.padding) is None]
        raise FieldError("network", f"{config.network} does not fit {config.dataset} inputs "
                                    f"{data.input_shape}: {reason}; networks that fit: "
                                    f"{', '.join(fits) or 'none'}")


@functools.lru_cache(maxsize=4096)
def _misfit(network: str, data: catalog.DatasetShape, padding: int | None,
            options: tuple[tuple[str, Any], ...] = ()) -> str | None:
    """Why `network` (with architecture `options`) cannot take the inputs of `data`, or None
    when it can. Cached: a grid asks the same question for many runs."""
    try:
        layer_shapes(network, network_input(network, data.input_shape), data.outputs,
                     padding=padding, **dict(options))
    except ValueError as e:
        return str(e).removeprefix(f"{network}: ")
    return None


def _one_of(value: str, allowed: list[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of: {', '.join(allowed)}")
    return value


def _plain_number(name: str, value: Any, given: Any) -> None:
    """YAML's true is Python's 1, and a quoted '1' is text: neither is a number here (pydantic
    would turn both into 1). NaN and the infinities are refused too. `given` is the whole
    setting `value` is in (itself, or a list)."""
    whole = f" (got {str(given).lower()})" if isinstance(given, list | tuple) else ""
    if isinstance(value, bool):
        raise FieldError(name, f"must be a number, not {str(value).lower()}{whole}")
    if isinstance(value, str):
        quoted = _looks_numeric(value)
        raise FieldError(name, f"must be a number, not the text {value!r}{whole}" + (
            " (YAML reads a quoted number as text: if it is quoted, remove the quotes)"
            if quoted else ""))
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(name, f"must be a finite number, not {value}{whole}")


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric(annotation: Any) -> bool:
    """Whether a field's type holds numbers (int or float, alone, optional or in a list)."""
    args = get_args(annotation)
    return annotation in (int, float) or any(_numeric(a) for a in args)


_NUMERIC = frozenset(name for name, f in RunConfig.model_fields.items() if _numeric(f.annotation))
_BOOLEAN = frozenset(name for name, f in RunConfig.model_fields.items()
                     if f.annotation in (bool, bool | None))


def field_names() -> list[str]:
    return list(RunConfig.model_fields)
