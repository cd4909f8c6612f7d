"""Every third-party module that corrgd/, tests/ or benchmarks/ imports comes from a
distribution pyproject.toml declares (a dependency or an extra).

A module that arrives only as someone else's dependency (click through typer, PIL
through torchvision) disappears the day that package stops depending on it, and a
fresh install then fails. `make test` runs this, so adding such an import fails it.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("corrgd", "tests", "benchmarks")
FIRST_PARTY = "corrgd"


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions(pyproject: Path) -> set[str]:
    """The distributions pyproject.toml names, as dependencies or in any extra."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {}).values()
    specs = [*project.get("dependencies", []), *(s for extra in extras for s in extra)]
    names = (re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec) for spec in specs)
    return {normalized(m.group()) for m in names if m}


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every absolute import in a file, at any depth."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def undeclared_imports(root: Path, folders: tuple[str, ...], declared: set[str]) -> list[str]:
    """One line per third-party import whose distribution `declared` lacks."""
    files = sorted(p for folder in folders for p in (root / folder).rglob("*.py"))
    # scripts and test helpers import each other by their file names
    local = {FIRST_PARTY} | {p.stem for folder in folders for p in (root / folder).glob("*.py")}
    owners = packages_distributions()
    problems = []
    for path in files:
        for name in sorted(imported_modules(path) - local - set(sys.stdlib_module_names)):
            dists = owners.get(name)
            where = path.relative_to(root)
            if not dists:  # an extra not installed here counts if it is named like the module
                if normalized(name) not in declared:
                    problems.append(f"{where}: {name} is not installed; declare the "
                                    "distribution it comes from")
            elif not {normalized(d) for d in dists} & declared:
                problems.append(f"{where}: {name} comes from {', '.join(sorted(set(dists)))}, "
                                "which pyproject.toml does not declare")
    return problems


def test_every_third_party_import_is_declared() -> None:
    declared = declared_distributions(ROOT / "pyproject.toml")
    assert undeclared_imports(ROOT, SCANNED, declared) == []


def test_an_import_of_an_undeclared_distribution_is_caught(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        "import os\nimport torch\nfrom corrgd import cli\n\n\ndef f():\n"
        "    import jinja2  # torch depends on it; corrgd does not declare it\n"
        "    from no_such_module_anywhere import x\n")
    problems = undeclared_imports(tmp_path, ("pkg",), {"torch"})
    assert len(problems) == 2
    assert "jinja2 comes from Jinja2" in problems[0] or "jinja2 comes from jinja2" in problems[0]
    assert "no_such_module_anywhere is not installed" in problems[1]


def test_extras_count_as_declared(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["Torch>=2", "scikit_learn"]\n'
        '[project.optional-dependencies]\npg = ["psycopg[binary]>=3.1"]\n')
    assert declared_distributions(tmp_path / "pyproject.toml") == \
        {"torch", "scikit-learn", "psycopg"}
