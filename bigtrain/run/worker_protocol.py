"""The one message protocol every worker speaks to its driver, whatever carries it.

Three channels carry it: the local pool's pipe (`bigtrain.run.worker`, one message per
`send_bytes`), the A/B worker's standard output (`bigtrain.ab.worker`, one message a line) and a
Ray actor's return value (`bigtrain.run.ray_executor`); a data-parallel rank's result file
(`bigtrain.run.rank`) holds one `record` message. A message is one JSON object naming its kind
by the one kind key it holds:

    {"ready": 1, "pid": N, ...}              the worker started (1: the protocol version); a
                                             channel may add fields (the A/B worker's cores, ..)
    {"record": <a cells.jsonl record>}       the result of the job it was given
    {"health": {"healthy": B, "reason": S}}  after a failed cell: keep me, or replace me
    {"error": "why"}                         the job was refused (the A/B worker's bigtrain
                                             cannot build it)

Everything a worker sends is data from another process, which may be broken or hostile: the
driver decodes every message with `decode`, which checks the bytes, the JSON, the kind (one the
driver expects at that moment) and each kind's fields, and validates a record against the schema.
Anything else is a `ProtocolError` that says what was wrong and shows (shortened) what arrived;
the driver records it as that cell's `error` and replaces the worker, and the sweep goes on.

Messages are JSON, never pickles, so no byte from a worker is ever executed by the driver.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from bigtrain.results.schema import CellRecord, SchemaError
from bigtrain.results.store import json_problem as unencodable

PROTOCOL_VERSION = 1
READY = "ready"
RECORD = "record"
HEALTH = "health"
ERROR = "error"
KINDS = (READY, RECORD, HEALTH, ERROR)
#: How much of a bad message a record shows.
SHOWN_CHARS = 300
#: The largest message a driver reads. A real record (thousands of step times, a compact profile
#: summary) is well under 1 MiB; without a cap, a broken or hostile worker announcing gigabytes
#: would make the driver allocate them before anything is checked.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def oversized(size_bytes: int) -> ProtocolError:
    """The error for a message over MAX_MESSAGE_BYTES (what arrived: only its size)."""
    return ProtocolError(f"a message of {size_bytes} bytes or more, over the "
                         f"{MAX_MESSAGE_BYTES}-byte limit", f"({size_bytes} bytes, not shown)")


class ProtocolError(Exception):
    """A message that breaks the protocol: `problem` says how, `arrived` shows what came."""

    def __init__(self, problem: str, arrived: str) -> None:
        super().__init__(f"{problem}; what arrived: {arrived}")
        self.problem = problem
        self.arrived = arrived


@dataclass(frozen=True)
class Message:
    """One decoded, validated message."""

    kind: str
    #: Every field of the message, as sent.
    fields: Mapping[str, Any] = field(default_factory=dict)
    #: The validated record of a `record` message.
    record: CellRecord | None = None

    @property
    def healthy(self) -> bool:
        """A `health` message's verdict."""
        return bool(self.fields[HEALTH]["healthy"])


# -- encoding (the worker's side) -------------------------------------------------------------
def encode(message: Mapping[str, Any]) -> bytes:
    """One message as UTF-8 JSON bytes, no newline inside (ValueError/TypeError if not JSON)."""
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode("utf-8")


def ready_message(pid: int, **info: Any) -> dict[str, Any]:
    """`ready`: this worker started, speaking PROTOCOL_VERSION."""
    return {READY: PROTOCOL_VERSION, "pid": pid, **info}


def record_message(record: CellRecord) -> dict[str, Any]:
    """`record`: the result of the job."""
    return {RECORD: record.to_json()}


def health_message(healthy: bool, reason: str | None) -> dict[str, Any]:
    """`health`: whether this worker may run the next cell after a failed one."""
    return {HEALTH: {"healthy": bool(healthy), "reason": reason}}


def error_message(why: str) -> dict[str, Any]:
    """`error`: the job was refused."""
    return {ERROR: str(why)}


# -- decoding (the driver's side) -------------------------------------------------------------
def shown(raw: Any) -> str:
    """What arrived, shortened, safe to put in a record (a repr: control bytes escaped)."""
    text = repr(raw)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} chars)"


def decode(raw: Any, *, expect: Collection[str]) -> Message:
    """The message in `raw` (bytes or text off a stream, or a value a Ray actor returned),
    checked to be a valid message of one of the kinds in `expect`; ProtocolError otherwise."""
    if isinstance(raw, (bytes, bytearray, memoryview, str)) and len(raw) > MAX_MESSAGE_BYTES:
        raise oversized(len(raw))
    data = _parse(raw)
    if not isinstance(data, dict):
        raise ProtocolError(f"a message must be a JSON object, not {_kind_of(data)}", shown(raw))
    kinds = [kind for kind in KINDS if kind in data]
    if len(kinds) != 1:
        named = f"kinds {', '.join(kinds)}" if kinds else "no known kind"
        raise ProtocolError(f"a message names exactly one kind ({', '.join(KINDS)}); this one "
                            f"has {named}", shown(raw))
    kind = kinds[0]
    if kind not in expect:
        raise ProtocolError(f"a {kind!r} message where the driver expects "
                            f"{' or '.join(repr(k) for k in expect)}", shown(raw))
    return _CHECKS[kind](data, raw)


def _parse(raw: Any) -> Any:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("not UTF-8 text (a message is one JSON object)",
                                shown(bytes(raw))) from None
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except RecursionError:
            raise ProtocolError("JSON nested too deeply", shown(raw)) from None
        except ValueError as exc:
            raise ProtocolError(f"not JSON ({exc})", shown(raw)) from None
    # A value handed over in memory (Ray): it must be what JSON would have carried.
    try:
        problem = unencodable(raw)
    except RecursionError:
        problem = "nested too deeply"
    if problem:
        raise ProtocolError(f"not JSON data ({problem})", shown(raw))
    return raw


def _kind_of(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}")


def _check_ready(data: dict[str, Any], raw: Any) -> Message:
    version, pid = data[READY], data.get("pid")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(f"the worker announced protocol {version!r}, not {PROTOCOL_VERSION}",
                            shown(raw))
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise ProtocolError(f"'ready' needs the worker's pid, got {pid!r}", shown(raw))
    return Message(READY, data)


def _check_record(data: dict[str, Any], raw: Any) -> Message:
    payload = data[RECORD]
    if not isinstance(payload, dict):
        raise ProtocolError(f"'record' must hold a record object, not {_kind_of(payload)}",
                            shown(raw))
    try:
        record = CellRecord.from_json(payload)
    except SchemaError as exc:
        raise ProtocolError(f"an invalid record ({exc})", shown(raw)) from None
    except (TypeError, ValueError, KeyError) as exc:  # a schema check that did not expect it
        raise ProtocolError(f"an invalid record ({type(exc).__name__}: {exc})",
                            shown(raw)) from None
    return Message(RECORD, data, record=record)


def _check_health(data: dict[str, Any], raw: Any) -> Message:
    payload = data[HEALTH]
    if not (isinstance(payload, dict) and isinstance(payload.get("healthy"), bool)
            and isinstance(payload.get("reason"), (str, type(None)))):
        raise ProtocolError("'health' must hold {\"healthy\": true|false, \"reason\": text or "
                            "null}", shown(raw))
    return Message(HEALTH, data)


def _check_error(data: dict[str, Any], raw: Any) -> Message:
    if not isinstance(data[ERROR], str):
        raise ProtocolError("'error' must hold the reason as text", shown(raw))
    return Message(ERROR, data)


_CHECKS = {READY: _check_ready, RECORD: _check_record, HEALTH: _check_health,
           ERROR: _check_error}
