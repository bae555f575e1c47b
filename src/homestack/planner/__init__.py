"""Memory planning: GGUF metadata, per-model estimates, devices and the capacity plan."""

from .devices import Device, GpuProvider, probe_devices
from .estimate import Components, MemoryEstimate
from .gguf import GGUFInfo, read_gguf_info
from .plan import CapacityPlan, ModelPlan, build_plan

__all__ = [
    "CapacityPlan",
    "Components",
    "Device",
    "GGUFInfo",
    "GpuProvider",
    "MemoryEstimate",
    "ModelPlan",
    "build_plan",
    "probe_devices",
    "read_gguf_info",
]
