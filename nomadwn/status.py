"""The pool view: per flavour and per worker, Nomad's allocation, its Consul checks and its startd.

Three systems, joined by allocation ID:

* Nomad: the job (version, status, counts) and its allocations (node, state);
* Consul: each worker's service checks. Nomad registers a task's service with an ID
  that contains the allocation ID (``_nomad-task-<alloc id>-...``), so instances are
  matched to a flavour by its allocations, not by name or tag (flavours may share both);
* HTCondor: each worker's startd (it advertises ``NomadAllocId``): slot state, cores
  and memory in use and free, payloads running, draining, age; and the idle jobs each
  flavour would take (those that fit one of its workers and match its
  ``autoscale.requirements``).

Each system may be unreachable: :func:`pool_status` then says which, in
:attr:`PoolStatus.errors`, and shows what the others know. Pure apart from the
protocol calls: no client library is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from dataclasses import replace as dataclass_replace
from typing import Any, Literal

from nomadwn.condor import CondorSource
from nomadwn.consul import ConsulHealth, ServiceHealth, ServiceInstance, worst_state
from nomadwn.errors import BackendError
from nomadwn.model import Flavour, Site, count, dispatched
from nomadwn.nomad import Allocation, NomadAPI
from nomadwn.pool import Capacity, Demand, Supply, Worker
from nomadwn.render import AUTOSCALER, GROUP
from nomadwn.units import duration_seconds

System = Literal["nomad", "consul", "condor"]
SYSTEM_NAMES: dict[System, str] = {"nomad": "Nomad", "consul": "Consul", "condor": "HTCondor"}


def worker_capacity(flavour: Flavour) -> Capacity:
    """The cores and memory (MiB) one worker of ``flavour`` offers HTCondor."""
    slots, r = flavour.htcondor.slots, flavour.resources
    cores = slots.cores or r.cores or max(1, (r.cpu or 1000) // 1000)
    return Capacity(cores, slots.memory or r.memory_max or r.memory)


@dataclass(frozen=True)
class WorkerStatus:
    """One worker, joined by allocation ID: Nomad's allocation, its worst Consul check, its startd.

    ``nomad`` is None when Nomad does not list the allocation (or was not reachable);
    ``checks`` is None when Consul has no instance for it (or was not asked);
    ``condor`` is None when the collector has no startd for it (starting, gone, or
    HTCondor unreachable). ``age`` and ``left`` are seconds: since the startd started,
    and of its ``lifespan.max_age`` still to go (None without a max_age).
    """

    alloc_id: str
    nomad: Allocation | None
    checks: str | None
    condor: Worker | None
    age: float | None
    left: float | None

    def as_json(self) -> dict[str, Any]:
        """A plain dict for ``status --json``."""
        a, w = self.nomad, self.condor
        return {
            "alloc_id": self.alloc_id,
            "nomad": None
            if a is None
            else {
                "name": a.name,
                "node": a.node_name,
                "version": a.job_version,
                "client_status": a.client_status,
                "desired_status": a.desired_status,
                "healthy": a.healthy,
            },
            "checks": self.checks,
            "condor": None
            if w is None
            else {
                "name": w.name,
                "state": w.state,
                "activity": w.activity,
                "draining": w.state == "draining",
                "cpus_total": w.cpus_total,
                "cpus_used": w.cpus_total - w.cpus_free,
                "cpus_free": w.cpus_free,
                "memory_total_mb": w.memory_total_mb,
                "memory_used_mb": w.memory_total_mb - w.memory_free_mb,
                "memory_free_mb": w.memory_free_mb,
                "payloads": w.claimed_slots,
                "healthy": w.healthy,
            },
            "age_seconds": self.age,
            "lifespan_left_seconds": self.left,
        }


@dataclass(frozen=True)
class FlavourStatus:
    """One flavour's job in Nomad, its workers' checks in Consul, and (in the pool view) its workers and demand."""

    flavour: str
    job_id: str
    kind: str
    registered: bool
    version: int | None
    job_status: str
    desired: int | None
    placed: int
    running: int
    healthy: int
    failed: int
    deployment: str
    checks: ServiceHealth | None
    workers: tuple[WorkerStatus, ...] = ()
    idle_jobs: int | None = None

    def as_json(self) -> dict[str, Any]:
        """A plain dict for ``status --json``."""
        data = {k: v for k, v in asdict(self).items() if k not in ("workers", "checks")}
        data["checks"] = asdict(self.checks) if self.checks is not None else None
        data["workers"] = [w.as_json() for w in self.workers]
        return data


@dataclass(frozen=True)
class _Target:
    job_id: str
    kind: str
    service: str
    group: str
    count: int | None


def _target(site: Site, name: str) -> _Target:
    if name not in site.flavours and site.autoscaler is not None:
        return _Target(site.autoscaler_job_id, "service", "nomadwn-autoscaler", AUTOSCALER, site.autoscaler.replicas)
    f = site.flavours[name]
    return _Target(site.job_id(name), f.kind, f.service.name, GROUP, count(f))


def _unregistered(name: str, t: _Target, status: str = "not registered") -> FlavourStatus:
    return FlavourStatus(name, t.job_id, t.kind, False, None, status, t.count, 0, 0, 0, 0, "", None)


def job_allocations(site: Site, name: str, nomad: NomadAPI) -> list[Allocation]:
    """The allocations of a flavour's workers: its job's, or (dispatched flavours) its live children's.

    A parameterized job has no allocation of its own; each dispatched child is a job
    with one (``nomad job dispatch``).
    """
    t = _target(site, name)
    f = site.flavours.get(name)
    if f is not None and dispatched(f):
        children = [c.id for c in nomad.dispatched(t.job_id) if c.live]
        return [a for child in children for a in nomad.allocations(child).value]
    return nomad.allocations(t.job_id).value


def _nomad_view(site: Site, name: str, nomad: NomadAPI) -> tuple[FlavourStatus, list[Allocation]]:
    t = _target(site, name)
    job = nomad.job(t.job_id)
    if job is None:
        return _unregistered(name, t), []
    allocs = [a for a in job_allocations(site, name, nomad) if a.desired_status == "run"]
    f = site.flavours.get(name)
    if f is not None and dispatched(f):
        # Each child is a job of its own, at version 0: every live worker is current.
        return _dispatched_view(name, t, job.version, job.status, allocs), allocs
    current = [a for a in allocs if a.job_version == job.version]
    deployment = nomad.latest_deployment(t.job_id).value if t.kind == "service" else None
    healthy = sum(a.healthy is True for a in current) if t.kind == "service" else None
    running = sum(a.client_status == "running" for a in current)
    row = FlavourStatus(
        flavour=name,
        job_id=t.job_id,
        kind=t.kind,
        registered=True,
        version=job.version,
        job_status=job.status,
        desired=job.counts.get(t.group) if t.kind != "system" else None,
        placed=len(current),
        running=running,
        healthy=running if healthy is None else healthy,
        failed=sum(a.client_status in ("failed", "lost") for a in current),
        deployment=f"{deployment.status} (v{deployment.job_version})" if deployment is not None else "",
        checks=None,
    )
    return row, allocs


def _dispatched_view(name: str, t: _Target, version: int, status: str, allocs: list[Allocation]) -> FlavourStatus:
    running = sum(a.client_status == "running" for a in allocs)
    failed = sum(a.client_status in ("failed", "lost") for a in allocs)
    return FlavourStatus(
        name, t.job_id, t.kind, True, version, status, None, len(allocs), running, running, failed, "", None
    )


def _instances_of(instances: Iterable[ServiceInstance], alloc_ids: Iterable[str]) -> dict[str, list[ServiceInstance]]:
    ids = list(dict.fromkeys(alloc_ids))
    out: dict[str, list[ServiceInstance]] = {}
    for instance in instances:
        for alloc_id in ids:
            if alloc_id in instance.service_id:
                out.setdefault(alloc_id, []).append(instance)
    return out


def flavour_status(site: Site, name: str, nomad: NomadAPI, consul: ConsulHealth | None) -> FlavourStatus:
    """Read one flavour's (or the autoscaler's) state; ``consul=None`` leaves the checks out."""
    row, allocs = _nomad_view(site, name, nomad)
    if consul is None or not row.registered:
        return row
    t = _target(site, name)
    matched = _instances_of(consul.service_health(t.service), (a.id for a in allocs))
    checks = ServiceHealth.of(i for group in matched.values() for i in group)
    return dataclass_replace(row, checks=checks)


@dataclass
class _OncePerService:
    """Reads each Consul service once per status run: flavours often share a service name."""

    consul: ConsulHealth
    seen: dict[tuple[str, str | None], list[ServiceInstance]]

    def service_health(self, name: str, tag: str | None = None) -> list[ServiceInstance]:
        if (name, tag) not in self.seen:
            self.seen[(name, tag)] = self.consul.service_health(name, tag)
        return self.seen[(name, tag)]


def site_status(site: Site, names: Iterable[str], nomad: NomadAPI, consul: ConsulHealth | None) -> list[FlavourStatus]:
    """Every named flavour's status, asking Consul once per service name."""
    shared = _OncePerService(consul, {}) if consul is not None else None
    return [flavour_status(site, name, nomad, shared) for name in names]


# ---------------------------------------------------------------------------
# the pool view


@dataclass(frozen=True)
class PoolStatus:
    """Every flavour of a site across Nomad, Consul and HTCondor, at ``taken_at``.

    ``errors`` maps each system that could not be read (``nomad``, ``consul``,
    ``condor``) to what went wrong; ``skipped`` lists those not asked (``--no-consul``).
    """

    site: str
    flavours: tuple[FlavourStatus, ...]
    taken_at: float
    errors: dict[System, str] = field(default_factory=dict)
    skipped: tuple[System, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every system asked answered."""
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        """A plain dict for ``status --json``."""
        systems = {s: "skipped" if s in self.skipped else ("error" if s in self.errors else "ok") for s in SYSTEM_NAMES}
        return {
            "site": self.site,
            "taken_at": self.taken_at,
            "systems": systems,
            "errors": dict(self.errors),
            "flavours": [f.as_json() for f in self.flavours],
        }


def _demand_fitting(flavour: Flavour, demand: Demand) -> int:
    size = worker_capacity(flavour)
    return sum(shape.count for shape in demand.shapes if size.holds(shape))


def _lifespan(flavour: Flavour | None, worker: Worker | None, now: float) -> tuple[float | None, float | None]:
    if worker is None or worker.started_at is None:
        return None, None
    age = max(0.0, now - worker.started_at)
    if flavour is None or flavour.lifespan.max_age is None:
        return age, None
    return age, duration_seconds(flavour.lifespan.max_age) - age


def pool_status(
    site: Site,
    names: Iterable[str],
    nomad: NomadAPI | None,
    consul: ConsulHealth | None,
    condor: CondorSource | None,
    *,
    clock: Callable[[], float],
) -> PoolStatus:
    """The pool view of the named flavours; a system that is None is skipped, one that fails is reported."""
    names = list(names)
    errors: dict[System, str] = {}
    asked: tuple[tuple[System, object], ...] = (("nomad", nomad), ("consul", consul), ("condor", condor))
    skipped = tuple(s for s, client in asked if client is None)

    supply: Supply | None = None
    demands: dict[str | None, Demand] = {}
    if condor is not None:
        try:
            supply = condor.workers(site.name)
            wanted: dict[str | None, None] = {}
            for name in names:
                f = site.flavours.get(name)
                if f is not None:
                    wanted[f.autoscale.requirements if f.autoscale is not None else None] = None
            if wanted:
                # One query for the site; each shape says which requirements its jobs meet.
                every = condor.idle_demand(
                    negotiated_only=site.autoscaler.negotiated_only if site.autoscaler else False,
                    requirements=tuple(r for r in wanted if r is not None),
                )
                for req in wanted:
                    demands[req] = dataclass_replace(every, shapes=tuple(s for s in every.shapes if s.eligible(req)))
        except BackendError as exc:
            errors["condor"] = str(exc)
            supply, demands = None, {}
    now = clock()

    shared = _OncePerService(consul, {}) if consul is not None else None
    rows: list[FlavourStatus] = []
    for name in names:
        t = _target(site, name)
        flavour = site.flavours.get(name)
        row: FlavourStatus = _unregistered(name, t, "unknown")
        allocs: list[Allocation] = []
        if nomad is not None and "nomad" not in errors:
            try:
                row, allocs = _nomad_view(site, name, nomad)
            except BackendError as exc:
                errors["nomad"] = str(exc)
        by_id = {a.id: a for a in allocs}
        # By the flavour each startd advertises: dispatched workers' job IDs are the children's.
        workers = {w.alloc_id: w for w in (supply.workers if supply else ()) if w.flavour == name}
        matched: dict[str, list[ServiceInstance]] = {}
        if shared is not None and "consul" not in errors:
            try:
                instances = shared.service_health(t.service)
            except BackendError as exc:
                errors["consul"] = str(exc)
            else:
                matched = _instances_of(instances, [*by_id, *workers])
                row = dataclass_replace(
                    row, checks=ServiceHealth.of(i for a in by_id for i in matched.get(a, [])) if by_id else None
                )
        ids = sorted({*by_id, *workers}, key=lambda i: (by_id[i].index if i in by_id else None) or 0)
        statuses = []
        for alloc_id in ids:
            w = workers.get(alloc_id)
            found = matched.get(alloc_id)
            age, left = _lifespan(flavour, w, now)
            statuses.append(
                WorkerStatus(
                    alloc_id=alloc_id,
                    nomad=by_id.get(alloc_id),
                    checks=worst_state(i.status for i in found) if found else None,
                    condor=w,
                    age=age,
                    left=left,
                )
            )
        idle = None
        if flavour is not None and supply is not None:
            requirements = flavour.autoscale.requirements if flavour.autoscale is not None else None
            idle = _demand_fitting(flavour, demands[requirements])
        rows.append(dataclass_replace(row, workers=tuple(statuses), idle_jobs=idle))
    return PoolStatus(site=site.name, flavours=tuple(rows), taken_at=now, errors=errors, skipped=skipped)


# ---------------------------------------------------------------------------
# text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s < 120:
        return f"{sign}{s}s"
    if s < 7200:
        return f"{sign}{s // 60}m"
    if s < 172800:
        return f"{sign}{s // 3600}h"
    return f"{sign}{s // 86400}d"


def _gib(mb: int) -> str:
    gib = mb / 1024
    return f"{gib:.1f}" if gib < 10 else f"{gib:.0f}"


WORKER_COLUMNS = ("ALLOC", "NODE", "NOMAD", "CHECK", "HTCONDOR", "CPU", "MEM GiB", "JOBS", "AGE", "LEFT")
"""The per-worker columns; CPU and MEM are ``in use/free``."""


def worker_cells(w: WorkerStatus) -> list[str]:
    """One worker's row of cells (see :data:`WORKER_COLUMNS`)."""
    a, c = w.nomad, w.condor
    nomad = "-" if a is None else f"v{a.job_version} {a.client_status}"
    if c is None:
        condor = ["-", "-", "-", "-"]
    else:
        condor = [
            c.state if c.healthy is not False else f"{c.state}!",
            f"{c.cpus_total - c.cpus_free}/{c.cpus_free}",
            f"{_gib(c.memory_total_mb - c.memory_free_mb)}/{_gib(c.memory_free_mb)}",
            str(c.claimed_slots),
        ]
    node = "-" if a is None else (a.node_name or a.node_id[:8])
    return [w.alloc_id[:8], node, nomad, w.checks or "-", *condor, _duration(w.age), _duration(w.left)]


def flavour_line(r: FlavourStatus) -> str:
    """One flavour's summary: job, counts, checks and idle demand."""
    if not r.registered:
        head = f"{r.flavour}: {r.job_id} {r.job_status}"
    else:
        want = "per node" if r.kind == "system" else "dispatched" if r.desired is None else f"want {r.desired}"
        head = (
            f"{r.flavour}: {r.job_id} {r.kind} v{r.version} {r.job_status}, {want}, "
            f"{r.running} running, {r.healthy} healthy"
            + (f", {r.failed} failed" if r.failed else "")
            + (f", deployment {r.deployment}" if r.deployment else "")
        )
    if r.checks is not None:
        head += f"; checks {r.checks.passing} passing, {r.checks.warning} warning, {r.checks.critical} critical"
    if r.idle_jobs is not None:
        head += f"; {r.idle_jobs} idle jobs fit"
    return head


def _fit(cells: list[list[str]], width: int, shrinkable: int) -> list[str]:
    """Align ``cells`` in columns, cutting column ``shrinkable`` (and the gaps) so that lines fit ``width``."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    gap = 2
    if sum(widths) + gap * (len(widths) - 1) - width > widths[shrinkable] - 8:
        gap = 1  # narrow: one space between columns before cutting the shrinkable one below 8
    total = sum(widths) + gap * (len(widths) - 1)
    if total > width:
        widths[shrinkable] = max(4, widths[shrinkable] - (total - width))
    lines = []
    for row in cells:
        out = []
        for i, cell in enumerate(row):
            text = cell if len(cell) <= widths[i] else cell[: widths[i] - 1] + "~"
            out.append(text.ljust(widths[i]))
        lines.append((" " * gap).join(out).rstrip())
    return lines


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    import textwrap

    return textwrap.wrap(
        text, width=width, subsequent_indent=indent + "    ", initial_indent=indent, break_on_hyphens=False
    ) or [""]


def said(system: System, message: str) -> str:
    """``message`` headed by its system's name, once (HTCondor's errors already start with it)."""
    name = SYSTEM_NAMES[system]
    return message if message.startswith(f"{name}:") else f"{name}: {message}"


def status_lines(status: PoolStatus, width: int = 80) -> list[str]:
    """The plain-text pool view, every line at most ``width`` characters (a pipe, a log, an 80-column terminal)."""
    lines: list[str] = []
    systems = ", ".join(
        f"{SYSTEM_NAMES[s]} {'skipped' if s in status.skipped else 'UNREACHABLE' if s in status.errors else 'ok'}"
        for s in SYSTEM_NAMES
    )
    lines += _wrap(f"site {status.site} ({systems})", width)
    for system, message in status.errors.items():
        lines += _wrap(said(system, message), width, "  ")
    for r in status.flavours:
        lines.append("")
        lines += _wrap(flavour_line(r), width)
        if r.workers:
            cells = [list(WORKER_COLUMNS), *(worker_cells(w) for w in r.workers)]
            lines += ["  " + line for line in _fit(cells, width - 2, shrinkable=1)]
    lines.append("")
    lines.append("CPU, MEM GiB: in use/free. JOBS: payloads running. LEFT: of max_age")
    return [line[:width] for line in lines]
