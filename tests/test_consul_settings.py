"""nomadwn.consul without a Consul agent: settings, decoding, and the error translation.

py-consul is replaced by a scriptable stand-in passed to :class:`ConsulClient` (no
``mock.patch``); only the test of what reaches requests uses ``responses``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Final

import consul as py_consul
import pytest
import requests
import responses

from nomadwn.consul import (
    OUTPUT_LIMIT,
    CheckState,
    ServiceCheck,
    ServiceHealth,
    ServiceInstance,
    worst_state,
)
from nomadwn.consul_health import ConsulClient
from nomadwn.consul_settings import ConsulSettings
from nomadwn.errors import ConfigError, ConsulError

TOKEN: Final = "s3cr3t-0f1e-4b2c-token"
ADDRESS: Final = "https://consul.example:8501"
WHAT: Final = "reading the health of service 'condor-master' with tag 'prod'"


# ---------------------------------------------------------------------------
# a scriptable py-consul


class ScriptedHealth:
    """Stands in for ``consul.Consul().health``: each call takes the next scripted answer."""

    def __init__(self, answers: list[object]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str | None]] = []

    def service(self, service: str, *, tag: str | None = None) -> Any:
        self.calls.append((service, tag))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FakePyConsul:
    def __init__(self, *answers: object) -> None:
        self.health = ScriptedHealth(list(answers))


def client_for(*answers: object, **settings: Any) -> ConsulClient:
    values: dict[str, Any] = {"address": ADDRESS, "token": TOKEN, "timeout": 7.0, **settings}
    return ConsulClient(ConsulSettings(**values), api=FakePyConsul(*answers))


# ---------------------------------------------------------------------------
# settings


def test_defaults_from_an_empty_environment() -> None:
    settings = ConsulSettings.from_env({})
    assert settings == ConsulSettings()
    assert settings.address == "http://127.0.0.1:8500"
    assert settings.token is None
    assert settings.verify is True
    assert settings.timeout == 10.0
    assert (settings.ca_cert, settings.client_cert, settings.client_key, settings.namespace) == (None,) * 4


@pytest.mark.parametrize(
    ("env", "address"),
    [
        ({"CONSUL_HTTP_ADDR": "10.0.0.5:8500"}, "http://10.0.0.5:8500"),
        ({"CONSUL_HTTP_ADDR": "http://10.0.0.5:8500"}, "http://10.0.0.5:8500"),
        ({"CONSUL_HTTP_ADDR": "https://consul.example:8501"}, "https://consul.example:8501"),
        ({"CONSUL_HTTP_ADDR": "HTTPS://Consul.Example:8501/"}, "https://consul.example:8501"),
        ({"CONSUL_HTTP_ADDR": "consul.example:8501", "CONSUL_HTTP_SSL": "true"}, "https://consul.example:8501"),
        ({"CONSUL_HTTP_ADDR": "http://consul.example:8501", "CONSUL_HTTP_SSL": "1"}, "https://consul.example:8501"),
        ({"CONSUL_HTTP_ADDR": "https://consul.example:8501", "CONSUL_HTTP_SSL": "false"}, ADDRESS),
        ({"CONSUL_HTTP_SSL": "TRUE"}, "https://127.0.0.1:8500"),
        ({"CONSUL_HTTP_ADDR": "https://consul.example"}, "https://consul.example:443"),
        ({"CONSUL_HTTP_ADDR": "[::1]:8500"}, "http://[::1]:8500"),
        ({"CONSUL_HTTP_ADDR": ""}, "http://127.0.0.1:8500"),
    ],
    ids=[
        "host-port",
        "http",
        "https",
        "case-and-slash",
        "ssl-adds-https",
        "ssl-upgrades-http",
        "ssl-false-keeps-https",
        "ssl-default-address",
        "https-default-port",
        "ipv6",
        "empty-is-unset",
    ],
)
def test_address_from_the_environment(env: dict[str, str], address: str) -> None:
    assert ConsulSettings.from_env(env).address == address


@pytest.mark.parametrize(
    ("flag", "env", "address"),
    [
        ("10.0.0.9:8500", {"CONSUL_HTTP_ADDR": "https://consul.example:8501"}, "http://10.0.0.9:8500"),
        ("10.0.0.9:8501", {"CONSUL_HTTP_SSL": "true"}, "https://10.0.0.9:8501"),
        ("http://10.0.0.9:8500", {"CONSUL_HTTP_SSL": "true"}, "http://10.0.0.9:8500"),
    ],
    ids=["flag-beats-env", "ssl-fills-in-a-missing-scheme", "explicit-http-flag-is-kept"],
)
def test_an_address_flag_beats_the_environment(flag: str, env: dict[str, str], address: str) -> None:
    assert ConsulSettings.from_env(env, address=flag).address == address


@pytest.mark.parametrize(
    "address",
    ["unix:///var/run/consul.sock", "ftp://consul.example:21", "http://", "consul.example:port", "http://c:8500/x"],
    ids=["unix", "ftp", "no-host", "bad-port", "path-prefix"],
)
def test_a_bad_address_is_a_config_error(address: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ConsulSettings.from_env({"CONSUL_HTTP_ADDR": address})
    assert str(caught.value) == (
        "Consul settings: 1 problem(s)\n"
        f"  address: {address!r} is not a Consul HTTP address such as 127.0.0.1:8500 or"
        " https://consul.example:8501 (set CONSUL_HTTP_ADDR; unix sockets and path prefixes are not supported)"
    )


def test_every_variable_is_read() -> None:
    env = {
        "CONSUL_HTTP_ADDR": "consul.example:8501",
        "CONSUL_HTTP_SSL": "true",
        "CONSUL_HTTP_TOKEN": TOKEN,
        "CONSUL_CACERT": "/etc/consul/ca.pem",
        "CONSUL_CLIENT_CERT": "/etc/consul/cli.pem",
        "CONSUL_CLIENT_KEY": "/etc/consul/cli-key.pem",
        "CONSUL_HTTP_SSL_VERIFY": "false",
        "CONSUL_NAMESPACE": "htcondor",
    }
    assert ConsulSettings.from_env(env) == ConsulSettings(
        address=ADDRESS,
        token=TOKEN,
        ca_cert="/etc/consul/ca.pem",
        client_cert="/etc/consul/cli.pem",
        client_key="/etc/consul/cli-key.pem",
        verify=False,
        namespace="htcondor",
    )


def test_explicit_overrides_beat_the_environment_and_none_is_ignored() -> None:
    env = {"CONSUL_HTTP_TOKEN": "env-token", "CONSUL_NAMESPACE": "env-ns", "CONSUL_HTTP_SSL_VERIFY": "false"}
    settings = ConsulSettings.from_env(env, token="flag-token", namespace=None, verify=True, timeout=2.5)
    assert (settings.token, settings.namespace, settings.verify, settings.timeout) == (
        "flag-token",
        "env-ns",
        True,
        2.5,
    )


def test_an_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="unknown Consul setting\\(s\\): tokn; known: address, ca_cert"):
        ConsulSettings.from_env({}, tokn="x")


def test_the_token_file_beats_the_token_variable_as_in_consul(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    env = {"CONSUL_HTTP_TOKEN": "env-token", "CONSUL_HTTP_TOKEN_FILE": str(path)}
    assert ConsulSettings.from_env(env).token == TOKEN
    path.write_text("\n")  # an empty file is ignored
    assert ConsulSettings.from_env(env).token == "env-token"


def test_a_token_flag_means_the_token_file_is_not_read(tmp_path: Path) -> None:
    env = {"CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "missing")}
    assert ConsulSettings.from_env(env, token="flag-token").token == "flag-token"


def test_an_unreadable_token_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing"
    with pytest.raises(ConfigError) as caught:
        ConsulSettings.from_env({"CONSUL_HTTP_TOKEN_FILE": str(path)})
    assert str(caught.value) == (
        "environment: 1 problem(s)\n"
        f"  CONSUL_HTTP_TOKEN_FILE: cannot read the token file {path}: No such file or directory"
    )


def test_bad_booleans_are_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        ConsulSettings.from_env({"CONSUL_HTTP_SSL": "yes please", "CONSUL_HTTP_SSL_VERIFY": "flase"})
    assert str(caught.value) == (
        "environment: 2 problem(s)\n"
        "  CONSUL_HTTP_SSL: 'yes please' is not a boolean: use true or false\n"
        "  CONSUL_HTTP_SSL_VERIFY: 'flase' is not a boolean: use true or false"
    )


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"timeout": 0}, "timeout: must be a positive number of seconds, not 0"),
        ({"timeout": float("nan")}, "timeout: must be a positive number of seconds, not nan"),
        ({"client_key": "k.pem"}, "client_key: a client key needs a client certificate: set CONSUL_CLIENT_CERT too"),
    ],
    ids=["zero-timeout", "nan-timeout", "key-without-cert"],
)
def test_constructor_checks_its_arguments(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ConsulSettings(**values)
    assert str(caught.value) == f"Consul settings: 1 problem(s)\n  {problem}"


def test_repr_and_str_mask_the_token() -> None:
    settings = ConsulSettings(address=ADDRESS, token=TOKEN)
    client = ConsulClient(settings, api=FakePyConsul())
    for text in (repr(settings), str(settings), repr(client), str(client)):
        assert TOKEN not in text
    assert repr(settings) == (
        "ConsulSettings(address='https://consul.example:8501', token='<redacted>', ca_cert=None,"
        " client_cert=None, client_key=None, verify=True, namespace=None, timeout=10.0)"
    )
    assert str(settings) == "Consul at https://consul.example:8501 (with a token)"
    assert "token=None" in repr(ConsulSettings())


# ---------------------------------------------------------------------------
# decoding


def entry(
    node: str, service_id: str, tags: list[str], checks: list[dict[str, Any]], address: str = ""
) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": "10.0.0.1", "Datacenter": "dc1"},
        "Service": {
            "ID": service_id,
            "Service": "condor-master",
            "Tags": tags,
            "Address": address,
            "Meta": {"flavour": "cntwn"},
            "Port": 9621,
        },
        "Checks": checks,
    }


def check(check_id: str, status: str, service_id: str = "", output: str = "") -> dict[str, Any]:
    return {
        "CheckID": check_id,
        "Name": f"{check_id} name",
        "Status": status,
        "Output": output,
        "ServiceID": service_id,
    }


def test_entries_become_instances_sorted_by_node_and_id() -> None:
    payload = [
        entry("node-b", "svc-2", ["cntwn", "prod"], [check("serfHealth", "passing"), check("c2", "warning", "svc-2")]),
        entry("node-a", "svc-1", ["cntwn", "prod"], [check("serfHealth", "passing")], address="10.9.9.9"),
    ]
    client = client_for(("42", payload))
    got = client.service_health("condor-master", tag="prod")
    assert got == [
        ServiceInstance(
            node="node-a",
            service_id="svc-1",
            service_name="condor-master",
            address="10.9.9.9",
            port=9621,
            tags=["cntwn", "prod"],
            meta={"flavour": "cntwn"},
            checks=[ServiceCheck("serfHealth name", "serfHealth", "passing", "", "")],
        ),
        ServiceInstance(
            node="node-b",
            service_id="svc-2",
            service_name="condor-master",
            address="10.0.0.1",  # the service has no address of its own: the node's
            port=9621,
            tags=["cntwn", "prod"],
            meta={"flavour": "cntwn"},
            checks=[
                ServiceCheck("serfHealth name", "serfHealth", "passing", "", ""),
                ServiceCheck("c2 name", "c2", "warning", "", "svc-2"),
            ],
        ),
    ]
    assert [i.status for i in got] == ["passing", "warning"]
    assert got[1].checks[0].node_level and not got[1].checks[1].node_level


def test_an_unknown_service_is_an_empty_list() -> None:
    assert client_for(("7", []), ("7", None)).service_health("nope") == []


def test_the_tag_is_passed_through() -> None:
    fake = FakePyConsul(("1", []), ("1", []))
    client = ConsulClient(ConsulSettings(), api=fake)
    client.service_health("condor-master")
    client.service_health("condor-master", tag="prod")
    assert fake.health.calls == [("condor-master", None), ("condor-master", "prod")]


def test_an_empty_name_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        client_for().service_health("")


def test_long_output_is_cut_and_says_by_how_much() -> None:
    long = "x" * (OUTPUT_LIMIT + 234)
    payload = [entry("n", "s", [], [check("c", "critical", "s", output=f"\n{long}\n")])]
    (instance,) = client_for(("1", payload)).service_health("condor-master")
    assert instance.checks[0].output == "x" * OUTPUT_LIMIT + "… [234 more characters]"


@pytest.mark.parametrize(
    ("checks", "status"),
    [
        ([], "passing"),
        ([check("a", "passing"), check("b", "passing", "s")], "passing"),
        ([check("a", "passing"), check("b", "warning", "s")], "warning"),
        ([check("serfHealth", "critical"), check("b", "passing", "s")], "critical"),  # a node check counts
        ([check("a", "warning"), check("b", "critical", "s")], "critical"),
        ([check("_node_maintenance", "critical"), check("b", "passing", "s")], "maintenance"),
        ([check("_service_maintenance:s", "critical", "s"), check("b", "critical", "s")], "maintenance"),
        ([check("a", "passing"), check("b", "bogus", "s")], "critical"),
    ],
    ids=["none", "all-passing", "warning", "node-critical", "critical", "node-maint", "service-maint", "unknown"],
)
def test_status_is_consuls_aggregate(checks: list[dict[str, Any]], status: CheckState) -> None:
    (instance,) = client_for(("1", [entry("n", "s", [], checks)])).service_health("condor-master")
    assert instance.status == status


def test_worst_state_orders_states() -> None:
    assert worst_state([]) == "passing"
    assert worst_state(["warning", "passing"]) == "warning"
    assert worst_state(["maintenance", "critical"]) == "maintenance"


def test_service_health_counts_instances() -> None:
    payload = [
        entry("n1", "a", [], [check("c", "passing", "a")]),
        entry("n1", "b", [], [check("c", "warning", "b")]),
        entry("n2", "c", [], [check("c", "critical", "c")]),
        entry("n2", "d", [], [check("c", "critical", "d")]),
        entry("n3", "e", [], []),
    ]
    health = ServiceHealth.of(client_for(("1", payload)).service_health("condor-master"))
    assert health == ServiceHealth(passing=2, warning=1, critical=2, maintenance=0)
    assert health.total == 5
    assert str(health) == "5 instance(s): 2 passing, 1 warning, 2 critical"
    assert str(ServiceHealth(maintenance=1)) == "1 instance(s): 0 passing, 0 warning, 0 critical, 1 in maintenance"


@pytest.mark.parametrize(
    "answer",
    [("1", [{"Node": {}}]), ("1", [{"Node": {"Node": "n"}, "Service": {"ID": "s"}}]), ("1", "oops"), None],
    ids=["no-service", "no-name", "not-a-list", "no-index"],
)
def test_an_unreadable_answer_is_a_consul_error(answer: object) -> None:
    with pytest.raises(ConsulError) as caught:
        client_for(answer).service_health("condor-master")
    assert str(caught.value).startswith(
        "reading the health of service 'condor-master': Consul at https://consul.example:8501 sent an entry"
        " nomadwn cannot read ("
    )
    assert str(caught.value).endswith("): check that CONSUL_HTTP_ADDR points at a Consul agent")
    assert caught.value.status is None


# ---------------------------------------------------------------------------
# the error translation: exact text for each kind of failure

CONNECT_HINT: Final = "is the agent running? check CONSUL_HTTP_ADDR"
TIMEOUT: Final = (
    f"{WHAT}: Consul at {ADDRESS} did not answer within 7s:"
    " is the agent overloaded or stuck? check CONSUL_HTTP_ADDR, or raise the timeout"
)
SSL_VERIFY: Final = (
    "HTTPSConnectionPool(host='consul.example', port=8501): Max retries exceeded with url: /v1/health/service/x"
    " (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"
    " failed: unable to get local issuer certificate (_ssl.c:1006)')))"
)
SSL_PLAIN_PORT: Final = (
    "(Caused by SSLError(SSLError(1, '[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)')))"
)
SSL_CLIENT_CERT: Final = (
    "(Caused by SSLError(SSLError(1, '[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate (_ssl.c:2580)')))"
)

CASES: Final[list[tuple[str, BaseException, str, int | None]]] = [
    (
        "connection-refused",
        requests.exceptions.ConnectionError("Max retries exceeded (Connection refused)"),
        f"{WHAT}: cannot reach Consul at {ADDRESS}: {CONNECT_HINT}",
        None,
    ),
    ("connect-timeout", requests.exceptions.ConnectTimeout("timed out"), TIMEOUT, None),
    ("read-timeout", requests.exceptions.ReadTimeout("read timed out"), TIMEOUT, None),
    ("py-consul-timeout", py_consul.Timeout(), TIMEOUT, None),
    (
        "tls-verify",
        requests.exceptions.SSLError(SSL_VERIFY),
        f"{WHAT}: TLS verification failed for Consul at {ADDRESS} (certificate verify failed: unable to get local"
        " issuer certificate): set CONSUL_CACERT to the CA bundle that signed the agent's certificate"
        " (CONSUL_HTTP_SSL_VERIFY=false only for testing)",
        None,
    ),
    (
        "tls-to-plain-port",
        requests.exceptions.SSLError(SSL_PLAIN_PORT),
        f"{WHAT}: TLS handshake with Consul at {ADDRESS} failed (wrong version number): that port does not speak"
        " TLS: use http:// in CONSUL_HTTP_ADDR, or the agent's https port",
        None,
    ),
    (
        "tls-client-cert",
        requests.exceptions.SSLError(SSL_CLIENT_CERT),
        f"{WHAT}: TLS handshake with Consul at {ADDRESS} failed (sslv3 alert bad certificate): the agent refused"
        " the client certificate: set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY to a certificate signed by the"
        " agent's CA",
        None,
    ),
    (
        "tls-other",
        requests.exceptions.SSLError("EOF occurred in violation of protocol"),
        f"{WHAT}: TLS handshake with Consul at {ADDRESS} failed (SSLError): check CONSUL_CACERT,"
        " CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY",
        None,
    ),
    (
        "request-other",
        requests.exceptions.ChunkedEncodingError("Connection broken"),
        f"{WHAT}: the request to Consul at {ADDRESS} failed (ChunkedEncodingError): check CONSUL_HTTP_ADDR and"
        " the TLS settings",
        None,
    ),
    (
        "missing-ca-file",
        OSError("Could not find a suitable TLS CA certificate bundle, invalid path: /etc/consul/ca.pem"),
        f"{WHAT}: cannot use the TLS files for Consul at {ADDRESS} (Could not find a suitable TLS CA certificate"
        " bundle, invalid path: /etc/consul/ca.pem): check that CONSUL_CACERT, CONSUL_CLIENT_CERT and"
        " CONSUL_CLIENT_KEY name readable PEM files",
        None,
    ),
    (
        "acl-denied",
        py_consul.ACLPermissionDenied("ACL not found"),
        f"{WHAT}: Consul at {ADDRESS} denied permission (HTTP 403: ACL not found): check CONSUL_HTTP_TOKEN is a"
        " valid token with service:read and node:read",
        403,
    ),
    (
        "acl-disabled",
        py_consul.ACLDisabled("ACL support disabled"),
        f"{WHAT}: Consul at {ADDRESS} refused the request (HTTP 401: ACL support disabled): check CONSUL_HTTP_TOKEN",
        401,
    ),
    (
        "not-found",
        py_consul.NotFound(""),
        f"{WHAT}: Consul at {ADDRESS} answered HTTP 404 (no message): check that CONSUL_HTTP_ADDR points at a"
        " Consul agent's HTTP API",
        404,
    ),
    (
        "namespace-on-oss",
        py_consul.exceptions.BadRequest(
            '400 Bad request: Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature'
        ),
        f'{WHAT}: Consul at {ADDRESS} rejected the request (HTTP 400: Bad request: Invalid header: "X-Consul-'
        'Namespace" - Namespaces are a Consul Enterprise feature): namespaces need Consul Enterprise: unset'
        " CONSUL_NAMESPACE",
        400,
    ),
    (
        "http-to-https-port",
        py_consul.exceptions.BadRequest("400 Client sent an HTTP request to an HTTPS server.\n"),
        f"{WHAT}: Consul at {ADDRESS} rejected the request (HTTP 400: Client sent an HTTP request to an HTTPS"
        " server.): that port speaks https: use https:// in CONSUL_HTTP_ADDR or set CONSUL_HTTP_SSL=true",
        400,
    ),
    (
        "bad-request",
        py_consul.exceptions.BadRequest("400 Bad request: something odd"),
        f"{WHAT}: Consul at {ADDRESS} rejected the request (HTTP 400: Bad request: something odd): check the"
        " service name and tag",
        400,
    ),
    (
        "other-4xx-echoing-the-token",
        py_consul.exceptions.ClientError(f"429 too many requests for token {TOKEN}"),
        f"{WHAT}: Consul at {ADDRESS} rejected the request (HTTP 429: too many requests for token <token>):"
        " check the service name and tag",
        429,
    ),
    (
        "server-error",
        py_consul.ConsulException("500 No cluster leader"),
        f"{WHAT}: Consul at {ADDRESS} failed (HTTP 500: No cluster leader): check the agent's log; does the"
        " cluster have a leader?",
        500,
    ),
    (
        "unreadable-json",
        py_consul.ConsulException("Failed to decode JSON: <html>" + "z" * 300),
        f"{WHAT}: Consul at {ADDRESS} sent an answer nomadwn cannot read (Failed to decode JSON: <html>"
        + "z" * 171
        + "…): check that CONSUL_HTTP_ADDR points at a Consul agent",
        None,
    ),
]


@pytest.mark.parametrize(("exc", "message", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_failure_has_its_message(exc: BaseException, message: str, status: int | None) -> None:
    with pytest.raises(ConsulError) as caught:
        client_for(exc).service_health("condor-master", tag="prod")
    assert str(caught.value) == message
    assert caught.value.status == status
    assert caught.value.__cause__ is exc
    assert TOKEN not in str(caught.value)


def test_no_token_gets_a_different_hint() -> None:
    fake = FakePyConsul(py_consul.ACLPermissionDenied("Permission denied"))
    with pytest.raises(ConsulError) as caught:
        ConsulClient(ConsulSettings(address=ADDRESS), api=fake).service_health("condor-master")
    assert str(caught.value).endswith(
        "(HTTP 403: Permission denied): no token was sent: set CONSUL_HTTP_TOKEN to a token with service:read"
        " and node:read"
    )


# ---------------------------------------------------------------------------
# ... and every exception class py-consul or requests can raise is translated


def _subclasses(module: object, base: type[BaseException]) -> list[type[BaseException]]:
    return sorted(
        (cls for _, cls in inspect.getmembers(module, inspect.isclass) if issubclass(cls, base)),
        key=lambda cls: cls.__name__,
    )


RAISED: Final = [
    *_subclasses(py_consul.exceptions, py_consul.ConsulException),
    *_subclasses(requests.exceptions, requests.exceptions.RequestException),
    OSError,
]


def _instance_of(cls: type[BaseException]) -> BaseException:
    if issubclass(cls, json.JSONDecodeError):
        return cls(f"Expecting value {TOKEN}", "doc", 0)
    return cls(f"something went wrong near {TOKEN}")


def test_the_classes_are_found() -> None:
    names = {cls.__name__ for cls in RAISED}
    assert {"ACLDisabled", "ACLPermissionDenied", "BadRequest", "ClientError", "NotFound", "Timeout"} <= names
    assert {"ConnectionError", "ConnectTimeout", "ReadTimeout", "SSLError", "JSONDecodeError"} <= names


@pytest.mark.parametrize("cls", RAISED, ids=[f"{cls.__module__.split('.')[0]}.{cls.__name__}" for cls in RAISED])
def test_every_exception_class_is_mapped(cls: type[BaseException]) -> None:
    exc = _instance_of(cls)
    with pytest.raises(ConsulError) as caught:
        client_for(exc).service_health("condor-master", tag="prod")
    assert str(caught.value).startswith(f"{WHAT}: ")
    assert ADDRESS in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is exc


def test_a_bug_is_not_disguised_as_a_consul_error() -> None:
    with pytest.raises(ZeroDivisionError):
        client_for(ZeroDivisionError("bug")).service_health("condor-master")


def test_api_and_session_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        ConsulClient(ConsulSettings(), api=FakePyConsul(), session=requests.Session())


# ---------------------------------------------------------------------------
# what reaches requests through the real py-consul


@pytest.mark.parametrize(
    ("settings", "verify", "cert"),
    [
        ({}, True, None),
        ({"ca_cert": "/etc/consul/ca.pem"}, "/etc/consul/ca.pem", None),
        ({"ca_cert": "/etc/consul/ca.pem", "verify": False}, False, None),
        ({"client_cert": "/c.pem", "client_key": "/k.pem"}, True, ("/c.pem", "/k.pem")),
        ({"client_cert": "/both.pem"}, True, "/both.pem"),
    ],
    ids=["default-verify", "ca-bundle", "verify-off", "client-cert-and-key", "combined-pem"],
)
def test_settings_reach_requests(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], verify: object, cert: object
) -> None:
    # py-consul reads these when it is not told; the settings must win.
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "elsewhere.example:1")
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "false")
    # requests itself turns verify=True into $REQUESTS_CA_BUNDLE or $CURL_CA_BUNDLE.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    url = f"{ADDRESS}/v1/health/service/condor-master"
    with responses.RequestsMock() as mocked:
        mocked.get(url, json=[], headers={"X-Consul-Index": "3"})
        client = ConsulClient(ConsulSettings(address=ADDRESS, token=TOKEN, timeout=3.5, **settings))
        assert client.service_health("condor-master", tag="prod") == []
        client.close()
        (call,) = mocked.calls
    request: Any = call.request
    assert request.url == f"{url}?tag=prod"
    assert request.headers["X-Consul-Token"] == TOKEN
    assert TOKEN not in request.url
    assert "X-Consul-Namespace" not in request.headers
    assert request.req_kwargs["timeout"] == 3.5
    assert request.req_kwargs["verify"] == verify
    assert request.req_kwargs["cert"] == cert


def test_no_token_sends_no_header_even_with_consul_http_token_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
    with responses.RequestsMock() as mocked:
        mocked.get("http://127.0.0.1:8500/v1/health/service/x", json=[], headers={"X-Consul-Index": "3"})
        ConsulClient(ConsulSettings()).service_health("x")
        (call,) = mocked.calls
    assert "X-Consul-Token" not in call.request.headers


def test_the_namespace_is_sent_as_a_header() -> None:
    with responses.RequestsMock() as mocked:
        mocked.get("http://127.0.0.1:8500/v1/health/service/x", json=[], headers={"X-Consul-Index": "3"})
        ConsulClient(ConsulSettings(namespace="htcondor")).service_health("x")
        (call,) = mocked.calls
    assert call.request.headers["X-Consul-Namespace"] == "htcondor"
    assert call.request.url == "http://127.0.0.1:8500/v1/health/service/x"
