"""The autoscaler loop: observe → decide → act, one step at a time.

:meth:`Autoscaler.step` is one pass; :meth:`Autoscaler.run` repeats it until told to
stop. Tests call ``step`` directly with fakes and a fake clock. One step::

    lock (if any): hold it? --no / Consul unreachable--> standby: observe nothing, act never
        | yes
        v
    observe, per flavour whose evaluation_interval is due:
        HTCondor idle demand (one GroupBy per distinct `requirements`)  --fails--> demand unknown
        HTCondor workers of the site (startd ads, by NomadAllocId)      --fails--> supply unknown
        Nomad: service -> the group count and its allocations (name index)
               batch   -> the live workers of the dispatched children   --fails--> supply unknown
        join: each live allocation is starting (not in the collector yet),
              unclaimed, claimed or draining (from its startd)
        |
        v
    decide (pure, strategy.decide) -> site core quota (strategy.apply_quota)
        |
        v
    act, unless dry-run or the decision holds:
        service up    -> Nomad job scale endpoint, the reason as the scaling event's message
        service down  -> re-read the workers first; scale only if the unclaimed tail still
                         covers the removal (a worker claimed meanwhile stops it)
        batch up      -> dispatch one parameterized child per worker (idempotency token)
        batch down    -> never: ephemeral workers expire by their lifespan

Fault rules: an observation that failed is None and the strategy then never scales in
(fail static); an action that failed is logged and counted, the flavour's history is
not advanced, and the next evaluation starts from a fresh observation.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nomadwn.autoscale.strategy import Decision, History, Policy, apply_quota, decide
from nomadwn.errors import BackendError, ConfigError, FieldProblem, NomadError
from nomadwn.metrics import AutoscalerMetrics
from nomadwn.model import Site, dispatched
from nomadwn.pool import WORKER_STATES, Capacity, Demand, Observation, Supply, Worker
from nomadwn.render import GROUP, REASON_META
from nomadwn.units import duration_seconds

if TYPE_CHECKING:  # protocols only: the loop itself loads no client library
    from nomadwn.condor import CondorSource
    from nomadwn.consul import Leadership
    from nomadwn.nomad import Allocation, NomadAPI

log = logging.getLogger("nomadwn.autoscale")

_LIVE = ("pending", "running")


@dataclass(frozen=True)
class FlavourReport:
    """What one step saw, decided and did for one flavour (one line of ``--once`` output)."""

    flavour: str
    kind: str
    demand: str
    supply: str
    current: int | None
    target: int | None
    reason: str
    action: str


@dataclass(frozen=True)
class StepReport:
    """One step: whether this replica led, and a report per evaluated flavour."""

    at: float
    leader: bool
    flavours: list[FlavourReport]
    errors: list[str]


@dataclass
class _FlavourState:
    policy: Policy
    interval: float
    requirements: str | None
    history: History = field(default_factory=History)
    next_due: float = 0.0


def _joined(seen: Worker, index: int, flavour: str) -> Worker:
    """HTCondor's view of a worker, with its place in Nomad (its allocation name index)."""
    return Worker(
        alloc_id=seen.alloc_id,
        state=seen.state,
        name=seen.name,
        flavour=flavour,
        site=seen.site,
        job_id=seen.job_id,
        index=index,
        activity=seen.activity,
        cpus_total=seen.cpus_total,
        cpus_free=seen.cpus_free,
        memory_total_mb=seen.memory_total_mb,
        memory_free_mb=seen.memory_free_mb,
        claimed_slots=seen.claimed_slots,
        healthy=seen.healthy,
    )


def _starting(alloc_id: str, index: int, flavour: str, size: Capacity) -> Worker:
    return Worker(
        alloc_id=alloc_id,
        state="starting",
        flavour=flavour,
        index=index,
        cpus_total=size.cores,
        cpus_free=size.cores,
        memory_total_mb=size.memory_mb,
        memory_free_mb=size.memory_mb,
    )


def join_service(
    count: int,
    allocations: list[Allocation],
    workers: Supply,
    flavour: str,
    taken_at: float,
    size: Capacity,
) -> Supply:
    """A service flavour's supply: its live allocations, each with its startd's view.

    An allocation not (yet) in the collector is *starting*, with the flavour's worker
    ``size`` free; so is each placement Nomad still owes (count above the live
    allocations), so that a full cluster does not make the autoscaler ask for ever more.
    """
    by_alloc = {w.alloc_id: w for w in workers.workers if w.flavour in ("", flavour)}
    out: list[Worker] = []
    for a in allocations:
        if a.desired_status != "run" or a.client_status not in _LIVE:
            continue
        index = -1 if a.index is None else a.index
        seen = by_alloc.get(a.id)
        out.append(_starting(a.id, index, flavour, size) if seen is None else _joined(seen, index, flavour))
    for i in range(max(0, count - len(out))):
        out.append(_starting(f"(unplaced {i + 1})", -1, flavour, size))
    return Supply(workers=tuple(out), taken_at=min(taken_at, workers.taken_at), count=count)


def join_batch(live: int, workers: Supply, flavour: str, taken_at: float, size: Capacity) -> Supply:
    """A dispatched batch flavour's supply: ``live`` workers Nomad runs or will run."""
    out = [w for w in workers.workers if w.flavour == flavour][:live]
    out += [_starting(f"(starting {i + 1})", -1, flavour, size) for i in range(live - len(out))]
    return Supply(workers=tuple(out), taken_at=min(taken_at, workers.taken_at), count=live)


def _supply_text(supply: Supply | None) -> str:
    if supply is None:
        return "unknown"
    parts = [f"{supply.in_state(s)} {s}" for s in WORKER_STATES if supply.in_state(s)]
    return f"{len(supply.workers)} worker(s)" + (f" ({', '.join(parts)})" if parts else "")


def _demand_text(demand: Demand | None, policy: Policy) -> str:
    if demand is None:
        return "unknown"
    text = f"{demand.jobs} idle job(s), {policy.fitting(demand)} fit"
    return text if demand.complete else text + " (partial)"


class Autoscaler:
    """Sizes a site's autoscaled flavours from HTCondor demand; see the module docstring.

    ``clock`` is wall-clock seconds (observations carry ``time.time()`` stamps).
    ``log_event`` receives one structured record per event (default: JSON lines on the
    ``nomadwn.autoscale`` logger).
    """

    def __init__(
        self,
        site: Site,
        condor: CondorSource,
        nomad: NomadAPI,
        *,
        leadership: Leadership | None = None,
        metrics: AutoscalerMetrics | None = None,
        clock: Callable[[], float] = time.time,
        dry_run: bool = False,
        log_event: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        names = site.autoscaled()
        if not names:
            raise ConfigError(
                "site", [FieldProblem("flavours", "no flavour has an autoscale block; nothing to scale")], context=""
            )
        self.site = site
        self.condor = condor
        self.nomad = nomad
        self.leadership = leadership
        self.metrics = metrics or AutoscalerMetrics()
        self.clock = clock
        self.dry_run = dry_run
        self.log_event = log_event or _json_log
        self.core_quota = site.autoscaler.core_quota if site.autoscaler is not None else None
        self.negotiated_only = site.autoscaler.negotiated_only if site.autoscaler is not None else False
        self.last_step_at: float | None = None
        self.states: dict[str, _FlavourState] = {}
        problems: list[FieldProblem] = []
        for name in names:
            f = site.flavours[name]
            assert f.autoscale is not None
            req = f.autoscale.requirements
            if req is not None:
                why = condor.check_expression(req)
                if why is not None:
                    problems.append(
                        FieldProblem(f"flavours.{name}.autoscale.requirements", f"not a ClassAd expression: {why}")
                    )
            self.states[name] = _FlavourState(Policy.of(f), duration_seconds(f.autoscale.evaluation_interval), req)
        if problems:
            raise ConfigError("site", problems, context=" in the site file")

    # ---- one step ------------------------------------------------------------------

    def step(self, *, force: bool = False) -> StepReport:
        """One pass over the flavours that are due (all of them with ``force``)."""
        started = time.perf_counter()
        now = self.clock()
        errors: list[str] = []
        leader = self._lead(errors)
        due = [n for n, s in self.states.items() if force or now >= s.next_due]
        if self.leadership is not None and not leader:
            report = StepReport(now, False, [], errors)
            self._finish(started, now)
            return report
        observations, errors_seen = self._observe(due)
        errors += errors_seen
        now = self.clock()
        decisions = {n: decide(observations[n], self.states[n].policy, self.states[n].history, now) for n in due}
        decisions = apply_quota(decisions, {n: self.states[n].policy for n in due}, self.core_quota)
        reports = []
        for name in due:
            obs, decision = observations[name], decisions[name]
            action = self._act(name, obs, decision, errors)
            self.states[name].next_due = now + self.states[name].interval
            reports.append(self._report(name, obs, decision, action))
        self._finish(started, now)
        return StepReport(now, leader, reports, errors)

    def _finish(self, started: float, now: float) -> None:
        self.metrics.step_duration.observe(time.perf_counter() - started)
        self.metrics.last_step.set(now)
        self.last_step_at = now

    def _lead(self, errors: list[str]) -> bool:
        if self.leadership is None:
            return True
        try:
            leader = self.leadership.hold()
        except BackendError as exc:
            self._error("consul", str(exc), errors)
            leader = False
        self.metrics.leader.set(1 if leader else 0)
        return leader

    def _error(self, phase: str, message: str, errors: list[str], **fields: Any) -> None:
        self.metrics.errors.labels(phase=phase).inc()
        errors.append(message)
        self.log_event({"event": "error", "phase": phase, "error": message, **fields})

    # ---- observe -----------------------------------------------------------------------

    def _observe(self, due: list[str]) -> tuple[dict[str, Observation], list[str]]:
        errors: list[str] = []
        demands: dict[str | None, Demand | None] = {}
        for req in dict.fromkeys(self.states[n].requirements for n in due):
            try:
                raw = self.condor.idle_demand(negotiated_only=self.negotiated_only, requirements=req)
            except BackendError as exc:
                self._error("condor", str(exc), errors)
                demands[req] = None
                continue
            for schedd, why in sorted(raw.errors.items()):
                self._error("condor", why, errors, schedd=schedd)
            demands[req] = raw
        workers: Supply | None
        try:
            workers = self.condor.workers(self.site.name)
        except BackendError as exc:
            self._error("condor", str(exc), errors)
            workers = None
        out: dict[str, Observation] = {}
        for name in due:
            supply = None
            if workers is not None:
                try:
                    supply = self._supply(name, workers)
                except BackendError as exc:
                    self._error("nomad", str(exc), errors, flavour=name)
            out[name] = Observation(demand=demands[self.states[name].requirements], supply=supply)
        return out, errors

    def _supply(self, name: str, workers: Supply) -> Supply:
        job_id = self.site.job_id(name)
        taken_at = self.clock()
        size = self.states[name].policy.size
        if dispatched(self.site.flavours[name]):
            live = sum(child.live for child in self.nomad.dispatched(job_id))
            return join_batch(live, workers, name, taken_at, size)
        job = self.nomad.job(job_id)
        if job is None:
            raise NomadError(f"Nomad has no job {job_id}; deploy the flavour first (nomadwn deploy SITE {name})")
        allocations = self.nomad.allocations(job_id).value
        return join_service(job.counts.get(GROUP, 0), allocations, workers, name, taken_at, size)

    # ---- act -----------------------------------------------------------------------------

    def _act(self, name: str, obs: Observation, decision: Decision, errors: list[str]) -> str:
        st = self.states[name]
        direction = decision.direction
        record = {
            "event": "decision",
            "flavour": name,
            "current": decision.current,
            "target": decision.count,
            "direction": direction,
            "reason": decision.reason,
            "dry_run": self.dry_run,
        }
        if direction == "none":
            self.log_event(record)
            return "none"
        if self.dry_run:
            self.metrics.actions.labels(flavour=name, direction=direction, dry_run="true").inc()
            self.log_event(record)
            return f"would scale {direction} to {decision.count} (dry run)"
        job_id = self.site.job_id(name)
        try:
            if dispatched(self.site.flavours[name]):
                done = self._dispatch(name, job_id, decision)
            else:
                done = self._scale(name, job_id, decision)
        except BackendError as exc:
            self._error("act", str(exc), errors, flavour=name)
            self.log_event({**record, "outcome": "failed"})
            return f"failed: {exc}"
        if done.startswith("scaled") or done.startswith("dispatched"):
            st.history = History(last_action_at=self.clock(), last_direction=direction)
            self.metrics.actions.labels(flavour=name, direction=direction, dry_run="false").inc()
        self.log_event({**record, "outcome": done})
        return done

    def _scale(self, name: str, job_id: str, decision: Decision) -> str:
        if decision.direction == "down":
            # Claims happen between observation and action: look again just before removing.
            fresh = self._supply(name, self.condor.workers(self.site.name))
            removing = decision.current - decision.count
            if fresh.count != decision.current or fresh.unclaimed_tail() < removing:
                return (
                    f"not scaled: the workers changed since the observation "
                    f"(count {fresh.count}, {fresh.unclaimed_tail()} unclaimed at the top)"
                )
        self.nomad.scale(job_id, GROUP, decision.count, f"nomadwn autoscale: {decision.reason}")
        return f"scaled {decision.direction} to {decision.count}"

    def _dispatch(self, name: str, job_id: str, decision: Decision) -> str:
        if decision.direction != "up":
            return "none: batch workers expire by their lifespan"
        stamp = int(self.clock())
        wanted = decision.count - decision.current
        meta = {REASON_META: decision.reason[:512]}
        for i in range(wanted):
            try:
                self.nomad.dispatch(job_id, meta=meta, idempotency_token=f"nomadwn-{name}-{stamp}-{i}")
            except BackendError:
                if i == 0:
                    raise
                return f"dispatched {i} of {wanted} worker(s); the rest failed"
        return f"dispatched {wanted} worker(s)"

    # ---- report --------------------------------------------------------------------------

    def _report(self, name: str, obs: Observation, decision: Decision, action: str) -> FlavourReport:
        policy = self.states[name].policy
        m = self.metrics
        if obs.demand is not None:
            m.idle_jobs.labels(flavour=name).set(policy.fitting(obs.demand))
        if obs.supply is not None:
            for state in WORKER_STATES:
                m.workers.labels(flavour=name, state=state).set(obs.supply.in_state(state))
            m.current.labels(flavour=name).set(obs.supply.count)
            m.desired.labels(flavour=name).set(decision.count)
        return FlavourReport(
            flavour=name,
            kind=self.site.flavours[name].kind,
            demand=_demand_text(obs.demand, policy),
            supply=_supply_text(obs.supply),
            current=obs.supply.count if obs.supply is not None else None,
            target=decision.count if obs.supply is not None else None,
            reason=decision.reason,
            action=action,
        )

    # ---- the service -------------------------------------------------------------------

    def tick(self) -> float:
        """How often :meth:`run` wakes: often enough to keep the lock and meet every interval."""
        shortest = min(s.interval for s in self.states.values())
        return max(1.0, min(shortest, 5.0))

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set (SIGTERM sets it); release the lock on the way out."""
        try:
            while not stop.is_set():
                self.step()
                stop.wait(self.tick())
        finally:
            if self.leadership is not None:
                try:
                    self.leadership.release()
                except BackendError as exc:
                    self.log_event({"event": "error", "phase": "consul", "error": str(exc)})
            self.log_event({"event": "stopped"})


def _json_log(record: Mapping[str, Any]) -> None:
    log.info(json.dumps({"ts": round(time.time(), 3), **record}, sort_keys=False, default=str))
