"""In-memory, scriptable fakes of nomadwn's protocols (Nomad, Consul, HTCondor), for tests.

:class:`ScriptedNomad` implements :class:`~nomadwn.nomad.NomadAPI`. A test scripts
what Nomad reports step by step (allocations, deployment, evaluation); each
blocking read advances one step and, when given a :class:`FakeClock`, advances it
by the wait it would have blocked for when nothing changed. Writes are recorded in
``calls`` for assertions.

For the autoscaler loop: :class:`MemoryNomad` (a stateful cluster: counts, allocations
with name indexes, dispatched children), :class:`MemoryCondor` (HTCondor's view of
it) and :class:`FakeLock` (a leader lock that is held, not held, or unreachable). Each
has a ``fail`` set naming the calls that raise, for outages in every phase.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nomadwn import nomad_api as api
from nomadwn.consul import ServiceInstance
from nomadwn.errors import CondorError, ConsulError, NomadError
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


@dataclass
class FakeClock:
    """A monotonic clock that only moves when told to."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@dataclass
class ScriptedNomad:
    """A :class:`NomadAPI` whose answers are scripted per step.

    ``dispatched_jobs`` is what :meth:`dispatched` answers, for any parent; :meth:`dispatch`
    only records the call and names a child, it adds none to that list.
    """

    plan_result: PlanResult | None = None
    current: JobStatus | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    alloc_steps: list[list[Allocation]] = field(default_factory=list)
    deployment_steps: list[Deployment | None] = field(default_factory=list)
    clock: FakeClock | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    job_versions: list[JobVersion] = field(default_factory=list)
    dispatched_jobs: list[DispatchedJob] = field(default_factory=list)
    log_frames: dict[tuple[str, str], list[LogFrame]] = field(default_factory=dict)
    _step: int = 0
    _eval_step: int = 0

    def _advance(self, steps: list[Any], wait: float) -> int:
        if self._step < len(steps) - 1:
            self._step += 1
        elif self.clock is not None:
            self.clock.advance(wait)  # nothing changed: the blocking query ran its full wait
        return self._step

    def plan(self, job: api.Job) -> PlanResult:
        self.calls.append(("plan", job.ID))
        assert self.plan_result is not None, "script a plan_result"
        return self.plan_result

    def register(self, job: api.Job, *, enforce_index: int | None, preserve_counts: bool) -> RegisterResult:
        self.calls.append(
            ("register", {"job": job.ID, "enforce_index": enforce_index, "preserve_counts": preserve_counts})
        )
        return RegisterResult(eval_id="eval-1", job_modify_index=(enforce_index or 0) + 1, warnings="")

    def job(self, job_id: str) -> JobStatus | None:
        return self.current

    def versions(self, job_id: str) -> list[JobVersion]:
        return self.job_versions

    def allocations(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[list[Allocation]]:
        if not self.alloc_steps:
            return Indexed([], 1)
        step = self._advance(self.alloc_steps, wait) if wait else min(self._step, len(self.alloc_steps) - 1)
        return Indexed(self.alloc_steps[step], step + 1)

    def evaluation(self, eval_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Evaluation]:
        assert self.evaluations, "script evaluations"
        if wait and self._eval_step < len(self.evaluations) - 1:
            self._eval_step += 1
        elif wait and self.clock is not None:
            self.clock.advance(wait)
        return Indexed(self.evaluations[self._eval_step], self._eval_step + 1)

    def latest_deployment(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Deployment | None]:
        if not self.deployment_steps:
            return Indexed(None, 1)
        return Indexed(self.deployment_steps[min(self._step, len(self.deployment_steps) - 1)], self._step + 1)

    def promote(self, deployment_id: str) -> None:
        self.calls.append(("promote", deployment_id))

    def revert(self, job_id: str, version: int, *, enforce_prior_version: int | None = None) -> RegisterResult:
        self.calls.append(
            ("revert", {"job": job_id, "version": version, "enforce_prior_version": enforce_prior_version})
        )
        return RegisterResult(eval_id="eval-revert", job_modify_index=0, warnings="")

    def stop(self, job_id: str, *, purge: bool = False) -> str:
        self.calls.append(("stop", {"job": job_id, "purge": purge}))
        return "eval-stop"

    def stop_allocation(self, alloc_id: str) -> str:
        self.calls.append(("stop_allocation", {"alloc": alloc_id}))
        return "eval-stop-alloc"

    def scale(self, job_id: str, group: str, count: int, message: str) -> str:
        self.calls.append(("scale", {"job": job_id, "group": group, "count": count, "message": message}))
        return "eval-scale"

    def dispatch(self, job_id: str, *, meta: Mapping[str, str], idempotency_token: str) -> DispatchResult:
        self.calls.append(("dispatch", {"job": job_id, "meta": dict(meta), "idempotency_token": idempotency_token}))
        n = sum(1 for name, _ in self.calls if name == "dispatch")
        return DispatchResult(dispatched_job_id=f"{job_id}/dispatch-1700000000-{n:08x}", eval_id=f"eval-dispatch-{n}")

    def dispatched(self, parent_id: str) -> list[DispatchedJob]:
        return list(self.dispatched_jobs)

    def logs(
        self, alloc_id: str, task: str, *, stream: LogStream = "stdout", follow: bool = False, origin: str = "start"
    ) -> Iterator[LogFrame]:
        self.calls.append(("logs", {"alloc": alloc_id, "task": task, "stream": stream, "follow": follow}))
        yield from self.log_frames.get((alloc_id, stream), [])


@dataclass
class FakeConsulHealth:
    """A :class:`~nomadwn.consul.ConsulHealth` serving scripted instances per service name."""

    services: dict[str, list[ServiceInstance]] = field(default_factory=dict)

    def service_health(self, name: str, tag: str | None = None) -> list[ServiceInstance]:
        return [i for i in self.services.get(name, []) if tag is None or tag in i.tags]


# ---------------------------------------------------------------------------
# The autoscaler's world: a tiny Nomad cluster, HTCondor's view of it, a leader lock


def _alloc(alloc_id: str, job_id: str, index: int, status: str = "running") -> Allocation:
    return Allocation(
        id=alloc_id,
        group="worker",
        node_id="node-1",
        node_name="n1",
        client_status=status,
        desired_status="run",
        job_version=0,
        healthy=True,
        canary=False,
        task_failed=False,
        events=[],
        name=f"{job_id}.worker[{index}]",
    )


@dataclass
class MemoryNomad:
    """A :class:`~nomadwn.nomad.NomadAPI` cluster in memory: counts, allocations, dispatched children.

    ``scale`` places or stops allocations at once (highest name index first, as Nomad);
    ``dispatch`` adds one running child. ``fail`` names methods that raise NomadError
    (a Nomad outage in that phase), ``fail_once`` those that raise once; ``deploying``
    names jobs whose active deployment blocks scaling; ``calls`` records every write.
    """

    counts: dict[str, int] = field(default_factory=dict)
    allocs: dict[str, list[Allocation]] = field(default_factory=dict)
    children: dict[str, list[DispatchedJob]] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    fail_once: set[str] = field(default_factory=set)
    deploying: set[str] = field(default_factory=set)
    tokens: dict[str, str] = field(default_factory=dict)  # child ID -> its idempotency token
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _next: int = 0

    def _maybe_fail(self, what: str) -> None:
        if what in self.fail_once:
            self.fail_once.discard(what)
            raise NomadError(f"Nomad: {what} at http://nomad.test:4646 failed: timed out; check NOMAD_ADDR")
        if what in self.fail:
            raise NomadError(f"Nomad: {what} at http://nomad.test:4646 failed: connection refused; check NOMAD_ADDR")

    def add_service(self, job_id: str, count: int) -> None:
        self.counts[job_id] = 0
        self.allocs[job_id] = []
        self._resize(job_id, count)

    def _resize(self, job_id: str, count: int) -> None:
        live = sorted(self.allocs[job_id], key=lambda a: int(a.name.rsplit("[", 1)[1][:-1]))
        while len(live) > count:
            live.pop()  # the highest name index stops first
        used = {int(a.name.rsplit("[", 1)[1][:-1]) for a in live}
        index = 0
        while len(live) < count:
            while index in used:
                index += 1
            self._next += 1
            live.append(_alloc(f"alloc-{self._next:04d}", job_id, index))
            used.add(index)
        self.allocs[job_id] = live
        self.counts[job_id] = count

    # -- NomadAPI ------------------------------------------------------------------------

    def plan(self, job: api.Job) -> PlanResult:
        raise NotImplementedError

    def register(self, job: api.Job, *, enforce_index: int | None, preserve_counts: bool) -> RegisterResult:
        raise NotImplementedError

    def job(self, job_id: str) -> JobStatus | None:
        self._maybe_fail("job")
        if job_id not in self.counts:
            return None
        return JobStatus(job_id, "service", "running", 0, True, 1, {"worker": self.counts[job_id]})

    def versions(self, job_id: str) -> list[JobVersion]:
        return []

    def allocations(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[list[Allocation]]:
        self._maybe_fail("allocations")
        return Indexed(list(self.allocs.get(job_id, [])), 1)

    def evaluation(self, eval_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Evaluation]:
        raise NotImplementedError

    def latest_deployment(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Deployment | None]:
        return Indexed(None, 1)

    def promote(self, deployment_id: str) -> None:
        raise NotImplementedError

    def revert(self, job_id: str, version: int, *, enforce_prior_version: int | None = None) -> RegisterResult:
        raise NotImplementedError

    def stop(self, job_id: str, *, purge: bool = False) -> str:
        raise NotImplementedError

    def stop_allocation(self, alloc_id: str) -> str:
        self.calls.append(("stop_allocation", {"alloc": alloc_id}))
        return "eval-stop-alloc"

    def scale(self, job_id: str, group: str, count: int, message: str) -> str:
        self._maybe_fail("scale")
        if job_id in self.deploying:
            # As Job.Scale in nomad/job_endpoint.go answers while the job's deployment is active.
            raise NomadError(
                f"scaling job {job_id} group {group} to {count} at http://nomad.test:4646: Nomad refused the"
                " request: job scaling blocked due to active deployment",
                status=400,
            )
        self.calls.append(("scale", {"job": job_id, "group": group, "count": count, "message": message}))
        self._resize(job_id, count)
        return "eval-scale"

    def dispatch(self, job_id: str, *, meta: Mapping[str, str], idempotency_token: str) -> DispatchResult:
        """Starts one running child; a token already used by a child returns that child, as Nomad does.

        (``Job.Dispatch`` in ``nomad/job_endpoint.go``: a known token creates nothing and
        answers with the existing child and no evaluation.) ``fail_once`` with
        ``"dispatch_reply"`` starts the child and then loses the reply (a timeout).
        """
        self._maybe_fail("dispatch")
        self.calls.append(("dispatch", {"job": job_id, "meta": dict(meta), "token": idempotency_token}))
        known = self.children.get(job_id, [])
        # Children Nomad has forgotten (garbage-collected; here: dropped from ``children``) forget their token.
        self.tokens = {c.id: self.tokens[c.id] for kids in self.children.values() for c in kids if c.id in self.tokens}
        for c in known:
            if self.tokens.get(c.id) == idempotency_token:
                return DispatchResult(dispatched_job_id=c.id, eval_id="")
        self._next += 1
        child = f"{job_id}/dispatch-1700000000-{self._next:08x}"
        self.children.setdefault(job_id, []).append(
            DispatchedJob(id=child, status="running", queued=0, starting=0, running=1, complete=0, failed=0, lost=0)
        )
        self.tokens[child] = idempotency_token
        self._maybe_fail("dispatch_reply")
        return DispatchResult(dispatched_job_id=child, eval_id=f"eval-{self._next}")

    def dispatched(self, parent_id: str) -> list[DispatchedJob]:
        self._maybe_fail("dispatched")
        return list(self.children.get(parent_id, []))

    def logs(
        self, alloc_id: str, task: str, *, stream: LogStream = "stdout", follow: bool = False, origin: str = "start"
    ) -> Iterator[LogFrame]:
        self._maybe_fail("logs")
        return iter(())


@dataclass
class MemoryCondor:
    """A :class:`~nomadwn.condor.CondorSource` over a :class:`MemoryNomad`: each live allocation is a worker.

    ``idle`` is the idle demand per shape ``(cpus, memory_mb) -> jobs``; ``claims``
    sets a worker's state by allocation ID (default unclaimed); ``fail`` names the
    methods that raise CondorError; ``partial`` makes demand miss a schedd;
    ``on_workers`` runs before each ``workers`` answer (to change claims mid-step);
    ``no_schedds`` answers as a collector that lists no schedd (a blind observation).
    Every idle job meets every flavour requirement except those in ``unmatched``.
    Every worker has its flavour's ``sizes`` (default 8 cores, 16 GiB); allocations in
    ``hidden`` have not reached the collector; a claimed one runs a payload that
    started a minute ago (or at ``job_starts``) and has nothing free unless
    ``free`` (alloc ID -> (cores, MiB)) says otherwise. :meth:`drain` marks workers
    ``drained`` (state draining) and :meth:`cancel_drain` clears them, as HTCondor's
    graceful drain does: neither touches a claim. Calls are recorded in ``drain_calls``.
    """

    nomad: MemoryNomad
    clock: FakeClock
    site: str = "glasgow"
    flavours: dict[str, str] = field(default_factory=dict)  # job id -> flavour
    idle: dict[tuple[int, int], int] = field(default_factory=dict)
    claims: dict[str, WorkerState] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    partial: bool = False
    demand_age: float = 0.0
    on_workers: Callable[[], None] | None = None
    requirements_seen: list[tuple[str, ...]] = field(default_factory=list)
    unmatched: set[str] = field(default_factory=set)
    no_schedds: bool = False
    free: dict[str, tuple[int, int]] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # flavour -> (cores, MiB)
    job_starts: dict[str, float] = field(default_factory=dict)  # alloc ID -> its oldest payload's start
    hidden: set[str] = field(default_factory=set)  # allocation IDs not (yet) in the collector
    drained: set[str] = field(default_factory=set)
    reasons: dict[str, str] = field(default_factory=dict)
    drain_calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def check_expression(self, expression: str) -> str | None:
        return "Unable to parse string into a ClassAd." if expression.count("(") != expression.count(")") else None

    def idle_demand(self, *, negotiated_only: bool = False, requirements: Collection[str] = ()) -> Demand:
        if "idle_demand" in self.fail:
            raise CondorError("HTCondor: querying idle jobs at schedd s1 failed: timed out; check the schedd")
        self.requirements_seen.append(tuple(requirements))
        # Every idle job meets every requirement, except those listed in ``unmatched``.
        matches = frozenset(r for r in requirements if r not in self.unmatched)
        shapes = tuple(JobShape(c, m, n, None, matches) for (c, m), n in sorted(self.idle.items()))
        failed = ("s2",) if self.partial else ()
        errors = {"s2": "HTCondor: querying idle jobs at schedd s2 failed: timed out"} if self.partial else {}
        schedds = () if self.no_schedds else ("s1",)
        return Demand(shapes, self.clock() - self.demand_age, schedds, failed, errors)

    def workers(self, site: str) -> Supply:
        if self.on_workers is not None:
            self.on_workers()
        if "workers" in self.fail:
            raise CondorError("HTCondor: reading the slots at cm:9618 failed: connection refused; check the collector")
        out = []
        for job_id, allocs in self.nomad.allocs.items():
            for a in allocs:
                if a.id in self.hidden:
                    continue
                out.append(self._worker(a.id, job_id, self.flavours.get(job_id, "")))
        for job_id, children in self.nomad.children.items():
            for child in children:
                out.append(self._worker(f"alloc-of-{child.id}", child.id, self.flavours.get(job_id, "")))
        # A stopped worker's startd is gone, and its drain with it.
        present = {w.alloc_id for w in out}
        self.drained &= present
        self.reasons = {a: r for a, r in self.reasons.items() if a in present}
        return Supply(tuple(out), self.clock(), len(out))

    def drain(self, workers: Sequence[Worker | str], *, reason: str) -> DrainResult:
        """Marks each named worker draining (the real startd's drain never evicts either)."""
        return self._set_drain(workers, True, reason)

    def cancel_drain(self, workers: Sequence[Worker | str]) -> DrainResult:
        return self._set_drain(workers, False, "")

    def _set_drain(self, workers: Sequence[Worker | str], on: bool, reason: str) -> DrainResult:
        if "drain" in self.fail:
            raise CondorError("HTCondor: draining the startd at cm:9618 failed: connection refused")
        names = [w if isinstance(w, str) else w.name for w in workers]
        for name in names:
            alloc = name.removeprefix("w-")
            if on:
                self.drained.add(alloc)
                self.reasons[alloc] = reason
            else:
                self.drained.discard(alloc)
                self.reasons.pop(alloc, None)
        self.drain_calls.append(("drain" if on else "cancel_drain", tuple(names)))
        return DrainResult(done=tuple(names))

    def _worker(self, alloc_id: str, job_id: str, flavour: str) -> Worker:
        state: WorkerState = "draining" if alloc_id in self.drained else self.claims.get(alloc_id, "unclaimed")
        claimed = 1 if self.claims.get(alloc_id) == "claimed" else 0
        # A claimed worker is full unless ``free`` says what it has left (cores, MiB).
        size = self.sizes.get(flavour, (8, 16384))
        cores, memory = self.free.get(alloc_id, (0, 0) if claimed else size)
        return Worker(
            alloc_id=alloc_id,
            state=state,
            name=f"w-{alloc_id}",
            flavour=flavour,
            site=self.site,
            job_id=job_id,
            activity="Idle",
            cpus_total=size[0],
            cpus_free=cores,
            memory_total_mb=size[1],
            memory_free_mb=memory,
            claimed_slots=claimed,
            drain_reason=self.reasons.get(alloc_id, "") if alloc_id in self.drained else "",
            oldest_job_start=self.job_starts.get(alloc_id, self.clock() - 60) if claimed else None,
        )


@dataclass
class FakeLock:
    """A :class:`~nomadwn.consul.Leadership`: held or not, or Consul unreachable."""

    held: bool = True
    down: bool = False
    released: int = 0
    holds: int = 0

    def hold(self) -> bool:
        self.holds += 1
        if self.down:
            raise ConsulError("Consul: renewing session at http://127.0.0.1:8500 failed: connection refused")
        return self.held

    def release(self) -> None:
        self.released += 1
        self.held = False

    @property
    def holder(self) -> str | None:
        return "this replica" if self.held else None
