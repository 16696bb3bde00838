"""Demand accounting: every idle job counted once, for one flavour, after the free capacity.

A pure step between the observation and :func:`~nomadwn.autoscale.strategy.decide`:
given the site's idle demand and every autoscaled flavour's workers, it says how
many new workers each flavour needs, so that no job is counted by two flavours and
no job asks for a new worker while a worker it fits has room for it::

    shapes, largest jobs first (cores, then memory: first-fit decreasing)
      |
      |  candidates: the flavours whose requirements the jobs meet and whose worker
      |  they fit, in preference order: highest priority, then smallest worker
      |  (fewest cores, then least memory), then name
      v
    1. absorb into spare capacity (cores and memory both) of the candidates' workers:
       claimed workers' free cores first, then starting workers, then unclaimed ones
       from the lowest allocation index up (the top ones stay free to be removed)
    2. then into the free capacity of the workers this autoscaler is draining: their
       drain is cancelled rather than a new worker started (*reclaimed*)
    3. the rest go to new workers of the first candidate that can still grow
       (headroom = max - count; none from zero without scale_from_zero), packed
       first-fit into that flavour's worker size; when it is full, the next one
    4. a candidate whose workers could not be observed stops the walk: its jobs are
       *held* (it will hold, fail static), never pushed on to the next flavour
    5. jobs no candidate can grow for are *unserved*; jobs no flavour may run or
       fit are *unfit*; both are reported, neither asks for a worker

Cost: O(shapes × workers) per evaluation, with counts (never one job at a time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nomadwn.autoscale.policy import Policy
from nomadwn.pool import Demand, JobShape, Supply, Worker

DRAIN_REASON = "nomadwn autoscale"
"""How the drains this autoscaler starts begin their ``DrainReason``: only those it cancels."""


def ours(worker: Worker) -> bool:
    """Whether this autoscaler drains the worker (its DrainReason says so)."""
    return worker.state == "draining" and worker.drain_reason.startswith(DRAIN_REASON)


_RANK = {"claimed": 0, "starting": 1, "unclaimed": 2}
_RECLAIM = 3  # a worker we drain: its free capacity, once the drain is cancelled


@dataclass(frozen=True, slots=True)
class FlavourView:
    """What the accounting knows of one autoscaled flavour."""

    policy: Policy
    requirements: str | None
    supply: Supply | None


@dataclass(frozen=True, slots=True)
class Share:
    """What the accounting gave one flavour.

    ``shapes`` are the jobs it took (absorbed into its workers or waiting for its new
    workers), each with the count it took; ``absorbed`` of them fit its workers' spare
    capacity, the rest need ``new_workers`` new workers. ``used`` names the
    allocations whose spare capacity absorbed jobs (so they are not removed).
    ``held`` jobs wait because its workers could not be observed. ``reclaim`` names
    the workers this autoscaler drains whose free capacity took jobs: their drain is
    to be cancelled (instead of starting new workers).
    """

    shapes: tuple[JobShape, ...] = ()
    absorbed: int = 0
    new_workers: int = 0
    used: frozenset[str] = frozenset()
    held: int = 0
    reclaim: frozenset[str] = frozenset()

    @property
    def jobs(self) -> int:
        """Idle jobs this flavour took."""
        return sum(s.count for s in self.shapes)


NO_SHARE = Share()


@dataclass(frozen=True, slots=True)
class Accounting:
    """The shares of every flavour, and the jobs nobody took (``unfit``, ``unserved``)."""

    shares: Mapping[str, Share]
    unfit: int = 0
    unserved: int = 0


def preference(name: str, policy: Policy) -> tuple[int, int, int, str]:
    """Sort key: highest priority first, then the smallest worker (cores, memory), then name."""
    return (-policy.priority, policy.worker_cores, policy.worker_memory_mb, name)


def headroom(policy: Policy, supply: Supply) -> int:
    """How many workers the flavour may still add (0 from zero without ``scale_from_zero``)."""
    if supply.count == 0 and not policy.scale_from_zero:
        return 0
    return max(0, policy.max - supply.count)


def _per_worker(shape: JobShape, cores: int, memory_mb: int) -> int:
    """How many jobs of ``shape`` fit in ``cores`` and ``memory_mb``."""
    fit = cores // shape.cpus if shape.cpus > 0 else shape.count
    if shape.memory_mb > 0:
        fit = min(fit, memory_mb // shape.memory_mb)
    return fit


def account(demand: Demand, flavours: Mapping[str, FlavourView]) -> Accounting:
    """Assign every idle job of ``demand`` to at most one flavour (see the module docstring)."""
    order = sorted(flavours, key=lambda n: preference(n, flavours[n].policy))
    # Spare capacity of every observed worker: [cores, memory, alloc_id, flavour], best first.
    bins: list[tuple[tuple[int, int, str], list[int], str, str]] = []
    for rank_name, name in enumerate(order):
        supply = flavours[name].supply
        if supply is None:
            continue
        for w in supply.workers:
            if ours(w) and w.healthy is not False:
                rank, spare = _RECLAIM, w.free
            else:
                rank, spare = _RANK.get(w.state, -1), w.spare
            if rank < 0 or spare.cores <= 0:
                continue
            bins.append(
                (
                    (rank, w.index if rank == 2 else rank_name, w.alloc_id),
                    [spare.cores, spare.memory_mb],
                    w.alloc_id,
                    name,
                )
            )
    bins.sort(key=lambda b: b[0])
    room = {n: headroom(v.policy, v.supply) if v.supply is not None else 0 for n, v in flavours.items()}
    # New workers opened per flavour: free [cores, memory] of each.
    opened: dict[str, list[list[int]]] = {n: [] for n in flavours}
    took: dict[str, dict[JobShape, int]] = {n: {} for n in flavours}
    absorbed = dict.fromkeys(flavours, 0)
    held = dict.fromkeys(flavours, 0)
    used: dict[str, set[str]] = {n: set() for n in flavours}
    reclaim: dict[str, set[str]] = {n: set() for n in flavours}
    unfit = unserved = 0

    for shape in sorted(demand.shapes, key=lambda s: (-s.cpus, -s.memory_mb)):
        candidates = [n for n in order if shape.eligible(flavours[n].requirements) and flavours[n].policy.fits(shape)]
        if not candidates:
            unfit += shape.count
            continue
        left = shape.count
        allowed = set(candidates)
        for (rank, _, _), free, alloc, name in bins:
            if left == 0:
                break
            if name not in allowed:
                continue
            k = min(left, _per_worker(shape, free[0], free[1]))
            if k <= 0:
                continue
            free[0] -= k * shape.cpus
            free[1] -= k * shape.memory_mb
            left -= k
            absorbed[name] += k
            used[name].add(alloc)
            if rank == _RECLAIM:
                reclaim[name].add(alloc)
            took[name][shape] = took[name].get(shape, 0) + k
        for name in candidates:
            if left == 0:
                break
            view = flavours[name]
            if view.supply is None:
                held[name] += left
                took[name][shape] = took[name].get(shape, 0) + left
                left = 0
                break
            placed = 0
            for free in opened[name]:
                k = min(left - placed, _per_worker(shape, free[0], free[1]))
                if k > 0:
                    free[0] -= k * shape.cpus
                    free[1] -= k * shape.memory_mb
                    placed += k
                if placed == left:
                    break
            each = _per_worker(shape, view.policy.worker_cores, view.policy.worker_memory_mb)
            while placed < left and each > 0 and len(opened[name]) < room[name]:
                k = min(left - placed, each)
                opened[name].append(
                    [view.policy.worker_cores - k * shape.cpus, view.policy.worker_memory_mb - k * shape.memory_mb]
                )
                placed += k
            if placed:
                took[name][shape] = took[name].get(shape, 0) + placed
                left -= placed
        unserved += left

    shares = {
        n: Share(
            shapes=tuple(
                JobShape(s.cpus, s.memory_mb, k, s.disk_kb, s.matches)
                for s, k in sorted(took[n].items(), key=lambda i: (i[0].cpus, i[0].memory_mb))
            ),
            absorbed=absorbed[n],
            new_workers=len(opened[n]),
            used=frozenset(used[n]),
            held=held[n],
            reclaim=frozenset(reclaim[n]),
        )
        if took[n] or used[n]
        else NO_SHARE
        for n in flavours
    }
    return Accounting(shares=shares, unfit=unfit, unserved=unserved)
