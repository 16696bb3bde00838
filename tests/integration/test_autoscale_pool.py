"""End to end: the autoscaler grows and shrinks a real HTCondor pool through the fake Nomad.

The real pieces: an HTCondor 23.9 personal pool (``tests/peers.py``), the autoscaler's
``HTCondorSource`` over htcondor2, ``NomadClient`` over python-nomad, and HTTP to the
stateful fake Nomad (``tests/fake_nomad.py``). The fake's *placement* of an allocation
starts a real worker in the pool: the rendered HTCondor config and ``start.sh`` of the
flavour, with that allocation's ``NOMAD_ALLOC_ID`` (see ``test_worker_in_pool.py``);
Nomad stopping the allocation sends the worker SIGTERM.

The story: jobs that only nomadwn workers may run (``NomadwnSite == "glasgow"``) wait
idle; the autoscaler scales the service flavour up, workers join, the jobs run and
finish, the workers go unclaimed and the autoscaler scales back to zero, only ever
stopping workers the collector shows unclaimed.
"""

from __future__ import annotations

import contextlib
import textwrap
import threading
import time
from typing import Any, Final

import pytest
import yaml

from nomadwn.autoscale.loop import Autoscaler, StepReport
from nomadwn.condor import CondorSettings, HTCondorSource
from nomadwn.model import Site
from nomadwn.nomad import NomadSettings
from nomadwn.nomad_client import NomadClient
from nomadwn.render import build_job
from nomadwn.sitefile import parse_site
from tests.fake_nomad import FakeNomad
from tests.integration.test_worker_in_pool import EXAMPLE, Worker, _free_port, make_worker
from tests.peers import CondorPool

pytestmark = pytest.mark.integration

FLAVOUR: Final = "elastic"
JOB_ID: Final = "glasgow-elastic"
JOBS: Final = 4
MAX_WORKERS: Final = 3
DEADLINE: Final = 240.0


def elastic_site(pool: CondorPool, port: int) -> Site:
    """The example site with a small elastic flavour in ``pool``: 1 core per worker, 0..3 workers."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    htcondor = data["defaults"]["htcondor"]
    htcondor["collector"] = [pool.collector]
    htcondor["port"] = port
    htcondor["grid_env"] = None  # no USER_JOB_WRAPPER: it exists only inside the container
    del data["flavours"]["burst"]  # only the service flavour here
    flavour = data["flavours"][FLAVOUR]
    flavour.update(
        count=0,
        resources={"cores": 1, "memory": "512MiB"},
        cvmfs={"mode": "bind"},
        lifespan={"check_interval": "5s", "retirement": "20s"},
        scaling={"min": 0, "max": MAX_WORKERS},
        update=None,
        autoscale={
            "evaluation_interval": "2s",
            "cooldown": "0s",
            "cooldown_on_scale_up": "0s",
            "max_scale_up": MAX_WORKERS,
            "max_scale_down": MAX_WORKERS,
            "ramp": 1,
            "stale_after": "60s",
            "requirements": 'NomadwnRequired =?= "glasgow"',
        },
    )
    return parse_site(data, source="test site")


class Placement:
    """Starts a real worker for each allocation the fake Nomad runs; stops it when Nomad stops it."""

    def __init__(self, pool: CondorPool, site: Site) -> None:
        self.pool = pool
        self.site = site
        self.workers: dict[str, Worker] = {}
        self.started: list[str] = []
        self.stopped: list[tuple[str, str]] = []  # (alloc id, its slot state when Nomad stopped it)
        self.lock = threading.Lock()

    def on_running(self, alloc: dict[str, Any]) -> None:
        site = elastic_site(self.pool, _free_port())  # one shared port per "container"
        worker = make_worker(self.pool, site, flavour=FLAVOUR, alloc_id=alloc["ID"], job_id=alloc["JobID"])
        worker.start()
        with self.lock:
            self.workers[alloc["ID"]] = worker
            self.started.append(alloc["ID"])

    def on_stop(self, alloc: dict[str, Any]) -> None:
        with self.lock:
            worker = self.workers.pop(alloc["ID"], None)
        if worker is None:
            return
        ads = worker.slot_ads()
        states = sorted({str(ad.get("State")) for ad in ads if ad.get("DynamicSlot") is not True})
        claimed = any(ad.get("State") == "Claimed" for ad in ads)
        with self.lock:
            self.stopped.append((alloc["ID"], "Claimed" if claimed else ",".join(states) or "gone"))
        worker.stop()

    def stop_all(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
            self.workers.clear()
        for worker in workers:
            worker.stop()


def _submit(pool: CondorPool) -> None:
    assert pool.pool_dir is not None and pool.pool_dir_in_chroot is not None
    (pool.pool_dir / "payload.sub").write_text(
        textwrap.dedent(
            """\
            universe = vanilla
            executable = /bin/sleep
            arguments = 8
            request_cpus = 1
            request_memory = 64
            request_disk = 1024
            +NomadwnRequired = "glasgow"
            requirements = (TARGET.NomadwnSite == "glasgow")
            should_transfer_files = NO
            log = payload.log
            initialdir = {dir}
            queue {n}
            """
        ).format(dir=pool.pool_dir_in_chroot, n=JOBS),
        encoding="utf-8",
    )
    result = pool.run(["condor_submit", str(pool.pool_dir_in_chroot / "payload.sub")])
    assert result.returncode == 0, result


def _jobs_left(pool: CondorPool) -> int:
    constraint = 'NomadwnRequired =?= "glasgow"'  # this test's payloads only
    result = pool.run(["condor_q", "-allusers", "-constraint", constraint, "-af", "ClusterId"], timeout=15)
    assert result.returncode == 0, result
    return len(result.stdout.split())


def test_the_pool_grows_with_demand_and_shrinks_without_killing_payloads(pool: CondorPool) -> None:
    site = elastic_site(pool, _free_port())
    placement = Placement(pool, site)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeNomad(on_running=placement.on_running, on_stop=placement.on_stop))
        stack.callback(placement.stop_all)
        nomad = NomadClient(NomadSettings(address=fake.address))
        nomad.register(build_job(site, FLAVOUR), enforce_index=None, preserve_counts=False)
        condor = HTCondorSource(CondorSettings(collectors=(pool.collector,), timeout=10))
        scaler = Autoscaler(site, condor, nomad)
        _submit(pool)

        steps: list[StepReport] = []
        counts: list[int] = []
        peak = 0
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            step = scaler.step(force=True)
            steps.append(step)
            report = step.flavours[0]
            if report.current is not None:
                counts.append(report.current)
            peak = max(peak, len(condor.workers("glasgow").workers))
            if peak and _jobs_left(pool) == 0 and report.current == 0 and not placement.workers:
                break
            time.sleep(2)
        history = "\n".join(f"{r.current}->{r.target} {r.action}: {r.reason}" for s in steps for r in s.flavours)

        # Up: demand seen, the flavour scaled to its max, workers joined the pool.
        assert max(counts) == MAX_WORKERS, history
        assert peak == MAX_WORKERS, history
        # 4 jobs, at most 3 one-core workers: the flavour takes 3, one is unserved (at max).
        took = f"{JOBS} idle job(s), took {MAX_WORKERS} ({MAX_WORKERS}x1c/64MiB)"
        assert any(r.demand.startswith(took) for s in steps for r in s.flavours), history
        # The jobs ran on nomadwn workers and finished.
        assert _jobs_left(pool) == 0, history
        # Down: back to zero, and Nomad only ever stopped unclaimed workers.
        assert counts[-1] == 0, history
        assert len(placement.stopped) == len(placement.started) >= MAX_WORKERS, history
        assert all(state != "Claimed" for _, state in placement.stopped), (placement.stopped, history)
        assert not any(s.errors for s in steps), [s.errors for s in steps]
        events = [e for e in fake.requests_to("POST", f"/v1/job/{JOB_ID}/scale")]
        assert events and all("nomadwn autoscale:" in str(e.body) for e in events)


def test_once_dry_run_on_the_example_site_prints_demand_supply_target_and_reason(pool: CondorPool) -> None:
    """The issue's demo: ``nomadwn autoscale examples/glasgow.yaml --once --dry-run``."""
    from typer.testing import CliRunner

    from typer_cli import app

    site = parse_site(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")), source="example")
    assert pool.pool_dir is not None and pool.pool_dir_in_chroot is not None
    (pool.pool_dir / "idle.sub").write_text(
        "executable = /bin/true\nrequest_cpus = 8\nrequest_memory = 4000\n"
        "requirements = (TARGET.NoSuchAttr == 1)\nqueue 12\n",
        encoding="utf-8",
    )
    assert pool.run(["condor_submit", str(pool.pool_dir_in_chroot / "idle.sub")]).returncode == 0
    with FakeNomad() as fake:
        nomad = NomadClient(NomadSettings(address=fake.address))
        for name in ("elastic", "burst"):
            nomad.register(build_job(site, name), enforce_index=None, preserve_counts=False)
        fake.settle()
        env = {"NOMAD_ADDR": fake.address, "_CONDOR_COLLECTOR_HOST": pool.collector, "NOMAD_NAMESPACE": ""}
        deadline = time.monotonic() + 60
        while True:  # the schedd publishes new jobs to GroupBy queries within a few seconds
            result = CliRunner().invoke(app, ["autoscale", str(EXAMPLE), "--once", "--dry-run"], env=env)
            if "12 idle job(s)" in result.output or time.monotonic() > deadline:
                break
            time.sleep(2)
        print(result.output)
        assert result.exit_code == 0, result.output
        assert fake.requests_to("POST", "/v1/job/glasgow-elastic/scale") == []  # dry run: nothing done
    lines = result.output.splitlines()
    assert lines[0] == "elastic (service)"
    # The 4 starting workers take 4 of the 8-core jobs; 8 new workers for the rest, ramp 2: +4.
    assert lines[1] == "  demand: 12 idle job(s), took 12 (12x8c/4000MiB), 4 into free capacity"
    assert lines[2] == "  supply: 4 worker(s) (4 starting)"
    assert lines[3] == "  count:  4 -> 8"
    assert lines[4].startswith(
        "  reason: 12 idle job(s), 12 for this flavour (4 fit free capacity), 8 new worker(s) needed: up by 4"
    )
    assert lines[5] == "  action: would scale up to 8 (dry run)"
    assert lines[6] == "burst (batch)"
    assert lines[7] == "  demand: 12 idle job(s), took 0, 0 into free capacity"  # 8 cores do not fit burst's 4


# ---------------------------------------------------------------------------
# Scale-in through drain (issue 8 part 3), two flavours for the same jobs (issue 9)

SMALL, LARGE = "elastic", "elastic2"


def two_flavour_site(pool: CondorPool) -> Site:
    """Two autoscaled service flavours whose requirements match the same jobs: 2 cores and 4 cores.

    Both retire payloads for 10 minutes (a graceful drain evicts a payload that long
    after its start), so the autoscaler may drain a worker whose payload is young.
    """
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    htcondor = data["defaults"]["htcondor"]
    htcondor["collector"] = [pool.collector]
    htcondor["port"] = _free_port()
    htcondor["grid_env"] = None
    del data["flavours"]["burst"]
    base = data["flavours"][SMALL]
    base.update(
        count=0,
        resources={"cores": 2, "memory": "1GiB"},
        cvmfs={"mode": "bind"},
        lifespan={"check_interval": "5s", "retirement": "10m"},
        scaling={"min": 0, "max": 2},
        update=None,
        autoscale={
            "evaluation_interval": "2s",
            "cooldown": "0s",
            "cooldown_on_scale_up": "0s",
            "max_scale_up": 2,
            "max_scale_down": 2,
            "ramp": 1,
            "stale_after": "60s",
            "requirements": 'NomadwnRequired =?= "glasgow"',
        },
    )
    large = yaml.safe_load(yaml.safe_dump(base))
    large["resources"] = {"cores": 4, "memory": "2GiB"}
    large["service"] = {**large.get("service", {}), "prometheus": None, "tags": ["cntwn", LARGE]}
    data["flavours"][LARGE] = large
    return parse_site(data, source="test site")


class FlavourPlacement(Placement):
    """A :class:`Placement` that starts each allocation as a worker of its own job's flavour."""

    def on_running(self, alloc: dict[str, Any]) -> None:
        flavour = str(alloc["JobID"]).removeprefix("glasgow-")
        site = two_flavour_site(self.pool)  # its own port, as each container has
        worker = make_worker(self.pool, site, flavour=flavour, alloc_id=alloc["ID"], job_id=alloc["JobID"])
        worker.start()
        with self.lock:
            self.workers[alloc["ID"]] = worker
            self.started.append(alloc["ID"])


def _submit_one(pool: CondorPool, name: str, seconds: int, cpus: int = 1) -> int:
    assert pool.pool_dir is not None and pool.pool_dir_in_chroot is not None
    (pool.pool_dir / f"{name}.sub").write_text(
        textwrap.dedent(
            f"""\
            universe = vanilla
            executable = /bin/sleep
            arguments = {seconds}
            request_cpus = {cpus}
            request_memory = 64
            request_disk = 1024
            +NomadwnRequired = "glasgow"
            +NomadwnPayload = "{name}"
            requirements = (TARGET.NomadwnSite == "glasgow")
            should_transfer_files = NO
            log = {name}.log
            initialdir = {pool.pool_dir_in_chroot}
            queue
            """
        ),
        encoding="utf-8",
    )
    result = pool.run(["condor_submit", "-terse", str(pool.pool_dir_in_chroot / f"{name}.sub")])
    assert result.returncode == 0, result
    return int(result.stdout.split(".")[0])


def _running_on(pool: CondorPool, cluster: int) -> str | None:
    result = pool.run(["condor_q", "-allusers", f"{cluster}", "-af", "JobStatus", "RemoteHost"], timeout=15)
    parts = result.stdout.split()
    return parts[1] if len(parts) == 2 and parts[0] == "2" else None


def _fate(pool: CondorPool, cluster: int) -> tuple[str, ...]:
    """(JobStatus, ExitCode, NumJobStarts, LastVacateTime) of a finished job, from HTCondor's history.

    An evicted job has a ``LastVacateTime``; one that never was has none (``undefined``).
    """
    attrs = ["JobStatus", "ExitCode", "NumJobStarts", "LastVacateTime"]
    history = pool.run(["condor_history", f"{cluster}", "-af", *attrs], timeout=15)
    assert history.returncode == 0, history
    return tuple(history.stdout.split())


def test_scale_in_drains_the_claimed_top_worker_and_never_kills_its_payload(pool: CondorPool) -> None:
    """The top worker runs a payload while the one below is idle: it is drained, not killed, then removed.

    Story (2-core workers): job Q (2 cores, 45 s) starts worker [0]; job P (1 core,
    100 s) does not fit beside it and gets worker [1], the top of the index. With no
    job left idle, the autoscaler drains [1] (P keeps running), and [0] once Q ends.
    Jobs R (2 cores) and S (1 core) arrive while P runs: they fit the free cores of
    the drained workers, so the autoscaler cancels drains instead of starting one.
    Everything ends: back to zero. The 4-core flavour, which matches the same jobs,
    never gets a worker (each job counts once, for the cheapest flavour). P's fate
    comes from HTCondor's history: exit 0, one start, never evicted.
    """
    site = two_flavour_site(pool)
    placement = FlavourPlacement(pool, site)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeNomad(on_running=placement.on_running, on_stop=placement.on_stop))
        stack.callback(placement.stop_all)
        nomad = NomadClient(NomadSettings(address=fake.address))
        for name in (SMALL, LARGE):
            nomad.register(build_job(site, name), enforce_index=None, preserve_counts=False)
        condor = HTCondorSource(CondorSettings(collectors=(pool.collector,), timeout=10))
        scaler = Autoscaler(site, condor, nomad)
        steps: list[StepReport] = []

        def step() -> dict[str, Any]:
            report = scaler.step(force=True)
            steps.append(report)
            assert not report.errors, report.errors
            return {r.flavour: r for r in report.flavours}

        def history() -> str:
            return "\n".join(
                f"{r.flavour} {r.current}->{r.target} {r.action}: {r.reason}" for s in steps for r in s.flavours
            )

        def until(what: str, done: Any, within: float = 120) -> None:
            deadline = time.monotonic() + within
            while not done():
                assert time.monotonic() < deadline, f"{what} not within {within:.0f}s\n{history()}"
                step()
                time.sleep(2)

        # Q outlasts the start of P's worker, so that the schedd cannot hand Q's claim to P.
        q = _submit_one(pool, "q", 45, cpus=2)
        until("Q running", lambda: _running_on(pool, q) is not None)
        p = _submit_one(pool, "p", 100)
        until("P running", lambda: _running_on(pool, p) is not None)
        host_p = _running_on(pool, p)
        assert host_p is not None and _running_on(pool, q) != host_p
        name_p = host_p.split("@", 1)[1]

        def p_drained() -> bool:
            return any(w.name == name_p and w.state == "draining" for w in condor.workers("glasgow").workers)

        until("P's worker drained", p_drained)
        assert _running_on(pool, p) == host_p, "the drain left the payload running"
        until("Q done", lambda: _running_on(pool, q) is None and _jobs_left(pool) == 1)

        before = len(steps)
        r, s = _submit_one(pool, "r", 5, cpus=2), _submit_one(pool, "s", 5)

        def cancelled() -> bool:
            return any("cancelled the drain of" in x.action for st in steps[before:] for x in st.flavours)

        until("a drain cancelled for returning demand", cancelled, within=60)
        assert _running_on(pool, p) == host_p
        until("every job done and the pool back to zero", lambda: _jobs_left(pool) == 0 and not placement.workers,
              within=240)  # fmt: skip

    text = history()
    assert _fate(pool, p) == ("4", "0", "1", "undefined"), text  # completed, exit 0, one start, never evicted
    for cluster in (q, r, s):
        assert _fate(pool, cluster)[:2] == ("4", "0"), (cluster, text)
    large = [x for st in steps for x in st.flavours if x.flavour == LARGE]
    assert all(x.target == 0 for x in large), text  # the same jobs were never counted for the 4-core flavour
    small = [x for st in steps for x in st.flavours if x.flavour == SMALL]
    assert max(x.target or 0 for x in small) <= 2 and small[-1].target == 0, text
    assert all(state != "Claimed" for _, state in placement.stopped), (placement.stopped, text)
