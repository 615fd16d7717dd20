"""A stand-in for the local pool's worker process that says which framework it was started for.

`framework_reporter` is given to `LocalPoolExecutor(worker_target=...)`: it announces itself, then
answers each job with a synthetic `ok` record whose `extra` names the framework in its
environment (BIGTRAIN_WORKER_FRAMEWORK) and its pid, and whether torch or jax is loaded in it.
No measuring: the process boundary is what is tested.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from multiprocessing.connection import Connection

from hostile_workers import ok_record

from bigtrain.run import worker_protocol as protocol
from bigtrain.run.worker import FRAMEWORK_ENV


def framework_reporter(conn: Connection, log_path: str, parent_pid: int) -> None:
    conn.send_bytes(protocol.encode(protocol.ready_message(os.getpid())))
    while True:
        job = conn.recv()
        if job is None:
            return
        record = dataclasses.replace(ok_record(job), extra={
            "worker_framework": os.environ.get(FRAMEWORK_ENV, "unset"),
            "worker_pid_seen": os.getpid(),
            "cell_framework": job.cell.framework,
            "modules": sorted(m for m in ("torch", "jax", "tensorflow") if m in sys.modules)})
        conn.send_bytes(protocol.encode(protocol.record_message(record)))
