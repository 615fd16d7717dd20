"""Reading older result files: the one version check, and the steps that upgrade old data.

Every record and manifest goes through `upgrade` before it is parsed (`CellRecord.from_json` and
`Manifest.from_json` call it), so this is the one place that knows about versions:

- a version newer than `versions.SCHEMA_VERSION` is refused with a clear SchemaError (the store
  turns it into an exit-2 error naming the file and line);
- an older version is brought forward one step at a time, N -> N+1, by the steps registered here,
  until it is current. A step is a pure function on the JSON dict; one that fails on malformed
  data is a SchemaError naming the step (the field rules in schema.py are checked after it).

When a change renames or removes a key: bump `SCHEMA_VERSION` in versions.py and register the step
from the old version here, e.g. `register_step(1, record=_rename_x_to_y)`. Adding a key needs no
step (and no bump): missing keys take their dataclass defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bigtrain.results import versions
from bigtrain.results.versions import SchemaError, SchemaVersionError

RECORD = "record"
MANIFEST = "manifest"
KINDS = (RECORD, MANIFEST)

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


def _unchanged(data: dict[str, Any]) -> dict[str, Any]:
    return data


@dataclass(frozen=True, kw_only=True)
class Step:
    """How data of version `from_version` becomes version `from_version + 1`."""

    from_version: int
    record: Upgrade = _unchanged
    manifest: Upgrade = _unchanged


#: The registered steps, keyed by the version they upgrade from. None yet: version 1 is current.
STEPS: dict[int, Step] = {}


def register_step(from_version: int, *, record: Upgrade = _unchanged,
                  manifest: Upgrade = _unchanged) -> Step:
    """Register the upgrade of records and manifests from `from_version` to the next version."""
    if from_version in STEPS:
        raise ValueError(f"a step from schema_version {from_version} is already registered")
    step = Step(from_version=from_version, record=record, manifest=manifest)
    STEPS[from_version] = step
    return step


def check_version(data: Mapping[str, Any], kind: str) -> int:
    """The data's schema_version; SchemaError when it is missing or newer than this bigtrain."""
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SchemaError(f"{kind} has no integer schema_version")
    if version > versions.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{kind} has schema_version {version}, newer than this bigtrain reads "
            f"({versions.SCHEMA_VERSION}); upgrade bigtrain to read it"
        )
    if version < 1:
        raise SchemaVersionError(f"{kind} has schema_version {version}; versions start at 1")
    return version


def upgrade(data: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Check the version of a record or manifest and bring it to the current version.

    Returns a new dict (the input is not changed) whose schema_version is current.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    version = check_version(data, kind)
    out = dict(data)
    while version < versions.SCHEMA_VERSION:
        step = STEPS.get(version)
        if step is None:  # a bump without its step: a bug here, not in the user's file
            raise SchemaVersionError(
                f"{kind} has schema_version {version} and this bigtrain has no step to upgrade it "
                f"to {version + 1}"
            )
        try:
            out = dict(step.record(out) if kind == RECORD else step.manifest(out))
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            # A step is written for well-formed data; a hand-broken file (`environment: [1, 2]`)
            # is the user's input to name, not a traceback. The rule check after the upgrade
            # names fields; this names the version step the data could not go through.
            raise SchemaError(
                f"{kind} of schema_version {version} cannot be upgraded to {version + 1}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        version += 1
        out["schema_version"] = version
    return out
