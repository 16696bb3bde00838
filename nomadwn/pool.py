"""The pool's vocabulary: idle demand, workers and their capacity, as every part speaks it.

One set of value types shared by the HTCondor source (:mod:`nomadwn.condor`), the
Nomad side of the autoscaler loop, the strategy and the simulator. Pure data: this
module imports no client library (a test enforces it), so the strategy and the
simulator load without python-nomad, py-consul or the HTCondor bindings.

An observation that failed, or that only partly succeeded, is ``None`` or marked
incomplete, never an empty list: "I could not see" is not "there is nothing".

Worker states (:data:`WorkerState`), from Nomad placing the allocation to its end::

    starting --reaches the collector--> unclaimed <--claims / all claims end--> claimed
        |                                   |                                    |
        | start deadline passes             +---------drain (StartJobs False)----+
        v                                                   |
     overdue (not spare, reported)                          v
                                                        draining --cancel drain--> unclaimed / claimed
                                                            |
                                                            +--no claimed slot left: empty, removable

``other`` is every startd state that is neither spare nor removable (Owner, Matched,
Preempting, Backfill, ...). *Spare capacity* is what can take a new job now or soon:
the free cores and memory of healthy starting, unclaimed and claimed workers
(:attr:`Worker.spare`); a draining, overdue, other or unhealthy worker has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

WorkerState = Literal["starting", "overdue", "unclaimed", "claimed", "draining", "other"]
"""Where a worker is in its life; see the module docstring for the diagram."""

WORKER_STATES: tuple[WorkerState, ...] = ("starting", "overdue", "unclaimed", "claimed", "draining", "other")
"""Every :data:`WorkerState`, in the order reports and metrics list them."""

_TAKES_JOBS = frozenset(("starting", "unclaimed", "claimed"))


@dataclass(frozen=True, slots=True)
class Capacity:
    """Cores and memory (MiB): what a worker has free, or what jobs need."""

    cores: int
    memory_mb: int

    def holds(self, shape: JobShape) -> bool:
        """Whether one job of ``shape`` fits in this much (cores and memory both)."""
        return shape.cpus <= self.cores and shape.memory_mb <= self.memory_mb


NO_CAPACITY = Capacity(0, 0)


@dataclass(frozen=True, slots=True)
class JobShape:
    """``count`` idle jobs that all ask for the same resources (one GroupBy row of a schedd).

    ``disk_kb`` is None when ``RequestDisk`` is missing or does not evaluate to a number.
    ``matches`` holds the flavour ``requirements`` expressions (their exact text) that
    are true for these jobs, as asked of :meth:`CondorSource.idle_demand`: a flavour
    with requirements counts a shape only if its expression is in there (see
    :meth:`eligible`). Jobs of one shape with different answers are different shapes.
    """

    cpus: int
    memory_mb: int
    count: int
    disk_kb: int | None = None
    matches: frozenset[str] = frozenset()

    def eligible(self, requirements: str | None) -> bool:
        """Whether a flavour with these ``requirements`` (None: every job) may run these jobs."""
        return requirements is None or requirements in self.matches


@dataclass(frozen=True, slots=True)
class Demand:
    """Idle jobs grouped by shape, as seen at ``taken_at`` (a ``time.time()`` stamp).

    ``schedds`` were asked and answered; ``failed_schedds`` were asked and did not
    (their jobs are missing from ``shapes``); ``errors`` says why, per failed schedd.
    A demand that lists fewer answering schedds than the site expects is *blind*
    (see :func:`nomadwn.autoscale.strategy.blindness`): an empty queue and a schedd
    that withdrew its ad look alike, so the strategy never scales in on it.
    """

    shapes: tuple[JobShape, ...]
    taken_at: float
    schedds: tuple[str, ...] = ()
    failed_schedds: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every schedd asked answered, so ``shapes`` is all their idle demand."""
        return not self.failed_schedds

    @property
    def jobs(self) -> int:
        """Number of idle jobs over all shapes."""
        return sum(s.count for s in self.shapes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Worker:
    """One nomadwn worker (one Nomad allocation): its startd's view and its place in Nomad.

    From HTCondor (folded from the startd's slot ads): ``name`` (the startd's name, the
    slot name after ``slotN@``; empty until it reaches the collector), ``state``,
    ``activity``, the totals and what is free (``cpus_free``/``memory_free_mb``: what
    the partitionable slot has left, or the unclaimed static slots), ``claimed_slots``
    and ``healthy`` (the worker's advertised ``NomadwnHealthy``; None when it does not
    advertise one, which counts as healthy), ``drain_reason`` (the startd's
    ``DrainReason`` while it drains: who asked, and why), ``oldest_job_start`` (the
    earliest ``JobStart`` of its claimed slots: a graceful drain evicts a payload
    ``MaxJobRetirementTime`` after its start). From Nomad: ``index`` (the allocation's
    name index, -1 when unknown or a dispatched batch worker) and ``since`` (when the
    autoscaler first saw it *starting*, for the start deadline; None otherwise).
    ``started_at``: when its startd started (``DaemonStartTime``), for its age.
    A starting worker's totals and free resources are the flavour's worker size.
    """

    alloc_id: str
    state: WorkerState
    name: str = ""
    flavour: str = ""
    site: str = ""
    job_id: str = ""
    index: int = -1
    activity: str = ""
    cpus_total: int = 0
    cpus_free: int = 0
    memory_total_mb: int = 0
    memory_free_mb: int = 0
    claimed_slots: int = 0
    healthy: bool | None = None
    drain_reason: str = ""
    oldest_job_start: float | None = None
    since: float | None = None
    started_at: float | None = None

    @property
    def free(self) -> Capacity:
        """Cores and memory the worker has not given to a job."""
        return Capacity(self.cpus_free, self.memory_free_mb)

    @property
    def spare(self) -> Capacity:
        """Free capacity that can take a new job: none when draining, overdue, other or unhealthy."""
        if self.state not in _TAKES_JOBS or self.healthy is False:
            return NO_CAPACITY
        return Capacity(self.cpus_free, self.memory_free_mb)

    @property
    def empty(self) -> bool:
        """No job runs on it (no claimed slot): Nomad can stop it without touching a payload."""
        return self.claimed_slots == 0 and self.state != "claimed"


@dataclass(frozen=True, slots=True)
class Supply:
    """Workers as seen at ``taken_at`` (a ``time.time()`` stamp), and how many Nomad is asked for.

    ``count`` is a service group's count in Nomad, or the live children of a batch
    flavour (Nomad may still owe some: those are *starting* workers with no
    allocation yet). In HTCondor's site-wide view (:meth:`CondorSource.workers`) it is
    the number of workers the collector lists.
    """

    workers: tuple[Worker, ...]
    taken_at: float
    count: int

    def in_state(self, state: WorkerState) -> int:
        """How many workers are in ``state``."""
        return sum(1 for w in self.workers if w.state == state)

    def spare(self) -> Capacity:
        """The spare capacity of all the workers (see :attr:`Worker.spare`)."""
        cores = memory = 0
        for w in self.workers:
            s = w.spare
            cores += s.cores
            memory += s.memory_mb
        return Capacity(cores, memory)

    def top(self) -> tuple[Worker, ...]:
        """The workers by allocation name index, highest first: the order Nomad stops them in.

        Nomad's reconciler removes the allocations with the highest name index first
        when a group's count drops (``scheduler/reconcile.go``, ``computeStop``).
        """
        return tuple(sorted(self.workers, key=lambda w: w.index, reverse=True))

    def removable_tail(self) -> int:
        """How many of the highest-index workers Nomad may stop without touching a job, counting down.

        Only drained, empty workers qualify (the startd refuses new jobs, none runs);
        the first other worker ends the run. An *unclaimed* worker is drained first:
        the collector's "Unclaimed" can predate a match the negotiator just made.
        """
        run = 0
        for worker in self.top():
            if not (worker.state == "draining" and worker.empty):
                break
            run += 1
        return run


@dataclass(frozen=True, slots=True)
class Observation:
    """One flavour's view at one moment; ``None`` parts could not be observed."""

    demand: Demand | None
    supply: Supply | None


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What a drain (or a cancelled drain) did, per startd.

    ``done`` names the startds that accepted the request (for a drain, with HTCondor's
    request id in ``request_ids``); ``failed`` maps each other startd to why it did not.
    """

    done: tuple[str, ...]
    failed: Mapping[str, str] = field(default_factory=dict)
    request_ids: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every startd asked accepted."""
        return not self.failed
