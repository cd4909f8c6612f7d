"""Finding the test SLURM cluster (tests/services/slurm.sh), or skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SLURM_CONF_DEFAULT = Path("/tmp/corrgd-slurm/slurm.conf")


def slurm_conf_or_skip() -> str:
    """The SLURM_CONF of a cluster that answers `sinfo`; skips the test otherwise."""
    conf = os.environ.get("SLURM_CONF") or (
        str(SLURM_CONF_DEFAULT) if SLURM_CONF_DEFAULT.exists() else None)
    if conf is None or not Path(conf).exists() or shutil.which("sinfo") is None:
        pytest.skip("no SLURM cluster (run tests/services/slurm.sh start)")
    env = {**os.environ, "SLURM_CONF": conf}
    try:  # a wrong SLURM_CONF makes sinfo hang rather than fail
        probe = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=15,
                               env=env)
    except subprocess.TimeoutExpired:
        pytest.skip("SLURM not reachable: sinfo timed out")
    if probe.returncode != 0:
        pytest.skip(f"SLURM not reachable: {probe.stderr.strip()}")
    return conf
