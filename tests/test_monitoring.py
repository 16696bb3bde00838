"""The rendered monitoring files: the Grafana dashboard's queries against the autoscaler's metrics.

promtool and a real Prometheus discovering targets through a real Consul agent are in
tests/integration/test_monitoring_peers.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics_core import Metric

from nomadwn.metrics import AutoscalerMetrics
from nomadwn.monitoring import DASHBOARD_FILE, SCRAPE_FILE, dashboard_panels, monitoring_files
from nomadwn.render import build_job
from nomadwn.sitefile import load_site
from tests.conftest import EXAMPLE

_METRIC = re.compile(r"\bnomadwn_[a-z_]+\b")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _exported() -> set[str]:
    """Every sample name the autoscaler's registry serves on /metrics."""
    names: set[str] = set()
    family: Metric
    for family in AutoscalerMetrics().registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def _dashboard() -> Any:
    files = monitoring_files(load_site(EXAMPLE), Path("out"))
    doc: Any = json.loads(files[Path("out/glasgow/monitoring") / DASHBOARD_FILE])
    return doc


def _queries(doc: Any) -> list[tuple[str, str]]:
    panels = doc["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def test_every_panel_query_names_only_metrics_the_autoscaler_exports() -> None:
    exported = _exported()
    assert {"nomadwn_idle_jobs", "nomadwn_scaling_actions_total", "nomadwn_step_duration_seconds_bucket"} <= exported
    queries = _queries(_dashboard())
    assert len(queries) >= 10
    for title, expr in queries:
        names = set(_METRIC.findall(expr))
        assert names, f"panel {title!r} queries no nomadwn metric: {expr}"
        assert names <= exported, f"panel {title!r} names metrics the autoscaler does not export: {names - exported}"


def test_dashboard_covers_demand_supply_counts_actions_errors_leader_and_the_pool() -> None:
    doc = _dashboard()
    titles = [title for title, _ in _queries(doc)]
    metrics = {m for _, expr in _queries(doc) for m in _METRIC.findall(expr)}
    assert metrics >= {
        "nomadwn_idle_jobs",
        "nomadwn_workers",
        "nomadwn_desired_count",
        "nomadwn_current_count",
        "nomadwn_scaling_actions_total",
        "nomadwn_errors_total",
        "nomadwn_leader",
    }
    assert "Workers by flavour and state (now)" in titles
    rows = [p["title"] for p in doc["panels"] if p["type"] == "row"]
    assert rows == ["Autoscaler", "Pool"]
    # Built by Grafana's SDK: a datasource variable every panel uses, ids unique.
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert [(v["name"], v["type"], v["query"]) for v in doc["templating"]["list"]] == [
        ("datasource", "datasource", "prometheus")
    ]
    assert {t["datasource"]["uid"] for p in doc["panels"] for t in p.get("targets", [])} == {"${datasource}"}
    assert doc["uid"] == "nomadwn-glasgow"


def test_gauges_are_read_from_the_leader_only() -> None:
    """A standby replica keeps its last gauge values; the leader's are the truth."""
    for _, panels in dashboard_panels(load_site(EXAMPLE)):
        for panel in panels:
            for query, _ in panel.targets:
                gauges = {"nomadwn_idle_jobs", "nomadwn_workers", "nomadwn_desired_count", "nomadwn_current_count"}
                if gauges & set(_METRIC.findall(query)):
                    assert "nomadwn_leader == 1" in query, query


def test_scrape_config_finds_services_by_tag_with_their_own_ports() -> None:
    site = load_site(EXAMPLE)
    files = monitoring_files(site, Path("out"))
    config = yaml.safe_load(files[Path("out/glasgow/monitoring") / SCRAPE_FILE])
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert list(jobs) == ["glasgow-autoscaler", "glasgow-workers", "glasgow-nomad-clients"]
    workers = jobs["glasgow-workers"]["consul_sd_configs"][0]
    assert workers["services"] == ["condor-master-metrics"]
    assert workers["tags"] == ["metrics", "glasgow"]
    nomad = jobs["glasgow-nomad-clients"]
    assert nomad["metrics_path"] == "/v1/metrics" and nomad["params"] == {"format": ["prometheus"]}
    # The worker job registers that service on its metrics port, with those tags.
    services = build_job(site, "elastic").TaskGroups[0].Tasks[0].Services
    metrics = [s for s in services if s.Name == "condor-master-metrics"]
    assert len(metrics) == 1 and metrics[0].PortLabel == "metrics"
    assert {"metrics", "glasgow"} <= set(metrics[0].Tags)
    # The condor service no longer carries hints Consul SD could not resolve.
    assert services[0].Meta is None
    # A flavour without service.prometheus gets no metrics service.
    assert [s.Name for s in build_job(site, "cntwn").TaskGroups[0].Tasks[0].Services] == ["condor-master"]
