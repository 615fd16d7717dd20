"""The result contract's version and the errors for data that breaks the contract: below both the
schema (which parses records) and the migrations (which bring older versions forward), so that
each imports them without importing the other.
"""

from __future__ import annotations

from bigtrain.results.validation import InvalidField

SCHEMA_VERSION = 1


class SchemaError(ValueError):
    """A record or manifest that does not match the result contract.

    `key` names the top-level key at fault where one is known (for pointing at its line)."""

    key: str | None = None
    #: The full dotted name of the field at fault (`environment.gpus[0].name`), where known.
    field: str | None = None

    @classmethod
    def from_invalid(cls, exc: InvalidField) -> SchemaError:
        """The SchemaError for a value that broke its rule (the message names field and value)."""
        error = cls(str(exc))
        error.field = exc.field
        error.key = exc.field.split(".", 1)[0].split("[", 1)[0]
        return error


class SchemaVersionError(SchemaError):
    """A record or manifest whose schema_version this bigtrain cannot read."""

    key = "schema_version"  # the key at fault, for pointing at its line
