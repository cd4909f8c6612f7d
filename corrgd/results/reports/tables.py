"""A report table and its writers: rich (console), Markdown, CSV and LaTeX.

A `Table` carries two frames: ``display`` (strings, as a paper would print them:
what the console, Markdown and LaTeX show) and ``data`` (the numbers behind it,
one row per fact: what the CSV holds, for further analysis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.table import Table as RichTable

from corrgd.storage.files import write_atomic

BOLD = "**"  # marks a cell to be set in bold in `display`, e.g. "**54.3**"


@dataclass
class Table:
    name: str  # file stem, e.g. "best-params-table2"
    title: str
    display: pd.DataFrame
    data: pd.DataFrame
    notes: list[str] = field(default_factory=list)  # printed under the table, in MD and TeX
    label_columns: int = 1  # leading columns of names (left-aligned), the rest values


def _cells(table: Table) -> tuple[list[str], list[list[str]]]:
    header = [str(c) for c in table.display.columns]
    rows = [["" if pd.isna(v) else str(v) for v in row]
            for row in table.display.itertuples(index=False)]
    return header, rows


def _is_bold(cell: str) -> bool:
    return len(cell) > 2 * len(BOLD) and cell.startswith(BOLD) and cell.endswith(BOLD)


def _plain(cell: str) -> str:
    return cell[len(BOLD):-len(BOLD)] if _is_bold(cell) else cell


def to_rich(table: Table) -> RichTable:
    header, rows = _cells(table)
    out = RichTable(title=table.title, title_justify="left")
    for i, name in enumerate(header):  # headers wrap rather than being cut ("DFA+dec…");
        label = i < table.label_columns  # a value column is never narrower than its numbers
        widest = max((len(_plain(r[i])) for r in rows), default=0)
        out.add_column(name, justify="left" if label else "right", overflow="fold",
                       min_width=min(len(name), 24) if label else widest)
    for row in rows:
        out.add_row(*(f"[bold]{_plain(c)}[/]" if _is_bold(c) else c for c in row))
    return out


def to_markdown(table: Table) -> str:
    header, rows = _cells(table)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = [":---" if i < table.label_columns else "---:" for i in range(len(header))]
    parts = [f"### {table.title}", "", line(header), "| " + " | ".join(align) + " |",
             *(line(r) for r in rows)]
    if table.notes:
        parts += ["", *(f"- {n}" for n in table.notes)]
    return "\n".join(parts) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--", "†": r"$^\dagger$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    header, rows = _cells(table)

    def cell(text: str) -> str:
        return rf"\textbf{{{tex_escape(_plain(text))}}}" if _is_bold(text) else tex_escape(text)

    spec = "l" * table.label_columns + "r" * (len(header) - table.label_columns)
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{tex_escape(table.title)}}}",
             rf"\label{{tab:{table.name}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(tex_escape(h) for h in header) + r" \\", r"\midrule",
             *(" & ".join(cell(c) for c in row) + r" \\" for row in rows),
             r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        notes = r" \\ ".join(tex_escape(n) for n in table.notes)
        lines.append(rf"\par\smallskip{{\footnotesize {notes}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(table: Table, out_dir: Path) -> list[Path]:
    """Write ``<out_dir>/<name>.md``, ``.csv`` (the numbers) and ``.tex``, each whole or not
    at all; return the paths."""
    def path(ext: str) -> Path:
        return out_dir / f"{table.name}.{ext}"

    return [write_atomic(path("md"), lambda p: p.write_text(to_markdown(table))),
            write_atomic(path("csv"), lambda p: table.data.to_csv(p, index=False)),
            write_atomic(path("tex"), lambda p: p.write_text(to_latex(table)))]
