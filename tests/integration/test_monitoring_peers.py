"""The rendered monitoring files against the real tools: promtool, Prometheus and a Consul agent.

* ``promtool check config`` accepts the rendered ``prometheus.yml``;
* ``promtool check rules`` parses every dashboard query (as a recording rule);
* a real Prometheus, configured with the rendered scrape config pointed at a real Consul
  agent, discovers the autoscaler and a worker's metrics service as Nomad would register
  them (service ID ``_nomad-task-<alloc>-<task>-<service>-<port label>``, the rendered
  name, tags and meta, the port Nomad mapped) and scrapes them: the port is resolvable
  from the Consul service itself.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nomadwn.metrics import AutoscalerMetrics, MetricsServer
from nomadwn.monitoring import SCRAPE_FILE, dashboard_panels, monitoring_files
from nomadwn.render import build_autoscaler_job, build_job
from nomadwn.sitefile import load_site, parse_site
from tests.conftest import EXAMPLE
from tests.peers import ConsulAgent, PrometheusServer, prometheus_available, prometheus_tool


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    missing = prometheus_available()
    if missing is not None:
        pytest.fail(missing)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(prometheus_tool()), *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.integration
def test_rendered_scrape_config_passes_promtool(tmp_path: Path) -> None:
    files = monitoring_files(load_site(EXAMPLE), tmp_path)
    config = tmp_path / "glasgow" / "monitoring" / SCRAPE_FILE
    config.parent.mkdir(parents=True)
    config.write_text(files[config], encoding="utf-8")
    result = _promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.integration
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"nomadwn:check_{i}", "expr": query.replace("$__rate_interval", "5m")}
        for i, query in enumerate(
            q for _, panels in dashboard_panels(load_site(EXAMPLE)) for p in panels for q, _ in p.targets
        )
    ]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def _register(consul: ConsulAgent, body: dict[str, Any]) -> None:
    req = urllib.request.Request(
        consul.http_addr + "/v1/agent/service/register", data=json.dumps(body).encode(), method="PUT"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def metrics_servers() -> Iterator[list[MetricsServer]]:
    servers: list[MetricsServer] = []
    yield servers
    for server in servers:
        server.close()


@pytest.mark.integration
def test_prometheus_discovers_and_scrapes_the_rendered_services_through_consul(
    consul: ConsulAgent, tmp_path: Path, metrics_servers: list[MetricsServer]
) -> None:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["monitoring"] = {"consul_server": consul.http_addr.removeprefix("http://"), "scrape_interval": "1s"}
    site = parse_site(data)

    # The autoscaler replica's /metrics, and a worker's metrics port (served the same way).
    leader = AutoscalerMetrics()
    leader.leader.set(1)
    leader.idle_jobs.labels(flavour="elastic").set(7)
    for metrics in (leader, AutoscalerMetrics()):
        metrics_servers.append(MetricsServer(metrics, "127.0.0.1", 0, lambda: True).start())
    autoscaler_alloc, worker_alloc = str(uuid.uuid4()), str(uuid.uuid4())
    registrations = [
        (build_autoscaler_job(site), "autoscale", autoscaler_alloc, metrics_servers[0].port),
        (build_job(site, "elastic"), "condor", worker_alloc, metrics_servers[1].port),
    ]
    for job, task, alloc, port in registrations:
        services = job.TaskGroups[0].Tasks[0].Services
        service = next(s for s in services if s.PortLabel == "metrics")
        _register(
            consul,
            {
                # As Nomad's Consul integration registers a task's service.
                "ID": f"_nomad-task-{alloc}-{task}-{service.Name}-{service.PortLabel}",
                "Name": service.Name,
                "Tags": service.Tags,
                "Meta": service.Meta or {},
                "Address": "127.0.0.1",
                "Port": port,
            },
        )

    config = tmp_path / SCRAPE_FILE
    config.write_text(monitoring_files(site, tmp_path)[tmp_path / "glasgow" / "monitoring" / SCRAPE_FILE])
    with PrometheusServer(config) as prom:
        deadline = time.monotonic() + 30
        up: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            targets = _get(prom.url + "/api/v1/targets")["data"]["activeTargets"]
            up = {t["labels"]["job"]: t for t in targets if t["health"] == "up"}
            if {"glasgow-autoscaler", "glasgow-workers"} <= up.keys():
                break
            time.sleep(0.5)
        assert {"glasgow-autoscaler", "glasgow-workers"} <= up.keys(), prom.log_tail()
        autoscaler, worker = up["glasgow-autoscaler"], up["glasgow-workers"]
        assert autoscaler["labels"]["instance"] == f"127.0.0.1:{metrics_servers[0].port}"
        assert autoscaler["labels"]["alloc_id"] == autoscaler_alloc
        assert autoscaler["scrapeUrl"].endswith("/metrics")
        assert worker["labels"]["alloc_id"] == worker_alloc
        assert worker["labels"]["flavour"] == "elastic"
        assert worker["labels"]["instance"] == f"127.0.0.1:{metrics_servers[1].port}"

        # A dashboard query answers with the leader's value.
        idle = next(q for _, panels in dashboard_panels(site) for p in panels for q, _ in p.targets if "idle" in q)
        deadline = time.monotonic() + 15
        result: list[Any] = []
        while time.monotonic() < deadline and not result:
            query = urllib.parse.urlencode({"query": idle})
            result = _get(prom.url + f"/api/v1/query?{query}")["data"]["result"]
            time.sleep(0.5)
        assert [(r["metric"]["flavour"], r["value"][1]) for r in result] == [("elastic", "7")], prom.log_tail()
