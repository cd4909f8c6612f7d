"""The devices of this machine: which a worker can use, and how much memory each has free.

A machine without a GPU driver answers without importing torch, which takes seconds the
workers could have used.
"""

from __future__ import annotations

import os

# the device nodes of NVIDIA's driver, AMD's (ROCm) and WSL 2's GPU bridge
GPU_DRIVER_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def gpu_count() -> int:
    """The CUDA GPUs torch sees here."""
    if not any(os.path.exists(node) for node in GPU_DRIVER_NODES):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_devices() -> list[str]:
    """Every GPU torch sees, else ["cpu"]."""
    return [f"cuda:{i}" for i in range(gpu_count())] or ["cpu"]


def device_name_problem(device: str) -> str | None:
    """Why `device` is not a device name (None when it is): cpu, cuda or cuda:N."""
    name, colon, index = device.partition(":")
    if name == "cpu" and not colon or name == "cuda" and (not colon or index.isdigit()):
        return None
    return f"{device!r} is not a device; allowed: cpu, cuda, cuda:N"


def device_problem(device: str) -> str | None:
    """Why `device` cannot run a worker here (None when it can): cpu, cuda or cuda:N of a
    GPU this machine has."""
    if (problem := device_name_problem(device)) or device == "cpu":
        return problem
    index = device.partition(":")[2]
    count = gpu_count()
    if count == 0:
        return f"{device} needs a CUDA GPU and this machine has none; use cpu"
    if index and int(index) >= count:
        return f"{device}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}"
    return None


def total_bytes(device: str) -> int | None:
    """All the memory of `device`: a GPU's (None for a GPU this machine lacks), else this
    machine's RAM."""
    if device.startswith("cuda"):
        if device_problem(device) is not None:
            return None
        import torch

        index = torch.device(device).index
        return int(torch.cuda.get_device_properties(index or 0).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def free_bytes(device: str) -> int | None:
    """Free memory of `device`: a GPU's (None for a GPU this machine lacks), else this
    machine's available RAM."""
    if device.startswith("cuda"):
        if device_problem(device) is not None:
            return None
        import torch

        index = torch.device(device).index
        return int(torch.cuda.mem_get_info(index if index is not None else 0)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
