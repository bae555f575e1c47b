"""Child processes that never outlive the gateway.

Each runner gets its own process group (so stopping it stops anything it
spawned) and a parent-death signal (so a SIGKILLed gateway takes it along).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import signal
import shutil
import socket
import subprocess
import threading
from typing import Callable

from .logs import LogTail

_PR_SET_PDEATHSIG = 1
_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before restarting a process that failed again


def retry_delay(failures: int) -> float:
    """Backoff before the next start after ``failures`` failures in a row (at least one)."""
    return _RETRY_DELAYS[min(max(failures, 1), len(_RETRY_DELAYS)) - 1]


_libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None
_SETPRIV = shutil.which("setpriv")  # util-linux: sets the parent-death signal, then execs the runner


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


class RunnerProcess:
    """A started child: its pid, and its exit code (``returncode``, None while it runs; minus the
    signal that ended it), as asyncio's Process has them."""

    def __init__(self, pid: int):
        self.pid = pid
        self.pump: asyncio.Task[None] | None = None  # held here: the loop keeps only weak references to tasks
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # A blocking waitpid on a thread of its own (asyncio's threaded child watcher does the same):
        # an event loop's own child handling reaps only the processes it started itself.
        threading.Thread(target=self._reap, args=(asyncio.get_running_loop(),), daemon=True).start()

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        try:
            loop.call_soon_threadsafe(lambda: self._exited.done() or self._exited.set_result(code))
        except RuntimeError:  # the loop closed first (the gateway is exiting)
            pass


def _launch(argv: list[str], env: dict[str, str], output: int) -> int:
    """Start ``argv`` with stdout and stderr on ``output``; its pid. With setpriv, the child gets its
    parent-death signal from setpriv's own exec, and Python's subprocess starts it with vfork: a fork of
    the gateway (tens of MB of page tables, ~20 ms on a small VM; a preexec_fn needs one) is avoided on
    every load. Without setpriv, the preexec_fn sets it after a fork (and, unlike setpriv, also catches a
    gateway that died before the signal was set)."""
    options = dict(stdin=subprocess.DEVNULL, stdout=output, stderr=output, env={**os.environ, **env},
                   start_new_session=True)
    if _SETPRIV is not None:
        program = shutil.which(argv[0], path=options["env"].get("PATH"))
        if program is None:  # said here, as without setpriv, rather than by setpriv in the runner's log
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
        child = subprocess.Popen([_SETPRIV, "--pdeathsig", "KILL", "--", program, *argv[1:]], **options)
    else:
        child = subprocess.Popen(argv, preexec_fn=_die_with_parent(os.getpid()), **options)
    child.returncode = 0  # RunnerProcess reaps it; Popen must neither wait for it nor warn that it runs
    return child.pid


async def spawn(argv: list[str], env: dict[str, str], log: LogTail) -> RunnerProcess:
    """Start ``argv`` (never through a shell) with stdout and stderr pumped into ``log``."""
    read_end, write_end = os.pipe()
    try:
        pid = _launch(argv, env, write_end)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    proc = RunnerProcess(pid)
    loop = asyncio.get_running_loop()
    output = asyncio.StreamReader(limit=1 << 20, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(output, loop=loop), open(read_end, "rb", 0))
    proc.pump = loop.create_task(_pump(output, log))
    return proc


async def _pump(output: asyncio.StreamReader, log: LogTail) -> None:
    try:
        while line := await output.readline():
            log.write(line.decode("utf-8", "replace"))
    except (ValueError, OSError) as exc:  # an over-long line or a closed pipe
        log.write(f"[homestack] stopped reading runner output: {exc}")


async def terminate(proc: RunnerProcess, grace: float = 5.0) -> int:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds (0: at once); return the exit code."""
    if proc.returncode is None and grace > 0:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            pass
    _signal_group(proc.pid, signal.SIGKILL)  # also reaps stragglers in the group
    return await proc.wait()


def kill_group(proc: RunnerProcess) -> None:
    """SIGKILL the process group now, for a runner abandoned half-started."""
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
