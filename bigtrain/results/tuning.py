"""What a tuned converge run's records are (`bigbench converge --tune-lr`): trials and finals.

A search's trials are kept in the run (nothing hidden) but are not measured results: the lr of
each was picked by the search, and one of them shares its cell with the finals, so counting it
would report the seed the lr was chosen on. Gates and time-to-target tables leave them out through
`is_tuning_trial`; the leaderboard's tuning table shows them. Pure Python: both sides import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROLE_TRIAL = "trial"
ROLE_FINAL = "final"
#: The record values `tune_role` takes (the field table's choice).
TUNE_ROLES = (ROLE_TRIAL, ROLE_FINAL)


def is_tuning_trial(record: Any) -> bool:
    """True for a search's trial: a CellRecord, or a mapping such as a frame row."""
    if isinstance(record, Mapping):
        return record.get("tune_role") == ROLE_TRIAL
    return getattr(record, "tune_role", None) == ROLE_TRIAL
