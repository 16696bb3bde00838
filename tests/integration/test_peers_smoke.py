"""Smoke tests: the real peers installed by .ci/install-peers.sh start and answer."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from tests.peers import CondorPool, ConsulAgent


def _consul(agent: ConsulAgent, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(agent.http_addr + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


@pytest.mark.integration
def test_consul_agent_registers_service_with_script_check() -> None:
    missing = ConsulAgent.available()
    if missing is not None:
        pytest.fail(missing)
    with ConsulAgent() as agent:
        _consul(
            agent,
            "PUT",
            "/v1/agent/service/register",
            {
                "ID": "cntwn-smoke",
                "Name": "cntwn",
                "Port": 9621,
                "Tags": ["cntwn", "prod"],
                "Check": {"Args": ["/bin/true"], "Interval": "1s", "Timeout": "5s"},
            },
        )
        services = _consul(agent, "GET", "/v1/agent/services")
        assert services["cntwn-smoke"]["Service"] == "cntwn"
        assert services["cntwn-smoke"]["Port"] == 9621
        assert sorted(services["cntwn-smoke"]["Tags"]) == ["cntwn", "prod"]

        # The script check really runs (needs -enable-script-checks).
        deadline = time.monotonic() + 15
        status = None
        while time.monotonic() < deadline:
            checks = _consul(agent, "GET", "/v1/agent/checks")
            mine = [c for c in checks.values() if c["ServiceID"] == "cntwn-smoke"]
            assert len(mine) == 1
            status = mine[0]["Status"]
            if status == "passing":
                break
            time.sleep(0.2)
        assert status == "passing", agent.log_tail()


@pytest.mark.integration
def test_condor_pool_has_startd_and_start_jobs() -> None:
    missing = CondorPool.available()
    if missing is not None:
        pytest.fail(missing)
    with CondorPool() as pool:
        # Plain condor_status lists slot ads; "-startd" would list the daemon ad.
        status = pool.run(["condor_status", "-af", "Name", "State"])
        assert status.returncode == 0, status.stderr
        assert "slot1@" in status.stdout, status.stdout

        start_jobs = pool.run(["condor_config_val", "-startd", "StartJobs"])
        assert start_jobs.returncode == 0, start_jobs.stderr
        assert start_jobs.stdout.strip() == "True"
