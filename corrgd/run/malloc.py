"""Make a training process keep the memory it frees, for the next tensor of the same size.

glibc's malloc serves blocks of 128 KiB and more with `mmap` and gives them back to
the system as soon as they are freed, and it hands the top of its heap back too. A
training step makes and frees the same tensors over and over: a grouped network's
activations (8 members × 64 samples × 128 units: 256 KiB) and its evaluation chunks
(megabytes) then page-fault their memory in anew at every step. On the CPU that costs
up to half the time of an element-wise operation.

`keep_freed_memory` raises both thresholds: blocks up to 32 MiB (the most glibc takes
from its heap) come from the heap and stay there when freed, for reuse. A worker calls
it once when it starts. The process then holds on to up to 1 GiB of memory it has
freed; the system gets it back when the process ends.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks of up to 32 MiB for reuse; returns whether
    it took the settings (False where the C library is not glibc, e.g. macOS or musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
