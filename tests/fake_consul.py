"""A minimal fake Consul agent: ``GET /v1/health/service/<name>`` for a :class:`FakeNomad` cluster.

Nomad's clients register each running allocation's services in Consul; this server
answers Consul's health endpoint from :meth:`FakeNomad.service_registrations`, in
Consul's JSON shape (``/v1/health/service/<service>``: ``Node``, ``Service``,
``Checks``), with ``X-Consul-Index``. It serves nothing else (404), and it does not
block: nomadwn's watcher polls it. Simpler than Consul: no ACLs, no blocking queries,
no filter or tag arguments beyond ``tag``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fake_nomad import FakeNomad


class FakeConsul:
    """Serve the Consul health of ``nomad``'s allocations on a free 127.0.0.1 port."""

    def __init__(self, nomad: FakeNomad) -> None:
        self.nomad = nomad
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests += 1
                parts = urlsplit(self.path)
                prefix = "/v1/health/service/"
                if not parts.path.startswith(prefix):
                    self.send_error(404)
                    return
                tag = parse_qs(parts.query).get("tag", [None])[0]
                entries = fake.nomad.service_registrations(unquote(parts.path[len(prefix) :]))
                if tag is not None:
                    entries = [e for e in entries if tag in e["Service"]["Tags"]]
                body = json.dumps(entries).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Consul-Index", str(fake.nomad.index))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def address(self) -> str:
        """``http://127.0.0.1:<port>``, for ``CONSUL_HTTP_ADDR``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeConsul:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
