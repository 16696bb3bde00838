"""Consul's health API and a leader lock behind small typed protocols, over py-consul.

:class:`ConsulHealth` is what the rest of nomadwn uses; :class:`ConsulClient` is its one
real implementation and the only module that imports ``consul`` (py-consul).
:class:`Leadership` says whether this replica of a service may act; :class:`ConsulLock`
implements it with a Consul session and a KV lock, through a :class:`ConsulClient` and
its one translation of errors.

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

An instance's health is Consul's own aggregate (``HealthChecks.AggregatedStatus`` in
Consul's Go API): the worst of its checks, node-level checks included, where a
maintenance check beats everything::

    passing  <  warning  <  critical  <  maintenance

An instance without checks is passing. A status Consul does not document counts as
critical.

With ACLs on and a token that lacks ``service:read``/``node:read``, Consul 1.8 does not
refuse the request: it silently leaves out what the token may not see, so a
missing permission looks like an empty list, not an error.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import consul
import requests
from consul.callback import CB

from nomadwn.errors import ConfigError, ConsulError, FieldProblem

T = TypeVar("T")

__all__ = [
    "OUTPUT_LIMIT",
    "CheckState",
    "ConsulClient",
    "ConsulHealth",
    "ConsulLock",
    "ConsulSettings",
    "Leadership",
    "LockState",
    "PyConsulAPI",
    "PyConsulHealth",
    "ServiceCheck",
    "ServiceHealth",
    "ServiceInstance",
    "worst_state",
]

# ---------------------------------------------------------------------------
# Settings

DEFAULT_ADDRESS: Final = "127.0.0.1:8500"
DEFAULT_TIMEOUT: Final = 10.0
_TRUE: Final = frozenset({"1", "t", "true"})  # Go's strconv.ParseBool, case-insensitively
_FALSE: Final = frozenset({"0", "f", "false"})
_ENV: Final = "environment"
_SETTINGS: Final = "Consul settings"
_REDACTED: Final = "<redacted>"


def _parse_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an ``http(s)://host[:port]`` or ``host:port`` address."""
    text = address.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        scheme not in ("http", "https")
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(
            _SETTINGS,
            [
                FieldProblem(
                    "address",
                    f"{address!r} is not a Consul HTTP address such as 127.0.0.1:8500 or"
                    " https://consul.example:8501 (set CONSUL_HTTP_ADDR; unix sockets and path"
                    " prefixes are not supported)",
                )
            ],
            context="",
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return scheme, host, port or (443 if scheme == "https" else 80)


def _env_bool(env: Mapping[str, str], var: str, problems: list[FieldProblem]) -> bool | None:
    value = env.get(var, "")
    if not value:
        return None
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    problems.append(FieldProblem(var, f"{value!r} is not a boolean: use true or false"))
    return None


def _read_token_file(path: str, problems: list[FieldProblem]) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        problems.append(FieldProblem("CONSUL_HTTP_TOKEN_FILE", f"cannot read the token file {path}: {reason}"))
        return None
    return token or None


@dataclass(frozen=True, repr=False)
class ConsulSettings:
    """How to reach Consul. Precedence: defaults < environment (``CONSUL_*``) < explicit overrides.

    ``address`` is normalised to ``scheme://host:port``. ``verify`` is on unless turned
    off explicitly; ``ca_cert`` is then the CA bundle to trust. ``timeout`` is seconds.
    The token is never shown by ``repr`` or ``str``.
    """

    address: str = f"http://{DEFAULT_ADDRESS}"
    token: str | None = None
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True
    namespace: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        scheme, host, port = _parse_address(self.address)
        object.__setattr__(self, "address", f"{scheme}://{host}:{port}")
        problems: list[FieldProblem] = []
        if isinstance(self.timeout, bool) or not (math.isfinite(self.timeout) and self.timeout > 0):
            problems.append(FieldProblem("timeout", f"must be a positive number of seconds, not {self.timeout!r}"))
        if self.client_key and not self.client_cert:
            problems.append(
                FieldProblem("client_key", "a client key needs a client certificate: set CONSUL_CLIENT_CERT too")
            )
        if problems:
            raise ConfigError(_SETTINGS, problems, context="")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConsulSettings:
        """Settings from HashiCorp's ``CONSUL_*`` variables, then ``overrides`` (flags; None is ignored).

        As in Consul's own CLI: ``CONSUL_HTTP_SSL=true`` makes an address without a
        scheme (and an ``http://`` one from the environment) use https; a token read from
        ``CONSUL_HTTP_TOKEN_FILE`` beats ``CONSUL_HTTP_TOKEN``. An explicit ``token``
        override wins over both, and the token file is then not read. An explicit
        ``address`` with a scheme is taken as it is.
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown Consul setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        flags = {key: value for key, value in overrides.items() if value is not None}
        problems: list[FieldProblem] = []
        ssl = _env_bool(env, "CONSUL_HTTP_SSL", problems)
        skip_verify = _env_bool(env, "CONSUL_HTTP_SSL_VERIFY", problems) is False
        scheme = "https" if ssl else "http"

        values: dict[str, Any] = {}
        if "address" in flags:
            address = str(flags.pop("address")).strip()
            _parse_address(address)  # so that an error shows the address as given
            values["address"] = address if "://" in address else f"{scheme}://{address}"
        else:
            address = env.get("CONSUL_HTTP_ADDR", "").strip() or DEFAULT_ADDRESS
            _parse_address(address)
            if "://" not in address:
                address = f"{scheme}://{address}"
            elif ssl and address.lower().startswith("http://"):
                address = "https://" + address[len("http://") :]  # Consul never reverts to http once asked for TLS
            values["address"] = address

        if "token" not in flags:
            token_file = env.get("CONSUL_HTTP_TOKEN_FILE", "")
            token = _read_token_file(token_file, problems) if token_file else None
            values["token"] = token or env.get("CONSUL_HTTP_TOKEN") or None
        for var, key in (
            ("CONSUL_CACERT", "ca_cert"),
            ("CONSUL_CLIENT_CERT", "client_cert"),
            ("CONSUL_CLIENT_KEY", "client_key"),
            ("CONSUL_NAMESPACE", "namespace"),
        ):
            if env.get(var):
                values[key] = env[var]
        if skip_verify:
            values["verify"] = False
        if problems:
            raise ConfigError(_ENV, problems, context="")
        values.update(flags)
        return cls(**values)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.token:
            shown["token"] = _REDACTED
        return "ConsulSettings(" + ", ".join(f"{key}={value!r}" for key, value in shown.items()) + ")"

    def __str__(self) -> str:
        return f"Consul at {self.address}" + (" (with a token)" if self.token else "")


# ---------------------------------------------------------------------------
# Value types (what callers get back; never raw dicts)

CheckState = Literal["passing", "warning", "critical", "maintenance"]

_RANK: Final[dict[CheckState, int]] = {"passing": 0, "warning": 1, "critical": 2, "maintenance": 3}
_STATES: Final[dict[str, CheckState]] = {"passing": "passing", "warning": "warning", "critical": "critical"}
_NODE_MAINTENANCE: Final = "_node_maintenance"
_SERVICE_MAINTENANCE: Final = "_service_maintenance:"

OUTPUT_LIMIT: Final = 1000
"""Longest check output kept, in characters; longer output is cut and says by how much."""


def worst_state(states: Iterable[CheckState]) -> CheckState:
    """The worst of ``states`` (passing < warning < critical < maintenance); passing if none."""
    return max(states, key=_RANK.__getitem__, default="passing")


@dataclass(frozen=True)
class ServiceCheck:
    """One health check of an instance. ``service_id`` is empty for a node-level check."""

    name: str
    check_id: str
    status: CheckState
    output: str
    service_id: str

    @property
    def node_level(self) -> bool:
        """True for a check of the whole node (such as ``serfHealth``), not of the service."""
        return not self.service_id


@dataclass(frozen=True)
class ServiceInstance:
    """One registered instance of a service, as ``/v1/health/service/<name>`` returns it.

    ``address`` is the service's address, or the node's when the service has none (as
    Consul's DNS does). ``checks`` holds the node's checks and the service's own.
    """

    node: str
    service_id: str
    service_name: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    checks: list[ServiceCheck]

    @property
    def status(self) -> CheckState:
        """The worst of the instance's checks, node checks included (Consul's aggregate)."""
        return worst_state(check.status for check in self.checks)


@dataclass(frozen=True)
class ServiceHealth:
    """How many instances of a service are in each state."""

    passing: int = 0
    warning: int = 0
    critical: int = 0
    maintenance: int = 0

    @classmethod
    def of(cls, instances: Iterable[ServiceInstance]) -> ServiceHealth:
        """Count ``instances`` by their :attr:`ServiceInstance.status`."""
        counts: dict[CheckState, int] = dict.fromkeys(_RANK, 0)
        for instance in instances:
            counts[instance.status] += 1
        return cls(**counts)

    @property
    def total(self) -> int:
        return self.passing + self.warning + self.critical + self.maintenance

    def __str__(self) -> str:
        text = f"{self.total} instance(s): {self.passing} passing, {self.warning} warning, {self.critical} critical"
        return text + (f", {self.maintenance} in maintenance" if self.maintenance else "")


# ---------------------------------------------------------------------------
# The protocol


class ConsulHealth(Protocol):
    """The Consul reads nomadwn needs."""

    def service_health(self, name: str, tag: str | None = None) -> list[ServiceInstance]:
        """Every registered instance of service ``name`` (only those tagged ``tag`` if given)."""
        ...


# ---------------------------------------------------------------------------
# Decoding Consul's JSON into the value types


def _truncate(text: str) -> str:
    text = text.strip()
    if len(text) <= OUTPUT_LIMIT:
        return text
    return f"{text[:OUTPUT_LIMIT]}… [{len(text) - OUTPUT_LIMIT} more characters]"


def _state(check_id: str, status: object) -> CheckState:
    if check_id == _NODE_MAINTENANCE or check_id.startswith(_SERVICE_MAINTENANCE):
        return "maintenance"
    return _STATES.get(str(status), "critical")


def _check(raw: Mapping[str, Any]) -> ServiceCheck:
    check_id = str(raw["CheckID"])
    return ServiceCheck(
        name=str(raw.get("Name") or check_id),
        check_id=check_id,
        status=_state(check_id, raw.get("Status")),
        output=_truncate(str(raw.get("Output") or "")),
        service_id=str(raw.get("ServiceID") or ""),
    )


def _instance(raw: Mapping[str, Any]) -> ServiceInstance:
    node = raw["Node"]
    service = raw["Service"]
    return ServiceInstance(
        node=str(node["Node"]),
        service_id=str(service["ID"]),
        service_name=str(service["Service"]),
        address=str(service.get("Address") or node.get("Address") or ""),
        port=int(service.get("Port") or 0),
        tags=[str(tag) for tag in service.get("Tags") or []],
        meta={str(key): str(value) for key, value in (service.get("Meta") or {}).items()},
        checks=[_check(check) for check in raw.get("Checks") or []],
    )


# ---------------------------------------------------------------------------
# The real client


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
    scheme, host, port = _parse_address(settings.address)
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
            instances = [_instance(entry) for entry in entries or []]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._error(
                what,
                f"Consul at {self.settings.address} sent an entry nomadwn cannot read ({type(exc).__name__}: {exc})",
                "check that CONSUL_HTTP_ADDR points at a Consul agent",
            ) from exc
        return sorted(instances, key=lambda instance: (instance.node, instance.service_id))


# ---------------------------------------------------------------------------
# Leadership: a Consul session lock


class Leadership(Protocol):
    """Whether this replica may act now: of several replicas, at most one holds the lock."""

    def hold(self) -> bool:
        """Keep (or take) the lock; True only if this replica holds it now.

        Called before every action. Raises :class:`ConsulError` when Consul cannot be
        asked; the caller then treats itself as not the leader.
        """
        ...

    def release(self) -> None:
        """Give the lock up at once (graceful shutdown); never raises for a lock not held."""
        ...

    @property
    def holder(self) -> str | None:
        """Who holds the lock as last seen (None: nobody, or not looked yet); for logs and metrics."""
        ...


SESSION_TTL_MIN: Final = 10.0
"""Consul's smallest session TTL in seconds (``session_ttl_min``, 10s by default)."""
SESSION_TTL_MAX: Final = 86400.0
"""Consul's largest session TTL in seconds (``structs.SessionTTLMax``, 24h)."""
LOCK_DELAY_MAX: Final = 60.0
"""Consul silently caps a session's lock-delay at this many seconds (``structs.MaxLockDelay``)."""

_LOCK_NEEDS: Final = "session:write and key:write on the lock key"
_GO_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

log = logging.getLogger("nomadwn.consul")


def _go_duration(seconds: float) -> str:
    """A Go duration string Consul parses: ``10s``, or whole milliseconds rounded down (``12500ms``)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{math.floor(seconds * 1000)}ms"


def _parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration such as ``10s`` or ``1m30s``; None if it is not one."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"ConsulLock: {name} must be a finite number of seconds, not {value!r}")
    return float(value)


LockState = Literal["follower", "leader", "lost"]


class ConsulLock:
    """:class:`Leadership` over a Consul session and a KV lock: of the replicas sharing ``key``, one acts.

    Each replica owns a Consul session (``PUT /v1/session/create`` with ``TTL`` = ttl/2,
    ``LockDelay``, ``Behavior: release`` and ``Checks: []``, so only the TTL decides
    whether the replica lives) and calls :meth:`hold` before every action. ``hold``
    renews the session (``PUT /v1/session/renew/<id>``), then tries to take the lock
    (``PUT /v1/kv/<key>?acquire=<id>``, the value being ``holder``), and returns True only
    if that acquire just succeeded. A follower then reads who holds the lock
    (``GET /v1/kv/<key>``: ``Session`` and the holder string in ``Value``). The state
    after each ``hold``::

                       True                           True (renewed, acquired)
        ┌──────────┐ ──────────▶ ┌────────┐ ◀──────────────────┐
        │ follower │             │ leader │ ───────────────────┘
        └──────────┘ ◀────────── └────────┘
          ▲    │ ▲   release()        │ False: renew answered 404 or nothing, so the session
          │    │ │                    │ was invalidated (renewals missed for ttl, or it was
          └────┘ │ False              │ destroyed) and the lock released, and a new session could
          False  │                    ▼ not take it back (lock_delay, another replica won); or
          (held  │               ┌────────┐
          by     └────────────── │  lost  │ ── True (new session, acquired) ──▶ leader
          another)               └────────┘    another session holds the key

    ``hold`` raising :class:`ConsulError` changes nothing here (the session is kept and
    renewed next time, or found gone); the caller acts only after a True.

    Time bounds (Consul invalidates a session between TTL and 2×TTL after its last
    renewal, and keeps a released lock from being re-taken for the lock-delay):

    * Safety: a True from ``hold`` is valid for ttl/2 seconds from the moment ``hold`` was
      called. ``hold`` returns False instead of a True that took that long to get.
    * Keeping the lock: the leader must call ``hold`` at least every ttl seconds (in
      practice every ttl/4 or more often).
    * Takeover after a crash: the lock is free again at most ttl + lock_delay seconds after
      the dead leader's last ``hold``; a follower takes it on its next ``hold`` after that.
    * Takeover after :meth:`release`: at once. ``release`` frees the key
      (``?release=<id>``, which sets no lock-delay) before it destroys the session
      (which would).

    ``ttl`` must be at least 20 seconds (Consul's smallest session TTL is 10s);
    ``lock_delay`` is 0 to 60 seconds (Consul caps it at 60s; 15s is Consul's default).
    ``clock`` (monotonic seconds) is injectable for tests. ``session`` replaces the
    requests session py-consul makes, as for :class:`ConsulClient`, whose settings, TLS,
    token handling and error translation this uses.
    """

    def __init__(
        self,
        settings: ConsulSettings,
        key: str,
        *,
        holder: str,
        ttl: float = 20.0,
        lock_delay: float = 15.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(key, str) or not key.strip("/"):
            raise ValueError(f"ConsulLock: key must name a KV key such as 'nomadwn/autoscaler', not {key!r}")
        if key.startswith("/"):
            raise ValueError(f"ConsulLock: key {key!r} must not start with '/'")
        if not isinstance(holder, str) or not holder:
            raise ValueError(f"ConsulLock: holder must be a non-empty string naming this replica, not {holder!r}")
        self.ttl = _seconds("ttl", ttl)
        if not 2 * SESSION_TTL_MIN <= self.ttl <= 2 * SESSION_TTL_MAX:
            raise ValueError(
                f"ConsulLock: ttl must be between {2 * SESSION_TTL_MIN:g} and {2 * SESSION_TTL_MAX:g} seconds,"
                f" not {ttl!r}: the session TTL is ttl/2 (Consul may expire a session up to 2×TTL after"
                f" its last renewal), and Consul's session TTL is {SESSION_TTL_MIN:g}s to {SESSION_TTL_MAX:g}s"
            )
        self.lock_delay = _seconds("lock_delay", lock_delay)
        if not 0 <= self.lock_delay <= LOCK_DELAY_MAX:
            raise ValueError(
                f"ConsulLock: lock_delay must be between 0 and {LOCK_DELAY_MAX:g} seconds (Consul caps it),"
                f" not {lock_delay!r}"
            )
        self.key = key
        self.holder_name = holder
        self.session_ttl = _parse_go_duration(_go_duration(self.ttl / 2)) or self.ttl / 2
        self._clock = clock
        self._client = ConsulClient(settings, session=session)
        self._session_id: str | None = None
        self._state: LockState = "follower"
        self._holder: str | None = None
        self._warned_ttl: str | None = None

    def __repr__(self) -> str:
        return (
            f"ConsulLock({self.key!r}, holder={self.holder_name!r}, ttl={self.ttl:g}, lock_delay={self.lock_delay:g},"
            f" {self._client.settings!r})"
        )

    # -- Leadership ------------------------------------------------------------------------

    @property
    def holder(self) -> str | None:
        """The holder string of whoever held the lock at the last :meth:`hold` (None: free)."""
        return self._holder

    @property
    def state(self) -> LockState:
        """``follower``, ``leader`` or ``lost`` (see the class docstring), as of the last :meth:`hold`."""
        return self._state

    def hold(self) -> bool:
        """Renew this replica's session (or make one), then try to take the lock: True iff it is ours now."""
        was = self._state
        started = self._clock()
        session_id, renewed = self._live_session()
        acquired = self._call(
            f"taking the lock {self.key!r} for {self.holder_name!r}",
            lambda: self._client._py.kv.put(self.key, self.holder_name, acquire=session_id),
        )
        if acquired is True:
            self._holder = self.holder_name
            took = self._clock() - started
            if took >= self.session_ttl:
                # Consul only promises the session for its TTL after our renewal: too late to act on.
                log.warning(
                    "lock %r: holding it took %.1fs, not less than the session TTL of %gs: not acting on it",
                    self.key,
                    took,
                    self.session_ttl,
                )
                return False
            if self._state != "leader":
                log.info("lock %r: %s is the leader now", self.key, self.holder_name)
            self._state = "leader"
            return True
        self._holder = self._read_holder()
        self._state = "lost" if was == "leader" else "follower"
        if was == "leader":
            log.warning(
                "lock %r: %s lost the lock (%s; now held by %r): it must stop acting",
                self.key,
                self.holder_name,
                "another session took the key"
                if renewed
                else f"its session was gone: renewals missed for {self.ttl:g}s, or it was destroyed",
                self._holder,
            )
        return False

    def release(self) -> None:
        """Free the lock (no lock-delay) and destroy the session; hold() may take the lock again later.

        Raises :class:`ConsulError` only if this replica held the lock (as of the last
        ``hold``) and Consul could not be told; the session then lapses within ttl.
        """
        session_id, self._session_id = self._session_id, None
        was_leader = self._state == "leader"
        self._state = "follower"
        if session_id is None:
            return
        if self._holder == self.holder_name:
            self._holder = None
        errors: list[ConsulError] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            (
                f"releasing the lock {self.key!r} held by {self.holder_name!r}",
                lambda: self._client._py.kv.put(self.key, self.holder_name, release=session_id),
            ),
            (
                f"destroying the Consul session of {self.holder_name!r} for the lock {self.key!r}",
                lambda: self._client._py.session.destroy(session_id),
            ),
        ]
        for what, request in steps:
            try:
                self._call(what, request)
            except ConsulError as exc:
                errors.append(exc)
        if errors and was_leader:
            raise errors[0]
        for error in errors:
            log.warning("lock %r: %s (the session lapses within %gs)", self.key, error, self.ttl)

    # -- resources -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections (does not release the lock)."""
        self._client.close()

    def __enter__(self) -> ConsulLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.release()
        finally:
            self.close()

    # -- the steps -------------------------------------------------------------------------

    def _call(self, what: str, request: Callable[[], T]) -> T:
        return self._client._call(what, request, needs=_LOCK_NEEDS, rejected_hint="check the lock key")

    def _live_session(self) -> tuple[str, bool]:
        """This replica's session, and whether it was renewed (False: it is new, the old one was gone)."""
        if self._session_id is not None:
            session_id = self._session_id
            try:
                answer = self._call(
                    f"renewing the Consul session of {self.holder_name!r} for the lock {self.key!r}",
                    lambda: self._client._py.session.renew(session_id),
                )
            except ConsulError as exc:
                if exc.status != 404:
                    raise
                answer = None  # Consul: "Session id '...' not found"
            if answer:
                self._check_ttl(answer)
                return session_id, True
            self._session_id = None  # invalidated, and with it any lock it held released
        self._session_id = self._create_session()
        return self._session_id, False

    def _create_session(self) -> str:
        # py-consul's session.create sends lower-case fields, whole seconds only and no
        # Behavior for "release"; its HTTP layer and callback are used to send Consul's own.
        body = {
            "Name": f"nomadwn lock {self.key} ({self.holder_name})",
            "TTL": _go_duration(self.ttl / 2),
            "LockDelay": _go_duration(self.lock_delay),
            "Behavior": "release",
            "Checks": [],
        }
        py = self._client._py
        session_id = self._call(
            f"creating a Consul session for {self.holder_name!r} to take the lock {self.key!r}",
            lambda: py.http.put(
                CB.json(is_id=True), "/v1/session/create", data=json.dumps(body), headers=py.prepare_headers()
            ),
        )
        if not isinstance(session_id, str) or not session_id:
            raise self._unreadable(f"creating a Consul session for {self.holder_name!r}", f"session ID {session_id!r}")
        return session_id

    def _check_ttl(self, answer: object) -> None:
        ttl = answer.get("TTL") if isinstance(answer, Mapping) else None
        seconds = _parse_go_duration(ttl) if isinstance(ttl, str) else None
        if seconds is not None and seconds > self.session_ttl and ttl != self._warned_ttl:
            self._warned_ttl = ttl
            log.warning(
                "lock %r: Consul raised the session TTL from %gs to %s (it is under load): a dead leader's lock"
                " may now stay taken for up to %gs",
                self.key,
                self.session_ttl,
                ttl,
                2 * seconds + self.lock_delay,
            )

    def _read_holder(self) -> str | None:
        what = f"reading who holds the lock {self.key!r}"
        answer = self._call(what, lambda: self._client._py.kv.get(self.key))
        try:
            _index, entry = answer
            if not entry or not entry.get("Session"):
                return None
            value = entry.get("Value")
        except (TypeError, ValueError, AttributeError) as exc:
            raise self._unreadable(what, f"{type(exc).__name__}: {exc}") from exc
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return str(value) if value else ""

    def _unreadable(self, what: str, detail: str) -> ConsulError:
        return self._client._error(
            what,
            f"Consul at {self._client.settings.address} sent an answer nomadwn cannot read ({detail})",
            "check that CONSUL_HTTP_ADDR points at a Consul agent",
        )
