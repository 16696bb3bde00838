"""`nomadwn status` joining the fake Nomad with a REAL Consul agent.

Workers are deployed on the fake Nomad; their services are then registered in a real
Consul 1.8 agent the way Nomad registers a task's service (ID with the allocation ID,
a TTL check per script check), with one worker passing and one critical.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLE
from tests.fake_nomad import FakeNomad
from tests.peers import ConsulAgent
from typer_cli import app

runner = CliRunner()


def _put(base: str, path: str, body: object | None = None) -> None:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.mark.integration
def test_status_shows_consul_check_states_of_each_worker(consul: ConsulAgent) -> None:
    with FakeNomad(step_delay=0.02) as fake:
        env = {"NOMAD_ADDR": fake.address, "CONSUL_HTTP_ADDR": consul.http_addr}
        deployed = runner.invoke(app, ["deploy", str(EXAMPLE), "cntwn", "--detach"], env=env)
        assert deployed.exit_code == 0, deployed.output
        fake.settle()
        allocs = fake.allocations("glasgow-cntwn")
        assert len(allocs) == 2
        for alloc, state in zip(allocs, ("pass", "fail"), strict=True):
            service_id = f"_nomad-task-{alloc['ID']}-worker-condor-condor-master-condor"
            check_id = f"_nomad-check-{alloc['ID']}"
            _put(
                consul.http_addr,
                "/v1/agent/service/register",
                {
                    "ID": service_id,
                    "Name": "condor-master",
                    "Tags": ["cntwn", "prod"],
                    "Port": 9621,
                    "Check": {"CheckID": check_id, "Name": "startd", "TTL": "120s"},
                },
            )
            _put(consul.http_addr, f"/v1/agent/check/{state}/{check_id}?note=StartJobs")
        # A worker of some other job with the same service name and tags is not counted.
        _put(
            consul.http_addr, "/v1/agent/service/register", {"ID": "other", "Name": "condor-master", "Tags": ["cntwn"]}
        )

        as_json = runner.invoke(app, ["status", str(EXAMPLE), "cntwn", "--no-condor", "--json"], env=env)
        assert as_json.exit_code == 0, as_json.output
        (row,) = json.loads(as_json.output)["flavours"]
        assert row["checks"] == {"passing": 1, "warning": 0, "critical": 1, "maintenance": 0}
        assert (row["placed"], row["running"]) == (2, 2)

        table = runner.invoke(app, ["status", str(EXAMPLE), "cntwn", "--no-condor"], env={**env, "COLUMNS": "200"})
        assert table.exit_code == 0, table.output
        assert "1 passing, 0 warning, 1 critical" in " ".join(table.output.split())


@pytest.mark.integration
def test_status_with_consul_unreachable_says_so() -> None:
    with FakeNomad(step_delay=0.02) as fake:
        env = {"NOMAD_ADDR": fake.address, "CONSUL_HTTP_ADDR": "127.0.0.1:1"}
        deployed = runner.invoke(app, ["deploy", str(EXAMPLE), "cntwn", "--detach"], env=env)
        assert deployed.exit_code == 0, deployed.output
        result = runner.invoke(app, ["status", str(EXAMPLE), "cntwn", "--no-condor"], env=env)
        assert result.exit_code == 1
        assert "cannot reach Consul at http://127.0.0.1:1" in " ".join(result.output.split())
