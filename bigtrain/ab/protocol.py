"""The messages between the A/B driver and a side's worker: one JSON object a line.

The worker is started as `PY -m bigtrain ab-worker --protocol N` by the side's own interpreter, so
it runs the side's bigtrain, which may be older or newer than the driver's. The interface is kept
small and versioned: the driver names the protocol version it speaks, and a worker that does not
speak it exits with code 2 and says so. Version 1:

    worker -> driver  {"ready": 1, "pid": .., "cores": [..], "python": .., "bigtrain_version": ..,
                       "torch_threads": ..}
    driver -> worker  {"job": {"run_id", "cell_id", "axes", "repeat", "device", "protocol",
                       "settings", "seed"}}
    worker -> driver  {"record": <a cells.jsonl record>}   or   {"error": "why the job was refused"}
    driver -> worker  {"stop": true}   (or end of input)

The worker's messages are the worker protocol every worker speaks (`bigtrain.run.worker_protocol`,
which encodes them and, on the driver's side, validates each one), one message a line.

`ab-worker --describe` prints one object instead: {"protocol": [1], "bigtrain_version", "python",
"environment": <what `bigbench env --json` prints>}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import IO, Any

from bigtrain.run.worker_protocol import PROTOCOL_VERSION, encode

SUPPORTED_PROTOCOLS = (PROTOCOL_VERSION,)
WORKER_COMMAND = "ab-worker"


def job_message(job: Any) -> dict[str, Any]:
    """The `job` message for a CellJob: plain values only (no pickles across versions). A
    profiled job (`ab --profile`) adds `profile`, which a worker from before profiles ignores."""
    message = {
        "run_id": job.run_id,
        "cell_id": job.cell.cell_id,
        "axes": job.cell.axes(),
        "repeat": job.repeat,
        "device": job.device,
        "protocol": job.protocol,
        "settings": dataclasses.asdict(job.settings),
        "seed": job.seed,
    }
    profile = getattr(job, "profile", None)
    if profile is not None:
        message["profile"] = {"steps": profile.request.steps, "shapes": profile.request.shapes,
                              "run_dir": profile.run_dir}
    return {"job": message}


def job_from_message(message: Mapping[str, Any]) -> Any:
    """The CellJob a `job` message describes, built with this process's bigtrain.

    ValueError naming the field when the message holds an axis or setting this version lacks (a
    newer driver asking for something this worker cannot measure).
    """
    from bigtrain.cells.matrix import Cell
    from bigtrain.cells.settings import StepTimeSettings
    from bigtrain.run.job import CellJob

    axes = dict(message["axes"])
    known_axes = {f.name for f in dataclasses.fields(Cell)} - {"cell_id", "status", "reason"}
    unknown = sorted(set(axes) - known_axes)
    if unknown:
        raise ValueError(f"this worker's bigtrain has no axis {', '.join(unknown)}")
    settings = dict(message["settings"])
    known_settings = {f.name for f in dataclasses.fields(StepTimeSettings)}
    unknown = sorted(set(settings) - known_settings)
    if unknown:
        raise ValueError(f"this worker's bigtrain has no step-time setting {', '.join(unknown)}")
    cell = Cell(cell_id=message["cell_id"], **axes)
    profile = None
    if isinstance(message.get("profile"), Mapping):
        from bigtrain.measure.profile_settings import ProfileRequest, profile_settings_for

        asked = message["profile"]
        profile = profile_settings_for(
            ProfileRequest(steps=int(asked["steps"]), shapes=bool(asked["shapes"])),
            str(asked["run_dir"]), cell.cell_id)
    return CellJob(run_id=message["run_id"], cell=cell, repeat=int(message["repeat"]),
                   device=message["device"], settings=StepTimeSettings(**settings),
                   protocol=message["protocol"], seed=int(message["seed"]), profile=profile)


def send(stream: IO[str], message: Mapping[str, Any]) -> None:
    """Write one message as one line and flush it."""
    stream.write(encode(message).decode("utf-8") + "\n")
    stream.flush()
