"""nomadwn.consul against real Consul 1.8.7 dev agents.

Services are registered the way Nomad registers a task's service: the ID is
``_nomad-task-<alloc id>-<group>-<task>-<service>-<port label>``, the meta carries
``external-source: nomad``, and the job's script check becomes a TTL check (TTL =
interval + 31 s, as Nomad does) whose state and output are set through
``PUT /v1/agent/check/pass|warn|fail/<check id>?note=...``.

The main agent runs with ``check_update_interval = "0s"``: by default Consul syncs a
check's new output to the catalog only every 5 minutes unless its status changes too.

A second agent serves https only to clients with a certificate from its CA and has
ACLs on (default deny), to exercise TLS, client certificates, tokens and the errors
nomadwn gives for each.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import pytest
import requests

from nomadwn.consul import CheckState, ServiceCheck, ServiceHealth, ServiceInstance
from nomadwn.consul_health import ConsulClient
from nomadwn.consul_settings import ConsulSettings
from nomadwn.errors import ConsulError
from tests.peers import ConsulAgent

pytestmark = pytest.mark.integration

SERVICE: Final = "condor-master"
TOKEN: Final = "5e3c2f1a-secret-not-for-messages"
MASTER_TOKEN: Final = "b1f0c3d2-master-token"
NOTES: Final = {
    "pass": "StartJobs = true",
    "warn": "StartJobs = false: draining before the lifespan ends",
    "fail": "condor_config_val: timed out talking to the startd",
}
STATE: Final[dict[str, CheckState]] = {"pass": "passing", "warn": "warning", "fail": "critical"}


# ---------------------------------------------------------------------------
# helpers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _put(base: str, path: str, body: Any = None, **params: str) -> None:
    response = requests.put(base + path, json=body, params=params, timeout=10)
    assert response.status_code == 200, f"PUT {path}: HTTP {response.status_code} {response.text}"


def _start(extra_args: list[str]) -> ConsulAgent:
    missing = ConsulAgent.available()
    if missing is not None:
        pytest.fail(missing)  # never skip: the integration suite needs its peers
    agent = ConsulAgent(extra_args=extra_args)
    agent.start()
    return agent


@dataclass(frozen=True)
class Registered:
    """One task's service as Nomad registered it."""

    service_id: str
    check_id: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    state: str  # pass, warn or fail


def register_task(base: str, *, tags: list[str], port: int, state: str, name: str = SERVICE) -> Registered:
    """Register a service and its TTL check as Nomad would, then set the check's state with a note."""
    alloc_id = str(uuid.uuid4())
    service_id = f"_nomad-task-{alloc_id}-workers-condor-{name}-master"
    check_id = "_nomad-check-" + hashlib.sha1(service_id.encode(), usedforsecurity=False).hexdigest()
    meta = {"external-source": "nomad", "flavour": "cntwn", "alloc": alloc_id}
    address = f"192.0.2.{port % 250}"
    _put(
        base,
        "/v1/agent/service/register",
        {
            "ID": service_id,
            "Name": name,
            "Tags": tags,
            "Meta": meta,
            "Port": port,
            "Address": address,
            "Checks": [{"CheckID": check_id, "Name": "startjobs", "TTL": "1m31s"}],
        },
    )
    _put(base, f"/v1/agent/check/{state}/{check_id}", note=NOTES[state])
    return Registered(service_id, check_id, address, port, tags, meta, state)


def deregister(base: str, tasks: list[Registered]) -> None:
    for task in tasks:
        requests.put(f"{base}/v1/agent/service/deregister/{task.service_id}", timeout=10)


def wait_for(read: Any, expected: Any, timeout: float = 5.0) -> Any:
    """Poll ``read()`` until it returns ``expected``: the catalog is synced from the agent asynchronously."""
    deadline = time.monotonic() + timeout
    got = read()
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        got = read()
    return got


def by_check_id(instance: ServiceInstance) -> ServiceInstance:
    return replace(instance, checks=sorted(instance.checks, key=lambda c: c.check_id))


# ---------------------------------------------------------------------------
# the plain dev agent, with Nomad-style registrations


@pytest.fixture(scope="module")
def agent() -> Iterator[ConsulAgent]:
    agent = _start(["-hcl", 'check_update_interval = "0s"'])
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="module")
def workers(agent: ConsulAgent) -> Iterator[list[Registered]]:
    """Three prod instances (passing, warning, critical) and one canary (passing)."""
    tasks = [
        register_task(agent.http_addr, tags=["cntwn", "prod"], port=9621, state="pass"),
        register_task(agent.http_addr, tags=["cntwn", "prod"], port=9622, state="warn"),
        register_task(agent.http_addr, tags=["cntwn", "prod"], port=9623, state="fail"),
        register_task(agent.http_addr, tags=["cntwn", "canary"], port=9624, state="pass"),
    ]
    try:
        yield tasks
    finally:
        deregister(agent.http_addr, tasks)


@pytest.fixture
def client(agent: ConsulAgent) -> Iterator[ConsulClient]:
    with ConsulClient(ConsulSettings(address=agent.http_addr, timeout=5)) as client:
        yield client


def expected_instance(agent: ConsulAgent, task: Registered) -> ServiceInstance:
    return ServiceInstance(
        node=f"nomadwn-test-{agent.http_port}",
        service_id=task.service_id,
        service_name=SERVICE,
        address=task.address,
        port=task.port,
        tags=task.tags,
        meta=task.meta,
        checks=[
            ServiceCheck("startjobs", task.check_id, STATE[task.state], NOTES[task.state], task.service_id),
            ServiceCheck("Serf Health Status", "serfHealth", "passing", "Agent alive and reachable", ""),
        ],
    )


def test_prod_instances_have_their_tags_meta_and_check_states(
    agent: ConsulAgent, workers: list[Registered], client: ConsulClient
) -> None:
    prod = [task for task in workers if "prod" in task.tags]
    expected = sorted((expected_instance(agent, task) for task in prod), key=lambda i: (i.node, i.service_id))

    got = wait_for(lambda: [by_check_id(i) for i in client.service_health(SERVICE, tag="prod")], expected)

    assert got == expected
    assert {i.service_id: i.status for i in got} == {
        prod[0].service_id: "passing",
        prod[1].service_id: "warning",
        prod[2].service_id: "critical",
    }
    assert ServiceHealth.of(got) == ServiceHealth(passing=1, warning=1, critical=1)


def test_the_tag_filters(agent: ConsulAgent, workers: list[Registered], client: ConsulClient) -> None:
    canary = [task.service_id for task in workers if "canary" in task.tags]
    everyone = sorted(task.service_id for task in workers)

    def ids(tag: str | None) -> list[str]:
        return [i.service_id for i in client.service_health(SERVICE, tag=tag)]

    assert ids("canary") == canary
    assert ids(None) == everyone
    assert ids("cntwn") == everyone
    assert ids("no-such-tag") == []


def test_an_unknown_service_is_empty(workers: list[Registered], client: ConsulClient) -> None:
    assert client.service_health("no-such-service") == []
    assert client.service_health("no-such-service", tag="prod") == []


def test_service_maintenance_wins_over_a_passing_check(agent: ConsulAgent, client: ConsulClient) -> None:
    task = register_task(agent.http_addr, tags=["cntwn"], port=9625, state="pass", name="condor-drain")
    try:
        _put(agent.http_addr, f"/v1/agent/service/maintenance/{task.service_id}", enable="true", reason="lifespan")
        statuses = wait_for(
            lambda: [i.status for i in client.service_health("condor-drain")],
            ["maintenance"],
        )
        assert statuses == ["maintenance"]
        (instance,) = client.service_health("condor-drain")
        maintenance = [c for c in instance.checks if c.status == "maintenance"]
        assert [c.check_id for c in maintenance] == [f"_service_maintenance:{task.service_id}"]
        assert maintenance[0].service_id == task.service_id
    finally:
        deregister(agent.http_addr, [task])


def test_an_unreachable_agent_names_the_address_not_the_token() -> None:
    address = f"http://127.0.0.1:{_free_port()}"
    client = ConsulClient(ConsulSettings(address=address, token=TOKEN, timeout=2))
    with pytest.raises(ConsulError) as caught:
        client.service_health(SERVICE, tag="prod")
    assert str(caught.value) == (
        f"reading the health of service 'condor-master' with tag 'prod': cannot reach Consul at {address}:"
        " is the agent running? check CONSUL_HTTP_ADDR"
    )
    assert caught.value.status is None
    assert TOKEN not in str(caught.value)
    assert isinstance(caught.value.__cause__, requests.exceptions.ConnectionError)


def test_the_token_is_a_header_not_part_of_the_url(
    agent: ConsulAgent, workers: list[Registered], monkeypatch: pytest.MonkeyPatch
) -> None:
    # py-consul on its own would send $CONSUL_HTTP_TOKEN instead of the token it is given.
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
    sent: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *args, **kwargs: sent.append(response.request))
    settings = ConsulSettings(address=agent.http_addr, token=TOKEN)
    with ConsulClient(settings, session=session) as client:
        got = client.service_health(SERVICE, tag="canary")

    assert [i.service_id for i in got] == [task.service_id for task in workers if "canary" in task.tags]
    (request,) = sent
    assert request.headers["X-Consul-Token"] == TOKEN
    assert request.url == f"{agent.http_addr}/v1/health/service/condor-master?tag=canary"
    assert TOKEN not in (request.url or "")


def test_a_namespace_needs_consul_enterprise(agent: ConsulAgent) -> None:
    client = ConsulClient(ConsulSettings(address=agent.http_addr, namespace="htcondor"))
    with pytest.raises(ConsulError) as caught:
        client.service_health(SERVICE)
    assert str(caught.value) == (
        f"reading the health of service 'condor-master': Consul at {agent.http_addr} rejected the request"
        ' (HTTP 400: Bad request: Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise'
        " feature): namespaces need Consul Enterprise: unset CONSUL_NAMESPACE"
    )
    assert caught.value.status == 400


# ---------------------------------------------------------------------------
# an agent with https (client certificates required) and ACLs (default deny)


@dataclass(frozen=True)
class Secured:
    agent: ConsulAgent
    https_addr: str
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    certs = tmp_path_factory.mktemp("consul-tls")
    binary = str(ConsulAgent.binary())
    for argv in (["tls", "ca", "create"], ["tls", "cert", "create", "-server"], ["tls", "cert", "create", "-client"]):
        subprocess.run([binary, *argv], cwd=certs, check=True, capture_output=True, timeout=30)
    port = _free_port()
    config = certs / "secured.json"
    config.write_text(
        json.dumps(
            {
                "ports": {"https": port},
                "ca_file": str(certs / "consul-agent-ca.pem"),
                "cert_file": str(certs / "dc1-server-consul-0.pem"),
                "key_file": str(certs / "dc1-server-consul-0-key.pem"),
                "verify_incoming_https": True,
                "acl": {"enabled": True, "default_policy": "deny", "tokens": {"master": MASTER_TOKEN}},
            }
        )
    )
    agent = _start(["-config-file", str(config)])
    try:
        yield Secured(
            agent=agent,
            https_addr=f"https://127.0.0.1:{port}",
            ca=certs / "consul-agent-ca.pem",
            cert=certs / "dc1-client-consul-0.pem",
            key=certs / "dc1-client-consul-0-key.pem",
        )
    finally:
        agent.stop()


def tls_settings(secured: Secured, **overrides: Any) -> ConsulSettings:
    values: dict[str, Any] = {
        "address": secured.https_addr,
        "token": MASTER_TOKEN,
        "ca_cert": str(secured.ca),
        "client_cert": str(secured.cert),
        "client_key": str(secured.key),
        "timeout": 5,
        **overrides,
    }
    return ConsulSettings(**values)


def test_tls_client_certificate_and_token_from_the_environment(secured: Secured, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(MASTER_TOKEN + "\n")
    environ = {
        "CONSUL_HTTP_ADDR": secured.https_addr.removeprefix("https://"),
        "CONSUL_HTTP_SSL": "true",
        "CONSUL_CACERT": str(secured.ca),
        "CONSUL_CLIENT_CERT": str(secured.cert),
        "CONSUL_CLIENT_KEY": str(secured.key),
        "CONSUL_HTTP_TOKEN_FILE": str(token_file),
    }
    with ConsulClient(ConsulSettings.from_env(environ)) as client:
        (instance,) = client.service_health("consul")
    assert instance.node == f"nomadwn-test-{secured.agent.http_port}"
    assert instance.status == "passing"
    assert [c.check_id for c in instance.checks] == ["serfHealth"]


def test_without_permission_consul_filters_instead_of_refusing(secured: Secured) -> None:
    with ConsulClient(tls_settings(secured, token=None)) as client:
        assert client.service_health("consul") == []


def test_an_unknown_token_is_permission_denied_without_the_token(secured: Secured) -> None:
    with pytest.raises(ConsulError) as caught:
        ConsulClient(tls_settings(secured, token=TOKEN)).service_health("consul")
    assert str(caught.value) == (
        f"reading the health of service 'consul': Consul at {secured.https_addr} denied permission"
        " (HTTP 403: ACL not found): check CONSUL_HTTP_TOKEN is a valid token with service:read and node:read"
    )
    assert caught.value.status == 403
    assert TOKEN not in str(caught.value)


def test_an_untrusted_agent_certificate_asks_for_consul_cacert(secured: Secured) -> None:
    with pytest.raises(ConsulError) as caught:
        ConsulClient(tls_settings(secured, ca_cert=None, token=TOKEN)).service_health("consul")
    message = str(caught.value)
    assert message.startswith(
        "reading the health of service 'consul':"
        f" TLS verification failed for Consul at {secured.https_addr} (certificate verify failed"
    )
    assert message.endswith(
        "set CONSUL_CACERT to the CA bundle that signed the agent's certificate"
        " (CONSUL_HTTP_SSL_VERIFY=false only for testing)"
    )
    assert caught.value.status is None
    assert TOKEN not in message


def test_verification_off_trusts_any_agent_certificate(secured: Secured) -> None:
    # requests warns about unverified https; the suite turns warnings into errors.
    with pytest.warns(Warning, match="Unverified HTTPS request"):
        (instance,) = ConsulClient(tls_settings(secured, ca_cert=None, verify=False)).service_health("consul")
    assert instance.service_name == "consul"


def test_a_missing_client_certificate_asks_for_one(secured: Secured) -> None:
    with pytest.raises(ConsulError) as caught:
        ConsulClient(tls_settings(secured, client_cert=None, client_key=None)).service_health("consul")
    assert str(caught.value).startswith(
        f"reading the health of service 'consul': TLS handshake with Consul at {secured.https_addr} failed ("
    )
    assert str(caught.value).endswith(
        "the agent refused the client certificate: set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY to a certificate"
        " signed by the agent's CA"
    )


def test_http_to_the_https_port_says_so(secured: Secured) -> None:
    address = secured.https_addr.replace("https://", "http://")
    with pytest.raises(ConsulError) as caught:
        ConsulClient(tls_settings(secured, address=address)).service_health("consul")
    assert str(caught.value) == (
        f"reading the health of service 'consul': Consul at {address} rejected the request (HTTP 400: Client sent"
        " an HTTP request to an HTTPS server.): that port speaks https: use https:// in CONSUL_HTTP_ADDR or set"
        " CONSUL_HTTP_SSL=true"
    )
    assert caught.value.status == 400


def test_https_to_the_http_port_says_so(secured: Secured) -> None:
    address = secured.agent.http_addr.replace("http://", "https://")
    with pytest.raises(ConsulError) as caught:
        ConsulClient(tls_settings(secured, address=address)).service_health("consul")
    assert str(caught.value).startswith(
        f"reading the health of service 'consul': TLS handshake with Consul at {address} failed ("
    )
    assert str(caught.value).endswith(
        "that port does not speak TLS: use http:// in CONSUL_HTTP_ADDR, or the agent's https port"
    )
