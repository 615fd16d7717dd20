"""Killing a worker with everything it started, wherever in the process table that ended up.

A worker runs in a session of its own, so killing its process group reaches the helpers that stay
in it; but a helper that starts its own session (`setsid`, `start_new_session=True`, a daemon's
double fork) leaves the group and would survive the worker as an orphan of init, still holding
the GPU or the CPU. So the tree is found by parentage instead: the worker is made a child
subreaper (`mark_as_subreaper`), so that even descendants whose parent exited are re-parented to
it rather than to init, and `kill_tree` stops the worker and every descendant (a stopped process
cannot fork again, so the tree cannot grow while it is walked), then kills them all.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import psutil

_PR_SET_CHILD_SUBREAPER = 36
#: Walks of the tree before killing; each stops what it found, so the second normally finds
#: nothing new. The bound only guards against a pathological fork storm.
MAX_WALKS = 20


def mark_as_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _descendants(root: psutil.Process) -> list[psutil.Process]:
    try:
        return root.children(recursive=True)
    except psutil.Error:
        return []


def kill_tree(root: psutil.Process) -> list[int]:
    """SIGKILL `root`, its process group, and every descendant, whatever their session.

    `root` is the psutil handle taken when the process started: psutil checks, before each
    signal, that a pid still names the process it found, so the walk never hits a process that
    reused a pid. Returns the pids of the tree signalled (the root first); the caller reaps its
    own child (the root).
    """
    if not root.is_running():
        # Died and reaped already: its descendants have been re-parented, so only its group can
        # still be reached (as before this module existed).
        _kill_group(root.pid)
        return []
    found: dict[int, psutil.Process] = {}
    frontier = [root]
    for _ in range(MAX_WALKS):
        for process in frontier:
            found[process.pid] = process
            try:
                process.send_signal(signal.SIGSTOP)
            except psutil.Error:
                pass
        frontier = [p for p in _descendants(root) if p.pid not in found]
        if not frontier:
            break
    _kill_group(root.pid)  # a member that is no descendant (its parent already reaped) included
    for process in found.values():
        try:
            process.kill()
        except psutil.Error:
            pass
    return list(found)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
