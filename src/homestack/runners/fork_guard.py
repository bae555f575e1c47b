"""Run a Python module as ``__main__`` with every process it forks dying with its parent.

The gateway gives each runner a parent-death signal (process.py), but the kernel clears it in
forked children. vLLM's API server forks an engine core, which forks a worker, and neither
watches its parent: a SIGKILLed gateway would leave them running. Run through this module, each
forked process gets the signal again, so the chain goes down link by link (gateway, API server,
engine core, worker) as a llama-server does. The normal stop needs none of it: it signals the
whole process group.

    python -m homestack.runners.fork_guard MODULE [ARG...]
"""

from __future__ import annotations

import os
import runpy
import sys

from .process import die_with_parent

_forking_pid = 0  # the pid that called fork(): the child's parent


def _remember_parent() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _arm_child() -> None:
    die_with_parent(_forking_pid)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m homestack.runners.fork_guard MODULE [ARG...]")
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    os.register_at_fork(before=_remember_parent, after_in_child=_arm_child)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
