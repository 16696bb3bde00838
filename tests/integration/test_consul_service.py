"""The rendered worker service, registered with a real Consul agent the way Nomad's Consul integration does.

Consul 1.8 rejects unknown fields and invalid service meta with HTTP 400, so a
registration that comes back 200 and reads back unchanged from the health endpoint
shows that what nomadwn renders is what Consul stores.

The registration mirrors Nomad's: the service ID is
``_nomad-task-<alloc id>-<task>-<service>-<port label>``, durations are Go duration
strings, and the check is the job's script check as ``Args``. (Nomad itself registers a
script check as a TTL check and runs the command inside the task; registering it with
``Args`` here also proves that Consul accepts the command as rendered.) Only urllib is used.
"""

from __future__ import annotations

import json
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any, Final

import pytest
import yaml

from nomadwn import nomad_api as api
from nomadwn.errors import ConfigError
from nomadwn.render import build_job
from nomadwn.sitefile import load_site, parse_site
from tests.peers import REPO_ROOT, ConsulAgent

EXAMPLE: Final = REPO_ROOT / "examples" / "glasgow.yaml"
FLAVOURS: Final = ("cntwn", "elastic", "ephemeral")


# ---------------------------------------------------------------------------
# helpers


def go_duration(ns: int) -> str:
    """Nanoseconds as Go's ``time.Duration.String()`` prints them (``60s`` -> ``1m0s``)."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)

    def with_fraction(whole: int, frac: int, digits: int) -> str:
        return f"{whole}.{frac:0{digits}d}".rstrip("0") if frac else str(whole)

    if ns < 1_000_000_000:
        for unit, size, digits in (("ms", 1_000_000, 6), ("µs", 1_000, 3), ("ns", 1, 0)):
            if ns >= size:
                return sign + with_fraction(*divmod(ns, size), digits) + unit
    secs, frac = divmod(ns, 1_000_000_000)
    text = with_fraction(secs % 60, frac, 9) + "s"
    minutes, hours = (secs // 60) % 60, secs // 3600
    if hours:
        text = f"{hours}h{minutes}m{text}"
    elif minutes:
        text = f"{minutes}m{text}"
    return sign + text


def _request(agent: ConsulAgent, method: str, path: str, body: Any = None) -> tuple[int, str]:
    """One HTTP call to the agent; returns (status, body text) without raising on 4xx/5xx."""
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    req = urllib.request.Request(agent.http_addr + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", errors="replace")


def _port(job: api.Job, label: str) -> int:
    """The port Nomad would register: the static host port, else the mapped port in the task."""
    for network in job.TaskGroups[0].Networks or []:
        for port in [*(network.ReservedPorts or []), *(network.DynamicPorts or [])]:
            if port.Label == label:
                value = port.Value or port.To
                assert value is not None
                return value
    raise AssertionError(f"no port labelled {label!r}")


def registration(job: api.Job, alloc_id: str) -> dict[str, Any]:
    """The body of PUT /v1/agent/service/register for the job's (only) service."""
    task = job.TaskGroups[0].Tasks[0]
    service = task.Services[0]
    check = service.Checks[0]
    return {
        "ID": f"_nomad-task-{alloc_id}-{task.Name}-{service.Name}-{service.PortLabel}",
        "Name": service.Name,
        "Tags": list(service.Tags),
        "Meta": dict(service.Meta or {}),
        "Port": _port(job, service.PortLabel),
        "Address": "127.0.0.1",
        "Checks": [
            {
                "Name": check.Name,
                "Args": [check.Command or "", *(check.Args or [])],
                "Interval": go_duration(check.Interval),
                "Timeout": go_duration(check.Timeout),
            }
        ],
    }


def register(agent: ConsulAgent, body: dict[str, Any]) -> tuple[int, str]:
    return _request(agent, "PUT", "/v1/agent/service/register", body)


def health_entry(agent: ConsulAgent, name: str, tag: str, service_id: str) -> dict[str, Any]:
    """The /v1/health/service entry of ``service_id``, found through the ``tag`` filter."""
    query = urllib.parse.urlencode({"tag": tag})
    status, text = _request(agent, "GET", f"/v1/health/service/{urllib.parse.quote(name, safe='')}?{query}")
    assert status == 200, text
    entries = [e for e in json.loads(text) if e["Service"]["ID"] == service_id]
    assert len(entries) == 1, f"{service_id} not returned for tag {tag!r}: {text}"
    entry: dict[str, Any] = entries[0]
    return entry


def example_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def registered(consul: ConsulAgent) -> Iterator[list[str]]:
    """Service IDs a test registered; deregistered afterwards."""
    ids: list[str] = []
    yield ids
    for service_id in ids:
        _request(consul, "PUT", f"/v1/agent/service/deregister/{urllib.parse.quote(service_id, safe='')}")


@pytest.mark.integration
def test_go_duration_matches_go() -> None:
    s = 1_000_000_000
    assert go_duration(60 * s) == "1m0s"
    assert go_duration(5 * s) == "5s"
    assert go_duration(90 * s) == "1m30s"
    assert go_duration(3600 * s) == "1h0m0s"
    assert go_duration(72 * 3600 * s + 1) == "72h0m0.000000001s"
    assert go_duration(1_500_000) == "1.5ms"
    assert go_duration(0) == "0s"


# ---------------------------------------------------------------------------
# every example flavour


@pytest.mark.integration
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_rendered_service_is_accepted_and_read_back(consul: ConsulAgent, registered: list[str], flavour: str) -> None:
    site = load_site(EXAMPLE)
    job = build_job(site, flavour)
    service = job.TaskGroups[0].Tasks[0].Services[0]
    body = registration(job, str(uuid.uuid4()))
    assert body["Checks"][0]["Interval"] == "1m0s"  # the example's 60s, as Go prints it

    status, text = register(consul, body)
    assert status == 200, f"Consul refused the {flavour} service: {text}"
    registered.append(body["ID"])

    for tag in service.Tags:
        entry = health_entry(consul, service.Name, tag, body["ID"])
        assert entry["Service"]["Service"] == service.Name
        assert entry["Service"]["Tags"] == service.Tags
        assert (entry["Service"]["Meta"] or {}) == (service.Meta or {})
        assert entry["Service"]["Port"] == body["Port"]
        checks = [c for c in entry["Checks"] if c["ServiceID"] == body["ID"]]
        assert [c["Name"] for c in checks] == ["startd"]
    if flavour == "elastic":
        # No scrape hints on the condor service: the metrics port is a service of its own
        # (tests/integration/test_monitoring_peers.py has Prometheus discover it through Consul).
        assert service.Meta is None
        metrics = job.TaskGroups[0].Tasks[0].Services[1]
        assert (metrics.Name, metrics.PortLabel) == ("condor-master-metrics", "metrics")


# ---------------------------------------------------------------------------
# tricky tag and meta values survive parse_site -> build_job -> Consul byte for byte

TRICKY: Final = [
    'say "hello"',
    "back\\slash \\n \\\\",
    "unicode é ✓ 日本語 🚀",
    "e\u0301 (decomposed: nomadwn normalises to NFC)",
    "${x} ${NOMAD_ALLOC_ID} $(COLLECTOR_HOST)",
    "  leading and trailing spaces  ",
    "{{ .Data }} %s %% ' ` ; & | < >",
    "k=v,a:b/c?d#e",
]


@pytest.mark.integration
@pytest.mark.parametrize("value", TRICKY)
def test_tricky_tag_and_meta_values_round_trip(consul: ConsulAgent, registered: list[str], value: str) -> None:
    data = example_data()
    data["flavours"]["elastic"]["service"]["tags"] = ["cntwn", value]
    data["flavours"]["elastic"]["service"]["meta"] = {"tricky": value, "plain": "x"}
    job = build_job(parse_site(data), "elastic")
    service = job.TaskGroups[0].Tasks[0].Services[0]
    expected = unicodedata.normalize("NFC", value)
    assert service.Tags == ["cntwn", expected]
    assert service.Meta is not None and service.Meta["tricky"] == expected

    body = registration(job, str(uuid.uuid4()))
    status, text = register(consul, body)
    assert status == 200, text
    registered.append(body["ID"])

    entry = health_entry(consul, service.Name, expected, body["ID"])
    got_tags: list[str] = entry["Service"]["Tags"]
    got_meta: dict[str, str] = entry["Service"]["Meta"]
    assert got_tags == service.Tags
    assert got_meta == service.Meta
    assert got_meta["tricky"].encode("utf-8") == expected.encode("utf-8")


# ---------------------------------------------------------------------------
# meta keys: nomadwn's rule against Consul's


def _with_meta(meta: dict[str, str]) -> dict[str, Any]:
    data = example_data()
    data["flavours"]["elastic"]["service"]["meta"] = meta
    return data


def _raw_body(meta: dict[str, str]) -> dict[str, Any]:
    return {"ID": f"raw-{uuid.uuid4()}", "Name": "condor-master", "Port": 9621, "Tags": ["cntwn"], "Meta": meta}


@pytest.mark.integration
@pytest.mark.parametrize("key", ["bad key", "bad/key", "bad.key", "k" * 129])
def test_meta_key_the_model_rejects_is_rejected_by_consul(consul: ConsulAgent, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_site(_with_meta({key: "v"}))
    assert any(p.path.startswith("flavours.elastic.service.meta") for p in caught.value.problems), caught.value

    # The same key, registered directly: Consul refuses it too.
    status, text = register(consul, _raw_body({key: "v"}))
    assert status == 400, text
    assert "Invalid Service Meta" in text, text


@pytest.mark.integration
@pytest.mark.parametrize(
    "meta",
    [
        pytest.param({"consul-owner": "v"}, id="consul-prefix"),
        pytest.param({"long": "v" * 513}, id="value-513-chars"),
        pytest.param({f"k{i}": "v" for i in range(65)}, id="65-keys"),
    ],
)
def test_meta_consul_rejects_is_rejected_by_the_model(consul: ConsulAgent, meta: dict[str, str]) -> None:
    # What nomadwn would render for this meta (None: the model already refuses it).
    try:
        job: api.Job | None = build_job(parse_site(_with_meta(meta)), "elastic")
    except ConfigError:
        job = None
    # Consul refuses the rendered service (a plain pytest.fail, so that this part is never
    # mistaken for the expected failure below).
    if job is not None:
        status, text = register(consul, registration(job, str(uuid.uuid4())))
        if status != 400 or "Invalid Service Meta" not in text:
            pytest.fail(f"expected Consul to refuse this meta, got {status}: {text}")
    assert job is None, "parse_site accepted service meta that Consul refuses"
