"""A run to enqueue, identified by its config's hash (`corrgd.spec.config.config_hash`),
and the JSON that storage writes into its JSON columns.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from corrgd.spec.config import config_hash


@dataclass(frozen=True)
class RunSpec:
    """One run to enqueue.

    ``config`` is the run's fully resolved config (what the runner needs to train
    it); ``axes`` holds the values of the swept axes that produced it (e.g.
    ``{"algorithm": "copi", "decor": True, "seed": 3}``).

    ``group_key`` (at most 64 characters) marks runs that may train together as
    one batched model: runs of a sweep with equal keys can be claimed as one
    group (see :func:`corrgd.storage.queue.claim_group`); ``None`` means the run
    always trains alone. The caller computes it (e.g. a hash of the config
    without the per-member settings); it is not part of the run's identity
    (``config_hash``). ``prune_key`` likewise marks the runs of a pruned sweep that are
    ranked together at its rungs (`corrgd.spec.pruning.prune_key`); ``None`` where the
    sweep does not prune.
    """

    config: dict[str, Any]
    axes: dict[str, Any] = field(default_factory=dict)
    group_key: str | None = None
    prune_key: str | None = None

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


def jsonable(obj: Any) -> Any:
    """Turn ``obj`` into plain JSON data, mapping non-finite floats to ``None``.

    Used for diagnostics and axes, where a NaN (e.g. an angle of a dead layer)
    must not make the whole epoch unwritable: strict JSON (and PostgreSQL) has no NaN.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy and torch scalars and arrays
        return jsonable(obj.tolist())
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps_jsonable(obj: Any) -> str:
    """JSON serializer used by the engine for JSON columns."""
    return json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
