"""The memory devices runners can use: CPU RAM always, NVIDIA GPUs through NVML.

NVML is reached through a small provider (``GpuProvider``) so the GPU path can
be tested with a fake one on machines without a GPU.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from ..config.schema import Memory


@dataclass(frozen=True)
class Device:
    id: str  # "cpu", "gpu0", "gpu1", ... (gpuN is NVML index N, the CUDA_VISIBLE_DEVICES value)
    name: str
    total: int  # bytes
    free: int  # bytes the OS or driver says are available now

    def budget(self, memory: Memory) -> int:
        """What runners may hold here: total x headroom, capped by the configured budget."""
        cap = memory.cpu_budget if self.id == "cpu" else memory.gpu_budget
        budget = int(self.total * memory.headroom)
        return min(budget, cap) if cap is not None else budget

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class GpuProvider(Protocol):
    def gpus(self) -> list[tuple[str, int, int]]:
        """(name, total bytes, free bytes) per GPU, in NVML index order; [] when there are none."""

    def stats(self) -> list[dict[str, object]]:
        """Per GPU: id, name, memory_used_bytes, memory_total_bytes, utilization_ratio,
        temperature_celsius, power_watts (None where the driver does not say)."""


class Nvml:
    """The real provider: nvidia-ml-py, if installed and a driver is present."""

    _absent = False  # NVML was not found once: do not look again on every scrape

    def gpus(self) -> list[tuple[str, int, int]]:
        return [(g["name"], g["memory_total_bytes"], g["memory_total_bytes"] - g["memory_used_bytes"])
                for g in self.stats()]

    def stats(self) -> list[dict[str, object]]:
        if Nvml._absent:
            return []
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # not installed, or no driver or GPU: a CPU-only machine
            Nvml._absent = True
            return []
        try:
            return [_gpu_stats(pynvml, index) for index in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()


def _gpu_stats(pynvml, index: int) -> dict[str, object]:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    name = pynvml.nvmlDeviceGetName(handle)

    def optional(read):
        try:
            return read()
        except pynvml.NVMLError:  # e.g. power on boards without a sensor
            return None

    utilization = optional(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100)
    power = optional(lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000)
    return {
        "id": f"gpu{index}", "name": name.decode() if isinstance(name, bytes) else name,
        "memory_used_bytes": int(memory.used), "memory_total_bytes": int(memory.total),
        "utilization_ratio": utilization, "power_watts": power,
        "temperature_celsius": optional(lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
    }


def cpu_device(meminfo: Path = Path("/proc/meminfo")) -> Device:
    fields = {}
    for line in meminfo.read_text().splitlines():
        key, _, rest = line.partition(":")
        fields[key] = int(rest.split()[0]) * 1024  # the kernel reports kB
    return Device("cpu", "CPU RAM", fields["MemTotal"], fields.get("MemAvailable", fields["MemFree"]))


def probe_devices(gpu_provider: GpuProvider | None = None) -> list[Device]:
    gpus = (gpu_provider or Nvml()).gpus()
    return [cpu_device()] + [Device(f"gpu{i}", name, total, free) for i, (name, total, free) in enumerate(gpus)]


def process_memory(pid: int) -> int:
    """Resident bytes of a runner process and its children (0 once it is gone)."""
    total = 0
    for p in (pid, *_children(pid)):
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_children(kid)]
    return found
