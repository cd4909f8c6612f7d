"""Envelope figures with matplotlib: one panel per task/network (× metric), a line per curve.

A line is the mean over seeds; the shaded band around it the min-max envelope
over seeds (or mean ± std, COPI Fig. 2). The plain and decorrelated variants of
an algorithm share one colour: solid with decorrelation, dashed without.
Figures are drawn on `matplotlib.figure.Figure` objects with an Agg canvas (no
pyplot, no global state) and saved as PNG, PDF and SVG beside a CSV of the numbers plotted.
`new_figure` and `save` serve the figures of `corrgd.experiments` too.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from corrgd.results.reports import labels
from corrgd.storage.files import write_atomic

BANDS = {"minmax": "min–max over seeds", "std": "± std over seeds"}
FORMATS = ("png", "pdf", "svg")
# One colour per algorithm across all figures (matplotlib's tab10 palette).
ALGORITHM_COLOURS = {"bp": "C0", "fa": "C1", "np": "C2", "anp": "C3", "inp": "C4",
                     "copi": "C5", "dfa": "C6"}
PANEL_SIZE = (3.6, 2.8)  # inches per subplot
LEGEND_WIDTH = 1.8  # inches, for a legend right of narrow figures
MAX_COLUMNS = 4
# Envelope figures are drawn under STYLE, and every figure is saved under it (its
# svg.hashsalt keeps SVG files byte-stable).
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 9,
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
         "grid.alpha": 0.3, "grid.linewidth": 0.5, "svg.hashsalt": "corrgd",
         "lines.linewidth": 1.6}
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
             "svg": {"Date": None}}


def new_figure(size: tuple[float, float]) -> Figure:
    """An empty figure of `size` inches with constrained layout, on an Agg canvas."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colours(frame: pd.DataFrame) -> dict[str, str]:
    """Family -> colour: the algorithm's own colour when families are just algorithms."""
    families = frame.drop_duplicates("family").sort_values("curve_rank")
    by_algorithm = families.groupby("algorithm")["family"].nunique().le(1).all()
    if by_algorithm:
        return {f: ALGORITHM_COLOURS.get(a, "C7")
                for f, a in zip(families["family"], families["algorithm"], strict=True)}
    palette = mpl.colormaps["tab10" if len(families) <= 10 else "tab20"].colors
    return {f: mpl.colors.to_hex(palette[i % len(palette)])
            for i, f in enumerate(families["family"])}


def wrap_title(text: str, width: int = 42, lines: int = 3) -> str:
    """A panel title on at most `lines` lines of about `width` characters: long settings
    (e.g. ``data`` options) wrap instead of running into the next panel, and what does
    not fit ends in an ellipsis."""
    wrapped = textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: width - 1] + "…"
    return "\n".join(wrapped)


def draw(frame: pd.DataFrame, panels: Sequence[str], metrics: Sequence[str], *,
         title: str = "", band: str = "minmax") -> Figure:
    """One subplot per panel (and metric, as columns when there are several)."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}")
    if len(metrics) == 1:
        ncols = min(len(panels), MAX_COLUMNS) or 1
        nrows = max(math.ceil(len(panels) / ncols), 1)
        cells = [(p, metrics[0]) for p in panels]
    else:
        ncols, nrows = len(metrics), max(len(panels), 1)
        cells = [(p, m) for p in panels for m in metrics]
    colours = _colours(frame) if not frame.empty else {}
    legend_right = ncols <= 2
    width = PANEL_SIZE[0] * ncols + (LEGEND_WIDTH if legend_right else 0)
    height = PANEL_SIZE[1] * nrows + (0.4 if legend_right else 0.9)
    with mpl.rc_context(STYLE):
        fig = new_figure((width, height))
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        handles: dict[str, Line2D] = {}
        for ax, (panel, metric) in zip(axes, cells, strict=False):
            data = frame[(frame["panel"] == panel) & (frame["metric"] == metric)]
            _draw_panel(ax, data, colours, band, handles)
            name = panel if len(metrics) == 1 else f"{panel}: {labels.metric_name(metric)}"
            ax.set_title(wrap_title(name), fontsize=9 if len(name) > 60 else None)
            ax.set_xlabel("Epoch")
            ax.set_ylabel(labels.metric_label(metric))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.margins(x=0.02)
        for ax in axes[len(cells):]:
            ax.set_visible(False)
        if handles and legend_right:
            fig.legend(handles=list(handles.values()), loc="outside right center",
                       frameon=False)
        elif handles:
            fig.legend(handles=list(handles.values()), loc="outside lower center",
                       ncols=min(len(handles), 6), frameon=False)
        if title:
            text_width = width - (LEGEND_WIDTH if legend_right else 0)
            fig.suptitle(textwrap.fill(title, int(text_width * 13)), fontsize=10)
    return fig


def _draw_panel(ax, data: pd.DataFrame, colours: dict[str, str], band: str,
                handles: dict[str, Line2D]) -> None:
    if data.empty:
        ax.text(0.5, 0.5, "no epochs logged yet", transform=ax.transAxes, ha="center",
                va="center", color="0.5")
        return
    order = data.drop_duplicates("curve").sort_values(["curve_rank", "lr", "decor_lr"])
    for line in order.itertuples(index=False):
        points = data[data["curve"] == line.curve].sort_values("epoch")
        colour = colours[line.family]
        style = "-" if line.decor else "--"
        if band == "minmax":
            low, high = points["min"], points["max"]
        else:
            spread = points["std"].fillna(0.0)
            low, high = points["mean"] - spread, points["mean"] + spread
        ax.fill_between(points["epoch"], low, high, color=colour, linewidth=0,
                        alpha=0.22 if line.decor else 0.12)
        (handle,) = ax.plot(points["epoch"], points["mean"], style, color=colour,
                            label=line.curve)
        handles.setdefault(line.curve, handle)


def save(fig: Figure, table: pd.DataFrame, folder: Path, stem: str) -> list[Path]:
    """Write ``<folder>/<stem>.png|pdf|svg`` and the numbers drawn, `table`, as
    ``<stem>.csv``, each whole or not at all; return the paths. The files are byte-stable
    across runs."""
    paths = []
    with mpl.rc_context(STYLE):
        for ext in FORMATS:
            paths.append(write_atomic(folder / f"{stem}.{ext}", lambda p, ext=ext: fig.savefig(
                p, format=ext, dpi=150 if ext == "png" else None, metadata=_METADATA[ext])))
    csv = write_atomic(folder / f"{stem}.csv",
                       lambda p: table.to_csv(p, index=False, float_format="%.6g"))
    return [*paths, csv]
