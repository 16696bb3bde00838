"""`nomadwn status` as the pool view: the fake Nomad, a REAL Consul agent and a REAL HTCondor pool.

The fake Nomad's placement of each allocation starts a real worker in the pool (the
rendered HTCondor config and start.sh, with that allocation's ID; see
test_autoscale_pool.Placement). Each worker's service is registered in Consul the way
Nomad does it. One payload runs on a worker; three idle jobs wait that fit a worker
but match none (their requirements ask for more memory than any slot has), so they
are the idle demand the flavour would take.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nomadwn.nomad import NomadSettings
from nomadwn.nomad_client import NomadClient
from nomadwn.render import build_job
from nomadwn.sitefile import load_site
from tests.fake_nomad import FakeNomad
from tests.integration.test_autoscale_pool import Placement
from tests.integration.test_worker_in_pool import EXAMPLE, _free_port
from tests.peers import CondorPool, ConsulAgent
from typer_cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()
WORKERS = 2


def _site_file(pool: CondorPool, tmp_path: Path) -> Path:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    htcondor = data["defaults"]["htcondor"]
    htcondor["collector"] = [pool.collector]
    htcondor["port"] = _free_port()
    htcondor["grid_env"] = None
    del data["flavours"]["burst"]
    data["flavours"]["elastic"].update(
        count=WORKERS,
        resources={"cores": 1, "memory": "512MiB"},
        cvmfs={"mode": "bind"},
        lifespan={"check_interval": "5s", "retirement": "20s", "max_age": "1h"},
        update=None,
    )
    data["flavours"]["elastic"]["autoscale"]["requirements"] = 'NomadwnRequired =?= "glasgow"'
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _put(base: str, path: str, body: object | None = None) -> None:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _submit(pool: CondorPool, name: str, body: str) -> None:
    assert pool.pool_dir is not None and pool.pool_dir_in_chroot is not None
    (pool.pool_dir / name).write_text(textwrap.dedent(body).format(dir=pool.pool_dir_in_chroot), encoding="utf-8")
    result = pool.run(["condor_submit", str(pool.pool_dir_in_chroot / name)])
    assert result.returncode == 0, result


RUNNING = """\
    universe = vanilla
    executable = /bin/sleep
    arguments = 600
    request_cpus = 1
    request_memory = 64
    +NomadwnRequired = "glasgow"
    requirements = (TARGET.NomadwnSite == "glasgow")
    should_transfer_files = NO
    initialdir = {dir}
    queue 1
    """
IDLE = RUNNING.replace(
    '(TARGET.NomadwnSite == "glasgow")', '(TARGET.NomadwnSite == "glasgow") && (TARGET.Memory > 100000)'
)
IDLE = IDLE.replace("queue 1", "queue 3")


def test_status_shows_every_workers_htcondor_state_and_the_idle_demand(
    pool: CondorPool, consul: ConsulAgent, tmp_path: Path
) -> None:
    site_file = _site_file(pool, tmp_path)
    site = load_site(site_file)
    placement = Placement(pool, site)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeNomad(on_running=placement.on_running, on_stop=placement.on_stop))
        stack.callback(placement.stop_all)
        nomad = NomadClient(NomadSettings(address=fake.address))
        nomad.register(build_job(site, "elastic"), enforce_index=None, preserve_counts=False)
        fake.settle()
        allocs = fake.allocations("glasgow-elastic")
        assert len(allocs) == WORKERS
        for worker in placement.workers.values():
            worker.wait_joined()
        for alloc in allocs:
            check_id = f"_nomad-check-{alloc['ID']}"
            _put(
                consul.http_addr,
                "/v1/agent/service/register",
                {
                    "ID": f"_nomad-task-{alloc['ID']}-condor-condor-master-condor",
                    "Name": "condor-master",
                    "Tags": ["cntwn", "elastic"],
                    "Port": 9621,
                    "Check": {"CheckID": check_id, "Name": "startd", "TTL": "120s"},
                },
            )
            _put(consul.http_addr, f"/v1/agent/check/pass/{check_id}?note=True")

        _submit(pool, "running.sub", RUNNING)
        _submit(pool, "idle.sub", IDLE)
        env = {"NOMAD_ADDR": fake.address, "CONSUL_HTTP_ADDR": consul.http_addr, "NOMADWN_CONDOR_TIMEOUT": "10"}
        doc: dict[str, Any] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            result = runner.invoke(app, ["status", str(site_file), "elastic", "--json"], env=env)
            assert result.exit_code == 0, result.output
            doc = json.loads(result.output)
            states = [w["condor"]["state"] if w["condor"] else None for w in doc["flavours"][0]["workers"]]
            if sorted(map(str, states)) == ["claimed", "unclaimed"] and doc["flavours"][0]["idle_jobs"] == 3:
                break
            time.sleep(2)
        (row,) = doc["flavours"]
        assert doc["systems"] == {"nomad": "ok", "consul": "ok", "condor": "ok"}
        assert row["idle_jobs"] == 3, row
        assert row["checks"] == {"passing": 2, "warning": 0, "critical": 0, "maintenance": 0}
        workers = {w["alloc_id"]: w for w in row["workers"]}
        assert set(workers) == {a["ID"] for a in allocs}
        for w in workers.values():
            assert w["nomad"]["client_status"] == "running" and w["nomad"]["version"] == 0
            assert w["checks"] == "passing"
            c = w["condor"]
            assert c is not None, w
            assert (c["cpus_total"], c["memory_total_mb"]) == (1, 512)
            assert 0 <= w["age_seconds"] < 3600 and 0 < w["lifespan_left_seconds"] <= 3600
        busy = [w["condor"] for w in workers.values() if w["condor"]["state"] == "claimed"]
        assert len(busy) == 1, workers
        assert (busy[0]["payloads"], busy[0]["cpus_used"], busy[0]["cpus_free"]) == (1, 1, 0)

        # The busy worker's stdout (what Nomad shows) carries its starter's log, named by slot.
        (busy_alloc,) = [a for a, w in workers.items() if w["condor"]["state"] == "claimed"]
        out = placement.workers[busy_alloc].host_dir / "master.out"
        deadline = time.monotonic() + 15
        while "[starter.slot1_1] " not in out.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "[starter.slot1_1] " in out.read_text(errors="replace"), out.read_text(errors="replace")[-3000:]

        # The same in a pipe: plain columns, every line within 80 characters.
        text = runner.invoke(app, ["status", str(site_file), "elastic"], env=env)
        assert text.exit_code == 0, text.output
        lines = text.output.splitlines()
        assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
        assert "3 idle jobs fit" in " ".join(text.output.split())
        for alloc in allocs:
            (line,) = [line for line in lines if line.strip().startswith(alloc["ID"][:8])]
            assert "passing" in line and ("claimed" in line.split() or "unclaimed" in line.split()), line

        # HTCondor unreachable: said so, exit 1, no traceback; Nomad and Consul still shown.
        down = runner.invoke(
            app, ["status", str(site_file), "elastic"], env={**env, "CONDOR_HOST": f"127.0.0.1:{_free_port()}"}
        )
        assert down.exit_code == 1, down.output
        assert "HTCondor UNREACHABLE" in down.output and "Traceback" not in down.output
        assert all(a["ID"][:8] in down.output for a in allocs)
        pool.run(["condor_rm", "-all"], timeout=30)
