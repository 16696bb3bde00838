"""The autoscaler loop: observe → account → decide → act, one step at a time.

:meth:`Autoscaler.step` is one pass; :meth:`Autoscaler.run` repeats it until told to
stop. Tests (and ``nomadwn simulate``) call ``step`` directly with fakes and a fake
clock. One step::

    lock (if any): hold it? --no / Consul unreachable--> standby: observe nothing, act never
        | yes;  no flavour due? --> done
        v
    observe the whole site, once (every autoscaled flavour, due or not):
        HTCondor idle demand: one GroupBy per schedd, each shape tagged with the
        flavours' requirements it meets                                  --fails--> demand unknown
        HTCondor workers of the site (startd ads, by NomadAllocId)       --fails--> supply unknown
        Nomad: service -> the group count and its allocations (name index)
               batch   -> the live workers of the dispatched children    --fails--> supply unknown
        join: each live allocation is starting (not in the collector yet; overdue
              after the start deadline), unclaimed, claimed, draining or other
        |
        v
    account (pure, accounting.account): each idle job to one flavour, after the
    spare capacity of every worker           -> decide (pure, strategy.decide) per due flavour
        -> site core quota over every autoscaled flavour (strategy.apply_quota)
        |
        v
    act, unless dry-run or the decision holds; the lock is checked again right before
    each action (a slow observation can outlast the session):
        cancel drains  -> HTCondor: cancel the drains we started (demand is back)
        service up     -> Nomad job scale endpoint, the reason as the scaling event's message
        service down   -> re-read the workers first; scale only if the drained, empty top of
                          the index still covers the removal
        drain          -> HTCondor graceful drain of the workers at the top (idle ones before
                          their removal, claimed ones so that they empty)
        batch up       -> dispatch one parameterized child per worker; the idempotency
                          token comes from the decision, so a retry reuses it
        batch down     -> never: ephemeral workers expire by their lifespan
        Nomad refuses because a deployment runs -> a no-op with that reason, not an error

Fault rules: an observation that failed is None and the strategy then never scales in
(fail static); an action that failed is logged and counted, the flavour's history is
not advanced, and the next evaluation starts from a fresh observation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nomadwn.autoscale.accounting import Accounting, FlavourView, Share, account
from nomadwn.autoscale.strategy import DRAIN_REASON, Decision, History, Policy, apply_quota, decide
from nomadwn.errors import BackendError, ConfigError, FieldProblem, NomadError
from nomadwn.metrics import AutoscalerMetrics
from nomadwn.model import Site, dispatched
from nomadwn.pool import WORKER_STATES, Capacity, Demand, JobShape, Observation, Supply, Worker
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


_BLOCKED = "blocked due to active deployment"
"""What Nomad answers (HTTP 400) to a scale while the job's deployment is active
(``Job.Scale`` in ``nomad/job_endpoint.go``: "job scaling blocked due to active deployment")."""

_START_MARGIN = 300.0
"""Seconds a worker may take after its image is pulled to start and reach the collector."""


@dataclass
class _FlavourState:
    policy: Policy
    interval: float
    requirements: str | None
    start_deadline: float
    history: History = field(default_factory=History)
    next_due: float = 0.0
    last_count: int = 0


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
        drain_reason=seen.drain_reason,
        started_at=seen.started_at,
        oldest_job_start=seen.oldest_job_start,
    )


def _starting(alloc_id: str, index: int, flavour: str, size: Capacity, since: float | None = None) -> Worker:
    return Worker(
        alloc_id=alloc_id,
        state="starting",
        flavour=flavour,
        index=index,
        since=since,
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
    first_seen: dict[str, float] | None = None,
    start_deadline: float = float("inf"),
) -> Supply:
    """A service flavour's supply: its live allocations, each with its startd's view.

    An allocation not (yet) in the collector is *starting*, with the flavour's worker
    ``size`` free; so is each placement Nomad still owes (count above the live
    allocations), so that a full cluster does not make the autoscaler ask for ever more.
    ``first_seen`` (alloc ID -> when it was first seen starting; updated here) turns a
    starting allocation into *overdue* once ``start_deadline`` seconds have passed:
    no longer spare, and reported. Unplaced placements never become overdue (asking
    for more would not place them either).
    """
    by_alloc = {w.alloc_id: w for w in workers.workers if w.flavour in ("", flavour)}
    out: list[Worker] = []
    for a in allocations:
        if a.desired_status != "run" or a.client_status not in _LIVE:
            continue
        found = a.index  # a regular expression on the name: once
        index = -1 if found is None else found
        seen = by_alloc.get(a.id)
        if seen is not None:
            out.append(_joined(seen, index, flavour))
            continue
        worker = _starting(a.id, index, flavour, size)
        if first_seen is not None:
            since = first_seen.setdefault(a.id, taken_at)
            if taken_at - since > start_deadline:
                worker = Worker(alloc_id=a.id, state="overdue", flavour=flavour, index=index, since=since)
            else:
                worker = _starting(a.id, index, flavour, size, since)
        out.append(worker)
    for i in range(max(0, count - len(out))):
        out.append(_starting(f"(unplaced {i + 1})", -1, flavour, size))
    return Supply(workers=tuple(out), taken_at=min(taken_at, workers.taken_at), count=count)


def join_batch(live: int, workers: Supply, flavour: str, taken_at: float, size: Capacity) -> Supply:
    """A dispatched batch flavour's supply: ``live`` workers Nomad runs or will run."""
    out = [w for w in workers.workers if w.flavour == flavour][:live]
    out += [_starting(f"(starting {i + 1})", -1, flavour, size) for i in range(live - len(out))]
    return Supply(workers=tuple(out), taken_at=min(taken_at, workers.taken_at), count=live)


def _state_counts(supply: Supply) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(WORKER_STATES, 0)
    for w in supply.workers:
        counts[w.state] += 1
    return counts


def _supply_text(supply: Supply | None, counts: Mapping[str, int]) -> str:
    if supply is None:
        return "unknown"
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    return f"{len(supply.workers)} worker(s)" + (f" ({', '.join(parts)})" if parts else "")


def _shapes_text(shapes: tuple[JobShape, ...]) -> str:
    return ", ".join(f"{s.count}x{s.cpus}c/{s.memory_mb}MiB" for s in shapes)


def _demand_text(demand: Demand | None, share: Share | None, accounting: Accounting | None) -> str:
    if demand is None:
        return "unknown"
    text = f"{demand.jobs} idle job(s)"
    if share is not None:
        text += f", took {share.jobs}"
        if share.shapes:
            text += f" ({_shapes_text(share.shapes)})"
        text += f", {share.absorbed} into free capacity"
    if accounting is not None and (accounting.unfit or accounting.unserved):
        text += f"; site-wide {accounting.unfit} fit no flavour, {accounting.unserved} unserved (at max)"
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
        settings = site.autoscaler
        self.core_quota = settings.core_quota if settings is not None else None
        self.negotiated_only = settings.negotiated_only if settings is not None else False
        self.last_step_at: float | None = None
        self.states: dict[str, _FlavourState] = {}
        # Starting allocations by ID -> when first seen (the start deadline); a token salt.
        self._first_seen: dict[str, float] = {}
        self._epoch = f"{clock():.6f}"
        self._gauges: dict[str, dict[str, Any]] = {}
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
            deadline = (
                duration_seconds(settings.start_deadline)
                if settings is not None and settings.start_deadline is not None
                else duration_seconds(f.image.pull_timeout) + _START_MARGIN
            )
            self.states[name] = _FlavourState(
                Policy.of(f, settings), duration_seconds(f.autoscale.evaluation_interval), req, deadline
            )
        self._requirements = tuple(dict.fromkeys(s.requirements for s in self.states.values() if s.requirements))
        if problems:
            raise ConfigError("site", problems, context=" in the site file")

    # ---- one step ------------------------------------------------------------------

    def step(self, *, force: bool = False) -> StepReport:
        """One pass over the flavours that are due (all of them with ``force``).

        The whole site is observed and accounted for, so that every flavour's share
        of the demand and the core quota see all of them; only the due flavours decide.
        """
        started = time.perf_counter()
        now = self.clock()
        errors: list[str] = []
        leader = self._lead(errors)
        due = [n for n, s in self.states.items() if force or now >= s.next_due]
        if (self.leadership is not None and not leader) or not due:
            self._finish(started, now)
            return StepReport(now, leader, [], errors)
        observations, demand = self._observe(errors)
        now = self.clock()
        accounting = None
        if demand is not None:
            views = {
                n: FlavourView(st.policy, st.requirements, observations[n].supply) for n, st in self.states.items()
            }
            accounting = account(demand, views)
        decisions: dict[str, Decision] = {}
        for n in due:
            st = self.states[n]
            share = accounting.shares[n] if accounting is not None else None
            decisions[n] = decide(observations[n], st.policy, st.history, now, share)
        # The quota counts every autoscaled flavour: the ones deciding now, and the others as last seen.
        seen = {n: d for n, d in decisions.items() if observations[n].supply is not None}
        held = sum(st.last_count * st.policy.worker_cores for n, st in self.states.items() if n not in seen)
        trimmed = apply_quota(seen, {n: self.states[n].policy for n in seen}, self.core_quota, held)
        decisions.update(trimmed)
        reports = []
        for name in due:
            obs, decision = observations[name], decisions[name]
            action = self._act(name, decision, errors)
            self.states[name].next_due = now + self.states[name].interval
            share = accounting.shares[name] if accounting is not None else None
            reports.append(self._report(name, obs, decision, action, share, accounting))
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

    def _observe(self, errors: list[str]) -> tuple[dict[str, Observation], Demand | None]:
        """Every autoscaled flavour's observation, and the site's idle demand (None: unknown)."""
        demand: Demand | None
        try:
            demand = self.condor.idle_demand(negotiated_only=self.negotiated_only, requirements=self._requirements)
        except BackendError as exc:
            self._error("condor", str(exc), errors)
            demand = None
        else:
            for schedd, why in sorted(demand.errors.items()):
                self._error("condor", why, errors, schedd=schedd)
        workers: Supply | None
        try:
            workers = self.condor.workers(self.site.name)
        except BackendError as exc:
            self._error("condor", str(exc), errors)
            workers = None
        out: dict[str, Observation] = {}
        live: set[str] = set()
        for name, st in self.states.items():
            supply = None
            if workers is not None:
                try:
                    supply = self._supply(name, workers)
                except BackendError as exc:
                    self._error("nomad", str(exc), errors, flavour=name)
            if supply is not None:
                st.last_count = supply.count
                live.update(w.alloc_id for w in supply.workers if w.since is not None)
            out[name] = Observation(demand=demand, supply=supply)
        if workers is not None:
            # Forget allocations that are no longer starting (joined, or gone).
            for alloc in [a for a in self._first_seen if a not in live]:
                del self._first_seen[alloc]
        return out, demand

    def _supply(self, name: str, workers: Supply) -> Supply:
        job_id = self.site.job_id(name)
        taken_at = self.clock()
        st = self.states[name]
        size = st.policy.size
        if dispatched(self.site.flavours[name]):
            live = sum(child.live for child in self.nomad.dispatched(job_id))
            return join_batch(live, workers, name, taken_at, size)
        job = self.nomad.job(job_id)
        if job is None:
            raise NomadError(f"Nomad has no job {job_id}; deploy the flavour first (nomadwn deploy SITE {name})")
        allocations = self.nomad.allocations(job_id).value
        count = job.counts.get(GROUP, 0)
        return join_service(count, allocations, workers, name, taken_at, size, self._first_seen, st.start_deadline)

    # ---- act -----------------------------------------------------------------------------

    def _still_leader(self) -> bool:
        """Check the lock again right before acting: the observation may have outlasted the session."""
        if self.leadership is None:
            return True
        try:
            held = self.leadership.hold()
        except BackendError:
            held = False
        if not held:
            self.metrics.leader.set(0)
        return held

    def _act(self, name: str, decision: Decision, errors: list[str]) -> str:
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
        if decision.drain:
            record["drain"] = list(decision.drain)
        if decision.cancel_drain:
            record["cancel_drain"] = list(decision.cancel_drain)
        if direction == "none" and not decision.drain and not decision.cancel_drain:
            self.log_event(record)
            return "none"
        if self.dry_run:
            if direction != "none":
                self.metrics.actions.labels(flavour=name, direction=direction, dry_run="true").inc()
            self.log_event(record)
            return "would " + self._plan_text(decision) + " (dry run)"
        if not self._still_leader():
            self.log_event({**record, "outcome": "not acted: this replica lost the leader lock"})
            return "none: this replica lost the leader lock before acting"
        done: list[str] = []
        acted = False
        if decision.cancel_drain:
            done.append(self._drain(name, decision.cancel_drain, errors, cancel=True))
        if direction != "none":
            job_id = self.site.job_id(name)
            try:
                if dispatched(self.site.flavours[name]):
                    outcome = self._dispatch(name, job_id, decision)
                else:
                    outcome = self._scale(name, job_id, decision)
            except BackendError as exc:
                self._error("act", str(exc), errors, flavour=name)
                self.log_event({**record, "outcome": "failed"})
                return "; ".join([*done, f"failed: {exc}"])
            done.append(outcome)
            if outcome.startswith(("scaled", "dispatched")):
                acted = True
                self.metrics.actions.labels(flavour=name, direction=direction, dry_run="false").inc()
                st.last_count = decision.count
        if decision.drain:
            # A drain prepares a scale-in and changes no count: it starts no cooldown.
            done.append(self._drain(name, decision.drain, errors, cancel=False))
        if acted:
            st.history = History(last_action_at=self.clock(), last_direction="up" if direction == "up" else "down")
        text = "; ".join(done)
        self.log_event({**record, "outcome": text})
        return text

    @staticmethod
    def _plan_text(decision: Decision) -> str:
        parts = []
        if decision.cancel_drain:
            parts.append(f"cancel the drain of {len(decision.cancel_drain)} worker(s)")
        if decision.direction != "none":
            parts.append(f"scale {decision.direction} to {decision.count}")
        if decision.drain:
            parts.append(f"drain {len(decision.drain)} worker(s)")
        return ", ".join(parts)

    def _drain(self, name: str, workers: tuple[str, ...], errors: list[str], *, cancel: bool) -> str:
        what = "cancel_drain" if cancel else "drain"
        try:
            if cancel:
                result = self.condor.cancel_drain(list(workers))
            else:
                result = self.condor.drain(list(workers), reason=f"{DRAIN_REASON}: scale-in of {name}")
        except BackendError as exc:
            self._error("act", str(exc), errors, flavour=name)
            return f"{what} failed: {exc}"
        for worker, why in sorted(result.failed.items()):
            self._error("act", why, errors, flavour=name, worker=worker)
        if result.done:
            self.metrics.actions.labels(flavour=name, direction=what, dry_run="false").inc(len(result.done))
        verb = "cancelled the drain of" if cancel else "drained"
        text = f"{verb} {len(result.done)} worker(s)"
        return text + (f" ({len(result.failed)} failed)" if result.failed else "")

    def _scale(self, name: str, job_id: str, decision: Decision) -> str:
        if decision.direction == "down":
            # Claims happen between observation and action: look again just before removing.
            fresh = self._supply(name, self.condor.workers(self.site.name))
            removing = decision.current - decision.count
            if fresh.count != decision.current or fresh.removable_tail() < removing:
                return (
                    f"not scaled: the workers changed since the observation "
                    f"(count {fresh.count}, {fresh.removable_tail()} drained and empty at the top)"
                )
        try:
            self.nomad.scale(job_id, GROUP, decision.count, f"nomadwn autoscale: {decision.reason}")
        except NomadError as exc:
            if _BLOCKED in str(exc).lower():
                # Not an error: Nomad refuses every scale while the job's deployment runs.
                return "none: a deployment of the job is running and Nomad blocks scaling until it ends"
            raise
        return f"scaled {decision.direction} to {decision.count}"

    def _token(self, name: str, decision: Decision, i: int) -> str:
        """The idempotency token of the i-th dispatch of this decision: the same on a retry.

        Derived from the flavour, the decision (from and to) and the last successful
        action (so the next decision with the same counts gets new tokens), salted per
        process so that another process's old children never match.
        """
        last = self.states[name].history.last_action_at
        seed = f"{self._epoch}|{name}|{decision.current}>{decision.count}|{last}"
        return f"nomadwn-{name}-{hashlib.sha256(seed.encode()).hexdigest()[:16]}-{i}"

    def _dispatch(self, name: str, job_id: str, decision: Decision) -> str:
        if decision.direction != "up":
            return "none: batch workers expire by their lifespan"
        wanted = decision.count - decision.current
        meta = {REASON_META: decision.reason[:512]}
        for i in range(wanted):
            token = self._token(name, decision, i)
            try:
                try:
                    self.nomad.dispatch(job_id, meta=meta, idempotency_token=token)
                except BackendError:
                    # One retry with the same token: if the first call did start a child, Nomad returns it.
                    self.nomad.dispatch(job_id, meta=meta, idempotency_token=token)
            except BackendError:
                if i == 0:
                    raise
                return f"dispatched {i} of {wanted} worker(s); the rest failed"
        return f"dispatched {wanted} worker(s)"

    # ---- report --------------------------------------------------------------------------

    def _report(
        self,
        name: str,
        obs: Observation,
        decision: Decision,
        action: str,
        share: Share | None,
        accounting: Accounting | None,
    ) -> FlavourReport:
        g = self._gauges.get(name)
        if g is None:  # label lookups cost more than the rest of the report: once per flavour
            m = self.metrics
            g = self._gauges[name] = {
                "idle": m.idle_jobs.labels(flavour=name),
                "current": m.current.labels(flavour=name),
                "desired": m.desired.labels(flavour=name),
                **{state: m.workers.labels(flavour=name, state=state) for state in WORKER_STATES},
            }
        if share is not None:
            g["idle"].set(share.jobs)
        counts = _state_counts(obs.supply) if obs.supply is not None else {}
        if obs.supply is not None:
            for state, n in counts.items():
                g[state].set(n)
            g["current"].set(obs.supply.count)
            g["desired"].set(decision.count)
        return FlavourReport(
            flavour=name,
            kind=self.site.flavours[name].kind,
            demand=_demand_text(obs.demand, share, accounting),
            supply=_supply_text(obs.supply, counts),
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
