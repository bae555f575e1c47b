"""Fleet file schema and loading."""

from .loader import DEFAULT_FLEET, load_fleet
from .schema import FleetConfig, ModelConfig, default_data_dir

__all__ = [
    "DEFAULT_FLEET",
    "FleetConfig",
    "ModelConfig",
    "default_data_dir",
    "load_fleet",
]
