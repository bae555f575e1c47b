"""Run a command as this process's child; if the gateway dies, take the whole process group down.

The gateway starts each runner as a process-group leader that the kernel SIGKILLs when the
gateway dies (process.py). That parent-death signal is not inherited: vLLM's API server spawns an
engine core, which spawns a worker, and neither watches its parent, so a SIGKILLed gateway would
leave both running. Run through this guard, the group leader is the guard instead: its
parent-death signal is SIGTERM, which it catches to SIGKILL its whole group. A normal stop
signals the group as for any runner; the guard then waits for its child and exits with its code.

    python -m homestack.runners.group_guard ARGV...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from .process import die_with_parent


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m homestack.runners.group_guard ARGV...")
    gateway = os.getppid()

    def on_sigterm(signum: int, frame: object) -> None:
        if os.getppid() != gateway:  # the gateway died: nobody else will stop the group
            os.killpg(0, signal.SIGKILL)
        # else the gateway signalled the whole group: the runner stops by itself, and so do we

    signal.signal(signal.SIGTERM, on_sigterm)
    die_with_parent(gateway, signal.SIGTERM)
    child = subprocess.Popen(sys.argv[1:])  # in this process group
    code = child.wait()
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
