"""HTCondorSource over a scriptable fake of the htcondor2/classad2 surface it uses."""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import classad2
import htcondor2
import pytest

from nomadwn.condor import CondorSettings, HTCondorSource, binding_exceptions, fold_worker
from nomadwn.errors import BackendError, ConfigError
from nomadwn.pool import Demand, DrainResult, JobShape, Supply, Worker

# ---------------------------------------------------------------------------
# the fake bindings


class FakeValue(enum.Enum):
    Undefined = "undefined"
    Error = "error"


class FakeHTCondorException(Exception):  # noqa: N818 - named as in htcondor2
    pass


class FakeClassAdException(Exception):  # noqa: N818 - named as in classad2
    pass


Expr = Callable[["FakeAd"], Any]


class FakeAd(Mapping[str, Any]):
    """A ClassAd stand-in: values are literals or expressions (callables of the ad)."""

    def __init__(self, **attrs: Any) -> None:
        self._attrs = attrs

    def __getitem__(self, key: str) -> Any:
        return self._attrs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._attrs)

    def __len__(self) -> int:
        return len(self._attrs)

    def eval(self, attr: str) -> Any:
        value = self._attrs[attr]
        return value(self) if callable(value) else value


def expr(fn: Expr) -> Expr:
    return fn


@dataclass
class FakeBindings:
    """Scriptable htcondor2: a result (list of ads) or an exception per schedd and per ad type."""

    schedds: dict[str, list[FakeAd] | Exception] = field(default_factory=dict)
    startds: list[FakeAd] | Exception = field(default_factory=list)
    negotiators: list[FakeAd] = field(default_factory=list)
    collector_error: Exception | None = None
    startd_errors: dict[str, Exception] = field(default_factory=dict)
    param: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    HTCondorException = FakeHTCondorException
    ClassAdException = FakeClassAdException
    Undefined = FakeValue.Undefined
    Error = FakeValue.Error

    @staticmethod
    def external_refs(text: str) -> list[str]:
        """Attribute names in ``text`` (a crude stand-in for classad2's parser)."""
        if text.count("(") != text.count(")"):
            raise FakeClassAdException("Failed to parse expression")
        words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)
        return sorted({w for w in words if w.lower() not in ("true", "false", "undefined", "error")})

    class DaemonType(enum.Enum):
        Schedd = 3
        Startd = 4

    class DrainType(enum.Enum):
        Graceful = 0
        Quick = 1
        Fast = 2

    class AdType(enum.Enum):
        Startd = 0
        Negotiator = 13

    class QueryOpt(enum.IntFlag):
        Default = 0
        GroupBy = 2

    def __post_init__(self) -> None:
        bindings = self

        class Collector:
            def __init__(self, pool: list[str]) -> None:
                bindings.calls.append(("Collector", pool))

            def locateAll(self, daemon_type: Any) -> list[FakeAd]:
                bindings.calls.append(("locateAll", daemon_type))
                if bindings.collector_error is not None:
                    raise bindings.collector_error
                return [FakeAd(Name=n, MyAddress=f"<127.0.0.1:{i}>") for i, n in enumerate(bindings.schedds, 1)]

            def query(self, ad_type: Any, constraint: str = "", projection: list[str] | None = None) -> list[FakeAd]:
                bindings.calls.append(("Collector.query", (ad_type, constraint, projection)))
                if bindings.collector_error is not None:
                    raise bindings.collector_error
                located = re.fullmatch(r'splitSlotName\(Name\)\[1\] == "(.*)"', constraint)
                if located:  # locating one startd by name
                    name = located.group(1)
                    return [] if name == "unknown" else [FakeAd(Name=f"slot1@{name}", MyAddress="<127.0.0.1:9999>")]
                if ad_type == bindings.AdType.Negotiator:
                    return bindings.negotiators
                if isinstance(bindings.startds, Exception):
                    raise bindings.startds
                return bindings.startds

        class Startd:
            def __init__(self, location: FakeAd) -> None:
                self.name = location["Name"].split("@", 1)[1]  # a slot ad: slotN@<startd name>

            def drainJobs(
                self,
                drain_type: Any,
                on_completion: Any = None,
                check_expr: str | None = None,
                start_expr: str | None = None,
                reason: str | None = None,
            ) -> str:
                bindings.calls.append(("drainJobs", (self.name, drain_type, on_completion, start_expr, reason)))
                if self.name in bindings.startd_errors:
                    raise bindings.startd_errors[self.name]
                return f"req-{self.name}"

            def cancelDrainJobs(self, request_id: str | None = None) -> None:
                bindings.calls.append(("cancelDrainJobs", (self.name, request_id)))
                if self.name in bindings.startd_errors:
                    raise bindings.startd_errors[self.name]

        class Schedd:
            def __init__(self, location: FakeAd) -> None:
                self.name = location["Name"]

            def query(self, constraint: str, projection: list[str], opts: Any) -> list[FakeAd]:
                bindings.calls.append(("Schedd.query", (self.name, constraint, projection, opts)))
                result = bindings.schedds[self.name]
                if isinstance(result, Exception):
                    raise result
                return result

        self.Collector = Collector
        self.Schedd = Schedd
        self.Startd = Startd


SETTINGS = CondorSettings(collectors=("cm.example:9618",), timeout=7.5)


def source(fake: FakeBindings, settings: CondorSettings = SETTINGS) -> HTCondorSource:
    return HTCondorSource(settings, bindings=fake, clock=lambda: 1234.5)


def group(count: int, cpus: Any, memory: Any, disk: Any = 1000) -> FakeAd:
    return FakeAd(JobCount=count, JobStatus=1, RequestCpus=cpus, RequestMemory=memory, RequestDisk=disk)


# ---------------------------------------------------------------------------
# settings


@pytest.mark.parametrize(
    ("env", "overrides", "expected"),
    [
        ({}, {}, CondorSettings()),
        ({"CONDOR_HOST": "cm:9618"}, {}, CondorSettings(collectors=("cm:9618",))),
        (
            {"_CONDOR_COLLECTOR_HOST": "a:1, b:2", "CONDOR_HOST": "c:3"},
            {},
            CondorSettings(collectors=("a:1", "b:2")),
        ),
        ({"_condor_COLLECTOR_HOST": "a:1", "NOMADWN_CONDOR_TIMEOUT": "3"}, {}, CondorSettings(("a:1",), (), 3.0)),
        ({"_CONDOR_CONDOR_HOST": "h:9"}, {"schedds": "s1,s2"}, CondorSettings(("h:9",), ("s1", "s2"))),
        ({"NOMADWN_CONDOR_SCHEDDS": "s1"}, {"collectors": ["x:1"], "timeout": None}, CondorSettings(("x:1",), ("s1",))),
    ],
    ids=["defaults", "condor-host", "collector-host-wins", "lowercase-prefix", "flag-schedds", "flags-win"],
)
def test_settings_from_env(env: dict[str, str], overrides: dict[str, Any], expected: CondorSettings) -> None:
    assert CondorSettings.from_env(env, **overrides) == expected


@pytest.mark.parametrize("value", ["soon", "abc", "0", "-5", "nan", "inf"])
def test_settings_reject_bad_timeout(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CondorSettings.from_env({"NOMADWN_CONDOR_TIMEOUT": value})
    problem = f"NOMADWN_CONDOR_TIMEOUT: {value!r} is not a positive number of seconds, such as 20"
    assert str(caught.value) == f"environment: 1 problem(s)\n  {problem}"


def test_settings_reject_bad_explicit_timeout() -> None:
    with pytest.raises(ValueError, match=r"CondorSettings.timeout: must be a positive number of seconds, not 0"):
        CondorSettings(timeout=0)


def test_timeout_goes_into_the_query_timeout_params() -> None:
    fake = FakeBindings()
    source(fake)
    assert fake.param == {"QUERY_TIMEOUT": "8", "Q_QUERY_TIMEOUT": "8"}


# ---------------------------------------------------------------------------
# demand


def test_shapes_are_merged_across_schedds_and_expressions_evaluated() -> None:
    fake = FakeBindings(
        schedds={
            "s1": [group(5, 1, 512), group(3, 4, 4096)],
            "s2": [
                group(2, 1, 512),
                # RequestMemory = 1024 * RequestCpus, RequestDisk = DiskUsage: expressions.
                FakeAd(
                    JobCount=2,
                    JobStatus=1,
                    RequestCpus=2,
                    RequestMemory=expr(lambda ad: 1024 * ad.eval("RequestCpus")),
                    RequestDisk=expr(lambda ad: ad.eval("DiskUsage")),
                    DiskUsage=1000,
                ),
            ],
        }
    )
    demand = source(fake).idle_demand()
    assert demand == Demand(
        shapes=(JobShape(1, 512, 7, 1000), JobShape(2, 2048, 2, 1000), JobShape(4, 4096, 3, 1000)),
        schedds=("s1", "s2"),
        failed_schedds=(),
        taken_at=1234.5,
    )
    assert demand.complete and demand.jobs == 12
    queries = [args for name, args in fake.calls if name == "Schedd.query"]
    assert queries == [
        ("s1", "JobStatus == 1", ["JobStatus", "RequestCpus", "RequestMemory", "RequestDisk"], fake.QueryOpt.GroupBy),
        ("s2", "JobStatus == 1", ["JobStatus", "RequestCpus", "RequestMemory", "RequestDisk"], fake.QueryOpt.GroupBy),
    ]


def test_unevaluable_requests_fall_back_to_htcondor_defaults() -> None:
    fake = FakeBindings(
        schedds={
            "s1": [
                FakeAd(JobCount=4, JobStatus=1, RequestCpus=FakeValue.Undefined, RequestMemory=1.5),
                FakeAd(JobCount=0, JobStatus=1, RequestCpus=9, RequestMemory=9),
            ]
        }
    )
    assert source(fake).idle_demand().shapes == (JobShape(cpus=1, memory_mb=2, disk_kb=None, count=4),)


def test_failed_schedd_is_reported_as_partial_observation() -> None:
    fake = FakeBindings(
        schedds={
            "s1": [group(5, 1, 512)],
            "s2": FakeHTCondorException("Failed to fetch ads from schedd, errmsg=CEDAR:6001:Failed to connect"),
        }
    )
    demand = source(fake).idle_demand()
    assert demand.shapes == (JobShape(1, 512, 5, 1000),)
    assert demand.schedds == ("s1",)
    assert demand.failed_schedds == ("s2",)
    assert not demand.complete
    assert demand.errors == {
        "s2": "HTCondor: querying idle jobs at schedd s2 failed: Failed to fetch ads from schedd,"
        " errmsg=CEDAR:6001:Failed to connect; check that the schedd runs and this host may READ from it"
    }


def test_named_schedds_only_and_missing_named_schedd_is_failed() -> None:
    fake = FakeBindings(schedds={"s1": [group(1, 1, 1)], "s2": [group(5, 1, 1)]})
    demand = source(fake, CondorSettings(schedds=("s1", "gone"))).idle_demand()
    assert demand.shapes == (JobShape(1, 1, 1, 1000),)
    assert demand.schedds == ("s1",)
    assert demand.failed_schedds == ("gone",)
    assert [a[0] for n, a in fake.calls if n == "Schedd.query"] == ["s1"]


def test_collector_failure_raises_with_address_and_what_to_check() -> None:
    fake = FakeBindings(collector_error=FakeHTCondorException("Failed communication with collector."))
    with pytest.raises(BackendError) as info:
        source(fake).idle_demand()
    assert str(info.value) == (
        "HTCondor: locating schedds at cm.example:9618 failed: Failed communication with collector.;"
        " check that the collector runs, the address is right and this host may READ from it"
    )
    assert isinstance(info.value.__cause__, FakeHTCondorException)


def test_negotiated_only_counts_jobs_queued_before_the_last_cycle() -> None:
    fake = FakeBindings(
        schedds={"s1": [group(2, 1, 512)]},
        negotiators=[FakeAd(LastNegotiationCycleTime0=1700000000), FakeAd(LastNegotiationCycleTime0=1700000100)],
    )
    source(fake).idle_demand(negotiated_only=True)
    ((_, constraint, projection, _),) = [a for n, a in fake.calls if n == "Schedd.query"]
    assert constraint == "JobStatus == 1 && QDate < 1700000100"
    assert projection[-1] == "QDate"


def test_negotiated_only_without_negotiator_counts_nothing_but_asks_schedds() -> None:
    fake = FakeBindings(schedds={"s1": []})
    demand = source(fake).idle_demand(negotiated_only=True)
    assert demand.schedds == ("s1",) and demand.shapes == ()
    assert [a[1] for n, a in fake.calls if n == "Schedd.query"] == ["JobStatus == 1 && QDate < 0"]


# ---------------------------------------------------------------------------
# every exception of the bindings is translated


def _binding_exception_types() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module in (htcondor2, classad2):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException):
                found.add(obj)
    return found


def test_the_real_bindings_export_exactly_the_two_known_exception_types() -> None:
    assert {t.__name__ for t in _binding_exception_types()} == {"HTCondorException", "ClassAdException"}


def test_every_real_binding_exception_is_translated() -> None:
    import types

    real = types.SimpleNamespace(
        HTCondorException=htcondor2.HTCondorException, ClassAdException=classad2.ClassAdException
    )
    translated = binding_exceptions(real)
    for exc_type in _binding_exception_types():
        assert issubclass(exc_type, translated), exc_type
    # The compiled bindings also raise these builtins (PyExc_* symbols in htcondor2_impl).
    for builtin in (RuntimeError, NotImplementedError, ValueError, KeyError, TypeError):
        assert issubclass(builtin, translated), builtin


@pytest.mark.parametrize(
    "exc",
    [
        FakeHTCondorException("boom"),
        FakeClassAdException("boom"),
        RuntimeError("boom"),
        NotImplementedError("boom"),
        ValueError("boom"),
        KeyError("boom"),
        TypeError("boom"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_each_binding_exception_becomes_backend_error(exc: Exception) -> None:
    fake = FakeBindings(startds=exc)
    with pytest.raises(BackendError, match=r"^HTCondor: reading the slots of site glasgow at cm.example:9618 failed: "):
        source(fake).workers("glasgow")
    fake = FakeBindings(schedds={"s1": exc})
    assert source(fake).idle_demand().failed_schedds == ("s1",)


def test_other_exceptions_are_not_swallowed() -> None:
    fake = FakeBindings(startds=MemoryError())
    with pytest.raises(MemoryError):
        source(fake).workers("glasgow")


# ---------------------------------------------------------------------------
# supply and the worker state rule


def pslot(alloc: str, *, state: str = "Unclaimed", cpus: int = 8, memory: int = 16000, **extra: Any) -> FakeAd:
    attrs: dict[str, Any] = {
        "Name": f"slot1@nomadwn-{alloc}@host",
        "State": state,
        "Activity": "Idle",
        "Cpus": cpus,
        "Memory": memory,
        "TotalSlotCpus": 8,
        "TotalSlotMemory": 16000,
        "PartitionableSlot": True,
        "SlotType": "Partitionable",
        # START mentions TARGET (accounting_group does): False in the slot ad alone.
        "Start": False,
        "NomadAllocId": alloc,
        "NomadJobId": "glasgow-ephemeral",
        "NomadwnSite": "glasgow",
        "NomadwnFlavour": "ephemeral",
    }
    attrs.update(extra)
    return FakeAd(**attrs)


def dslot(alloc: str, n: int, *, state: str = "Claimed") -> FakeAd:
    return FakeAd(
        Name=f"slot1_{n}@nomadwn-{alloc}@host",
        State=state,
        Activity="Busy",
        Cpus=2,
        Memory=4000,
        DynamicSlot=True,
        SlotType="Dynamic",
        NomadAllocId=alloc,
        NomadJobId="glasgow-ephemeral",
        NomadwnSite="glasgow",
        NomadwnFlavour="ephemeral",
    )


def test_workers_folds_slots_per_allocation_and_queries_by_site() -> None:
    fake = FakeBindings(
        startds=[
            pslot("a", cpus=4, memory=8000, ChildState=["Claimed", "Claimed"]),
            dslot("a", 1),
            dslot("a", 2),
            pslot("b"),
            FakeAd(Name="slot1@stranger", State="Unclaimed"),  # no NomadAllocId: not a worker
        ]
    )
    supply = source(fake).workers('glas"gow')
    common: dict[str, Any] = {
        "job_id": "glasgow-ephemeral",
        "flavour": "ephemeral",
        "site": "glasgow",
        "activity": "Idle",
    }
    assert supply == Supply(
        workers=(
            Worker(
                alloc_id="a", name="nomadwn-a@host", state="claimed", cpus_total=8, cpus_free=4,
                memory_total_mb=16000, memory_free_mb=8000, claimed_slots=2, **common,
            ),
            Worker(
                alloc_id="b", name="nomadwn-b@host", state="unclaimed", cpus_total=8, cpus_free=8,
                memory_total_mb=16000, memory_free_mb=16000, claimed_slots=0, **common,
            ),
        ),
        taken_at=1234.5,
        count=2,
    )  # fmt: skip
    assert supply.in_state("claimed") == 1
    ((ad_type, constraint, projection),) = [a for n, a in fake.calls if n == "Collector.query"]
    assert ad_type == fake.AdType.Startd
    assert constraint == 'NomadwnSite == "glas\\"gow"'
    assert {"NomadAllocId", "NomadJobId", "NomadwnSite", "NomadwnFlavour", "State", "StartJobs", "Draining"} <= set(
        projection
    )
    assert "Start" not in projection, "draining is read from advertised attributes, never from START"


@pytest.mark.parametrize(
    ("slots", "state"),
    [
        ([pslot("a")], "unclaimed"),
        ([pslot("a"), dslot("a", 1)], "claimed"),
        ([pslot("a", ChildState=["Claimed"])], "claimed"),
        ([pslot("a"), dslot("a", 1, state="Preempting")], "unclaimed"),
        ([pslot("a", Draining=True), dslot("a", 1)], "draining"),
        ([pslot("a", state="Drained")], "draining"),
        ([pslot("a", StartJobs=False), dslot("a", 1)], "draining"),
        ([pslot("a", StartJobs=True)], "unclaimed"),
        ([pslot("a", StartJobs=FakeValue.Undefined)], "unclaimed"),
        ([pslot("a", Start=False)], "unclaimed"),
        ([pslot("a", state="Owner")], "other"),
        ([pslot("a", state="Matched")], "other"),
        ([dslot("a", 1)], "claimed"),
        ([FakeAd(Name="slot1@w", State="Unclaimed", Cpus=1, Memory=100, NomadAllocId="a")], "unclaimed"),
        (
            [
                FakeAd(Name="slot1@w", State="Unclaimed", Cpus=1, Memory=100, NomadAllocId="a"),
                FakeAd(Name="slot2@w", State="Claimed", Cpus=1, Memory=100, NomadAllocId="a"),
            ],
            "claimed",
        ),
    ],
    ids=[
        "idle-pslot",
        "dynamic-claimed",
        "childstate-claimed",
        "dynamic-not-claimed",
        "draining-wins-over-claimed",
        "drained",
        "startjobs-false",
        "startjobs-true",
        "startjobs-undefined-is-not-draining",
        "start-false-is-not-draining",
        "owner",
        "matched",
        "only-dynamic-seen",
        "static-unclaimed",
        "static-one-claimed",
    ],
)
def test_worker_state_rule(slots: list[FakeAd], state: str) -> None:
    fake = FakeBindings(startds=slots)
    (worker,) = source(fake).workers("glasgow").workers
    assert worker.state == state


def test_static_slots_sum_their_resources() -> None:
    worker = fold_worker(
        "a",
        [
            {"Name": "slot1@w", "State": "Unclaimed", "Cpus": 1, "Memory": 100},
            {"Name": "slot2@w", "State": "Claimed", "Cpus": 2, "Memory": 200},
        ],
    )
    assert (worker.cpus_total, worker.cpus_free, worker.memory_total_mb, worker.memory_free_mb) == (3, 1, 300, 100)
    assert worker.claimed_slots == 1 and worker.name == "w"


@pytest.mark.parametrize(
    ("advertised", "healthy"),
    [({}, None), ({"NomadwnHealthy": True}, True), ({"NomadwnHealthy": False}, False), ({"NomadwnHealthy": "x"}, None)],
    ids=["absent-is-unknown", "true", "false", "not-a-boolean-is-unknown"],
)
def test_health_is_the_advertised_nomadwn_healthy(advertised: dict[str, Any], healthy: bool | None) -> None:
    (worker,) = source(FakeBindings(startds=[pslot("a", **advertised)])).workers("glasgow").workers
    assert worker.healthy is healthy
    assert (worker.spare.cores > 0) is (healthy is not False), "an unhealthy worker is no spare capacity"


def test_claimed_children_count_even_without_their_dynamic_ads() -> None:
    worker = fold_worker("a", [{"Name": "slot1@w", "PartitionableSlot": True, "ChildState": ["Claimed", "Claimed"]}])
    assert worker.claimed_slots == 2 and not worker.empty


def test_a_claimed_partitionable_worker_offers_its_free_cores() -> None:
    fake = FakeBindings(startds=[pslot("a", cpus=5, memory=12000, ChildState=["Claimed"]), dslot("a", 1)])
    (worker,) = source(fake).workers("glasgow").workers
    assert worker.state == "claimed" and (worker.spare.cores, worker.spare.memory_mb) == (5, 12000)
    fake = FakeBindings(startds=[pslot("a", cpus=5, memory=12000, Draining=True), dslot("a", 1)])
    (worker,) = source(fake).workers("glasgow").workers
    assert worker.state == "draining" and (worker.spare.cores, worker.spare.memory_mb) == (0, 0)


# ---------------------------------------------------------------------------
# drain and cancel


def test_drain_is_graceful_with_start_false_and_the_reason() -> None:
    fake = FakeBindings()
    worker = Worker(alloc_id="a", state="unclaimed", name="nomadwn-a@host")
    result = source(fake).drain([worker, "nomadwn-b@host", "nomadwn-a@host"], reason="scale-in")
    assert result == DrainResult(
        done=("nomadwn-a@host", "nomadwn-b@host"),
        request_ids={"nomadwn-a@host": "req-nomadwn-a@host", "nomadwn-b@host": "req-nomadwn-b@host"},
    )
    assert result.ok
    drains = [a for n, a in fake.calls if n == "drainJobs"]
    assert drains == [
        ("nomadwn-a@host", fake.DrainType.Graceful, None, "False", "scale-in"),
        ("nomadwn-b@host", fake.DrainType.Graceful, None, "False", "scale-in"),
    ]
    locate = next(a for n, a in fake.calls if n == "Collector.query")
    assert locate == (fake.AdType.Startd, 'splitSlotName(Name)[1] == "nomadwn-a@host"', ["Name", "MyAddress"])


def test_drain_reports_each_failure_and_goes_on() -> None:
    fake = FakeBindings(startd_errors={"bad": FakeHTCondorException("Failed to send DRAIN_JOBS: permission denied")})
    result = source(fake).drain(["bad", "unknown", "", "good"], reason="r")
    assert result.done == ("good",) and not result.ok
    assert result.failed == {
        "bad": "HTCondor: draining at startd bad failed: Failed to send DRAIN_JOBS: permission denied;"
        " check that the startd runs and this host has ADMINISTRATOR access to it",
        "unknown": "HTCondor: the collector at cm.example:9618 lists no slot of startd unknown;"
        " check the worker's name (nomadwn status) and that it still runs",
        "": "HTCondor: the worker has no startd name (it has not reached the collector)",
    }


def test_cancel_drain_cancels_every_request_of_the_startd() -> None:
    fake = FakeBindings(collector_error=None)
    result = source(fake).cancel_drain(["w1"])
    assert result == DrainResult(done=("w1",))
    assert [a for n, a in fake.calls if n == "cancelDrainJobs"] == [("w1", None)]
    down = FakeBindings(collector_error=FakeHTCondorException("Failed communication with collector."))
    assert list(source(down).cancel_drain(["w1"]).failed) == ["w1"]


def test_the_oldest_payload_start_comes_from_the_claimed_slots() -> None:
    p = {"Name": "slot1@w", "PartitionableSlot": True, "State": "Unclaimed", "Draining": True, "DrainReason": "r"}
    d1 = {"Name": "slot1_1@w", "DynamicSlot": True, "State": "Claimed", "JobStart": 1700000500}
    d2 = {"Name": "slot1_2@w", "DynamicSlot": True, "State": "Claimed", "JobStart": 1700000100}
    worker = fold_worker("a", [p, d1, d2])
    assert (worker.state, worker.oldest_job_start, worker.drain_reason) == ("draining", 1700000100.0, "r")
    assert fold_worker("a", [dict(p, Draining=False)]).oldest_job_start is None
