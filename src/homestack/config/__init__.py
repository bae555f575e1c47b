"""Fleet file schema and loading."""

from .loader import DEFAULT_FLEET, load_fleet
from .schema import (
    CommandModel,
    EmbeddingsModel,
    FleetConfig,
    LlamaCppModel,
    ModelConfig,
    RemoteModel,
    default_data_dir,
)

__all__ = [
    "DEFAULT_FLEET",
    "CommandModel",
    "EmbeddingsModel",
    "FleetConfig",
    "LlamaCppModel",
    "ModelConfig",
    "RemoteModel",
    "default_data_dir",
    "load_fleet",
]
