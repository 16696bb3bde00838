"""The autoscaler's two protocols, answered by the simulated pool.

:class:`SimCondor` is a :class:`~nomadwn.condor.CondorSource` and :class:`SimNomad` a
:class:`~nomadwn.nomad.NomadAPI`, both over one :class:`~nomadwn.simulate.world.World`,
so the real :class:`~nomadwn.autoscale.loop.Autoscaler` runs unchanged against it.
They answer what the real peers would at that moment:

* idle demand grouped by shape (as the schedd's GroupBy query), filtered by the
  flavour's ``requirements`` evaluated by HTCondor's own ClassAd library against each
  shape's job ad; ``negotiated_only`` keeps jobs submitted before the last cycle;
* the site's workers as the collector lists them (only startds that are up: a worker
  still starting, or restarting, is not there yet), with free cores and memory;
* Nomad's group count and live allocations with their name indexes, the dispatched
  children of a parameterized job with their queued/running counts; scale and
  dispatch (idempotency tokens honoured) change the pool at once.

Nomad operations the autoscaler never calls (plan, register, deployments, ...) raise a
:class:`~nomadwn.errors.NomadError` saying the simulator does not model them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from nomadwn.errors import NomadError
from nomadwn.nomad import (
    Allocation,
    Deployment,
    DispatchedJob,
    DispatchResult,
    Evaluation,
    Indexed,
    JobStatus,
    JobVersion,
    LogFrame,
    LogStream,
    PlanResult,
    RegisterResult,
)
from nomadwn.pool import Demand, DrainResult, JobShape, Supply, Worker, WorkerState
from nomadwn.render import GROUP
from nomadwn.simulate.world import READY, RETIRING, STOPPING, UNPLACED, Shape, SimFlavour, SimWorker, World

if TYPE_CHECKING:
    from nomadwn import nomad_api as api

SCHEDD = "simulated-schedd"


class SimCondor:
    """:class:`~nomadwn.condor.CondorSource` over a simulated pool (see the module docstring)."""

    def __init__(self, world: World, site: str, flavours: Mapping[str, SimFlavour]) -> None:
        self.world = world
        self.site = site
        self.flavours = {f.job_id: f.name for f in flavours.values()}
        self._matches: dict[tuple[str, Shape], bool] = {}
        self._seen: dict[str, tuple[tuple[int, bool, int, int, int, float], Worker]] = {}
        self._supply: tuple[int, tuple[Worker, ...]] | None = None
        self._reasons: dict[str, str] = {}  # startd name -> DrainReason, while drained

    def check_expression(self, expression: str) -> str | None:
        """Why ``expression`` is not a ClassAd expression (None: it is), by HTCondor's parser."""
        import classad2

        try:
            classad2.ExprTree(expression)
        except Exception as exc:  # the bindings raise several types; any means "not an expression"
            return str(exc) or "not a ClassAd expression"
        return None

    def _matches_shape(self, requirements: str, shape: Shape) -> bool:
        key = (requirements, shape)
        found = self._matches.get(key)
        if found is None:
            import classad2

            ad = classad2.ClassAd({"JobStatus": 1, "RequestCpus": shape[0], "RequestMemory": shape[1]})
            found = self._matches[key] = classad2.ExprTree(requirements).eval(ad) is True
        return found

    def idle_demand(self, *, negotiated_only: bool = False, requirements: Collection[str] = ()) -> Demand:
        """Idle jobs by shape, as one schedd's GroupBy query counts them, tagged with the requirements they meet."""
        w = self.world
        submit = w.trace.submit
        shapes = []
        for shape, queue in w.idle.items():
            if not queue:
                continue
            count = len(queue)
            if negotiated_only:
                count = sum(1 for job in queue if submit[job] < w.last_cycle)
            if count:
                matches = frozenset(r for r in requirements if self._matches_shape(r, shape))
                shapes.append(JobShape(cpus=shape[0], memory_mb=shape[1], count=count, matches=matches))
        return Demand(shapes=tuple(shapes), taken_at=w.now, schedds=(SCHEDD,))

    def workers(self, site: str) -> Supply:
        """The site's startds that are up, folded per allocation as the collector shows them.

        Worker values are reused while nothing about them changed (the pool's version, and
        each worker's phase, drain and free resources): the answer is the same, cheaper.
        """
        world = self.world
        if site != self.site:
            return Supply(workers=(), taken_at=world.now, count=0)
        if self._supply is not None and self._supply[0] == world.version:
            return Supply(workers=self._supply[1], taken_at=world.now, count=len(self._supply[1]))
        out = []
        seen: dict[str, tuple[tuple[int, bool, int, int, int, float], Worker]] = {}
        for sw in world.workers.values():
            phase = sw.phase
            if phase not in (READY, RETIRING, STOPPING):
                continue  # not in the collector (yet, or any more)
            oldest = min((start for start, _ in sw.payloads.values()), default=0.0)
            key = (phase, sw.drained, len(sw.payloads), sw.free_cores, sw.free_mem, oldest)
            old = self._seen.get(sw.id)
            if old is not None and old[0] == key:
                seen[sw.id] = old
                out.append(old[1])
                continue
            worker = self._worker(sw, site, self._reasons.get(sw.name, "") if sw.drained else "", oldest)
            seen[sw.id] = (key, worker)
            out.append(worker)
        self._seen = seen
        self._supply = (world.version, tuple(out))
        if len(self._reasons) > len(out):  # forget the drains of startds that are gone
            names = {w.name for w in out}
            self._reasons = {n: r for n, r in self._reasons.items() if n in names}
        return Supply(workers=self._supply[1], taken_at=world.now, count=len(out))

    @staticmethod
    def _worker(sw: SimWorker, site: str, reason: str, oldest: float) -> Worker:
        f = sw.flavour
        claimed = len(sw.payloads)
        state: WorkerState = "claimed" if claimed else "unclaimed"
        if sw.phase != READY or sw.drained:
            state = "draining"
        return Worker(
            alloc_id=sw.id,
            job_id=sw.child or f.job_id,
            flavour=f.name,
            site=site,
            name=sw.name,
            index=sw.index if sw.child is None else -1,
            state=state,
            activity="Busy" if claimed else "Idle",
            cpus_total=f.cores,
            cpus_free=sw.free_cores,
            memory_total_mb=f.memory_mb,
            memory_free_mb=sw.free_mem,
            claimed_slots=claimed,
            drain_reason=reason,
            # A graceful drain evicts a payload its retirement after its start.
            oldest_job_start=oldest if claimed else None,
        )

    def _startds(self, workers: Sequence[Worker | str]) -> tuple[list[str], dict[str, str]]:
        names = [w if isinstance(w, str) else w.name for w in workers]
        found, failed = [], {}
        for name in names:
            if self.world.drain(name, on=None) is None:
                failed[name] = f"HTCondor (simulated): the collector knows no startd {name}"
            else:
                found.append(name)
        return found, failed

    def drain(self, workers: Sequence[Worker | str], *, reason: str) -> DrainResult:
        """``condor_drain -graceful``: no new job; running ones keep their retirement time (then are evicted)."""
        found, failed = self._startds(workers)
        for name in found:
            self._reasons[name] = reason  # the startd's DrainReason
            self.world.drain(name, on=True)
        return DrainResult(done=tuple(found), failed=failed, request_ids={n: f"drain-{n}" for n in found})

    def cancel_drain(self, workers: Sequence[Worker | str]) -> DrainResult:
        """``condor_drain -cancel``: the startd takes jobs again."""
        found, failed = self._startds(workers)
        for name in found:
            self._reasons.pop(name, None)
            self.world.drain(name, on=False)
        return DrainResult(done=tuple(found), failed=failed)


class SimNomad:
    """:class:`~nomadwn.nomad.NomadAPI` over a simulated pool (see the module docstring)."""

    def __init__(self, world: World, flavours: Mapping[str, SimFlavour]) -> None:
        self.world = world
        self.by_job = {f.job_id: f for f in flavours.values()}
        self.actions = 0
        self._last_dispatch: tuple[str, float] | None = None
        self._allocs: dict[str, tuple[int, list[Allocation]]] = {}
        self._children: dict[str, tuple[int, list[DispatchedJob]]] = {}
        self._evals = 0

    def _flavour(self, job_id: str) -> SimFlavour:
        f = self.by_job.get(job_id)
        if f is None:
            raise NomadError(f"Nomad (simulated) has no job {job_id}")
        return f

    def _eval_id(self) -> str:
        self._evals += 1
        return f"sim-eval-{self._evals}"

    def job(self, job_id: str) -> JobStatus | None:
        """The job's status; a service job's count is its group count."""
        f = self.by_job.get(job_id)
        if f is None:
            return None
        counts = {GROUP: self.world.counts.get(job_id, 0)} if f.kind == "service" else {}
        return JobStatus(job_id, f.kind, "running", 0, True, 1, counts)

    def allocations(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[list[Allocation]]:
        """The group's placed allocations (unplaced ones are not allocations in Nomad either)."""
        version = self.world.version
        cached = self._allocs.get(job_id)
        if cached is not None and cached[0] == version:
            return Indexed(list(cached[1]), version)
        group = self.world.groups.get(job_id, {})
        out = [
            Allocation(
                id=w.id,
                group=GROUP,
                node_id=f"node-{w.node}",
                node_name=f"node-{w.node}",
                client_status="running",
                desired_status="run",
                job_version=0,
                healthy=None,
                canary=False,
                task_failed=False,
                events=[],
                name=f"{job_id}.{GROUP}[{w.index}]",
            )
            for w in group.values()
            if w.phase != UNPLACED
        ]
        self._allocs[job_id] = (version, out)
        return Indexed(list(out), version)

    def scale(self, job_id: str, group: str, count: int, message: str) -> str:
        """Set the group's count (Nomad's reconciler: see :meth:`World.scale`)."""
        f = self._flavour(job_id)
        if f.kind != "service" or group != GROUP:
            raise NomadError(f"Nomad (simulated): job {job_id} has no scalable group {group}")
        self.actions += 1
        self.world.scale(f, count)
        return self._eval_id()

    def dispatch(self, job_id: str, *, meta: Mapping[str, str], idempotency_token: str) -> DispatchResult:
        """Dispatch one worker; a token already used returns the same child and no evaluation."""
        f = self._flavour(job_id)
        known = idempotency_token in self.world.tokens
        if not known and self._last_dispatch != (job_id, self.world.now):
            self.actions += 1  # one decision dispatches several workers: one action
            self._last_dispatch = (job_id, self.world.now)
        child = self.world.dispatch(f, idempotency_token)
        return DispatchResult(child, "" if known else self._eval_id())

    def dispatched(self, parent_id: str) -> list[DispatchedJob]:
        """The live children (Nomad garbage-collects dead ones; the autoscaler counts live ones only)."""
        version = self.world.version
        cached = self._children.get(parent_id)
        if cached is not None and cached[0] == version:
            return list(cached[1])
        out = []
        for child, w in self.world.children.get(parent_id, {}).items():
            queued = 1 if w.phase == UNPLACED else 0
            out.append(DispatchedJob(child, "pending" if queued else "running", queued, 0, 1 - queued, 0, 0, 0))
        self._children[parent_id] = (version, out)
        return list(out)

    # ---- not used by the autoscaler ----------------------------------------------------------

    def _unmodelled(self, what: str) -> NomadError:
        return NomadError(f"Nomad (simulated): {what} is not modelled by the simulator")

    def plan(self, job: api.Job) -> PlanResult:
        raise self._unmodelled("plan")

    def register(self, job: api.Job, *, enforce_index: int | None, preserve_counts: bool) -> RegisterResult:
        raise self._unmodelled("register")

    def versions(self, job_id: str) -> list[JobVersion]:
        raise self._unmodelled("job versions")

    def logs(
        self, alloc_id: str, task: str, *, stream: LogStream = "stdout", follow: bool = False, origin: str = "start"
    ) -> Iterator[LogFrame]:
        raise self._unmodelled("task logs")

    def evaluation(self, eval_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Evaluation]:
        raise self._unmodelled("evaluations")

    def latest_deployment(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Deployment | None]:
        raise self._unmodelled("deployments")

    def promote(self, deployment_id: str) -> None:
        raise self._unmodelled("promote")

    def revert(self, job_id: str, version: int, *, enforce_prior_version: int | None = None) -> RegisterResult:
        raise self._unmodelled("revert")

    def stop(self, job_id: str, *, purge: bool = False) -> str:
        raise self._unmodelled("job stop")

    def stop_allocation(self, alloc_id: str) -> str:
        raise self._unmodelled("allocation stop")
