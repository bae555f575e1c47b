"""Model files: shipped default models, sha256 manifests, binaries."""

from .shipped import SHIPPED, check_reference, is_package_ref, resolve_model

__all__ = ["SHIPPED", "check_reference", "is_package_ref", "resolve_model"]
