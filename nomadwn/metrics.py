"""The autoscaler's Prometheus metrics and its small HTTP endpoint (``/metrics``, ``/healthz``).

Each :class:`AutoscalerMetrics` has its own registry (no process-wide singleton), so
tests and two replicas in one process do not share counters. Names follow
Prometheus' conventions (``_total`` for counters, base units)::

    nomadwn_idle_jobs{flavour}                 idle jobs that fit the flavour (last observation)
    nomadwn_workers{flavour,state}             workers by state (nomadwn.pool.WORKER_STATES)
    nomadwn_current_count{flavour}             the count Nomad has now
    nomadwn_desired_count{flavour}             the count the last decision wanted
    nomadwn_scaling_actions_total{flavour,direction,dry_run}
    nomadwn_errors_total{phase}                phase: condor, nomad, consul, act
    nomadwn_leader                             1 while this replica holds the lock
    nomadwn_step_duration_seconds              histogram of one loop step
    nomadwn_last_step_timestamp_seconds        when the last step finished
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class AutoscalerMetrics:
    """The autoscaler's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.idle_jobs = Gauge("nomadwn_idle_jobs", "Idle jobs that fit the flavour", ["flavour"], registry=r)
        self.workers = Gauge("nomadwn_workers", "Workers of the flavour by state", ["flavour", "state"], registry=r)
        self.current = Gauge("nomadwn_current_count", "The flavour's count in Nomad", ["flavour"], registry=r)
        self.desired = Gauge("nomadwn_desired_count", "The count the last decision wanted", ["flavour"], registry=r)
        self.actions = Counter(
            "nomadwn_scaling_actions", "Scaling actions taken", ["flavour", "direction", "dry_run"], registry=r
        )
        self.errors = Counter("nomadwn_errors", "Errors by phase", ["phase"], registry=r)
        self.leader = Gauge("nomadwn_leader", "1 while this replica holds the leader lock", registry=r)
        self.step_duration = Histogram(
            "nomadwn_step_duration_seconds",
            "Duration of one autoscaler step",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.last_step = Gauge("nomadwn_last_step_timestamp_seconds", "When the last step finished", registry=r)
        for phase in ("condor", "nomad", "consul", "act"):
            self.errors.labels(phase=phase)

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's value (for tests and the CLI), or None if it was never set."""
        got = self.registry.get_sample_value(name, labels)
        return None if got is None else float(got)


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` on ``host:port`` in a daemon thread.

    ``/healthz`` answers 200 while ``alive()`` is true (the loop stepped recently), 503
    otherwise, so Consul's HTTP check restarts a wedged replica.
    """

    def __init__(self, metrics: AutoscalerMetrics, host: str, port: int, alive: Callable[[], bool]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    self._reply(200, outer.metrics.render(), CONTENT_TYPE_LATEST)
                elif self.path.split("?")[0] == "/healthz":
                    ok = outer.alive()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"stalled\n", "text/plain")
                else:
                    self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.metrics = metrics
        self.alive = alive
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="nomadwn-metrics", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        """Start serving in the background."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def recently(clock: Callable[[], float], last: Callable[[], float | None], within: float) -> Callable[[], bool]:
    """An ``alive`` check: true while ``last()`` is at most ``within`` seconds before ``clock()``."""

    def alive() -> bool:
        stamp = last()
        return stamp is None or clock() - stamp <= within

    return alive
