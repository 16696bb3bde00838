"""``nomadwn drain`` end to end: a real payload on a real worker, the fake Nomad's stop, the CLI.

The real pieces: an HTCondor 23.9 pool, a worker rendered from the example site
(``test_worker_in_pool.py``), ``nomadwn drain`` through CliRunner, the htcondor2
bindings (``Startd.drainJobs`` / ``cancelDrainJobs``) and python-nomad over HTTP to
``tests/fake_nomad.py``. The fake's placement of an allocation starts a real worker;
its stop of an allocation does what Nomad's client and docker driver do: the task's
``kill_signal``, then SIGKILL after ``min(kill_timeout, max_kill_timeout)``.

The payload's fate comes from HTCondor's job history and event log.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nomadwn.render import build_job
from nomadwn.sitefile import parse_site
from tests.fake_nomad import FakeNomad
from tests.integration.test_worker_in_pool import (
    RETIREMENT,
    FakeCvmfs,
    Payloads,
    Worker,
    _free_port,
    _pids_with_env,
    make_worker,
    site_data,
)
from tests.peers import CondorPool
from typer_cli import app

pytestmark = pytest.mark.integration

FLAVOUR = "elastic"
JOB_ID = "glasgow-elastic"


class NomadLikePlacement:
    """Runs a real worker per allocation; stops it as Nomad does (kill_signal, SIGKILL after the capped timeout)."""

    def __init__(self, pool: CondorPool, data: dict[str, Any]) -> None:
        self.pool = pool
        self.data = data
        self.fake: FakeNomad | None = None
        self.workers: dict[str, Worker] = {}
        self.killed: list[str] = []  # allocations that needed SIGKILL
        self.lock = threading.Lock()

    def on_running(self, alloc: dict[str, Any]) -> None:
        data = yaml.safe_load(yaml.safe_dump(self.data))
        data["defaults"]["htcondor"]["port"] = _free_port()  # one shared port per "container"
        site = parse_site(data, "test site")
        worker = make_worker(self.pool, site, flavour=FLAVOUR, alloc_id=alloc["ID"], job_id=alloc["JobID"])
        worker.start()
        with self.lock:
            self.workers[alloc["ID"]] = worker

    def on_stop(self, alloc: dict[str, Any]) -> None:
        import os
        import signal

        with self.lock:
            worker = self.workers.get(alloc["ID"])
        if worker is None or worker.proc is None or self.fake is None:
            return
        os.kill(worker.proc.pid, getattr(signal, self.fake.kill_signal(alloc)))
        if worker.wait_exit(time.monotonic() + self.fake.kill_timeout(alloc)) is None:
            with self.lock:
                self.killed.append(alloc["ID"])
            for pid in _pids_with_env(worker.marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stop()


@pytest.fixture
def cvmfs(pool: CondorPool) -> Iterator[FakeCvmfs]:
    repo = FakeCvmfs(pool).create()
    yield repo
    repo.remove()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_drain_wait_follows_the_payload_to_its_end_then_stops_the_allocation(
    pool: CondorPool, cvmfs: FakeCvmfs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short kill_timeout the site accepts knowingly: draining first is what keeps the payload.
    data = site_data(
        pool,
        lifespan={"retirement": RETIREMENT},
        cvmfs=cvmfs,
        flavour_name=FLAVOUR,
        max_kill_timeout="5s",
        overrides={"count": 1, "update": None, "autoscale": None, "scaling": None},
    )
    data["defaults"]["lifespan"]["accept_payload_loss"] = True
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    site = parse_site(data, "site.yaml")
    placement = NomadLikePlacement(pool, data)
    payloads = Payloads(pool)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(
            FakeNomad(on_running=placement.on_running, on_stop=placement.on_stop, max_kill_timeout=5)
        )
        placement.fake = fake
        stack.callback(placement.stop_all)
        monkeypatch.setenv("NOMAD_ADDR", fake.address)
        import requests

        requests.post(f"{fake.address}/v1/jobs", json=build_job(site, FLAVOUR).body(), timeout=10)
        _wait(lambda: len(placement.workers) == 1, 30, "the worker to be placed")
        ((first_alloc, worker),) = placement.workers.items()
        worker.wait_joined()
        _wait(lambda: any(a.get("NomadwnHealthy") for a in worker.slot_ads()), 30, "the probe")
        cluster = payloads.submit(worker, seconds=12)
        payloads.wait_running(cluster)

        result = CliRunner().invoke(app, ["drain", str(site_file), FLAVOUR, "--wait", "--poll", "1s"])
        stopped = [r for r in fake.requests_to("POST", f"/v1/allocation/{first_alloc}/stop")]
        fake.settle(timeout=30)
        _wait(lambda: len(placement.workers) == 2, 30, "the replacement worker")
    fate = payloads.fate(cluster)
    assert result.exit_code == 0, result.output
    assert "draining (no new payloads)" in result.output, result.output
    assert "payload(s) still running on 1 of 1 worker(s)" in result.output, result.output
    assert "empty and stopped; Nomad places fresh replacements" in result.output, result.output
    assert fate.completed_untouched, (fate, worker.diagnostics())
    assert stopped, "the drained allocation was not stopped"
    assert placement.killed == [], "Nomad had to SIGKILL a drained worker"


def test_drain_cancel_puts_the_worker_back_in_service(
    pool: CondorPool, cvmfs: FakeCvmfs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = site_data(
        pool,
        lifespan={"retirement": RETIREMENT},
        cvmfs=cvmfs,
        flavour_name=FLAVOUR,
        max_kill_timeout="5m",
        overrides={"count": 1, "update": None, "autoscale": None, "scaling": None},
    )
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    site = parse_site(data, "site.yaml")
    placement = NomadLikePlacement(pool, data)
    payloads = Payloads(pool)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeNomad(on_running=placement.on_running, on_stop=placement.on_stop))
        placement.fake = fake
        stack.callback(placement.stop_all)
        monkeypatch.setenv("NOMAD_ADDR", fake.address)
        import requests

        requests.post(f"{fake.address}/v1/jobs", json=build_job(site, FLAVOUR).body(), timeout=10)
        _wait(lambda: len(placement.workers) == 1, 30, "the worker to be placed")
        ((_, worker),) = placement.workers.items()
        worker.wait_joined()
        drained = CliRunner().invoke(app, ["drain", str(site_file), FLAVOUR])
        assert drained.exit_code == 0, drained.output
        _wait(lambda: any(a.get("Draining") for a in worker.slot_ads()), 30, "the slot to advertise Draining")
        cluster = payloads.submit(worker, seconds=1)
        time.sleep(12)  # two negotiation cycles: a drained worker takes nothing
        assert payloads.fate(cluster).executions == 0
        back = CliRunner().invoke(app, ["drain", str(site_file), FLAVOUR, "--cancel"])
        assert back.exit_code == 0, back.output
        assert "back in service" in back.output
        payloads.wait_gone(cluster, timeout=60)
    assert payloads.fate(cluster).completed_untouched, payloads.fate(cluster)


@pytest.mark.parametrize("drain_first", [True, False], ids=["deploy--drain", "deploy-without-drain"])
def test_a_rollout_with_a_short_kill_timeout_loses_no_payload_with_drain(
    pool: CondorPool, cvmfs: FakeCvmfs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drain_first: bool
) -> None:
    """A new image replaces the worker; Nomad's kill_timeout (5 s) is far below the payload's run time.

    With ``--drain`` the old worker is drained and emptied before the register, so Nomad's
    stop finds it empty. Without it, the same rollout kills the payload: the control
    case, which shows what the test guards against.
    """
    data = site_data(
        pool,
        lifespan={"retirement": RETIREMENT},
        cvmfs=cvmfs,
        flavour_name=FLAVOUR,
        max_kill_timeout="5s",
        overrides={"count": 1, "update": None, "autoscale": None, "scaling": None},
    )
    data["defaults"]["lifespan"]["accept_payload_loss"] = True
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    site = parse_site(data, "site.yaml")
    placement = NomadLikePlacement(pool, data)
    payloads = Payloads(pool)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(
            FakeNomad(on_running=placement.on_running, on_stop=placement.on_stop, max_kill_timeout=5)
        )
        placement.fake = fake
        stack.callback(placement.stop_all)
        monkeypatch.setenv("NOMAD_ADDR", fake.address)
        import requests

        requests.post(f"{fake.address}/v1/jobs", json=build_job(site, FLAVOUR).body(), timeout=10)
        _wait(lambda: len(placement.workers) == 1, 30, "the worker to be placed")
        ((_, worker),) = placement.workers.items()
        worker.wait_joined()
        _wait(lambda: any(a.get("NomadwnHealthy") for a in worker.slot_ads()), 30, "the probe")
        cluster = payloads.submit(worker, seconds=12)
        payloads.wait_running(cluster)
        data["defaults"]["image"]["tag"] = "2026.12.1"  # a new image: a destructive update
        site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
        argv = ["deploy", str(site_file), FLAVOUR, "--detach", *(["--drain"] if drain_first else [])]
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, result.output
        _wait(lambda: len(placement.workers) == 2, 60, "the new worker")
        payloads.wait_gone(cluster, timeout=60)
    fate = payloads.fate(cluster)
    if drain_first:
        assert "draining the 1 worker(s) this change replaces" in result.output, result.output
        assert fate.completed_untouched, (fate, worker.diagnostics())
        assert placement.killed == []
    else:
        assert not fate.completed_untouched, fate  # Nomad's stop killed it: what --drain prevents
