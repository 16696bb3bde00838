"""HTCondor demand and worker supply behind a small typed protocol, over ``htcondor2``.

:class:`CondorSource` is what the autoscaler uses; :class:`HTCondorSource` is its one
real implementation and the only module that imports ``htcondor2`` and ``classad2``
(PyPI ``htcondor`` 25.x). It speaks the value types of :mod:`nomadwn.pool`:

* **demand**: idle jobs (``JobStatus == 1``) of every schedd the collector knows,
  counted with one ``QueryOpt.GroupBy`` query per schedd and merged into
  :class:`~nomadwn.pool.JobShape` s (CPUs, memory, disk). A schedd that cannot be
  queried is named in ``Demand.failed_schedds`` (a partial observation), never
  silently dropped;
* **supply**: the slot ads of the workers of one site (``NomadwnSite``), folded into
  one :class:`~nomadwn.pool.Worker` per ``NomadAllocId`` (:func:`fold_worker`);
* **drain**: the one write, :meth:`HTCondorSource.drain` / ``cancel_drain`` through
  the startd's drain command (never a shell-out, never an eviction).

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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from nomadwn.env import env_seconds, raise_problems
from nomadwn.errors import CondorError, FieldProblem
from nomadwn.pool import Demand, DrainResult, JobShape, Supply, Worker, WorkerState
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
        problems: list[FieldProblem] = []
        timeout = env_seconds(env, "NOMADWN_CONDOR_TIMEOUT", problems)
        raise_problems(problems)
        if timeout is not None:
            values["timeout"] = timeout
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
# The protocol


class CondorSource(Protocol):
    """What the autoscaler observes in HTCondor, and the one thing it changes there.

    Reads: idle demand and the workers of a site, as :mod:`nomadwn.pool` types.
    Writes: :meth:`drain` and :meth:`cancel_drain`, which stop and restart a worker's
    taking of new jobs; neither ever evicts a running job.
    """

    def idle_demand(self, *, negotiated_only: bool = False, requirements: Collection[str] = ()) -> Demand:
        """Every idle job of every schedd, grouped by shape, once.

        Each shape's ``matches`` names which of ``requirements`` (flavours' ClassAd
        expressions over the job ad) are true for its jobs, so that one observation
        serves every flavour and no job is counted twice (see
        :meth:`HTCondorSource.idle_demand`).
        """
        ...

    def workers(self, site: str) -> Supply:
        """The workers of ``site``, one per Nomad allocation, as HTCondor sees them."""
        ...

    def check_expression(self, expression: str) -> str | None:
        """Why ``expression`` is not a ClassAd expression HTCondor accepts (None: it is)."""
        ...

    def drain(self, workers: Sequence[Worker | str], *, reason: str) -> DrainResult:
        """Ask each worker's startd to take no new job and let its running jobs finish.

        ``workers`` are :class:`~nomadwn.pool.Worker` s or startd names
        (:attr:`Worker.name`). The drain is graceful: running jobs keep their
        retirement time, and once empty the startd stays *Drained* (taking nothing)
        until :meth:`cancel_drain` or its end. ``reason`` is recorded by the startd
        (``DrainReason``). Failures (a startd the collector does not know, cannot be
        reached or refuses; a collector that does not answer) are in the result, per
        startd, never raised, so that one bad worker does not hide what happened to
        the others. Asking again is harmless (a drained startd stays drained).
        """
        ...

    def cancel_drain(self, workers: Sequence[Worker | str]) -> DrainResult:
        """Cancel every drain request of each worker's startd, so it takes jobs again."""
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
    "Draining",
    "StartJobs",
    "DrainReason",
    "JobStart",
    "NomadwnHealthy",
    "NomadAllocId",
    "NomadJobId",
    "NomadwnSite",
    "NomadwnFlavour",
    "DaemonStartTime",
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
        Startd=htcondor2.Startd,
        DrainType=htcondor2.DrainType,
        DaemonType=htcondor2.DaemonType,
        AdType=htcondor2.AdType,
        QueryOpt=htcondor2.QueryOpt,
        HTCondorException=htcondor2.HTCondorException,
        ClassAdException=classad2.ClassAdException,
        param=htcondor2.param,
        Undefined=classad2.Value.Undefined,
        Error=classad2.Value.Error,
        external_refs=lambda text: sorted(classad2.ClassAd().externalRefs(classad2.ExprTree(text))),
        compile=classad2.ExprTree,
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

    def idle_demand(self, *, negotiated_only: bool = False, requirements: Collection[str] = ()) -> Demand:
        """Idle jobs of every schedd, grouped by shape, each shape tagged with the ``requirements`` it meets.

        One GroupBy query per schedd, whatever the number of flavours: the attributes
        the ``requirements`` read are projected too, so that they split the groups
        (every job in a group has the same values), and each expression is evaluated
        on each group's ad here, with HTCondor's own evaluator. A job for which an
        expression is undefined does not meet it (as in a schedd constraint).

        With ``negotiated_only``, only jobs submitted before the negotiator's last
        cycle started (``QDate < LastNegotiationCycleTime0``, as the GCP HTCondor
        autoscaler does): jobs the negotiator has had a chance to match. If no
        negotiator ad is in the collector yet, no job counts (the schedds are still
        asked, so ``schedds``/``failed_schedds`` stay accurate).
        """
        if isinstance(requirements, str):
            raise TypeError("requirements: a collection of ClassAd expressions, not one string")
        constraint = "JobStatus == 1"
        projection = list(_DEMAND_PROJECTION)
        if negotiated_only:
            cycle = self._last_negotiation() or 0
            # GroupBy applies the constraint to the grouped ads, so QDate must be projected too.
            constraint = f"JobStatus == 1 && QDate < {cycle}"
            projection.append("QDate")
        compiled: list[tuple[str, Any]] = []
        for text in dict.fromkeys(requirements):
            refs = self._call(
                "parsing the requirements", "a ClassAd expression", "check the expression", self._b.external_refs, text
            )
            # Only the job's own attributes can be projected (not TARGET.x).
            projection += [r for r in refs if "." not in r and r not in projection]
            tree = self._call(
                "parsing the requirements", "a ClassAd expression", "check the expression", self._b.compile, text
            )
            compiled.append((text, tree))
        located = self._collector_call("locating schedds", "locateAll", self._b.DaemonType.Schedd)
        taken_at = self._clock()
        counts: dict[tuple[int, int, int | None, frozenset[str]], int] = {}
        answered: list[str] = []
        failed: list[str] = []
        errors: dict[str, str] = {}
        for location in located:
            name = str(location.get("Name", "") or location.get("MyAddress", "?"))
            if self.settings.schedds and name not in self.settings.schedds:
                continue
            try:
                ads = self._query_schedd(name, location, constraint, projection)
                rows = [(self._shape(ad), self._matches(ad, compiled)) for ad in ads]
            except CondorError as exc:
                failed.append(name)
                errors[name] = str(exc)
                continue
            answered.append(name)
            for shape, matches in rows:
                if shape is not None:
                    key = (shape.cpus, shape.memory_mb, shape.disk_kb, matches)
                    counts[key] = counts.get(key, 0) + shape.count
        for wanted in self.settings.schedds:
            if wanted not in answered and wanted not in failed:
                failed.append(wanted)
                errors[wanted] = "HTCondor: schedd not in the collector; check that it runs and advertises itself"
        shapes = [JobShape(c, m, n, d, matches) for (c, m, d, matches), n in counts.items()]
        shapes.sort(key=lambda s: (s.cpus, s.memory_mb, -1 if s.disk_kb is None else s.disk_kb, sorted(s.matches)))
        return Demand(
            shapes=tuple(shapes),
            taken_at=taken_at,
            schedds=tuple(sorted(answered)),
            failed_schedds=tuple(sorted(failed)),
            errors=errors,
        )

    def _matches(self, ad: Any, compiled: list[tuple[str, Any]]) -> frozenset[str]:
        """The requirements true for the jobs of one group ad."""
        return frozenset(
            text
            for text, tree in compiled
            if self._call(f"evaluating {text!r}", "a job group ad", "check the expression", tree.eval, ad) is True
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
        workers = tuple(fold_worker(alloc, slots) for alloc, slots in sorted(by_alloc.items()))
        return Supply(workers=workers, taken_at=taken_at, count=len(workers))

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

    # ---- drain ---------------------------------------------------------------------

    def drain(self, workers: Sequence[Worker | str], *, reason: str) -> DrainResult:
        """Drain each worker's startd gracefully, with ``START`` False while draining.

        ``Startd.drainJobs(DrainType.Graceful, start_expr="False", reason=...)``:
        running jobs keep their ``MaxJobRetirementTime``; no new job starts, whatever
        the configured ``DEFAULT_DRAINING_START_EXPR``. The startd's slot ads then
        advertise ``Draining = true`` (and ``State = "Drained"`` once empty), which
        :func:`fold_worker` reads as *draining*. Needs ADMINISTRATOR access to the startd.
        See :meth:`CondorSource.drain` for the result.
        """
        drain_type = self._b.DrainType.Graceful

        def one(startd: Any) -> str:
            return str(startd.drainJobs(drain_type, start_expr="False", reason=reason) or "")

        return self._each_startd(workers, "draining", one)

    def cancel_drain(self, workers: Sequence[Worker | str]) -> DrainResult:
        """Cancel every drain request of each worker's startd (``Startd.cancelDrainJobs()``)."""

        def one(startd: Any) -> str:
            startd.cancelDrainJobs()
            return ""

        return self._each_startd(workers, "cancelling the drain", one)

    def _locate_startd(self, name: str) -> Any:
        """One slot ad of the startd ``name`` (its ``MyAddress`` reaches the startd).

        Not ``Collector.locate(DaemonType.Startd, name)``: against a 23.x collector that
        looks the name up as a host name. Every slot ad of a startd carries its address.
        """
        ads = self._collector_call(
            f"locating startd {name}",
            "query",
            self._b.AdType.Startd,
            constraint=f"splitSlotName(Name)[1] == {string_literal(name)}",
            projection=["Name", "MyAddress"],
        )
        if not ads:
            where = ", ".join(self.settings.collectors)
            raise CondorError(
                f"HTCondor: the collector at {where} lists no slot of startd {name}; "
                "check the worker's name (nomadwn status) and that it still runs"
            )
        return ads[0]

    def _each_startd(self, workers: Sequence[Worker | str], what: str, fn: Callable[[Any], str]) -> DrainResult:
        names = [w if isinstance(w, str) else w.name for w in workers]
        done: list[str] = []
        failed: dict[str, str] = {}
        ids: dict[str, str] = {}
        check = "check that the startd runs and this host has ADMINISTRATOR access to it"
        for name in dict.fromkeys(names):
            if not name:
                failed[name] = "HTCondor: the worker has no startd name (it has not reached the collector)"
                continue
            where = f"startd {name}"
            try:
                startd = self._call("connecting", where, check, self._b.Startd, self._locate_startd(name))
                ids[name] = self._call(what, where, check, fn, startd)
            except CondorError as exc:
                failed[name] = str(exc)
                continue
            done.append(name)
        return DrainResult(done=tuple(done), failed=failed, request_ids={k: v for k, v in ids.items() if v})


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
    """One :class:`~nomadwn.pool.Worker` from the evaluated slot ads of one allocation.

    Its state, checked in this order::

        draining   the partitionable (or a static) slot advertises Draining = true, or
                   its State is "Drained", or the worker advertises StartJobs = False
                   (STARTD_ATTRS): it takes no new jobs, whatever it still runs
        claimed    any dynamic (or static) slot, or the partitionable slot's
                   ChildState, is "Claimed"
        unclaimed  the partitionable slot (or every static slot) is "Unclaimed"
        other      anything else (Owner, Matched, Preempting, Backfill, ...)

    Draining is read from what the startd *advertises*, never by evaluating ``START``
    in the slot ad: a ``START`` that mentions ``TARGET`` (``accounting_group`` does)
    evaluates to False there on a worker that takes jobs. ``healthy`` is the worker's
    ``NomadwnHealthy`` when it is a boolean (its health probe's verdict), else None.

    ``cpus_free``/``memory_free_mb`` are what the partitionable slot has left
    (``Cpus``/``Memory``); the totals are its ``TotalSlotCpus``/``TotalSlotMemory``.
    A worker with static slots only sums them; its free resources are those of its
    unclaimed slots. ``claimed_slots`` counts claimed dynamic/static slots (or the
    claimed children the partitionable slot lists, if more). ``name`` is the
    startd's name (the slot name after ``slotN@``); ``started_at`` its ``DaemonStartTime``.
    """
    partitionable = [s for s in slots if s.get("PartitionableSlot") is True or s.get("SlotType") == "Partitionable"]
    dynamic = [s for s in slots if s.get("DynamicSlot") is True or s.get("SlotType") == "Dynamic"]
    static = [s for s in slots if s not in partitionable and s not in dynamic]
    first = (partitionable or static or dynamic)[0]
    name = str(first.get("Name", ""))
    name = name.split("@", 1)[1] if "@" in name else name

    claimed_slots = sum(1 for s in (*dynamic, *static) if s.get("State") == "Claimed")
    children = sum(_states(p.get("ChildState")).count("Claimed") for p in partitionable)
    claimed_slots = max(claimed_slots, children)
    starts = [
        float(s["JobStart"]) for s in (*dynamic, *static) if s.get("State") == "Claimed" and _int(s.get("JobStart")) > 0
    ]
    heads = partitionable or static
    draining = any(
        h.get("Draining") is True or h.get("State") == "Drained" or h.get("StartJobs") is False for h in heads
    )
    health = [h.get("NomadwnHealthy") for h in heads if isinstance(h.get("NomadwnHealthy"), bool)]
    healthy = all(health) if health else None
    state: WorkerState
    if draining:
        state = "draining"
    elif claimed_slots:
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
        healthy=healthy,
        drain_reason=str(next((h["DrainReason"] for h in heads if isinstance(h.get("DrainReason"), str)), ""))
        if draining
        else "",
        started_at=float(first["DaemonStartTime"]) if _int(first.get("DaemonStartTime")) > 0 else None,
        oldest_job_start=min(starts) if starts else None,
    )
