"""The autoscaler's rendered Consul ACL policy on a REAL Consul 1.8 agent with default-deny ACLs.

Consul parses the policy (``PUT /v1/acl/policy`` refuses bad rules with HTTP 400); a
token holding only that policy is what Nomad's workload login would hand the task
(the role bound to the job carries the policy). With it the autoscaler's own leader
lock (:class:`ConsulLock`) is taken and released, and a key outside the lock prefix
is refused: the policy is enough, and no more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from nomadwn.consul_lock import ConsulLock
from nomadwn.consul_settings import ConsulSettings
from nomadwn.render import acl_policies
from nomadwn.sitefile import load_site
from tests.peers import ConsulAgent

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "glasgow.yaml"
MASTER = "7d1c0a52-master-token-acl-test"


@pytest.fixture(scope="module")
def acl_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgent]:
    missing = ConsulAgent.available()
    if missing is not None:
        pytest.fail(missing)  # never skip: the integration suite needs its peers
    config = tmp_path_factory.mktemp("consul-acl") / "acl.json"
    config.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny", "tokens": {"master": MASTER}}}))
    agent = ConsulAgent(extra_args=["-config-file", str(config)])
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def _as_master(agent: ConsulAgent, method: str, path: str, body: object) -> requests.Response:
    return requests.request(method, agent.http_addr + path, json=body, headers={"X-Consul-Token": MASTER}, timeout=10)


@pytest.mark.integration
def test_rendered_consul_policy_parses_and_is_enough_for_the_lock(acl_agent: ConsulAgent) -> None:
    site = load_site(EXAMPLE)
    (policy,) = [p for p in acl_policies(site) if p.system == "consul"]
    created = _as_master(acl_agent, "PUT", "/v1/acl/policy", {"Name": policy.name, "Rules": policy.rules})
    assert created.status_code == 200, created.text
    bad = _as_master(acl_agent, "PUT", "/v1/acl/policy", {"Name": "broken", "Rules": 'key_prefix "x" { policy = '})
    assert bad.status_code != 200  # Consul does parse the rules it is given
    token = _as_master(acl_agent, "PUT", "/v1/acl/token", {"Policies": [{"Name": policy.name}]})
    assert token.status_code == 200, token.text
    secret = token.json()["SecretID"]
    settings = ConsulSettings(address=acl_agent.http_addr, token=secret, timeout=5)
    lock = ConsulLock(settings, site.lock_key, holder="replica-1", ttl=20.0, lock_delay=0.0)
    try:
        assert lock.hold() is True
        assert lock.holder == "replica-1"
    finally:
        lock.release()
        lock.close()
    outside = requests.put(
        f"{acl_agent.http_addr}/v1/kv/nomadwn/other-site/x", data=b"1", headers={"X-Consul-Token": secret}, timeout=10
    )
    assert outside.status_code == 403
