"""HTCondor demand and worker supply behind a small typed protocol, over ``htcondor2``.

:class:`CondorSource` is what the autoscaler uses; :class:`HTCondorSource` is its one
real implementation and the only module that imports ``htcondor2`` and ``classad2``
(PyPI ``htcondor`` 25.x). It reads, never writes:

* **demand**: idle jobs (``JobStatus == 1``) of every schedd the collector knows,
  counted with one ``QueryOpt.GroupBy`` query per schedd and merged into
  :class:`JobShape` s (CPUs, memory, disk). A schedd that cannot be queried is named
  in :attr:`Demand.failed_schedds` (a partial observation), never silently dropped;
* **supply**: the slot ads of the workers of one site (``NomadwnSite``), folded into
  one :class:`Worker` per ``NomadAllocId``.

Every exception the bindings raise becomes a :class:`~nomadwn.errors.CondorError`
in one place (:meth:`HTCondorSource._call`), saying what was asked of which address and
what to check.

Client configuration: the bindings read ``CONDOR_CONFIG`` and ``_condor_*``
environment variables like any HTCondor tool (with no config file at all they use
``/dev/null``). Reading the collector and the schedds needs only READ access; a pool
with ``ALLOW_READ = *`` needs no client configuration. For a secured pool, configure
authentication (``SEC_CLIENT_AUTHENTICATION_METHODS``, tokens, ...) as for
``condor_q``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

from nomadwn.errors import CondorError
from nomadwn.quoting import string_literal

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class CondorSettings:
    """How to reach the HTCondor pool.

    ``collectors``: one or more ``host:port`` addresses (HTCondor fails over between
    them). ``schedds``: if not empty, only these schedds (their ``Name``) are asked for
    demand; otherwise every schedd the collector knows. ``timeout``: seconds for one
    collector or schedd query.

    Precedence: defaults < environment < explicit overrides. The environment is read
    the way HTCondor tools read it: ``_CONDOR_COLLECTOR_HOST`` (any case of the
    ``_condor_`` prefix), else ``_CONDOR_CONDOR_HOST``, else ``CONDOR_HOST``; a
    comma- or space-separated list. ``NOMADWN_CONDOR_SCHEDDS`` (comma-separated) and
    ``NOMADWN_CONDOR_TIMEOUT`` (seconds) set the other two.
    """

    collectors: tuple[str, ...] = ("127.0.0.1:9618",)
    schedds: tuple[str, ...] = ()
    timeout: float = 20.0

    def __post_init__(self) -> None:
        if not self.collectors or any(not c.strip() for c in self.collectors):
            raise ValueError("CondorSettings.collectors: give at least one non-empty host:port")
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ValueError(f"CondorSettings.timeout: must be a positive number of seconds, not {self.timeout!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> CondorSettings:
        """Settings from the environment (see the class docstring), then ``overrides`` (None is ignored)."""
        env = os.environ if environ is None else environ
        folded = {k.lower(): v for k, v in env.items() if k.lower().startswith("_condor_")}
        values: dict[str, Any] = {}
        for raw in (folded.get("_condor_collector_host"), folded.get("_condor_condor_host"), env.get("CONDOR_HOST")):
            if raw and raw.strip():
                values["collectors"] = _split(raw)
                break
        if env.get("NOMADWN_CONDOR_SCHEDDS", "").strip():
            values["schedds"] = _split(env["NOMADWN_CONDOR_SCHEDDS"])
        if env.get("NOMADWN_CONDOR_TIMEOUT", "").strip():
            try:
                values["timeout"] = float(env["NOMADWN_CONDOR_TIMEOUT"])
            except ValueError:
                raise ValueError(
                    f"NOMADWN_CONDOR_TIMEOUT: not a number of seconds: {env['NOMADWN_CONDOR_TIMEOUT']!r}"
                ) from None
        for key, value in overrides.items():
            if value is None:
                continue
            if key in ("collectors", "schedds"):
                value = _split(value) if isinstance(value, str) else tuple(value)
            values[key] = value
        return replace(cls(), **values)

    def __str__(self) -> str:
        return f"HTCondor collector {', '.join(self.collectors)}"


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part for part in raw.replace(",", " ").split() if part)


# ---------------------------------------------------------------------------
# Value types (what callers get back; never ClassAds)


@dataclass(frozen=True)
class JobShape:
    """``count`` idle jobs that all ask for the same resources.

    ``disk_kb`` is None when ``RequestDisk`` is missing or does not evaluate to a number.
    """

    cpus: int
    memory_mb: int
    disk_kb: int | None
    count: int


@dataclass(frozen=True)
class Demand:
    """Idle jobs grouped by shape, as seen at ``taken_at`` (a ``time.time()`` stamp).

    ``schedds`` were asked and answered; ``failed_schedds`` were asked and did not
    (their jobs are missing from ``shapes``); ``errors`` says why, per failed schedd.
    """

    shapes: list[JobShape]
    schedds: list[str]
    failed_schedds: list[str]
    taken_at: float
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every schedd answered, so ``shapes`` is all the idle demand."""
        return not self.failed_schedds

    @property
    def total_jobs(self) -> int:
        """Number of idle jobs over all shapes."""
        return sum(s.count for s in self.shapes)


WorkerState = Literal["unclaimed", "claimed", "draining", "other"]


@dataclass(frozen=True)
class Worker:
    """One nomadwn worker (one Nomad allocation), folded from its startd's slot ads.

    Its state, checked in this order::

        draining   the partitionable slot is Draining, or its State is "Drained",
                   or its Start expression evaluates to False (StartJobs = False):
                   it takes no new jobs, whatever it still runs
        claimed    any dynamic (or static) slot, or the partitionable slot's
                   ChildState, is "Claimed"
        unclaimed  the partitionable slot (or every static slot) is "Unclaimed"
        other      anything else (Owner, Matched, Preempting, Backfill, ...)

    ``cpus_free``/``memory_free_mb`` are what the partitionable slot has left
    (``Cpus``/``Memory``); the totals are its ``TotalSlotCpus``/``TotalSlotMemory``.
    A worker with static slots only sums them; its free resources are those of its
    unclaimed slots. ``claimed_slots`` counts claimed dynamic/static slots.
    ``name`` is the startd's name (the slot name after ``slotN@``).
    """

    alloc_id: str
    job_id: str
    flavour: str
    site: str
    name: str
    state: WorkerState
    activity: str
    cpus_total: int
    cpus_free: int
    memory_total_mb: int
    memory_free_mb: int
    claimed_slots: int


@dataclass(frozen=True)
class Supply:
    """The workers of one site, as seen at ``taken_at`` (a ``time.time()`` stamp)."""

    workers: list[Worker]
    taken_at: float

    def count(self, state: WorkerState) -> int:
        """Number of workers in ``state``."""
        return sum(1 for w in self.workers if w.state == state)


# ---------------------------------------------------------------------------
# The protocol


class CondorSource(Protocol):
    """What the autoscaler observes in HTCondor: idle demand and the workers of a site."""

    def idle_demand(self, *, negotiated_only: bool = False, requirements: str | None = None) -> Demand: ...

    def workers(self, site: str) -> Supply: ...

    def check_expression(self, expression: str) -> str | None:
        """Why ``expression`` is not a ClassAd expression HTCondor accepts (None: it is)."""
        ...


# ---------------------------------------------------------------------------
# The real implementation


_DEMAND_PROJECTION = ["JobStatus", "RequestCpus", "RequestMemory", "RequestDisk"]
_WORKER_PROJECTION = [
    "Name",
    "State",
    "Activity",
    "Cpus",
    "Memory",
    "TotalSlotCpus",
    "TotalSlotMemory",
    "PartitionableSlot",
    "DynamicSlot",
    "SlotType",
    "ChildState",
    "Start",
    "Draining",
    "NomadAllocId",
    "NomadJobId",
    "NomadwnSite",
    "NomadwnFlavour",
]
_ERROR_TYPES: tuple[type[BaseException], ...] = (RuntimeError, ValueError, KeyError, TypeError)
"""Builtin exceptions the compiled bindings raise besides their own two (checked in htcondor2_impl)."""


def _default_bindings() -> Any:
    import types

    import classad2
    import htcondor2

    return types.SimpleNamespace(
        Collector=htcondor2.Collector,
        Schedd=htcondor2.Schedd,
        DaemonType=htcondor2.DaemonType,
        AdType=htcondor2.AdType,
        QueryOpt=htcondor2.QueryOpt,
        HTCondorException=htcondor2.HTCondorException,
        ClassAdException=classad2.ClassAdException,
        param=htcondor2.param,
        Undefined=classad2.Value.Undefined,
        Error=classad2.Value.Error,
        external_refs=lambda text: sorted(classad2.ClassAd().externalRefs(classad2.ExprTree(text))),
    )


def binding_exceptions(bindings: Any) -> tuple[type[BaseException], ...]:
    """Every exception type :meth:`HTCondorSource._call` translates, for ``bindings``."""
    return (bindings.HTCondorException, bindings.ClassAdException, *_ERROR_TYPES)


class HTCondorSource:
    """:class:`CondorSource` over the ``htcondor2`` bindings.

    ``bindings`` is the surface of ``htcondor2``/``classad2`` used here (``Collector``,
    ``Schedd``, ``DaemonType``, ``AdType``, ``QueryOpt``, ``HTCondorException``,
    ``ClassAdException``, ``param``, ``Undefined``, ``Error``); tests pass a fake.

    ``settings.timeout`` is written into the process-wide ``QUERY_TIMEOUT`` (collector
    queries) and ``Q_QUERY_TIMEOUT`` (schedd queries) parameters, because the bindings
    take no per-call timeout. A schedd that accepts a connection and then never answers
    still takes HTCondor's own ~20 s security-handshake timeout.
    """

    def __init__(self, settings: CondorSettings, *, bindings: Any = None, clock: Callable[[], float] = time.time):
        self.settings = settings
        self._b = _default_bindings() if bindings is None else bindings
        self._clock = clock
        self._errors = binding_exceptions(self._b)
        seconds = str(max(1, math.ceil(settings.timeout)))
        self._b.param["QUERY_TIMEOUT"] = seconds
        self._b.param["Q_QUERY_TIMEOUT"] = seconds
        self._collector: Any = None

    # ---- the one place where binding errors are translated ------------------

    def _call(self, what: str, where: str, check: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            detail = str(exc) or type(exc).__name__
            raise CondorError(f"HTCondor: {what} at {where} failed: {detail}; {check}") from exc

    def _collector_call(self, what: str, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        where = ", ".join(self.settings.collectors)
        check = "check that the collector runs, the address is right and this host may READ from it"
        if self._collector is None:
            pool = list(self.settings.collectors)
            self._collector = self._call("connecting to the collector", where, check, self._b.Collector, pool)
        return self._call(what, where, check, getattr(self._collector, fn_name), *args, **kwargs)

    # ---- demand ------------------------------------------------------------

    def check_expression(self, expression: str) -> str | None:
        """Why ``expression`` is not a ClassAd expression HTCondor accepts (None: it is)."""
        try:
            self._b.external_refs(expression)
        except self._errors as exc:
            return str(exc) or "not a ClassAd expression"
        return None

    def idle_demand(self, *, negotiated_only: bool = False, requirements: str | None = None) -> Demand:
        """Idle jobs of every schedd, grouped by shape.

        With ``requirements`` (a ClassAd expression over the job ad), only the idle jobs
        for which it is true; the attributes it reads are projected too (GroupBy
        evaluates the constraint on the projected ads), so they split the groups.

        With ``negotiated_only``, only jobs submitted before the negotiator's last
        cycle started (``QDate < LastNegotiationCycleTime0``, as the GCP HTCondor
        autoscaler does): jobs the negotiator has had a chance to match. If no
        negotiator ad is in the collector yet, no job counts (the schedds are still
        asked, so ``schedds``/``failed_schedds`` stay accurate).
        """
        constraint = "JobStatus == 1"
        projection = list(_DEMAND_PROJECTION)
        if negotiated_only:
            cycle = self._last_negotiation() or 0
            # GroupBy applies the constraint to the grouped ads, so QDate must be projected too.
            constraint = f"JobStatus == 1 && QDate < {cycle}"
            projection.append("QDate")
        if requirements is not None:
            refs = self._call(
                "parsing the requirements",
                "a ClassAd expression",
                "check the expression",
                self._b.external_refs,
                requirements,
            )
            constraint = f"{constraint} && ({requirements})"
            # Only the job's own attributes can be projected (not TARGET.x).
            projection += [r for r in refs if "." not in r and r not in projection]
        located = self._collector_call("locating schedds", "locateAll", self._b.DaemonType.Schedd)
        taken_at = self._clock()
        counts: dict[tuple[int, int, int | None], int] = {}
        answered: list[str] = []
        failed: list[str] = []
        errors: dict[str, str] = {}
        for location in located:
            name = str(location.get("Name", "") or location.get("MyAddress", "?"))
            if self.settings.schedds and name not in self.settings.schedds:
                continue
            try:
                ads = self._query_schedd(name, location, constraint, projection)
            except CondorError as exc:
                failed.append(name)
                errors[name] = str(exc)
                continue
            answered.append(name)
            for ad in ads:
                shape = self._shape(ad)
                if shape is not None:
                    key = (shape.cpus, shape.memory_mb, shape.disk_kb)
                    counts[key] = counts.get(key, 0) + shape.count
        for wanted in self.settings.schedds:
            if wanted not in answered and wanted not in failed:
                failed.append(wanted)
                errors[wanted] = "HTCondor: schedd not in the collector; check that it runs and advertises itself"
        shapes = [JobShape(cpus=c, memory_mb=m, disk_kb=d, count=n) for (c, m, d), n in counts.items()]
        shapes.sort(key=lambda s: (s.cpus, s.memory_mb, -1 if s.disk_kb is None else s.disk_kb))
        return Demand(
            shapes=shapes, schedds=sorted(answered), failed_schedds=sorted(failed), taken_at=taken_at, errors=errors
        )

    def _query_schedd(self, name: str, location: Any, constraint: str, projection: list[str]) -> list[Any]:
        where = f"schedd {name}"
        check = "check that the schedd runs and this host may READ from it"
        schedd = self._call("connecting", where, check, self._b.Schedd, location)
        ads: list[Any] = self._call(
            "querying idle jobs",
            where,
            check,
            schedd.query,
            constraint=constraint,
            projection=projection,
            opts=self._b.QueryOpt.GroupBy,
        )
        return ads

    def _last_negotiation(self) -> int | None:
        ads = self._collector_call(
            "reading the negotiator ad", "query", self._b.AdType.Negotiator, projection=["LastNegotiationCycleTime0"]
        )
        times = [self._number(ad, "LastNegotiationCycleTime0") for ad in ads]
        known = [int(t) for t in times if t is not None]
        return max(known) if known else None

    def _number(self, ad: Any, attr: str) -> float | None:
        """``attr`` evaluated in ``ad`` if it is a number (expressions included), else None."""
        if attr not in ad:
            return None
        value = self._call(f"evaluating {attr}", "a ClassAd", "check the expression", ad.eval, attr)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    def _shape(self, ad: Any) -> JobShape | None:
        count = self._number(ad, "JobCount")
        if not count:
            return None
        cpus = self._number(ad, "RequestCpus")
        memory = self._number(ad, "RequestMemory")
        disk = self._number(ad, "RequestDisk")
        return JobShape(
            # HTCondor's own defaults when a request is missing or does not evaluate.
            cpus=1 if cpus is None else math.ceil(cpus),
            memory_mb=0 if memory is None else math.ceil(memory),
            disk_kb=None if disk is None else math.ceil(disk),
            count=int(count),
        )

    # ---- supply ------------------------------------------------------------

    def workers(self, site: str) -> Supply:
        """The workers of ``site`` (startds advertising ``NomadwnSite == site``), one per allocation."""
        ads = self._collector_call(
            f"reading the slots of site {site}",
            "query",
            self._b.AdType.Startd,
            constraint=f"NomadwnSite == {string_literal(site)}",
            projection=list(_WORKER_PROJECTION),
        )
        taken_at = self._clock()
        by_alloc: dict[str, list[Mapping[str, Any]]] = {}
        for ad in ads:
            slot = self._slot(ad)
            alloc = str(slot.get("NomadAllocId") or "")
            if alloc:
                by_alloc.setdefault(alloc, []).append(slot)
        workers = [fold_worker(alloc, slots) for alloc, slots in sorted(by_alloc.items())]
        return Supply(workers=workers, taken_at=taken_at)

    def _slot(self, ad: Any) -> dict[str, Any]:
        """The projected attributes of one slot ad, as plain Python values."""
        out: dict[str, Any] = {}
        for attr in _WORKER_PROJECTION:
            if attr not in ad:
                continue
            value = self._call(f"evaluating {attr}", "a slot ClassAd", "check the startd's ads", ad.eval, attr)
            if value is self._b.Undefined or value is self._b.Error:
                continue
            out[attr] = value
        return out


# ---------------------------------------------------------------------------
# Folding slot ads into a worker (pure; no bindings)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def _states(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    return []


def fold_worker(alloc_id: str, slots: Sequence[Mapping[str, Any]]) -> Worker:
    """One :class:`Worker` from the evaluated slot ads of one allocation (rule: see :class:`Worker`)."""
    partitionable = [s for s in slots if s.get("PartitionableSlot") is True or s.get("SlotType") == "Partitionable"]
    dynamic = [s for s in slots if s.get("DynamicSlot") is True or s.get("SlotType") == "Dynamic"]
    static = [s for s in slots if s not in partitionable and s not in dynamic]
    first = (partitionable or static or dynamic)[0]
    name = str(first.get("Name", ""))
    name = name.split("@", 1)[1] if "@" in name else name

    claimed_slots = sum(1 for s in (*dynamic, *static) if s.get("State") == "Claimed")
    child_claimed = any("Claimed" in _states(p.get("ChildState")) for p in partitionable)
    heads = partitionable or static
    draining = any(h.get("Draining") is True or h.get("State") == "Drained" or h.get("Start") is False for h in heads)
    state: WorkerState
    if draining:
        state = "draining"
    elif claimed_slots or child_claimed:
        state = "claimed"
    elif heads and all(h.get("State") == "Unclaimed" for h in heads):
        state = "unclaimed"
    else:
        state = "other"

    if partitionable:
        cpus_total = sum(_int(p.get("TotalSlotCpus", p.get("Cpus"))) for p in partitionable)
        memory_total = sum(_int(p.get("TotalSlotMemory", p.get("Memory"))) for p in partitionable)
        cpus_free = sum(_int(p.get("Cpus")) for p in partitionable)
        memory_free = sum(_int(p.get("Memory")) for p in partitionable)
    else:
        cpus_total = sum(_int(s.get("Cpus")) for s in static)
        memory_total = sum(_int(s.get("Memory")) for s in static)
        cpus_free = sum(_int(s.get("Cpus")) for s in static if s.get("State") == "Unclaimed")
        memory_free = sum(_int(s.get("Memory")) for s in static if s.get("State") == "Unclaimed")
    return Worker(
        alloc_id=alloc_id,
        job_id=str(first.get("NomadJobId", "")),
        flavour=str(first.get("NomadwnFlavour", "")),
        site=str(first.get("NomadwnSite", "")),
        name=name,
        state=state,
        activity=str(first.get("Activity", "")),
        cpus_total=cpus_total,
        cpus_free=cpus_free,
        memory_total_mb=memory_total,
        memory_free_mb=memory_free,
        claimed_slots=claimed_slots,
    )
