"""Figure ids for `corrgd report --figure ID`: the papers' figures and what each needs.

Two kinds:

* `SweepFigure`: training curves read from the results database, drawn as envelope
  figures (`corrgd.results.reports.figures`). The sweep names are the stems of the spec
  files under ``sweeps/`` (``corrgd sweep sweeps/figure4.yaml``).
* `ComputedFigure`: computed on the spot by one module of this package (``crgd2.py``,
  ...), made by its `make`, called as ``make(out)`` or, with `needs_db`,
  ``make(db, out, sweep)``; it writes under ``out/figures``.

Any sweep in the database is a figure id too: ``--figure quickstart`` draws that
sweep's curves in the same layout.

This module imports no torch or matplotlib (``corrgd report --list`` answers at once):
each `make` imports its experiment when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corrgd.storage import ResultsDB


@dataclass(frozen=True)
class SweepFigure:
    id: str
    paper: str  # e.g. "CRGD Fig. 4"
    description: str
    sweeps: tuple[str, ...]
    metrics: tuple[str, ...] = ("test_acc",)
    band: str = "minmax"  # min-max envelope over seeds, or "std" (mean ± std)
    stem: str = ""

    @property
    def needs_db(self) -> bool:
        return True

    @property
    def file_stem(self) -> str:
        return self.stem or f"figure-{self.id}"


@dataclass(frozen=True)
class ComputedFigure:
    id: str
    paper: str
    description: str
    make: Callable[..., list[Path]]  # make(out), or make(db, out, sweep) with needs_db
    needs_db: bool = False
    sweeps: tuple[str, ...] = ()


def _crgd2(out: Path) -> list[Path]:
    from corrgd.experiments import crgd2

    return crgd2.write_crgd2(crgd2.compute_crgd2(), out)


def _crgd3(out: Path) -> list[Path]:
    from corrgd.experiments import crgd3

    return crgd3.write_crgd3(crgd3.compute_crgd3(), out)


def _alignment(out: Path) -> list[Path]:
    from corrgd.experiments import npd2

    return npd2.write_alignment(npd2.compute_alignment(), out)


def _npd7(out: Path) -> list[Path]:
    from corrgd.experiments import npd7

    return npd7.write_npd7(npd7.compute_npd7(), out)


def _copi3(db: ResultsDB, out: Path, sweep: str) -> list[Path]:
    from corrgd.experiments import copi3

    return copi3.write_copi3(copi3.compute_copi3(db, sweep), out)


PaperFigure = SweepFigure | ComputedFigure

FIGURES: dict[str, PaperFigure] = {f.id: f for f in (
    ComputedFigure("2", "CRGD Fig. 2", "gradient descent on correlated vs "
                   "decorrelated inputs (linear regression)", _crgd2),
    ComputedFigure("3", "CRGD Fig. 3", "decorrelation rules: existing ones depend on scale "
                   "and shrink activity, CRGD's does not", _crgd3),
    SweepFigure("4", "CRGD Fig. 4", "test accuracy of BP, FA, NP with and without "
                "decorrelation: CIFAR-10 dense and conv, CIFAR-100 conv, Tiny ImageNet conv; "
                "LRs from corrgd's grid search (table2)", ("figure4",), stem="crgd-fig4"),
    SweepFigure("4-published", "CRGD Fig. 4, Table 2 LRs", "CRGD Fig. 4 with every curve "
                "at the LRs CRGD Table 2 publishes", ("figure4-published",),
                stem="crgd-fig4-published"),
    ComputedFigure("alignment", "NPD Fig. 2", "angle of NP, ANP, INP updates to BP's vs "
                   "noise samples", _alignment),
    SweepFigure("npd3", "NPD Fig. 3", "train/test accuracy of (D)NP, (D)ANP, (D)INP and "
                "(D)BP on CIFAR-10: 1-layer, FC 3 (6, 9) hidden layers and ConvNet",
                ("npd-table3",), ("train_acc", "test_acc"), stem="npd-fig3"),
    SweepFigure("npd4", "NPD Fig. 4", "DNP and DANP with a noisy baseline (two noisy "
                "passes), CIFAR-10 FC 3 hidden layers", ("npd-noisy-baseline",),
                ("train_acc", "test_acc"), stem="npd-fig4"),
    SweepFigure("npd5", "NPD Fig. 5", "train/test accuracy of BP, DNP, DANP, DINP on Tiny "
                "ImageNet with 1-100 noise samples per update", ("npd-table4",),
                ("train_acc", "test_acc"), stem="npd-fig5"),
    ComputedFigure("npd7", "NPD Fig. 7", "angle of NP, ANP, INP updates to BP's vs the "
                   "noise variance σ², float32 and float64 (CIFAR-10 batch, or a named "
                   "offline stand-in)", _npd7),
    SweepFigure("npd8", "NPD Fig. 8", "train/test loss of (D)NP, (D)ANP and (D)BP on SARCOS "
                "inverse dynamics (regression, FC 32-32, MSE), 3 seeds", ("npd-sarcos",),
                ("train_loss", "test_loss"), stem="npd-fig8"),
    SweepFigure("copi2", "COPI Fig. 2", "COPI (BP / FA perturbations), BP+decor and BP+Adam: "
                "train/test accuracy and loss on MNIST and CIFAR-10, envelopes ± std",
                ("copi-mnist", "copi-cifar10"),
                ("train_acc", "test_acc", "train_loss", "test_loss"), band="std",
                stem="copi-fig2"),
    ComputedFigure("copi3", "COPI Fig. 3", "input decorrelation, decoded features and "
                   "layers replaced by inferred linear maps, from finished COPI runs' "
                   "checkpoints", _copi3, needs_db=True, sweeps=("copi-mnist",)),
)}
