"""README's examples run: the library example of "The library" trains three members one
step, its Layout section lists exactly the packages and top-level modules of corrgd/, and
every path it names in backticks exists."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_library_example_trains_three_members_a_step() -> None:
    section = README[README.index("## The library"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict = {}
    exec(compile(code[1], "README.md", "exec"), namespace)
    losses = namespace["losses"]
    assert losses.shape == (3,) and torch.isfinite(losses).all()


def test_the_layout_section_lists_what_corrgd_holds() -> None:
    section = README[README.index("## Layout"):README.index("## Benchmarks")]
    listed = set(re.findall(r"^corrgd/(\w+(?:\.py)?)", section, re.M))
    here = {p.name for p in (ROOT / "corrgd").iterdir()
            if (p.suffix == ".py" and p.stem != "__init__" and p.stem != "__main__")
            or (p.is_dir() and (p / "__init__.py").exists())}
    assert listed == here


def test_every_path_the_readme_names_exists() -> None:
    named = set(re.findall(r"`((?:corrgd|tests|benchmarks|sweeps)/[\w./-]*\w)`", README))
    assert named, "README names no paths: the pattern is wrong"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"README names paths that do not exist: {missing}"
