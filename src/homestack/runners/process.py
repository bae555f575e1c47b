"""Child processes that never outlive the gateway.

Each runner gets its own process group (so stopping it stops anything it
spawned) and a parent-death signal (so a SIGKILLed gateway takes it along).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
from typing import Callable

from .logs import LogTail

_PR_SET_PDEATHSIG = 1
_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before restarting a process that failed again


def retry_delay(failures: int) -> float:
    """Backoff before the next start after ``failures`` failures in a row (at least one)."""
    return _RETRY_DELAYS[min(max(failures, 1), len(_RETRY_DELAYS)) - 1]
_libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent (``parent_pid``) dies; exit now if it has."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    return lambda: die_with_parent(parent_pid)


async def spawn(argv: list[str], env: dict[str, str], log: LogTail) -> asyncio.subprocess.Process:
    """Start ``argv`` (never through a shell) with stdout and stderr pumped into ``log``."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
        limit=1 << 20,
        preexec_fn=_die_with_parent(os.getpid()),
    )
    asyncio.get_running_loop().create_task(_pump(proc, log))
    return proc


async def _pump(proc: asyncio.subprocess.Process, log: LogTail) -> None:
    assert proc.stdout is not None
    try:
        while line := await proc.stdout.readline():
            log.write(line.decode("utf-8", "replace"))
    except (ValueError, OSError) as exc:  # an over-long line or a closed pipe
        log.write(f"[homestack] stopped reading runner output: {exc}")


async def terminate(proc: asyncio.subprocess.Process, grace: float = 5.0) -> int:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds (0: at once); return the exit code."""
    if proc.returncode is None and grace > 0:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            pass
    _signal_group(proc.pid, signal.SIGKILL)  # also reaps stragglers in the group
    return await proc.wait()


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group now, for a runner abandoned half-started."""
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
