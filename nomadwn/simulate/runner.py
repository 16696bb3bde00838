"""Replay a trace through the real autoscaler, and through static pools for comparison.

:func:`run` drives one :class:`~nomadwn.autoscale.loop.Autoscaler` (the same observe →
decide → act code as ``nomadwn autoscale``) against a
:class:`~nomadwn.simulate.world.World`, calling :meth:`Autoscaler.step` whenever a
flavour's ``evaluation_interval`` is due, with the simulated clock injected. The pool
starts as deployed: each autoscaled service flavour with its site-file ``count``
running. :func:`run_static` replays the same trace on ``N`` always-on workers of the
site's largest autoscaled flavour (no lifespan, no autoscaler). :func:`simulate` does
both; unless told ``N``, it finds the smallest static pool whose wait p95 is no worse
than the autoscaler's by bisection over ``N`` (a static run is cut short as soon as
more jobs started late than the p95 allows).

Each run ends when the last job has finished (or at a horizon: the last submit plus the
longest run time plus a week, so no input can make it run for ever); core-hours are
counted up to that moment.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from nomadwn.autoscale.loop import Autoscaler
from nomadwn.autoscale.strategy import Policy
from nomadwn.errors import ConfigError, FieldProblem
from nomadwn.metrics import AutoscalerMetrics
from nomadwn.model import Site, shutdown_plan
from nomadwn.simulate.peers import SimCondor, SimNomad
from nomadwn.simulate.trace import Trace
from nomadwn.simulate.world import AbortedRunError, Cluster, SimFlavour, World
from nomadwn.units import duration_seconds

STATES = ("unplaced", "starting", "unclaimed", "claimed", "draining")
_HORIZON_SLACK = 7 * 86400.0
_SAMPLES = 2000


@dataclass(frozen=True)
class Options:
    """How to model the pool (seconds). ``cluster`` None: :func:`default_cluster`."""

    cluster: Cluster | None = None
    start_delay: float = 60.0
    negotiator_interval: float = 60.0
    claim_worklife: float = 1200.0
    baseline: int | None = None


@dataclass(frozen=True)
class Stats:
    """The figures of one run (see the README's "Tuning the autoscaler" for each)."""

    jobs: int
    wait_p50: float
    wait_p95: float
    wait_max: float
    provisioned: float
    used: float
    killed_work: float
    peak_workers: int
    peak_cores: int
    scaling_actions: int
    payloads_killed: int
    unfinished: int
    unrunnable: int
    duration_s: float
    evaluations: int = 0

    @property
    def idle(self) -> float:
        """Core-hours provisioned but not used by a payload that completed (killed work counts as idle)."""
        return max(0.0, self.provisioned - self.used)

    @property
    def utilisation(self) -> float:
        """Used over provisioned core-hours."""
        return self.used / self.provisioned if self.provisioned else 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON form documented in the README."""

        def num(x: float) -> float | None:
            return None if math.isinf(x) or math.isnan(x) else round(x, 1)

        return {
            "jobs": self.jobs,
            "wait_s": {"p50": num(self.wait_p50), "p95": num(self.wait_p95), "max": num(self.wait_max)},
            "core_hours": {
                "provisioned": round(self.provisioned, 1),
                "used": round(self.used, 1),
                "idle": round(self.idle, 1),
                "killed": round(self.killed_work, 1),
            },
            "utilisation": round(self.utilisation, 4),
            "peak_workers": self.peak_workers,
            "peak_cores": self.peak_cores,
            "scaling_actions": self.scaling_actions,
            "payloads_killed": self.payloads_killed,
            "jobs_unfinished": self.unfinished,
            "jobs_unrunnable": self.unrunnable,
            "simulated_days": round(self.duration_s / 86400, 2),
            "evaluations": self.evaluations,
        }


@dataclass
class Samples:
    """The pool over time, for the plot: one row per sample."""

    t: array[float] = field(default_factory=lambda: array("d"))
    idle: array[int] = field(default_factory=lambda: array("i"))
    running: array[int] = field(default_factory=lambda: array("i"))
    workers: dict[str, array[int]] = field(default_factory=lambda: {s: array("i") for s in STATES})

    def take(self, world: World) -> None:
        """Record the world now."""
        self.t.append(world.now)
        self.idle.append(world.idle_jobs)
        self.running.append(world.running)
        for state, n in world.by_state().items():
            self.workers[state].append(n)


@dataclass(frozen=True)
class Result:
    """The autoscaler's run and the static baseline of the same trace."""

    site: str
    trace: str
    jobs_in_trace: int
    skipped: int
    cluster: Cluster
    autoscaler: Stats
    baseline: Stats
    baseline_workers: int
    baseline_flavour: str
    baseline_searched: bool
    samples: Samples

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (documented in the README)."""
        doc = self.autoscaler.to_json()
        doc["baseline"] = {**self.baseline.to_json(), "workers": self.baseline_workers}
        doc["baseline"]["flavour"] = self.baseline_flavour
        doc["baseline"]["searched"] = self.baseline_searched
        doc["site"] = self.site
        doc["trace"] = {"file": self.trace, "jobs": self.jobs_in_trace, "skipped_never_ran": self.skipped}
        c = self.cluster
        doc["cluster"] = {"nodes": c.nodes, "cores": c.cores, "memory_mb": c.memory_mb}
        return doc


def flavours_of(site: Site) -> dict[str, SimFlavour]:
    """The autoscaled flavours of ``site``, as the model sees them."""
    out = {}
    for name in site.autoscaled():
        f = site.flavours[name]
        policy = Policy.of(f)
        life = f.lifespan
        out[name] = SimFlavour(
            name=name,
            job_id=site.job_id(name),
            kind=f.kind,
            cores=policy.worker_cores,
            memory_mb=policy.worker_memory_mb,
            max_age=duration_seconds(life.max_age) if life.max_age is not None else None,
            idle_shutdown=duration_seconds(life.idle_shutdown) if life.idle_shutdown is not None else None,
            retirement=duration_seconds(life.retirement) if life.retirement is not None else 0.0,
            check_interval=duration_seconds(life.check_interval),
            stop_grace=duration_seconds(shutdown_plan(site, name).master_graceful_timeout),
            restart_delay=duration_seconds(f.restart.delay),
        )
    return out


def default_cluster(site: Site) -> Cluster:
    """Nodes of max(32, the largest worker's) cores, enough of them for the site's core quota.

    Without a quota, enough for every autoscaled flavour at its ``max``. Memory per node:
    the largest worker's memory per core, at least 4 GB per core, so cores bind first.
    """
    flavours = flavours_of(site)
    biggest = max(flavours.values(), key=lambda f: (f.cores, f.memory_mb))
    cores = max(32, biggest.cores)
    per_core = max(4096, max(math.ceil(f.memory_mb / f.cores) for f in flavours.values()))
    quota = site.autoscaler.core_quota if site.autoscaler is not None else None
    if quota is None:
        quota = 0
        for f in flavours.values():
            bounds = site.flavours[f.name].scaling
            quota += f.cores * (bounds.max if bounds is not None else 1)
    return Cluster(nodes=max(1, math.ceil(quota / cores)), cores=cores, memory_mb=cores * per_core)


def _fits_any(flavours: dict[str, SimFlavour]) -> Callable[[tuple[int, int]], bool]:
    fs = list(flavours.values())
    return lambda shape: any(f.fits(shape) for f in fs)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[k - 1]


def _stats(world: World, actions: int, evaluations: int = 0) -> Stats:
    waits = sorted(world.waits)
    runnable = len(world.trace) - world.unrunnable
    waits += [math.inf] * (runnable - len(waits))  # never started: worse than any wait
    unfinished = runnable - world.completed
    return Stats(
        jobs=runnable,
        wait_p50=_percentile(waits, 0.50),
        wait_p95=_percentile(waits, 0.95),
        wait_max=waits[-1] if waits else 0.0,
        provisioned=world.prov_cs / 3600,
        used=world.used_cs / 3600,
        killed_work=world.killed_cs / 3600,
        peak_workers=world.peak_workers,
        peak_cores=world.peak_cores,
        scaling_actions=actions,
        payloads_killed=world.killed,
        unfinished=unfinished,
        unrunnable=world.unrunnable,
        duration_s=world.now,
        evaluations=evaluations,
    )


def _horizon(trace: Trace) -> float:
    return trace.span + (max(trace.run) if len(trace) else 0.0) + _HORIZON_SLACK


def _world(trace: Trace, cluster: Cluster, opts: Options, flavours: dict[str, SimFlavour]) -> World:
    return World(
        trace,
        cluster,
        start_delay=opts.start_delay,
        negotiator_interval=opts.negotiator_interval,
        claim_worklife=opts.claim_worklife,
        fits=_fits_any(flavours),
    )


def run(
    site: Site,
    trace: Trace,
    opts: Options,
    *,
    progress: Callable[[float], None] | None = None,
) -> tuple[Stats, Samples]:
    """The autoscaler's run: the real loop against the model, one step per due evaluation."""
    flavours = flavours_of(site)
    cluster = opts.cluster or default_cluster(site)
    world = _world(trace, cluster, opts, flavours)
    for name, f in flavours.items():
        if f.kind == "service":
            world.add_static(f, site.flavours[name].count or 0)
    nomad = SimNomad(world, flavours)
    errors: list[Mapping[str, Any]] = []

    def log_event(record: Mapping[str, Any]) -> None:
        if record.get("event") == "error":
            errors.append(record)

    autoscaler = Autoscaler(
        site,
        SimCondor(world, site.name, flavours),
        nomad,
        metrics=NullMetrics(),
        clock=world.clock,
        log_event=log_event,
    )
    horizon = _horizon(trace)
    samples = Samples()
    every = max(60.0, horizon / _SAMPLES)
    next_sample = 0.0
    next_report = 0.0
    step_at = 0.0
    steps = 0
    while True:
        world.advance_to(step_at, stop_when_done=True)
        if world.done or world.now > horizon:
            break
        autoscaler.step()
        steps += 1
        if world.now >= next_sample:
            samples.take(world)
            next_sample = world.now + every
        if progress is not None and world.now >= next_report:
            progress(min(1.0, world.now / max(1.0, trace.span)))
            next_report = world.now + 86400
        step_at = _next_step(autoscaler, world.now)
    samples.take(world)
    world.finish()
    return _stats(world, nomad.actions, steps), samples


class _Null:
    """A metric that records nothing (labels() returns itself)."""

    def labels(self, *_args: Any, **_kwargs: Any) -> _Null:
        return self

    def set(self, _value: float) -> None:
        pass

    def inc(self, _amount: float = 1) -> None:
        pass

    def observe(self, _value: float) -> None:
        pass


class NullMetrics(AutoscalerMetrics):
    """The autoscaler's metrics, recording nothing: a replay has no Prometheus to serve.

    The loop sets a dozen labelled gauges per step; with prometheus_client that was
    about half of a simulated step's cost. The loop's logic is unchanged.
    """

    def __init__(self) -> None:  # no registry: every instrument is a no-op
        null = cast(Any, _Null())
        self.idle_jobs = self.workers = self.current = self.desired = self.leader = self.last_step = null
        self.actions = self.errors = null
        self.step_duration = null


def _next_step(autoscaler: Autoscaler, now: float) -> float:
    states = getattr(autoscaler, "states", None)
    if states:
        due = min(getattr(s, "next_due", now) for s in states.values())
        if due > now:
            return float(due)
    return now + autoscaler.tick()


def static_flavour(site: Site) -> SimFlavour:
    """The baseline's worker: the largest autoscaled flavour's size (every job fits it), no lifespan."""
    flavours = flavours_of(site)
    first = max(flavours.values(), key=lambda f: (f.cores, f.memory_mb))
    return replace(first, name=f"static-{first.name}", job_id=f"static-{first.job_id}", kind="service", max_age=None)


def run_static(
    site: Site, trace: Trace, opts: Options, workers: int, *, abort_above: float | None = None
) -> Stats | None:
    """``workers`` always-on workers; None when ``abort_above`` cut it short (its p95 is worse)."""
    f = replace(static_flavour(site), idle_shutdown=None)
    cluster = opts.cluster or default_cluster(site)
    world = _world(trace, cluster, opts, {f.name: f})
    world.add_static(f, workers)
    if abort_above is not None:
        runnable = len(trace)
        world.abort_late = (abort_above, runnable - math.ceil(0.95 * runnable))
    try:
        world.advance_to(_horizon(trace), stop_when_done=True)
    except AbortedRunError:
        return None
    world.finish()
    return _stats(world, 0)


def simulate(
    site: Site,
    trace: Trace,
    opts: Options,
    *,
    progress: Callable[[float], None] | None = None,
) -> Result:
    """The autoscaler's run and its static baseline (given, or the smallest no worse at p95)."""
    if not site.autoscaled():
        raise ConfigError(
            site.name, [FieldProblem("flavours", "no flavour has an autoscale block; nothing to simulate")]
        )
    if len(trace) == 0:
        raise ConfigError(trace.source, [FieldProblem("", "no job in the trace ran")], context=" in the trace")
    cluster = opts.cluster or default_cluster(site)
    too_big = [f for f in flavours_of(site).values() if cluster.holds(f) == 0]
    if too_big:
        problems = [
            FieldProblem(
                "",
                f"a node of {cluster.cores} cores and {cluster.memory_mb} MB cannot hold one "
                f"{f.name} worker ({f.cores} cores, {f.memory_mb} MB)",
            )
            for f in too_big
        ]
        raise ConfigError("--cluster", problems, context="")
    opts = replace(opts, cluster=cluster)
    auto, samples = run(site, trace, opts, progress=progress)
    flavour = static_flavour(site)
    searched = opts.baseline is None
    if opts.baseline is not None:
        n = opts.baseline
        base = run_static(site, trace, opts, n)
        assert base is not None
    else:
        n, base, _ = smallest_static(site, trace, opts, auto.wait_p95, cluster.holds(flavour))
    return Result(
        site=site.name,
        trace=trace.source,
        jobs_in_trace=len(trace),
        skipped=trace.skipped,
        cluster=cluster,
        autoscaler=auto,
        baseline=base,
        baseline_workers=n,
        baseline_flavour=flavour.name,
        baseline_searched=searched,
        samples=samples,
    )


def smallest_static(site: Site, trace: Trace, opts: Options, target: float, most: int) -> tuple[int, Stats, int]:
    """Bisection for the smallest N whose wait p95 <= target (``most`` if none is); also the runs it took."""
    best_n = max(1, most)
    best = run_static(site, trace, opts, best_n)
    runs = 1
    assert best is not None
    if best.wait_p95 > target:
        return best_n, best, runs  # even the whole cluster is worse: report it
    lo, hi = 0, best_n  # p95(lo) > target (or lo == 0), p95(hi) <= target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        stats = run_static(site, trace, opts, mid, abort_above=target)
        runs += 1
        if stats is not None and stats.wait_p95 <= target:
            hi, best = mid, stats
        else:
            lo = mid
    return hi, best, runs
