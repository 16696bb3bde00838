"""The pool view's join and its plain text, on the in-memory fakes (no I/O)."""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from nomadwn.consul import ServiceCheck, ServiceInstance
from nomadwn.errors import CondorError
from nomadwn.fakes import FakeConsulHealth, ScriptedNomad
from nomadwn.nomad import Allocation, JobStatus, NomadSettings
from nomadwn.pool import Demand, JobShape, Supply, Worker
from nomadwn.sitefile import load_site
from nomadwn.status import PoolStatus, pool_status, status_lines
from tests.conftest import EXAMPLE

NOW = 1_800_000_000.0


def _alloc(i: int, node: str = "node-1") -> Allocation:
    return Allocation(
        id=f"{i:08x}-aaaa-bbbb-cccc-000000000000",
        group="worker",
        node_id=f"{i:08x}-node",
        node_name=node,
        client_status="running",
        desired_status="run",
        job_version=3,
        healthy=True,
        canary=False,
        task_failed=False,
        events=[],
        name=f"glasgow-elastic.worker[{i}]",
    )


class _Condor:
    """A CondorSource with a fixed view: workers by allocation, idle shapes."""

    def __init__(self, workers: list[Worker], shapes: list[JobShape], fail: bool = False) -> None:
        self._workers, self._shapes, self.fail = workers, shapes, fail
        self.requirements: list[tuple[str, ...]] = []

    def workers(self, site: str) -> Supply:
        if self.fail:
            raise CondorError("reading the slots of site glasgow at 127.0.0.1:9618: no answer")
        return Supply(workers=tuple(self._workers), taken_at=NOW, count=len(self._workers))

    def idle_demand(self, *, negotiated_only: bool = False, requirements: Collection[str] = ()) -> Demand:
        self.requirements.append(tuple(requirements))
        # Every job meets every requirement asked about (one query tags them all).
        shapes = tuple(replace(s, matches=frozenset(requirements)) for s in self._shapes)
        return Demand(shapes=shapes, taken_at=NOW)

    def check_expression(self, expression: str) -> str | None:
        return None

    def drain(self, workers: Any, *, reason: str) -> Any:
        raise NotImplementedError

    def cancel_drain(self, workers: Any) -> Any:
        raise NotImplementedError


def _worker(alloc: Allocation, state: str, free: int, payloads: int) -> Worker:
    return Worker(
        alloc_id=alloc.id,
        state=state,  # type: ignore[arg-type]
        name=f"nomadwn-{alloc.id[:8]}@host",
        flavour="elastic",
        site="glasgow",
        job_id="glasgow-elastic",
        cpus_total=8,
        cpus_free=free,
        memory_total_mb=16384,
        memory_free_mb=free * 2048,
        claimed_slots=payloads,
        started_at=NOW - 7200,
    )


def _instance(alloc: Allocation, state: str) -> ServiceInstance:
    sid = f"_nomad-task-{alloc.id}-condor-condor-master-condor"
    check = ServiceCheck("startd", f"_nomad-check-{alloc.id}", state, "", sid)  # type: ignore[arg-type]
    return ServiceInstance("n", sid, "condor-master", "10.0.0.1", 9621, ["cntwn"], {}, [check])


def _view(condor: _Condor, long_names: bool = False) -> PoolStatus:
    site = load_site(EXAMPLE)
    nodes = ["a-very-long-nomad-client-node-name.scotgrid.example.ac.uk", "n2"] if long_names else ["n1", "n2"]
    a1, a2 = _alloc(0, nodes[0]), _alloc(1, nodes[1])
    nomad = ScriptedNomad(
        current=JobStatus("glasgow-elastic", "service", "running", 3, True, 50, {"worker": 2}), alloc_steps=[[a1, a2]]
    )
    condor._workers = [_worker(a1, "claimed", 2, 3), _worker(a2, "draining", 8, 0)]
    consul = FakeConsulHealth({"condor-master": [_instance(a1, "passing"), _instance(a2, "critical")]})
    return pool_status(site, ["elastic"], nomad, consul, condor, clock=lambda: NOW)


def test_every_worker_joins_nomad_consul_and_htcondor_by_allocation_id() -> None:
    condor = _Condor([], [JobShape(cpus=8, memory_mb=16000, count=5), JobShape(cpus=16, memory_mb=1000, count=7)])
    view = _view(condor)
    assert view.ok and view.errors == {}
    (row,) = view.flavours
    assert row.idle_jobs == 5  # the 16-core jobs do not fit an 8-core worker
    assert condor.requirements == [("WantGPU =!= true",)]  # the flavour's autoscale.requirements, one query
    w1, w2 = row.workers
    assert (w1.checks, w2.checks) == ("passing", "critical")
    assert w1.condor is not None and (w1.condor.state, w1.condor.claimed_slots) == ("claimed", 3)
    assert w1.age == 7200 and w1.left is None  # elastic has no max_age (the integration test has one)
    doc = view.as_json()["flavours"][0]["workers"][0]["condor"]
    assert (doc["cpus_used"], doc["cpus_free"], doc["memory_used_mb"], doc["payloads"]) == (6, 2, 12288, 3)
    assert view.as_json()["flavours"][0]["workers"][1]["condor"]["draining"] is True


def test_plain_text_fits_80_columns_even_with_long_node_names() -> None:
    lines = status_lines(_view(_Condor([], [JobShape(1, 100, 3)]), long_names=True))
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    rows = [line for line in lines if line.strip().startswith(("00000000", "00000001"))]
    assert len(rows) == 2
    assert "claimed" in rows[0] and "6/2" in rows[0] and "12/4.0" in rows[0] and "2h" in rows[0]
    assert "draining" in rows[1] and "critical" in rows[1]
    assert "~" in rows[0]  # the long node name is cut, not wrapped


def test_htcondor_unreachable_is_said_and_nomad_and_consul_still_shown() -> None:
    view = _view(_Condor([], [], fail=True))
    assert set(view.errors) == {"condor"}
    (row,) = view.flavours
    assert row.idle_jobs is None and [w.condor for w in row.workers] == [None, None]
    assert [w.checks for w in row.workers] == ["passing", "critical"]
    text = "\n".join(status_lines(view))
    assert "HTCondor UNREACHABLE" in text and "no answer" in text


def test_watch_wakes_when_a_jobs_allocations_change() -> None:
    from nomadwn.cli.status import _wait_for_change
    from nomadwn.nomad_client import NomadClient
    from nomadwn.render import build_job
    from tests.fake_nomad import FakeNomad

    with FakeNomad(step_delay=0.01) as fake:
        site = load_site(EXAMPLE)
        nomad = NomadClient(NomadSettings(address=fake.address))
        nomad.register(build_job(site, "elastic"), enforce_index=None, preserve_counts=False)
        fake.settle()
        indexes: dict[str, int] = {}
        _wait_for_change(nomad, ["glasgow-elastic"], indexes, 0.1)  # learns the index
        before = indexes["glasgow-elastic"]
        threading.Timer(0.3, lambda: nomad.scale("glasgow-elastic", "worker", 5, "test")).start()
        _wait_for_change(nomad, ["glasgow-elastic"], indexes, 30)
        assert indexes["glasgow-elastic"] > before
        assert any(r.query.get("index") == str(before) for r in fake.requests if r.path.endswith("/allocations"))


def test_the_terminal_view_renders_every_worker() -> None:
    from rich.console import Console

    from nomadwn.cli.status import _rich

    console = Console(record=True, width=100, color_system=None)
    console.print(_rich(_view(_Condor([], [JobShape(1, 100, 3)]))))
    text = console.export_text()
    assert (
        "00000000" in text and "00000001" in text and "draining" in text and "3 idle jobs fit" in " ".join(text.split())
    )
