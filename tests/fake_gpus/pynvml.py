"""A fake nvidia-ml-py for a fake NVIDIA host: put this directory first on PYTHONPATH and every
homestack process (the CLI, a gateway) finds the GPUs listed in $HOMESTACK_FAKE_GPUS, e.g.
"24GiB,24GiB" (the default: a dual-GPU host). The real NVML code path (planner/devices.py) runs."""

from __future__ import annotations

import os
from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0
_UNITS = {"GiB": 2**30, "MiB": 2**20}


class NVMLError(Exception):
    pass


def _sizes() -> list[int]:
    sizes = []
    for item in os.environ.get("HOMESTACK_FAKE_GPUS", "24GiB,24GiB").split(","):
        number, unit = item[:-3], item[-3:]
        sizes.append(int(float(number) * _UNITS[unit]))
    return sizes


def nvmlInit() -> None:
    pass


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return len(_sizes())


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    return index


def nvmlDeviceGetMemoryInfo(handle: int) -> SimpleNamespace:
    total = _sizes()[handle]
    return SimpleNamespace(total=total, used=total // 16, free=total - total // 16)


def nvmlDeviceGetName(handle: int) -> str:
    return f"Fake NVIDIA GPU {handle}"


def nvmlDeviceGetUtilizationRates(handle: int) -> SimpleNamespace:
    return SimpleNamespace(gpu=0, memory=0)


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    raise NVMLError("not supported")  # as boards without a power sensor


def nvmlDeviceGetTemperature(handle: int, sensor: int) -> int:
    return 40
