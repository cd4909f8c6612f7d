"""corrgd: decorrelated gradient descent and its biologically plausible cousins."""

import os
from pathlib import Path

__version__ = "0.1.0"


def _strict_mkl() -> None:
    """A group of runs trains each member bit for bit as it would train alone. MKL's AVX2
    and SSE4.2 code paths round some matrix products by where their operands start in
    memory (a member's slice of a group's tensor, or the member alone), unless its strict
    reproducibility mode is on; its AVX-512 path does not (README: What is exact). MKL
    reads the mode once, at its first call: so it is set here, before corrgd does any
    tensor maths, on x86 CPUs without AVX-512. A value the user set is kept."""
    if "MKL_CBWR" in os.environ:
        return
    try:
        with Path("/proc/cpuinfo").open() as cpuinfo:  # the first CPU's flags are enough
            flags = next((set(line.split()) for line in cpuinfo if line.startswith("flags")),
                         set())
    except OSError:  # not Linux: leave MKL as it is
        return
    if "sse4_2" in flags and "avx512f" not in flags:  # an x86 CPU without AVX-512
        os.environ["MKL_CBWR"] = "AUTO,STRICT"


_strict_mkl()
