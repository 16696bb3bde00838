"""What ``nomadwn render`` writes for monitoring: a Prometheus scrape config and a Grafana dashboard.

Pure: site model in, file text out (``jobspecs/<site>/monitoring/``). The targets come
from Consul, the way the Glasgow papers hoped: every service Prometheus should scrape
carries the tag :data:`~nomadwn.model.METRICS_TAG` and the site's name, and its own
port, so ``consul_sd_configs`` gives ``address:port`` directly (a port named in
another service's meta could not be resolved for a dynamic port).

Three scrape jobs:

* ``<site>-autoscaler``: the autoscaler replicas (``nomadwn-autoscaler``);
* ``<site>-workers``: the workers' own metrics ports (flavours with ``service.prometheus``);
* ``<site>-nomad-clients``: the Nomad clients' ``/v1/metrics?format=prometheus``, which
  carry each allocation's CPU and memory (``nomad_client_allocs_*``) when the clients set
  ``telemetry { publish_allocation_metrics = true, prometheus_metrics = true }``.

The dashboard is built with Grafana's own ``grafana-foundation-sdk``, imported only
when the dashboard is rendered. Every query names only metrics that
:class:`nomadwn.metrics.AutoscalerMetrics` exports (a test holds it to that), and
reads gauges from the leader only: a standby replica keeps its last values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from nomadwn.errors import RenderError
from nomadwn.model import METRICS_TAG, Site, metrics_service_name
from nomadwn.units import duration_seconds

AUTOSCALER_SERVICE = "nomadwn-autoscaler"
"""The Consul service of the autoscaler replicas (their metrics port)."""
NOMAD_CLIENT_SERVICE = "nomad-client"
"""The service each Nomad client registers in Consul; its ``http`` tag marks the HTTP API."""
DASHBOARD_FILE = "grafana-dashboard.json"
SCRAPE_FILE = "prometheus.yml"


def _relabel_common() -> list[dict[str, Any]]:
    return [
        # The path the service asks for (Prometheus' default is /metrics).
        {
            "source_labels": ["__meta_consul_service_metadata_metrics_path"],
            "regex": "(.+)",
            "target_label": "__metrics_path__",
        },
        {"source_labels": ["__meta_consul_node"], "target_label": "node"},
        # Nomad registers services as _nomad-task-<alloc id>-<task>-<service>-<port label>.
        {
            "source_labels": ["__meta_consul_service_id"],
            "regex": "_nomad-task-([0-9a-f-]{36})-.*",
            "target_label": "alloc_id",
        },
    ]


def scrape_config(site: Site) -> dict[str, Any]:
    """The Prometheus configuration (``prometheus.yml``) for the site's autoscaler, workers and Nomad clients."""
    m = site.monitoring

    def consul(services: list[str], tags: list[str]) -> list[dict[str, Any]]:
        return [{"server": m.consul_server, "scheme": m.consul_scheme, "services": services, "tags": tags}]

    jobs: list[dict[str, Any]] = []
    if site.autoscaler is not None:
        jobs.append(
            {
                "job_name": f"{site.name}-autoscaler",
                "consul_sd_configs": consul([AUTOSCALER_SERVICE], [METRICS_TAG, site.name]),
                "relabel_configs": _relabel_common(),
            }
        )
    workers = sorted({metrics_service_name(f) for f in site.flavours.values() if f.service.prometheus is not None})
    if workers:
        jobs.append(
            {
                "job_name": f"{site.name}-workers",
                "consul_sd_configs": consul(workers, [METRICS_TAG, site.name]),
                "relabel_configs": [
                    *_relabel_common(),
                    {"source_labels": ["__meta_consul_service_metadata_nomadwn_flavour"], "target_label": "flavour"},
                ],
            }
        )
    jobs.append(
        {
            # Per-allocation CPU and memory, as the Glasgow site took them from cAdvisor.
            "job_name": f"{site.name}-nomad-clients",
            "consul_sd_configs": consul([NOMAD_CLIENT_SERVICE], ["http"]),
            "scheme": m.nomad_scheme,
            "metrics_path": "/v1/metrics",
            "params": {"format": ["prometheus"]},
            "relabel_configs": [{"source_labels": ["__meta_consul_node"], "target_label": "node"}],
        }
    )
    interval = f"{int(duration_seconds(m.scrape_interval))}s"
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": jobs}


def scrape_config_text(site: Site) -> str:
    """:func:`scrape_config` as YAML, with a header saying where it comes from."""
    header = (
        f"# Prometheus scrape configuration for site {site.name}: rendered by nomadwn from the site file.\n"
        "# Do not edit by hand: change the site file (monitoring block) and run `nomadwn render`.\n"
        "# Targets come from Consul by tag; with Consul or Nomad ACLs or TLS, add the token_file/\n"
        "# authorization and tls_config settings of your Prometheus to each job.\n"
    )
    return header + yaml.safe_dump(scrape_config(site), sort_keys=False, default_flow_style=False)


# ---------------------------------------------------------------------------
# Grafana

LEADER = "on (instance) group_left () (nomadwn_leader == 1)"
"""Join a gauge with the leader: only the replica holding the lock observes and acts."""


def _leader(metric: str) -> str:
    return f"{metric} * {LEADER}"


@dataclass(frozen=True)
class Panel:
    """One dashboard panel as plain data: its kind, title and (query, legend) targets."""

    kind: Literal["timeseries", "stat", "bargauge"]
    title: str
    targets: tuple[tuple[str, str], ...]
    stacked: bool = False


def dashboard_panels(site: Site) -> list[tuple[str, list[Panel]]]:
    """The dashboard's rows: (row title, panels). Plain data, so a test can read every query."""
    job = f'job="{site.name}-autoscaler"'

    def lead(metric: str) -> str:
        return _leader(f"{metric}{{{job}}}")

    rate = "[$__rate_interval]"
    return [
        (
            "Autoscaler",
            [
                Panel(
                    "timeseries", "Idle demand (jobs that fit a worker)", ((lead("nomadwn_idle_jobs"), "{{flavour}}"),)
                ),
                Panel(
                    "timeseries",
                    "Supply by state",
                    ((f"sum by (flavour, state) ({lead('nomadwn_workers')})", "{{flavour}} {{state}}"),),
                    stacked=True,
                ),
                Panel(
                    "timeseries",
                    "Desired vs current count",
                    (
                        (lead("nomadwn_desired_count"), "{{flavour}} desired"),
                        (lead("nomadwn_current_count"), "{{flavour}} current"),
                    ),
                ),
                Panel(
                    "timeseries",
                    "Scaling actions",
                    (
                        (
                            f"sum by (flavour, direction) (increase(nomadwn_scaling_actions_total{{{job}}}{rate}))",
                            "{{flavour}} {{direction}}",
                        ),
                    ),
                ),
                Panel(
                    "timeseries",
                    "Errors by phase",
                    ((f"sum by (phase) (increase(nomadwn_errors_total{{{job}}}{rate}))", "{{phase}}"),),
                ),
                Panel("timeseries", "Leader (1 = holds the lock)", ((f"nomadwn_leader{{{job}}}", "{{instance}}"),)),
                Panel(
                    "timeseries",
                    "Step duration (p95)",
                    (
                        (
                            "histogram_quantile(0.95, sum by (le) "
                            f"(rate(nomadwn_step_duration_seconds_bucket{{{job}}}{rate})))",
                            "p95",
                        ),
                    ),
                ),
                Panel(
                    "stat",
                    "Seconds since the leader's last step",
                    ((f"time() - max({lead('nomadwn_last_step_timestamp_seconds')})", "seconds"),),
                ),
            ],
        ),
        (
            "Pool",
            [
                Panel(
                    "bargauge",
                    "Workers by flavour and state (now)",
                    ((f"sum by (flavour, state) ({lead('nomadwn_workers')})", "{{flavour}} {{state}}"),),
                ),
                Panel(
                    "timeseries",
                    "Workers by flavour",
                    ((f"sum by (flavour) ({lead('nomadwn_workers')})", "{{flavour}}"),),
                    stacked=True,
                ),
            ],
        ),
    ]


def dashboard(site: Site) -> dict[str, Any]:
    """The Grafana dashboard, built with grafana-foundation-sdk, as a JSON-ready dict."""
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError as exc:
        raise RenderError(
            "the Grafana dashboard needs the grafana-foundation-sdk package, a dependency of nomadwn: "
            "reinstall nomadwn (scripts/_venv.sh in a checkout)"
        ) from exc
    from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
    from grafana_foundation_sdk.builders import dashboard as gdash
    from grafana_foundation_sdk.builders.common import StackingConfig
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.common import StackingMode
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (
        gdash.Dashboard(f"nomadwn: {site.name} autoscaler and pool")
        .uid(f"nomadwn-{site.name}")
        .description(f"The autoscaler and worker pool of site {site.name}, rendered by nomadwn from the site file.")
        .tags(["nomadwn", site.name])
        .refresh("1m")
        .time("now-6h", "now")
        .with_variable(gdash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    kinds: dict[str, Any] = {"timeseries": timeseries.Panel, "stat": stat.Panel, "bargauge": bargauge.Panel}
    ids = iter(range(1, 1000))
    for row_title, panels in dashboard_panels(site):
        board = board.with_row(gdash.Row(row_title).id(next(ids)))
        for p in panels:
            panel = kinds[p.kind]().id(next(ids)).title(p.title).datasource(source).height(8).span(12)
            for ref, (query, legend) in zip("ABCDEFGH", p.targets, strict=False):
                panel = panel.with_target(
                    prometheus.Dataquery().expr(query).legend_format(legend).ref_id(ref).datasource(source)
                )
            if p.stacked:
                panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
            board = board.with_panel(panel)
    built: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(board.build()))
    return built


def dashboard_text(site: Site) -> str:
    """:func:`dashboard` as byte-stable JSON (Grafana's import format)."""
    return json.dumps(dashboard(site), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def monitoring_files(site: Site, out_dir: Path) -> dict[Path, str]:
    """The files ``render`` writes under ``<out_dir>/<site>/monitoring/``."""
    base = out_dir / site.name / "monitoring"
    return {base / SCRAPE_FILE: scrape_config_text(site), base / DASHBOARD_FILE: dashboard_text(site)}
