"""HTCondorSource against a real HTCondor 23.9 pool, through the 25.x bindings on the host.

Host-side client configuration: none. The bindings find no condor_config on the host
and use ``/dev/null`` (they set ``CONDOR_CONFIG`` themselves); the collector address
comes from :class:`CondorSettings`. Reading the collector and the schedd needs only READ,
and the test pool has ``ALLOW_READ = *``, so no authentication method has to be
configured on the host (no ``_condor_SEC_*`` variables). Jobs are submitted with
``condor_submit`` inside the chroot, where the pool's config makes the client claim
the pool's job user (CLAIMTOBE), because the schedd refuses jobs owned by root.

The jobs stay idle: ``requirements = (TARGET.NoSuchAttr == 1)`` matches no slot.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator

import pytest

from nomadwn.condor import CondorSettings, HTCondorSource
from nomadwn.errors import BackendError
from nomadwn.pool import JobShape
from nomadwn.pool import Worker as PoolWorker
from tests.integration.test_worker_in_pool import JOB_ID, make_worker, running, site_for
from tests.peers import CondorPool

# 5 x (1 CPU, 512 MB), 3 x (4 CPUs, 4096 MB), 2 x (2 CPUs, RequestMemory = 1024 * RequestCpus).
SUBMIT = textwrap.dedent("""\
    executable = /bin/true
    requirements = (TARGET.NoSuchAttr == 1)
    request_disk = 1000
    request_cpus = $(cpus)
    request_memory = $(memory)
    queue cpus, memory from (
        1, 512
        1, 512
        1, 512
        1, 512
        1, 512
        4, 4096
        4, 4096
        4, 4096
        2, 1024 * RequestCpus
        2, 1024 * RequestCpus
    )
    """)
EXPECTED = (JobShape(1, 512, 5, 1000), JobShape(2, 2048, 2, 1000), JobShape(4, 4096, 3, 1000))


@pytest.fixture(scope="module")
def pool() -> Iterator[CondorPool]:
    missing = CondorPool.available()
    if missing is not None:
        pytest.fail(missing)
    with CondorPool() as started:
        assert started.pool_dir is not None and started.pool_dir_in_chroot is not None
        (started.pool_dir / "idle.sub").write_text(SUBMIT)
        (started.pool_dir / "idle.sub").chmod(0o644)
        result = started.run(["condor_submit", str(started.pool_dir_in_chroot / "idle.sub")])
        assert result.returncode == 0, result
        assert "10 job(s) submitted" in result.stdout, result
        yield started


@pytest.fixture(scope="module")
def source(pool: CondorPool) -> HTCondorSource:
    assert os.environ.get("CONDOR_CONFIG") in (None, "/dev/null"), "the host must not use another pool's config"
    return HTCondorSource(CondorSettings(collectors=(pool.collector,), timeout=10))


@pytest.mark.integration
def test_idle_demand_counts_every_shape(source: HTCondorSource) -> None:
    demand = source.idle_demand()
    assert demand.shapes == EXPECTED
    assert demand.jobs == 10
    assert demand.complete and len(demand.schedds) == 1, demand


@pytest.mark.integration
def test_negotiated_only_counts_jobs_queued_before_the_last_cycle(pool: CondorPool, source: HTCondorSource) -> None:
    # NEGOTIATOR_INTERVAL = 5 in the pool, but the negotiator re-advertises its ad (with
    # LastNegotiationCycleTime0) only every NEGOTIATOR_UPDATE_INTERVAL (default 300 s).
    # So far the negotiator has advertised only the cycle it ran at startup, before the submit.
    assert source.idle_demand(negotiated_only=True).jobs == 0, "counted before any cycle saw the jobs"
    pool.add_config("50-negotiator-update", "NEGOTIATOR_UPDATE_INTERVAL = 2")
    deadline = time.monotonic() + 25
    while (demand := source.idle_demand(negotiated_only=True)).jobs < 10 and time.monotonic() < deadline:
        time.sleep(1)
    assert demand.shapes == EXPECTED, pool.log_tail("NegotiatorLog")


@pytest.mark.integration
def test_workers_sees_an_unclaimed_worker_of_the_site(pool: CondorPool, source: HTCondorSource) -> None:
    worker = make_worker(pool, site_for(pool, lifespan={"idle_shutdown": "20m", "max_age": "1h"}))
    with running(worker):
        worker.wait_joined()
        supply = source.workers("glasgow")
        other = source.workers("elsewhere")
    (seen,) = supply.workers
    assert seen.alloc_id == worker.alloc_id
    assert seen.job_id == JOB_ID
    assert (seen.site, seen.flavour) == ("glasgow", "ephemeral")
    assert seen.state == "unclaimed"
    assert seen.name.startswith(f"nomadwn-{worker.alloc_id[:8]}@")
    assert (seen.cpus_total, seen.cpus_free, seen.memory_total_mb, seen.memory_free_mb) == (2, 2, 1024, 1024)
    assert seen.claimed_slots == 0
    assert other.workers == ()


@pytest.mark.integration
def test_unreachable_collector_raises_backend_error() -> None:
    dead = HTCondorSource(CondorSettings(collectors=("127.0.0.1:1",), timeout=2))
    with pytest.raises(BackendError, match=r"^HTCondor: locating schedds at 127.0.0.1:1 failed: .*collector"):
        dead.idle_demand()


def _wait_state(source: HTCondorSource, alloc_id: str, state: str, within: float = 30) -> PoolWorker:
    deadline = time.monotonic() + within
    while True:
        seen = [w for w in source.workers("glasgow").workers if w.alloc_id == alloc_id]
        if seen and seen[0].state == state:
            return seen[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"worker {alloc_id} not {state} after {within:.0f}s: {seen}")
        time.sleep(0.5)


@pytest.mark.integration
def test_drain_and_cancel_through_the_bindings(pool: CondorPool, source: HTCondorSource) -> None:
    """A real startd drained by ``drain`` advertises Draining (or Drained); ``cancel_drain`` undoes it.

    The worker's START mentions TARGET (as ``accounting_group`` makes it), so reading
    draining from START in the slot ad would call it draining from the start.
    """
    extra = {"START": "$(START) && (TARGET.NoSuchAttr =!= 42)"}
    worker = make_worker(pool, site_for(pool, lifespan={"idle_shutdown": "20m", "max_age": "1h"}, extra_config=extra))
    with running(worker):
        worker.wait_joined()
        seen = _wait_state(source, worker.alloc_id, "unclaimed")
        assert seen.spare.cores == 2, seen
        result = source.drain([seen], reason="nomadwn test: scale-in")
        assert result.ok and result.done == (seen.name,), result
        assert result.request_ids.get(seen.name), result
        drained = _wait_state(source, worker.alloc_id, "draining")
        assert drained.spare.cores == 0 and drained.empty, drained
        where = f'NomadAllocId == "{worker.alloc_id}"'
        reason = pool.run(["condor_status", "-af", "DrainReason", "-constraint", where])
        assert "nomadwn test: scale-in" in reason.stdout, reason
        cancelled = source.cancel_drain([seen.name])
        assert cancelled.ok, cancelled
        back = _wait_state(source, worker.alloc_id, "unclaimed")
        assert back.spare.cores == 2, back
        unknown = source.drain(["nomadwn-nosuch@nowhere"], reason="x")
    assert list(unknown.failed) == ["nomadwn-nosuch@nowhere"], unknown
    assert "lists no slot of startd nomadwn-nosuch@nowhere" in unknown.failed["nomadwn-nosuch@nowhere"]
