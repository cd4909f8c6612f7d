"""Learning rules: each turns a batch into gradients that any optimizer can apply."""

from __future__ import annotations

from typing import Any

from corrgd.learn.rules.backprop import BP, DFA, FA
from corrgd.learn.rules.base import LearningRule, Step
from corrgd.learn.rules.copi import COPI
from corrgd.learn.rules.perturbation import ANP, INP, NP, NodePerturbation

RULES: dict[str, type[LearningRule]] = {
    "bp": BP, "fa": FA, "dfa": DFA, "np": NP, "inp": INP, "anp": ANP, "copi": COPI,
}


def make_rule(name: str, **options: Any) -> LearningRule:
    """A rule by name; options go to its constructor (e.g. sigma2, samples for NP)."""
    if name not in RULES:
        raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(RULES)}")
    return RULES[name](**options)


__all__ = ["ANP", "BP", "COPI", "DFA", "FA", "INP", "NP", "RULES", "LearningRule",
           "NodePerturbation", "Step", "make_rule"]
