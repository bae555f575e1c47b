"""Energy counters the machine exposes: Intel/AMD RAPL (powercap) and NVIDIA GPUs (NVML).

Average power over a stretch of work is the difference of two readings over the time between.
"""

from __future__ import annotations

from pathlib import Path

_RAPL = Path("/sys/class/powercap")


def _rapl_joules() -> float | None:
    """Sum of the top-level RAPL packages' energy (psys when present: the whole platform)."""
    zones = [z for z in _RAPL.glob("intel-rapl:*") if z.name.count(":") == 1] if _RAPL.is_dir() else []
    total = None
    for zone in zones:
        try:
            total = (total or 0.0) + int((zone / "energy_uj").read_text()) / 1e6
        except (OSError, ValueError):  # unreadable without root on recent kernels
            return None
    return total


def _nvml_joules() -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no GPU, no library: nothing to add
        return None
    try:
        count = pynvml.nvmlDeviceGetCount()
        return sum(pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(i)) / 1000
                   for i in range(count)) if count else None
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()


def energy_joules() -> dict[str, float]:
    """Cumulative energy per source that can be read here (empty when none can)."""
    readings = {"rapl": _rapl_joules(), "nvml": _nvml_joules()}
    return {source: joules for source, joules in readings.items() if joules is not None}


def average_watts(before: dict[str, float], after: dict[str, float], seconds: float) -> float | None:
    """Mean power between two ``energy_joules`` readings (counters that wrapped are left out)."""
    deltas = [after[k] - before[k] for k in before.keys() & after.keys() if after[k] >= before[k]]
    return sum(deltas) / seconds if deltas and seconds > 0 else None
