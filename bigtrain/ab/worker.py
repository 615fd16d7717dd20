"""The A/B worker: runs cells for the driver inside one side's own interpreter.

Started by the driver as `PY -m bigtrain ab-worker --protocol 1 --core N` (see
`bigtrain.ab.protocol`), in a session of its own so that Ctrl-C reaches only the driver, which
decides what to stop. It pins itself to core N before torch is imported and runs torch with one
thread, so a cell's timing is one core's work whatever else the machine does. The measuring
itself is the sweep's own (`bigtrain.run.cell.run_cell`); only the transport differs from the
local pool's worker, because a multiprocessing child would import the driver's bigtrain instead of
the side's.

Its standard output is the message channel: everything else that would print there (a plugin, a
library) is sent to standard error, which the driver keeps in a log for a crash's record.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from typing import IO, Any

from bigtrain.ab.protocol import SUPPORTED_PROTOCOLS, send
from bigtrain.run.worker_protocol import error_message, ready_message, record_message


def message_channel() -> IO[str]:
    """The original standard output, for messages only; fd 1 then points at standard error."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return channel


def describe() -> dict[str, Any]:
    """What the driver records about this side: protocols, versions, the machine as it sees it."""
    from bigtrain import __version__
    from bigtrain.measure.envinfo import collect_environment

    return {"protocol": list(SUPPORTED_PROTOCOLS), "bigtrain_version": __version__,
            "python": sys.executable, "environment": collect_environment()}


def serve(*, protocol: int, core: int | None) -> int:
    """Announce readiness, then run each job the driver sends until it says stop; the exit code."""
    if protocol not in SUPPORTED_PROTOCOLS:
        print(f"bigbench ab-worker: protocol {protocol} is not spoken here (this bigtrain speaks "
              f"{', '.join(map(str, SUPPORTED_PROTOCOLS))}); use the same bigtrain version on "
              f"both sides or upgrade the older one", file=sys.stderr)
        return 2
    from bigtrain.run.process_tree import mark_as_subreaper
    from bigtrain.run.worker import _die_with_parent

    channel = message_channel()
    _die_with_parent()
    mark_as_subreaper()
    if os.getppid() == 1:
        return 1  # the driver died before PDEATHSIG was armed (a wrapper may sit in between)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if core is not None:
        os.sched_setaffinity(0, {core})  # before torch starts its thread pools

    import torch

    from bigtrain import __version__
    from bigtrain.ab.protocol import job_from_message
    from bigtrain.common.registry import load_plugins
    from bigtrain.run.cell import run_cell

    torch.set_num_threads(1)
    load_plugins()
    gc.collect()
    gc.freeze()  # what lives as long as the worker stays out of the collector's scans
    send(channel, ready_message(os.getpid(), cores=sorted(os.sched_getaffinity(0)),
                                python=sys.executable, bigtrain_version=__version__,
                                torch_threads=torch.get_num_threads()))
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("stop"):
            break
        try:
            job = job_from_message(message["job"])
        except (KeyError, TypeError, ValueError) as exc:
            send(channel, error_message(f"{type(exc).__name__}: {exc}"))
            continue
        send(channel, record_message(run_cell(job)))
    return 0
