"""A shared progress board for the ranks of a data-parallel cell: a small memory-mapped file.

Each rank owns one slot of two 64-bit counters, written only by that rank: its phase (joined,
built, warm-up, window, ...) and the gradient buckets it has made ready for DDP's all-reduce.
Writing is a store into shared memory (no system call), cheap enough for the comm hook inside the
timed window. The parent reads the board when a cell overruns its limit: the rank behind the
others is the one that hung (the others wait for it in an all-reduce).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

_SLOT = struct.Struct("<qq")  # phase, gradient buckets made ready

PHASE_STARTED = 0
PHASE_JOINED = 1
PHASE_BUILT = 2
PHASE_WARMUP = 3
PHASE_SYNC_WARMUP = 4
PHASE_WINDOW = 5
PHASE_NO_SYNC = 6
PHASE_DONE = 7
#: What each phase is called in a record's reason.
PHASE_NAMES = {
    PHASE_STARTED: "starting (not yet in the process group)",
    PHASE_JOINED: "building the cell",
    PHASE_BUILT: "built",
    PHASE_WARMUP: "warm-up",
    PHASE_SYNC_WARMUP: "synchronized warm-up",
    PHASE_WINDOW: "the timed window",
    PHASE_NO_SYNC: "the no-sync window",
    PHASE_DONE: "done",
}


@dataclass(frozen=True, kw_only=True)
class RankProgress:
    """What the board says about one rank."""

    rank: int
    phase: int
    buckets: int

    @property
    def phase_name(self) -> str:
        """The phase in words."""
        return PHASE_NAMES.get(self.phase, f"phase {self.phase}")


class _Slot:
    """One rank's slot: what its comm hook ticks."""

    def __init__(self, board: ProgressBoard, rank: int) -> None:
        self._board = board
        self._rank = rank
        self.buckets = 0

    def tick(self) -> None:
        self.buckets += 1
        self._board.write(self._rank, buckets=self.buckets)


class ProgressBoard:
    """The memory-mapped board of `world_size` slots."""

    def __init__(self, memory: mmap.mmap, world_size: int) -> None:
        self._memory = memory
        self.world_size = world_size
        self._phases = [PHASE_STARTED] * world_size
        self._buckets = [0] * world_size

    @classmethod
    def create(cls, path: Path, world_size: int) -> ProgressBoard:
        """Make the board's file (zeroed: every rank starting) and map it."""
        path.write_bytes(b"\0" * (_SLOT.size * world_size))
        return cls.open(path, world_size)

    @classmethod
    def open(cls, path: Path, world_size: int) -> ProgressBoard:
        """Map an existing board."""
        with open(path, "r+b") as fh:
            memory = mmap.mmap(fh.fileno(), _SLOT.size * world_size)
        return cls(memory, world_size)

    def slot(self, rank: int) -> _Slot:
        """The handle rank `rank`'s comm hook ticks."""
        return _Slot(self, rank)

    def write(self, rank: int, *, phase: int | None = None, buckets: int | None = None) -> None:
        """Set rank `rank`'s phase and/or bucket count (only that rank writes its slot)."""
        if phase is not None:
            self._phases[rank] = phase
        if buckets is not None:
            self._buckets[rank] = buckets
        _SLOT.pack_into(self._memory, _SLOT.size * rank, self._phases[rank], self._buckets[rank])

    def phase(self, rank: int, phase: int) -> None:
        """Rank `rank` entered `phase`."""
        self.write(rank, phase=phase)

    def read(self) -> list[RankProgress]:
        """Every rank's progress, in rank order."""
        return [RankProgress(rank=r, phase=phase, buckets=buckets)
                for r, (phase, buckets) in enumerate(
                    _SLOT.unpack_from(self._memory, _SLOT.size * r) for r in range(self.world_size))]

    def close(self) -> None:
        """Unmap the board."""
        self._memory.close()


def laggards(progress: list[RankProgress]) -> list[int]:
    """The ranks behind the others among those not done: the lowest phase, then the fewest
    gradient buckets made ready. Every unfinished rank when none is behind."""
    running = [p for p in progress if p.phase != PHASE_DONE]
    if not running:
        return []
    key = min((p.phase, p.buckets) for p in running)
    behind = [p.rank for p in running if (p.phase, p.buckets) == key]
    return behind
