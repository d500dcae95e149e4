"""Where this machine's worker processes come from: a fork server that has imported the worker module once.

Light on purpose (no torch, no MONAI): the CLI starts the server before it imports them itself, so that on a
few cores the server's seconds of imports overlap the parent's instead of following them. Workers are forked
from the server, not from the parent: a fork of a process that has run OpenMP (any torch computation) can hang
in its first parallel region (seen here with torch's libgomp). Spawn where there is no fork server (Windows).
"""

from __future__ import annotations

from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext

__all__ = ["start_fork_server", "worker_context"]

WORKER_MODULE = "bundle.inference.workers"
_SERVER_ONLY = "bundle.inference.fork_server_exit"


def worker_context() -> BaseContext:
    """The ``multiprocessing`` context of worker processes (the fork server preloaded with the worker module)."""
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([WORKER_MODULE, _SERVER_ONLY])
    return context


def start_fork_server() -> None:
    """Start the fork server now (it imports in the background); a no-op where there is none or it runs."""
    if "forkserver" in get_all_start_methods():
        from multiprocessing import forkserver

        worker_context()
        forkserver.ensure_running()
