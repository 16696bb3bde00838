"""The discrete-event model of a worker pool: Nomad's cluster, HTCondor's startds, negotiator and schedd.

Time is simulated (:attr:`World.now`, seconds after the trace's first submit); nothing
sleeps. Events sit in a :mod:`heapq` priority queue; arrivals are read straight from
the trace's sorted arrays instead of being queued (235k fewer heap entries).
Why heapq and not simpy: the only "process" is the autoscaler, a plain function
called once per evaluation_interval, and every other event is a callback; simpy's
generator processes would add a frame switch per event and buy nothing here.

One worker (one Nomad allocation and the startd in it)::

    unplaced --a node has room (Nomad binpack)--> starting --start_delay--> unclaimed <--> claimed
       |                                             |                      |   |            |
       | scale-in (a placement Nomad still owes      |       idle_shutdown   |   | max_age     | max_age
       |  is dropped first)                          |      (at a check)     |   v            v
       v                                             |                      |  draining: payloads retire
     gone <--------- Nomad stops it (scale-in) ------+----------------------+  (each until its start +
       ^        payloads still running after the                                retirement, else killed)
       |        master's graceful timeout are killed                                |
       +-- batch: the alloc completes <-- the startd exits by itself <--------------+
           service: Nomad restarts the task in place (restart.delay), back to starting

Sources, per behaviour:

* **Placement**: Nomad's default ``scheduler_algorithm`` is ``binpack`` (the feasible
  node with the least room left wins); a placement that fits no node waits in a
  blocked evaluation and is retried whenever capacity frees, FIFO
  (https://developer.hashicorp.com/nomad/docs/concepts/scheduling/placement).
* **Name indexes**: new allocations take the lowest free ``[N]``; a scale-in first drops
  placements that were never made (they are not allocations: ``remove = existing -
  count``) and then stops the highest name indexes (``nameIndex.Highest`` in
  ``computeStop``, nomad ``scheduler/reconcile.go``).
* **Stop**: Nomad sends ``kill_signal`` (SIGTERM: a graceful HTCondor shutdown): each
  payload may run ``retirement`` from its own start (``MAXJOBRETIREMENTTIME``), then is
  evicted; the master's ``SHUTDOWN_GRACEFUL_TIMEOUT`` (:class:`~nomadwn.model.ShutdownPlan`)
  bounds the whole; payloads still running then are killed (and requeued by the schedd).
* **Restarts**: a service task that exits, even with 0, is restarted in place after
  ``restart.delay``; a batch task that exits 0 completes
  (``client/allocrunner/taskrunner/restarts/restarts.go``: ``onSuccess`` is false only for
  batch and sysbatch). Simpler than Nomad: no jitter, no attempt limit.
* **Negotiation**: every ``NEGOTIATOR_INTERVAL`` (HTCondor's default 60 s) idle jobs
  are matched in submit order (one user, so priority is FIFO) into partitionable slots
  by cores and memory, several per slot per cycle (``CLAIM_PARTITIONABLE_LEFTOVERS``),
  the fullest worker that fits first (depth-first filling, so empty workers can
  expire). Cycles in which nothing could change (no new idle job, no freed capacity)
  are skipped: they would match nothing. When a payload ends, the schedd reuses its
  claim for the oldest idle job of the same shape without waiting for the negotiator
  while the claim is younger than ``CLAIM_WORKLIFE`` (default 1200 s).
* **Lifespan** (the rendered HTCondor config, ``nomadwn/autopilot.py``): checked every
  ``check_interval`` since the startd started (``UPDATE_INTERVAL``): ``max_age``
  (``STARTD.DAEMON_SHUTDOWN``: graceful, payloads retire for ``MAXJOBRETIREMENTTIME``
  counted from each job's start; without ``retirement`` it is 0 and they are evicted),
  ``idle_shutdown`` (``STARTD_NOCLAIM_SHUTDOWN``: no claim for that long).

A payload killed (evicted on retirement, or still running when Nomad's stop ran out
of time) is counted in :attr:`World.killed`, and the job goes back to the queue.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nomadwn.simulate.trace import Trace

# Worker phases (ints: compared in the hot loop).
UNPLACED, STARTING, READY, RETIRING, STOPPING, RESTARTING, GONE = range(7)
PHASE_NAMES = ("unplaced", "starting", "ready", "draining", "stopping", "starting", "gone")

# Event kinds.
_END, _READY, _IDLE, _AGE, _RETIRE_KILL, _STOP_DONE, _NEGOTIATE = range(7)

Shape = tuple[int, int]
"""(cores, memory MB) of one job."""


@dataclass(frozen=True)
class SimFlavour:
    """What the model needs to know about one flavour's workers (all durations in seconds)."""

    name: str
    job_id: str
    kind: str
    cores: int
    memory_mb: int
    max_age: float | None = None
    idle_shutdown: float | None = None
    retirement: float = 0.0
    check_interval: float = 60.0
    stop_grace: float = 25.0
    restart_delay: float = 15.0

    def fits(self, shape: Shape) -> bool:
        """Whether one job of ``shape`` fits one (empty) worker."""
        return shape[0] <= self.cores and shape[1] <= self.memory_mb


@dataclass(frozen=True)
class Cluster:
    """``nodes`` identical Nomad clients of ``cores`` and ``memory_mb`` each."""

    nodes: int
    cores: int
    memory_mb: int

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.cores < 1 or self.memory_mb < 1:
            raise ValueError("a cluster has at least one node with one core and 1 MB")

    def holds(self, flavour: SimFlavour) -> int:
        """How many workers of ``flavour`` the whole cluster holds."""
        per_node = min(self.cores // flavour.cores, self.memory_mb // flavour.memory_mb)
        return per_node * self.nodes


class SimWorker:
    """One worker: a Nomad allocation (placed or owed) and the startd running in it."""

    __slots__ = (
        "child",
        "claims",
        "drained",
        "flavour",
        "free_cores",
        "free_mem",
        "gen",
        "id",
        "idle_gen",
        "index",
        "name",
        "node",
        "payloads",
        "phase",
        "placed_at",
        "ready_at",
    )

    def __init__(self, wid: str, flavour: SimFlavour, index: int, child: str | None) -> None:
        self.id = wid
        self.flavour = flavour
        self.index = index
        self.child = child
        self.name = f"{wid}@sim"
        self.drained = False
        self.node = -1
        self.phase = UNPLACED
        self.placed_at = 0.0
        self.ready_at = 0.0
        self.free_cores = flavour.cores
        self.free_mem = flavour.memory_mb
        self.payloads: dict[int, tuple[float, float]] = {}  # job -> (start, claim start)
        self.claims = 0
        self.gen = 0
        self.idle_gen = 0

    @property
    def state(self) -> str:
        """The autoscaler's word for it: unplaced, starting, unclaimed, claimed, draining."""
        if self.phase == READY:
            return "draining" if self.drained else "claimed" if self.payloads else "unclaimed"
        return PHASE_NAMES[self.phase]


class AbortedRunError(Exception):
    """The run was stopped early by its ``abort_late`` limit (too many late starts)."""


class World:
    """The pool and its queue; see the module docstring. Drive it with :meth:`advance_to`."""

    def __init__(
        self,
        trace: Trace,
        cluster: Cluster,
        *,
        start_delay: float = 60.0,
        negotiator_interval: float = 60.0,
        claim_worklife: float = 1200.0,
        fits: Callable[[Shape], bool] | None = None,
    ) -> None:
        self.trace = trace
        self.cluster = cluster
        self.start_delay = start_delay
        self.negotiator_interval = negotiator_interval
        self.claim_worklife = claim_worklife
        self.now = 0.0
        self._seq = 0
        self._heap: list[tuple[float, int, int, object, int]] = []
        self._next_arrival = 0
        self._n = len(trace)
        self.node_cores = [cluster.cores] * cluster.nodes
        self.node_mem = [cluster.memory_mb] * cluster.nodes
        self.workers: dict[str, SimWorker] = {}
        self.pending: list[SimWorker] = []
        self.groups: dict[str, dict[int, SimWorker]] = {}
        self.counts: dict[str, int] = {}
        self.children: dict[str, dict[str, SimWorker]] = {}
        self.tokens: dict[str, str] = {}
        self._token_of: dict[str, str] = {}
        self._ids = 0
        self.idle: dict[Shape, deque[int]] = {}
        self.idle_jobs = 0
        self.running = 0
        self._neg_at: float | None = None
        self.last_cycle = -math.inf
        self._fits = fits
        self.started = array("b", bytes(self._n))
        self.waits = array("d")
        self.unrunnable = 0
        self.killed = 0
        self.completed = 0
        self.used_cs = 0.0
        self.killed_cs = 0.0
        self._prov_cores = 0
        self._prov_last = 0.0
        self.prov_cs = 0.0
        self.peak_workers = 0
        self.peak_cores = 0
        self.placed = 0
        self.version = 0
        self.abort_late: tuple[float, int] | None = None
        self._late = 0

    # ---- time ------------------------------------------------------------------------

    def clock(self) -> float:
        """The simulated clock, for the autoscaler (seconds)."""
        return self.now

    def _at(self, when: float, kind: int, obj: object, gen: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, obj, gen))

    @property
    def arrivals_done(self) -> bool:
        """Whether every job of the trace has been submitted."""
        return self._next_arrival >= self._n

    @property
    def done(self) -> bool:
        """Every job submitted, none idle and none running."""
        return self._next_arrival >= self._n and self.idle_jobs == 0 and self.running == 0

    def advance_to(self, until: float, *, stop_when_done: bool = False) -> None:
        """Process every event up to ``until`` (inclusive), then set the clock there."""
        heap = self._heap
        submit = self.trace.submit
        n = self._n
        handlers = (
            self._end,
            self._ready,
            self._idle_check,
            self._max_age,
            self._retire_kill,
            self._stop_done,
            self._negotiate,
        )
        while True:
            t_evt = heap[0][0] if heap else math.inf
            t_arr = submit[self._next_arrival] if self._next_arrival < n else math.inf
            if t_arr <= t_evt:
                if t_arr > until:
                    break
                self.now = t_arr
                self._arrive(self._next_arrival)
                self._next_arrival += 1
            else:
                if t_evt > until:
                    break
                when, _, kind, obj, gen = heapq.heappop(heap)
                self.now = when
                handlers[kind](obj, gen)
            if stop_when_done and self.done:
                return
        if until != math.inf:
            self.now = max(self.now, until)

    def finish(self) -> None:
        """Close the books at :attr:`now` (provisioned core-seconds up to now)."""
        self._provision(0)

    def _provision(self, delta: int) -> None:
        self.prov_cs += self._prov_cores * (self.now - self._prov_last)
        self._prov_last = self.now
        self._prov_cores += delta
        if self._prov_cores > self.peak_cores:
            self.peak_cores = self._prov_cores

    # ---- the schedd's queue ------------------------------------------------------------

    def _arrive(self, job: int) -> None:
        shape = (self.trace.cpus[job], self.trace.memory_mb[job])
        if self._fits is not None and not self._fits(shape):
            self.unrunnable += 1
            return
        q = self.idle.get(shape)
        if q is None:
            q = self.idle[shape] = deque()
        q.append(job)
        self.idle_jobs += 1
        self.version += 1
        self._dirty()

    def _dirty(self) -> None:
        if self._neg_at is None:
            ni = self.negotiator_interval
            self._neg_at = ni * (math.floor(self.now / ni) + 1)
            self._at(self._neg_at, _NEGOTIATE, None)

    def _negotiate(self, _obj: object, _gen: int) -> None:
        self._neg_at = None
        self.last_cycle = self.now
        if not self.idle_jobs:
            return
        candidates = [w for w in self.workers.values() if w.phase == READY and w.free_cores > 0 and not w.drained]
        if not candidates:
            return
        heads = [(q[0], shape) for shape, q in self.idle.items() if q]
        heapq.heapify(heads)
        while heads:
            _, shape = heapq.heappop(heads)
            cpus, mem = shape
            best = None
            for w in candidates:
                if w.free_cores >= cpus and w.free_mem >= mem and (best is None or w.free_cores < best.free_cores):
                    best = w
                    if w.free_cores == cpus:
                        break
            if best is None:
                continue  # nothing fits this shape in this cycle; later jobs of it neither
            q = self.idle[shape]
            self._start(q.popleft(), best, self.now)
            if best.free_cores == 0:
                candidates.remove(best)
            if q:
                heapq.heappush(heads, (q[0], shape))

    def _start(self, job: int, w: SimWorker, claim_start: float) -> None:
        tr = self.trace
        w.free_cores -= tr.cpus[job]
        w.free_mem -= tr.memory_mb[job]
        w.payloads[job] = (self.now, claim_start)
        w.idle_gen += 1
        self.idle_jobs -= 1
        self.running += 1
        self.version += 1
        if not self.started[job]:
            self.started[job] = 1
            wait = self.now - tr.submit[job]
            self.waits.append(wait)
            if self.abort_late is not None and wait > self.abort_late[0]:
                self._late += 1
                if self._late > self.abort_late[1]:
                    raise AbortedRunError
        self._at(self.now + tr.run[job], _END, w, job)

    def _free(self, w: SimWorker, job: int) -> tuple[float, float]:
        tr = self.trace
        start_claim = w.payloads.pop(job)
        w.free_cores += tr.cpus[job]
        w.free_mem += tr.memory_mb[job]
        self.running -= 1
        self.version += 1
        return start_claim

    def _end(self, obj: object, job: int) -> None:
        w = obj
        assert isinstance(w, SimWorker)
        if job not in w.payloads:
            return  # killed earlier
        tr = self.trace
        _, claim_start = self._free(w, job)
        self.used_cs += tr.run[job] * tr.cpus[job]
        self.completed += 1
        if w.phase == READY and not w.drained:
            shape = (tr.cpus[job], tr.memory_mb[job])
            q = self.idle.get(shape)
            if q and self.now - claim_start < self.claim_worklife:
                self._start(q.popleft(), w, claim_start)  # the schedd reuses the claim
                return
            if not w.payloads:
                self._became_idle(w)
            self._dirty()
        elif w.phase == READY:
            self.version += 1  # a drained worker: it stays drained, taking nothing
        elif not w.payloads and w.phase == RETIRING:
            self._expired(w)
        elif not w.payloads and w.phase == STOPPING:
            self._release(w)

    def _kill(self, w: SimWorker, job: int) -> None:
        start, _ = self._free(w, job)
        tr = self.trace
        self.killed_cs += (self.now - start) * tr.cpus[job]  # lost work: provisioned, not used
        self.killed += 1
        shape = (tr.cpus[job], tr.memory_mb[job])
        self.idle.setdefault(shape, deque()).appendleft(job)  # evicted: back to the queue, at its head
        self.idle_jobs += 1
        self._dirty()

    # ---- the startd's lifespan ---------------------------------------------------------------

    def _next_check(self, w: SimWorker, after: float) -> float:
        ci = w.flavour.check_interval
        return w.ready_at + math.ceil(max(0.0, after - w.ready_at) / ci - 1e-9) * ci

    def _ready(self, obj: object, gen: int) -> None:
        w = obj
        assert isinstance(w, SimWorker)
        if gen != w.gen or w.phase not in (STARTING, RESTARTING):
            return
        w.phase = READY
        w.ready_at = self.now
        self.version += 1
        f = w.flavour
        self._became_idle(w)
        if f.max_age is not None:
            self._at(self._next_check(w, self.now + f.max_age), _AGE, w, w.gen)
        self._dirty()

    def _became_idle(self, w: SimWorker) -> None:
        w.idle_gen += 1
        if w.flavour.idle_shutdown is not None:
            self._at(self._next_check(w, self.now + w.flavour.idle_shutdown), _IDLE, w, w.idle_gen)

    def _idle_check(self, obj: object, idle_gen: int) -> None:
        w = obj
        assert isinstance(w, SimWorker)
        if w.phase == READY and not w.payloads and w.idle_gen == idle_gen:
            self._expired(w)

    def drain(self, name: str, *, on: bool | None) -> SimWorker | None:
        """``condor_drain -graceful`` (on), ``-cancel`` (off), or just look the startd up (None).

        Graceful: the startd takes no new job and each running one may finish within its
        retirement time (``MAXJOBRETIREMENTTIME``, from its start), else it is evicted.
        """
        w = next((x for x in self.workers.values() if x.name == name and x.phase in (READY, RETIRING)), None)
        if w is None or on is None:
            return w
        if on and not w.drained:
            w.drained = True
            w.idle_gen += 1  # a drained startd is not "unclaimed": idle_shutdown does not count
            self._retire_all(w)
        elif not on and w.drained:
            w.drained = False
            w.gen += 1
            if w.phase == READY:
                if not w.payloads:
                    self._became_idle(w)
                if w.flavour.max_age is not None:
                    self._at(self._next_check(w, w.ready_at + w.flavour.max_age), _AGE, w, w.gen)
                self._dirty()
        self.version += 1
        return w

    def _retire_all(self, w: SimWorker) -> None:
        tr = self.trace
        for job, (start, _) in list(w.payloads.items()):
            kill_at = start + w.flavour.retirement
            if start + tr.run[job] > kill_at:
                self._at(max(self.now, kill_at), _RETIRE_KILL, w, job)

    def _max_age(self, obj: object, gen: int) -> None:
        w = obj
        assert isinstance(w, SimWorker)
        if gen != w.gen or w.phase != READY:
            return
        w.phase = RETIRING
        self.version += 1
        if not w.payloads:
            self._expired(w)
            return
        self._retire_all(w)

    def _retire_kill(self, obj: object, job: int) -> None:
        w = obj
        assert isinstance(w, SimWorker)
        if job in w.payloads and (w.phase in (RETIRING, STOPPING) or (w.phase == READY and w.drained)):
            self._kill(w, job)
            if not w.payloads and w.phase == RETIRING:
                self._expired(w)
            elif not w.payloads and w.phase == STOPPING:
                self._release(w)

    def _expired(self, w: SimWorker) -> None:
        """The startd ended by itself: a service task restarts in place, a batch alloc completes."""
        self.version += 1
        if w.flavour.kind == "service":
            w.phase = RESTARTING
            w.gen += 1
            self._at(self.now + w.flavour.restart_delay + self.start_delay, _READY, w, w.gen)
        else:
            self._release(w)

    # ---- Nomad -------------------------------------------------------------------------------

    def _new_worker(self, flavour: SimFlavour, index: int, child: str | None) -> SimWorker:
        self._ids += 1
        w = SimWorker(f"alloc-{self._ids:06d}", flavour, index, child)
        self.workers[w.id] = w
        self._place(w)
        return w

    def _place(self, w: SimWorker) -> bool:
        f = w.flavour
        best = -1
        best_left = 0
        cores, mem = self.node_cores, self.node_mem
        for i in range(len(cores)):
            if cores[i] >= f.cores and mem[i] >= f.memory_mb:
                left = cores[i] - f.cores
                if best < 0 or left < best_left:
                    best, best_left = i, left
                    if left == 0:
                        break
        if best < 0:
            if w.phase != UNPLACED or w not in self.pending:
                w.phase = UNPLACED
                self.pending.append(w)
            return False
        cores[best] -= f.cores
        mem[best] -= f.memory_mb
        w.node = best
        w.phase = STARTING
        w.placed_at = self.now
        self.placed += 1
        self.peak_workers = max(self.peak_workers, self.placed)
        self._provision(f.cores)
        self.version += 1
        self._at(self.now + self.start_delay, _READY, w, w.gen)
        return True

    def _release(self, w: SimWorker) -> None:
        """The allocation ends: its node's resources free up, blocked placements retry."""
        if w.phase == GONE:
            return
        placed = w.node >= 0
        if placed:
            self.node_cores[w.node] += w.flavour.cores
            self.node_mem[w.node] += w.flavour.memory_mb
            self.placed -= 1
            self._provision(-w.flavour.cores)
        elif w in self.pending:
            self.pending.remove(w)
        w.phase = GONE
        w.gen += 1
        self.version += 1
        self.workers.pop(w.id, None)
        group = self.groups.get(w.flavour.job_id)
        if group is not None and group.get(w.index) is w:
            del group[w.index]
            # A service allocation that ended is replaced by Nomad to keep the count.
            if len(group) < self.counts.get(w.flavour.job_id, 0):
                self._fill(w.flavour)
        kids = self.children.get(w.flavour.job_id)
        if kids is not None and w.child is not None:
            kids.pop(w.child, None)
            # Nomad garbage-collects a dead child, and its idempotency token with it.
            self.tokens.pop(self._token_of.pop(w.child, ""), None)
        if placed and self.pending:
            for waiting in list(self.pending):
                if self._place(waiting):
                    self.pending.remove(waiting)

    def _stop(self, w: SimWorker) -> None:
        """Nomad stops the allocation: kill_signal, then SIGKILL after the grace the master has."""
        if w.phase in (UNPLACED, STARTING, RESTARTING) or not w.payloads:
            self._release(w)
            return
        w.phase = STOPPING
        w.gen += 1
        self.version += 1
        self._retire_all(w)  # SIGTERM is a graceful shutdown: each payload retires from its start
        self._at(self.now + w.flavour.stop_grace, _STOP_DONE, w, w.gen)

    def _stop_done(self, obj: object, gen: int) -> None:
        w = obj
        assert isinstance(w, SimWorker)
        if gen != w.gen or w.phase != STOPPING:
            return
        for job in list(w.payloads):
            self._kill(w, job)
        self._release(w)

    def _fill(self, flavour: SimFlavour) -> None:
        group = self.groups.setdefault(flavour.job_id, {})
        want = self.counts.get(flavour.job_id, 0)
        index = 0
        while len(group) < want:
            while index in group:
                index += 1
            group[index] = self._new_worker(flavour, index, None)

    def scale(self, flavour: SimFlavour, count: int) -> None:
        """Set a service group's count, as Nomad's reconciler does (see the module docstring)."""
        self.counts[flavour.job_id] = count
        group = self.groups.setdefault(flavour.job_id, {})
        if count >= len(group):
            self._fill(flavour)
            return
        remove = len(group) - count
        owed = sorted((w for w in group.values() if w.phase == UNPLACED), key=lambda w: -w.index)
        placed = sorted((w for w in group.values() if w.phase != UNPLACED), key=lambda w: -w.index)
        for w in (owed + placed)[:remove]:
            del group[w.index]
            self._stop(w)

    def dispatch(self, flavour: SimFlavour, token: str) -> str:
        """Dispatch one child of a parameterized batch job (one worker); a known token returns its child."""
        if token in self.tokens:
            return self.tokens[token]
        kids = self.children.setdefault(flavour.job_id, {})
        child = f"{flavour.job_id}/dispatch-{self._ids + 1:06d}"
        self.tokens[token] = child
        self._token_of[child] = token
        kids[child] = self._new_worker(flavour, 0, child)
        return child

    def add_static(self, flavour: SimFlavour, count: int) -> None:
        """``count`` workers that exist from the start (a static pool), ready at time 0."""
        self.counts[flavour.job_id] = count
        self._fill(flavour)
        for w in self.workers.values():
            if w.phase == STARTING:
                w.gen += 1
                self._ready(w, w.gen)

    # ---- what the peers see --------------------------------------------------------------------

    def by_state(self) -> dict[str, int]:
        """Workers per state (unplaced, starting, unclaimed, claimed, draining)."""
        out = dict.fromkeys(("unplaced", "starting", "unclaimed", "claimed", "draining"), 0)
        for w in self.workers.values():
            s = w.state
            out["draining" if s == "stopping" else s] += 1
        return out
