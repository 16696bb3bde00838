"""Consul's health API over py-consul: :class:`ConsulClient`.

:class:`~nomadwn.consul.ConsulHealth` is what the rest of nomadwn uses;
:class:`ConsulClient` is its one real implementation and, with :mod:`nomadwn.consul_lock`
(which goes through a :class:`ConsulClient` and its one translation of errors), the only
module that imports ``consul`` (py-consul).

Settings come from HashiCorp's environment variables (``CONSUL_HTTP_ADDR``, ...).
Precedence: defaults < environment < explicit overrides (flags).

How each setting reaches py-consul 1.8.0, and what is worked around:

* ``address`` -> ``host``, ``port`` and ``scheme``, always passed explicitly, so
  py-consul never falls back to reading ``CONSUL_HTTP_ADDR``/``CONSUL_HTTP_SSL`` itself.
* ``verify``/``ca_cert`` -> ``verify`` (``False``, ``True`` or the CA bundle's path),
  always passed explicitly (py-consul would read ``CONSUL_HTTP_SSL_VERIFY`` otherwise).
* ``client_cert``/``client_key`` -> ``cert``.
* ``timeout`` -> ``connections_timeout`` (seconds, for connecting and for each read).
* ``token`` -> sent as the ``X-Consul-Token`` header, never in the URL. It is set on
  the client *after* construction: py-consul's constructor does
  ``os.getenv("CONSUL_HTTP_TOKEN", token)``, so the process environment would silently
  beat an explicitly given token.
* ``namespace`` -> the ``X-Consul-Namespace`` header on py-consul's requests session;
  py-consul has no namespace parameter. Consul OSS answers such requests with HTTP 400.
* py-consul's ``close()`` does not close its requests session; :meth:`ConsulClient.close`
  does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

import consul
import requests

from nomadwn.consul import ServiceInstance, parse_instance
from nomadwn.consul_settings import ConsulSettings, parse_address
from nomadwn.errors import ConsulError

T = TypeVar("T")


class PyConsulHealth(Protocol):
    """The part of py-consul's ``Consul.health`` that :class:`ConsulClient` calls."""

    def service(self, service: str, *, tag: str | None = None) -> Any: ...


class PyConsulAPI(Protocol):
    """The part of py-consul's ``consul.Consul`` that :class:`ConsulClient` uses; tests inject a fake."""

    @property
    def health(self) -> PyConsulHealth: ...


_STATUS_PREFIX: Final = re.compile(r"^\s*(\d{3})\b\s*")
_SSL_REASON: Final = re.compile(r"\[SSL: ([A-Z0-9_]+)\] (.*?)\s*\(_ssl\.c")
_BODY_LIMIT: Final = 200


def _connect(settings: ConsulSettings, session: requests.Session | None) -> tuple[Any, requests.Session]:
    """py-consul's ``consul.Consul`` (untyped) for ``settings``, and the requests session it uses."""
    scheme, host, port = parse_address(settings.address)
    verify: bool | str = (settings.ca_cert or True) if settings.verify else False
    cert: str | tuple[str, str] | None = None
    if settings.client_cert:
        cert = (settings.client_cert, settings.client_key) if settings.client_key else settings.client_cert
    api = consul.Consul(
        host=host,
        port=port,
        scheme=scheme,
        verify=verify,
        cert=cert,
        token=settings.token,
        connections_timeout=settings.timeout,
    )
    # py-consul prefers $CONSUL_HTTP_TOKEN over the token it is given; the settings decide.
    api.token = settings.token
    if session is not None:
        api.http.session = session
    used: requests.Session = api.http.session
    if settings.namespace:
        used.headers["X-Consul-Namespace"] = settings.namespace
    return api, used


class ConsulClient:
    """:class:`ConsulHealth` over py-consul.

    ``session`` replaces the requests session py-consul makes (for hooks, proxies or
    tests); a namespace is set on it as a header. ``api`` replaces py-consul itself (a
    scriptable fake in tests); the settings then only name the address in messages and
    the token to scrub from them.
    """

    def __init__(
        self,
        settings: ConsulSettings,
        *,
        session: requests.Session | None = None,
        api: PyConsulAPI | None = None,
    ) -> None:
        if api is not None and session is not None:
            raise ValueError("pass a requests session or a py-consul stand-in, not both")
        self.settings = settings
        self._session: requests.Session | None = None
        # The whole py-consul client, for ConsulLock's session and KV calls; None with a stand-in.
        self._py: Any = None
        if api is None:
            self._py, self._session = _connect(settings, session)
            api = self._py
        self._api: PyConsulAPI = api

    def __repr__(self) -> str:
        return f"ConsulClient({self.settings!r})"

    def close(self) -> None:
        """Close the HTTP connections (py-consul's own ``close`` does not)."""
        if self._session is not None:
            self._session.close()

    def __enter__(self) -> ConsulClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the one place where py-consul and requests errors are translated ------------------

    def _scrub(self, text: str) -> str:
        token = self.settings.token
        return text.replace(token, "<token>") if token else text

    def _error(self, what: str, problem: str, hint: str, status: int | None = None) -> ConsulError:
        return ConsulError(self._scrub(f"{what}: {problem}: {hint}"), status=status)

    @staticmethod
    def _body(exc: BaseException) -> tuple[int | None, str]:
        """The HTTP status py-consul put at the start of its message (if any), and the rest, shortened."""
        text = " ".join(str(exc).split())
        match = _STATUS_PREFIX.match(text)
        status = int(match.group(1)) if match else None
        if match:
            text = text[match.end() :]
        if len(text) > _BODY_LIMIT:
            text = text[:_BODY_LIMIT] + "…"
        return status, text or "no message"

    def _tls_error(self, what: str, exc: requests.exceptions.SSLError) -> ConsulError:
        address = self.settings.address
        match = _SSL_REASON.search(str(exc))
        code, reason = match.groups() if match else ("", type(exc).__name__)
        if code == "CERTIFICATE_VERIFY_FAILED":
            return self._error(
                what,
                f"TLS verification failed for Consul at {address} ({reason})",
                "set CONSUL_CACERT to the CA bundle that signed the agent's certificate"
                " (CONSUL_HTTP_SSL_VERIFY=false only for testing)",
            )
        if code in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"):
            hint = "that port does not speak TLS: use http:// in CONSUL_HTTP_ADDR, or the agent's https port"
        elif "CERTIFICATE" in code or code.endswith("UNKNOWN_CA"):
            hint = (
                "the agent refused the client certificate: set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY"
                " to a certificate signed by the agent's CA"
            )
        else:
            hint = "check CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY"
        return self._error(what, f"TLS handshake with Consul at {address} failed ({reason})", hint)

    def _call(
        self,
        what: str,
        request: Callable[[], T],
        *,
        needs: str = "service:read and node:read",
        rejected_hint: str = "check the service name and tag",
    ) -> T:
        """``request()``, with every py-consul and requests error translated to :class:`ConsulError`.

        ``needs`` names the ACL permissions the request needs (for the hint on HTTP 403);
        ``rejected_hint`` is the hint for any other 4xx answer.
        """
        address = self.settings.address
        try:
            return request()
        except consul.ACLPermissionDenied as exc:
            _, body = self._body(exc)
            hint = (
                f"check CONSUL_HTTP_TOKEN is a valid token with {needs}"
                if self.settings.token
                else f"no token was sent: set CONSUL_HTTP_TOKEN to a token with {needs}"
            )
            raise self._error(what, f"Consul at {address} denied permission (HTTP 403: {body})", hint, 403) from exc
        except consul.ACLDisabled as exc:
            _, body = self._body(exc)
            raise self._error(
                what, f"Consul at {address} refused the request (HTTP 401: {body})", "check CONSUL_HTTP_TOKEN", 401
            ) from exc
        except consul.NotFound as exc:
            _, body = self._body(exc)
            raise self._error(
                what,
                f"Consul at {address} answered HTTP 404 ({body})",
                "check that CONSUL_HTTP_ADDR points at a Consul agent's HTTP API",
                404,
            ) from exc
        except consul.Timeout as exc:
            raise self._timeout_error(what) from exc
        except consul.ConsulException as exc:  # BadRequest, ClientError, 5xx, unreadable answers
            status, body = self._body(exc)
            if status is None:
                raise self._error(
                    what,
                    f"Consul at {address} sent an answer nomadwn cannot read ({body})",
                    "check that CONSUL_HTTP_ADDR points at a Consul agent",
                ) from exc
            if status >= 500:
                problem, hint = "failed", "check the agent's log; does the cluster have a leader?"
            elif "Namespaces are a Consul Enterprise feature" in body:
                problem, hint = "rejected the request", "namespaces need Consul Enterprise: unset CONSUL_NAMESPACE"
            elif "HTTP request to an HTTPS server" in body:
                problem = "rejected the request"
                hint = "that port speaks https: use https:// in CONSUL_HTTP_ADDR or set CONSUL_HTTP_SSL=true"
            else:
                problem, hint = "rejected the request", rejected_hint
            raise self._error(what, f"Consul at {address} {problem} (HTTP {status}: {body})", hint, status) from exc
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(what, exc) from exc
        except requests.exceptions.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            raise self._timeout_error(what) from exc
        except requests.exceptions.ConnectionError as exc:
            raise self._error(
                what, f"cannot reach Consul at {address}", "is the agent running? check CONSUL_HTTP_ADDR"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise self._error(
                what,
                f"the request to Consul at {address} failed ({type(exc).__name__})",
                "check CONSUL_HTTP_ADDR and the TLS settings",
            ) from exc
        except OSError as exc:  # requests raises a plain OSError for a missing CA bundle or client certificate
            raise self._error(
                what,
                f"cannot use the TLS files for Consul at {address} ({exc})",
                "check that CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY name readable PEM files",
            ) from exc

    def _timeout_error(self, what: str) -> ConsulError:
        return self._error(
            what,
            f"Consul at {self.settings.address} did not answer within {self.settings.timeout:g}s",
            "is the agent overloaded or stuck? check CONSUL_HTTP_ADDR, or raise the timeout",
        )

    # -- ConsulHealth ----------------------------------------------------------------------

    def service_health(self, name: str, tag: str | None = None) -> list[ServiceInstance]:
        """Every instance of ``name`` (tagged ``tag`` if given), sorted by node and service ID.

        An unknown service gives an empty list, as Consul does.
        """
        if not name:
            raise ValueError("service_health: the service name must not be empty")
        what = f"reading the health of service {name!r}" + (f" with tag {tag!r}" if tag else "")
        answer = self._call(what, lambda: self._api.health.service(name, tag=tag))
        try:
            _index, entries = answer
            instances = [parse_instance(entry) for entry in entries or []]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._error(
                what,
                f"Consul at {self.settings.address} sent an entry nomadwn cannot read ({type(exc).__name__}: {exc})",
                "check that CONSUL_HTTP_ADDR points at a Consul agent",
            ) from exc
        return sorted(instances, key=lambda instance: (instance.node, instance.service_id))
