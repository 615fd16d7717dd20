"""Stand-ins for the local pool's worker process that break the worker protocol on purpose.

`protocol_breaker` is given to `LocalPoolExecutor(worker_target=...)`: it announces itself
properly, then answers each job by its repeat number: repeat 0 breaks the protocol in the way
HOSTILE_WORKER_MODE names, any other repeat gets a valid synthetic `ok` record at once. No torch,
no measuring: the process boundary is what is faked.
"""

from __future__ import annotations

import os
from multiprocessing.connection import Connection

from bigtrain.run import worker_protocol as protocol

MODE_ENV = "HOSTILE_WORKER_MODE"
#: What each mode writes on the pipe for repeat 0.
BAD_BYTES = {
    "not-json": b"\x80\x04\x95garbage that is no pickle and no JSON",
    "bare-int": None,  # conn.send(42): a pickle of 42, as a Python worker would send it
    "unknown-kind": b'{"hello": "world"}',
    "not-an-object": b"[1, 2, 3]",
    "bad-record": b'{"record": {"cell_id": 7}}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "oversized": None,  # one byte over MAX_MESSAGE_BYTES: refused from its length alone
}


def ok_record(job):  # noqa: ANN001, ANN201
    from bigtrain.results.schema import PhaseTimes, StepTimeStats
    from bigtrain.run.records import base_record

    samples = (0.010, 0.011, 0.012)
    return base_record(job, status="ok", step_time_s=StepTimeStats.from_samples(samples),
                       step_times_s=samples,
                       phase_time_s=PhaseTimes(forward=0.004, backward=0.004, optimizer=0.002),
                       items_per_s=64 / 0.011, item_unit="samples", items_per_step=64,
                       peak_rss_bytes=2**20, loss_first=1.0, loss_last=0.5,
                       worker_pid=os.getpid())


def protocol_breaker(conn: Connection, log_path: str, parent_pid: int) -> None:
    mode = os.environ[MODE_ENV]
    conn.send_bytes(protocol.encode(protocol.ready_message(os.getpid())))
    while True:
        job = conn.recv()
        if job is None:
            return
        if job.repeat == 0:
            if mode == "bare-int":
                conn.send(42)
            elif mode == "oversized":
                conn.send_bytes(b" " * (protocol.MAX_MESSAGE_BYTES + 1))
            else:
                conn.send_bytes(BAD_BYTES[mode])
        else:
            conn.send_bytes(protocol.encode(protocol.record_message(ok_record(job))))
