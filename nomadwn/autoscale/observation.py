"""What the autoscaler sees: value types shared by the observers and the strategy.

Pure data, no client library, so the strategy can be tested without any I/O. An
observation that failed, or that only partly succeeded, is ``None`` or marked
incomplete, never an empty list: "I could not see" is not "there is nothing".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WorkerState = Literal["starting", "unclaimed", "claimed", "draining"]


@dataclass(frozen=True)
class JobShape:
    """Idle jobs of one shape (the schedd's GroupBy row): ``count`` jobs each asking for this much."""

    cpus: int
    memory_mb: int
    count: int


@dataclass(frozen=True)
class Demand:
    """Idle demand. ``complete`` is False when some schedd could not be read."""

    shapes: tuple[JobShape, ...]
    complete: bool
    taken_at: float

    @property
    def jobs(self) -> int:
        """Idle jobs in all shapes."""
        return sum(s.count for s in self.shapes)


@dataclass(frozen=True)
class Worker:
    """One worker of a flavour: its Nomad allocation name index and its HTCondor state."""

    alloc_id: str
    index: int
    state: WorkerState


@dataclass(frozen=True)
class Supply:
    """A flavour's workers (allocations joined with startd ads) and its current group count."""

    count: int
    workers: tuple[Worker, ...]
    taken_at: float

    def in_state(self, state: WorkerState) -> int:
        """How many workers are in ``state``."""
        return sum(w.state == state for w in self.workers)

    def unclaimed_tail(self) -> int:
        """How many of the highest-index workers are unclaimed, counting down from the top.

        When a group's count drops, Nomad stops the allocations with the highest name
        index first; only this many can be removed without touching a claimed worker.
        """
        run = 0
        for worker in sorted(self.workers, key=lambda w: w.index, reverse=True):
            if worker.state != "unclaimed":
                break
            run += 1
        return run


@dataclass(frozen=True)
class Observation:
    """One flavour's view at one moment; ``None`` parts could not be observed."""

    demand: Demand | None
    supply: Supply | None
