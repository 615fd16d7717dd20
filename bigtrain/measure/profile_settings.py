"""What a profiled cell is asked for: steps, shapes, and where its artifacts go. Plain frozen data
carried in the job (no torch), so the sweep driver can build it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from bigtrain.common.errors import BadInput
from bigtrain.common.profile_format import PROFILES_DIR

DEFAULT_PROFILE_STEPS = 5
#: More steps make a bigger trace without a better picture: a few steps are the point.
MAX_PROFILE_STEPS = 50
_SAFE_CELL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, kw_only=True)
class ProfileRequest:
    """`--profile [--profile-steps N] [--profile-shapes]`: what every profiled cell runs."""

    steps: int = DEFAULT_PROFILE_STEPS
    shapes: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not (
                1 <= self.steps <= MAX_PROFILE_STEPS):
            raise BadInput(f"--profile-steps {self.steps!r}: give an integer from 1 to "
                           f"{MAX_PROFILE_STEPS}")


@dataclass(frozen=True, kw_only=True)
class ProfileSettings:
    """One cell's profiled window: the request, the run folder (absolute, on the worker's
    filesystem) and the cell's folder relative to it (`profiles/<cell_id>`)."""

    request: ProfileRequest
    run_dir: str
    relative: str
    cell_id: str

    @property
    def folder(self) -> str:
        """The cell's profile folder (absolute)."""
        return str(PurePosixPath(self.run_dir) / self.relative)


def profile_settings_for(request: ProfileRequest, run_dir: str, cell_id: str) -> ProfileSettings:
    """The settings of cell `cell_id`; BadInput when the id cannot name a folder (a path from
    data is built only from one safe component)."""
    if not _SAFE_CELL.fullmatch(cell_id) or cell_id in (".", ".."):
        raise BadInput(f"cell id {cell_id!r} cannot name a profile folder (1-100 of A-Z a-z 0-9 "
                       f". _ -, starting with a letter or digit)")
    return ProfileSettings(request=request, run_dir=str(run_dir),
                           relative=f"{PROFILES_DIR}/{cell_id}", cell_id=cell_id)
