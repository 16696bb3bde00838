"""Version-aware rendering: what each Nomad version gets, and the autoscaler without tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from hcl2.utils import SerializationOptions

from nomadwn.errors import ConfigError
from nomadwn.model import site_notes
from nomadwn.render import acl_policies, jobspec_files, render_site
from nomadwn.sitefile import load_site, parse_site
from tests import nomad_rules
from tests.regen_golden import GOLDEN_SITES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "glasgow.yaml"


def _site(version: str, update: dict[str, Any], kind: str = "system") -> dict[str, Any]:
    return {
        "name": "v",
        "nomad": {"version": version, "max_kill_timeout": "49h"},
        "flavours": {
            "node": {
                "kind": kind,
                "image": {"repository": "example/worker", "tag": "1"},
                "htcondor": {"collector": ["cm.example"]},
                "resources": {"cores": 8, "memory": "16GiB"},
                "lifespan": {"retirement": "48h"},
                "update": update,
            }
        },
    }


@pytest.mark.parametrize("version", ["1.10", "2.0"])
@pytest.mark.parametrize("site_file", sorted(GOLDEN_SITES), ids=lambda p: p.stem)
def test_every_golden_job_passes_nomads_rules_with_no_warning(site_file: Path, version: str) -> None:
    """Every rendered job, re-targeted at each supported version, is valid there and warns about nothing."""
    data = yaml.safe_load(site_file.read_text(encoding="utf-8"))
    data["nomad"] = {**(data.get("nomad") or {}), "version": version}
    if version == "1.10":  # no system canaries there: the 2.0 golden site keeps its own
        for f in data["flavours"].values():
            if f["kind"] == "system" and f.get("update"):
                f["update"] = {k: v for k, v in f["update"].items() if k not in ("canary", "auto_promote")}
    site = parse_site(data)
    for rendered in render_site(site):
        errors, warnings = nomad_rules.check(rendered.job.body(), version)
        assert (errors, warnings) == ([], []), f"{site_file.name} {rendered.flavour} on Nomad {version}"


def test_example_jobs_warn_about_nothing_even_without_memory_oversubscription() -> None:
    for rendered in render_site(load_site(EXAMPLE)):
        for version in ("1.10", "2.0"):
            assert nomad_rules.check(rendered.job.body(), version, oversubscription=False) == ([], [])


def test_memory_max_is_noted_because_nomad_warns_without_oversubscription() -> None:
    data = _site("2.0", {"max_parallel": 1})
    data["flavours"]["node"]["resources"]["memory_max"] = "20GiB"
    notes = site_notes(parse_site(data))
    assert [n.path for n in notes] == ["flavours.node.resources.memory_max"]


def test_system_update_on_1_10_renders_only_what_nomad_reads() -> None:
    site = parse_site(_site("1.10", {"max_parallel": 2, "stagger": "5m", "min_healthy_time": "1m"}))
    (job,) = [r.job for r in render_site(site)]
    assert job.Update is not None
    assert job.Update.model_dump(exclude_none=True) == {"MaxParallel": 2, "Stagger": 300_000_000_000}


def test_system_update_on_2_0_renders_the_deployment_with_canary_percent() -> None:
    site = parse_site(_site("2.0", {"max_parallel": 2, "canary": 25, "auto_promote": True, "stagger": "5m"}))
    (job,) = [r.job for r in render_site(site)]
    assert job.Update is not None
    got = job.Update.model_dump(exclude_none=True)
    assert (got["Canary"], got["AutoPromote"], got["MaxParallel"], got["HealthCheck"]) == (25, True, 2, "checks")


@pytest.mark.parametrize(
    ("version", "canary", "message"),
    [
        ("1.10", 1, "Nomad 1.10 gives system jobs no canaries (they need deployments, Nomad 2.0)"),
        ("2.0", 150, "on a system job canary is a percentage of the nodes: 0 to 100"),
    ],
    ids=["1.10-no-canary", "2.0-percent"],
)
def test_system_canary_rules_name_the_version(version: str, canary: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_site(_site(version, {"canary": canary, "auto_promote": True}))
    assert [p.path for p in info.value.problems] == ["flavours.node.update.canary"]
    assert message in info.value.problems[0].message


def test_notes_say_what_1_10_does_with_a_system_update_and_that_1_9_is_eol() -> None:
    notes = site_notes(parse_site(_site("1.9", {"max_parallel": 1, "stagger": "30s"})))
    paths = [n.path for n in notes]
    assert paths == ["nomad.version", "flavours.node.update", "flavours.node.update.stagger"]
    assert "end of life" in notes[0].message
    assert "nomadwn reverts the job itself on failure" in notes[1].message
    assert not site_notes(parse_site(_site("2.0", {"max_parallel": 1})))


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_site(_site("1.8", {}))
    assert info.value.problems[0].path == "nomad.version"


def test_vault_uses_workload_identity_and_a_role_never_policies() -> None:
    site = load_site(ROOT / "tests" / "golden" / "rollout-1.10.yaml")
    body = next(r.job for r in render_site(site) if r.flavour == "node").body()
    task = body["Job"]["TaskGroups"][0]["Tasks"][0]
    # A renewed Vault token needs no restart: the template keeps reading with it (issue 8).
    assert task["Vault"] == {"Role": "condor", "ChangeMode": "noop"}
    assert task["Identities"] == [{"Name": "vault_default", "Audience": ["vault.example"], "TTL": 3_600_000_000_000}]


@pytest.mark.parametrize(
    "site_file", [EXAMPLE, *(ROOT / "tests" / "golden").glob("rollout-*.yaml")], ids=lambda p: p.stem
)
def test_autoscaler_job_carries_no_token(site_file: Path) -> None:
    site = load_site(site_file)
    files = jobspec_files(site, Path("out"))
    texts = {p.name: t for p, t in files.items() if p.name.startswith("autoscaler.") and "policy" not in p.name}
    assert set(texts) == {"autoscaler.json", "autoscaler.nomad.hcl"}
    for text in texts.values():
        lowered = text.lower()
        assert "token" not in lowered, "the autoscaler job must not read or name a token"
    task = json.loads(texts["autoscaler.json"])["Job"]["TaskGroups"][0]["Tasks"][0]
    assert task["Identity"] == {"Env": True, "ChangeMode": "restart"}
    assert task["Consul"] == {}
    (template,) = task["Templates"]  # the Variable holds only the site file
    assert ".site_yaml" in template["EmbeddedTmpl"] and template["DestPath"] == "secrets/site.yaml"
    constraints = json.loads(texts["autoscaler.json"])["Job"]["Constraints"]
    assert {"LTarget": "", "Operand": "distinct_hosts", "RTarget": "true"} in constraints


# Nomad's acl/policy.go: namespace capabilities and variable path capabilities.
_NAMESPACE_CAPABILITIES = {
    "deny", "list-jobs", "parse-job", "read-job", "submit-job", "dispatch-job", "read-logs", "read-fs",
    "alloc-exec", "alloc-node-exec", "alloc-lifecycle", "sentinel-override", "csi-register-plugin",
    "csi-write-volume", "csi-read-volume", "csi-list-volume", "csi-mount-volume", "host-volume-create",
    "host-volume-register", "host-volume-read", "host-volume-write", "host-volume-delete",
    "list-scaling-policies", "read-scaling-policy", "read-job-scaling", "scale-job", "submit-recommendation",
}  # fmt: skip
_VARIABLE_CAPABILITIES = {"list", "read", "write", "destroy", "deny"}


def _nomad_policy_shape(text: str) -> dict[str, set[str]]:
    """Parse a Nomad ACL policy with python-hcl2 and check it as ``acl.Parse`` would; capabilities per namespace."""
    doc = hcl2.loads(text, serialization_options=SerializationOptions(with_comments=False))
    assert set(doc) <= {"namespace", "node", "agent", "operator", "quota", "host_volume", "plugin", "node_pool"}
    out: dict[str, set[str]] = {}
    for block in doc["namespace"]:
        ((label, body),) = ((k, v) for k, v in block.items() if k != "__is_block__")
        name = label.strip('"')
        assert set(body) - {"__is_block__"} <= {"policy", "capabilities", "variables"}
        caps = {c.strip('"') for c in body.get("capabilities", [])}
        assert caps <= _NAMESPACE_CAPABILITIES, (
            f"namespace {name}: unknown capabilities {caps - _NAMESPACE_CAPABILITIES}"
        )
        for variables in body.get("variables", []):
            for path in variables["path"]:
                ((_, rules),) = ((k, v) for k, v in path.items() if k != "__is_block__")
                var_caps = {c.strip('"') for c in rules["capabilities"]}
                assert var_caps <= _VARIABLE_CAPABILITIES
                caps |= {f"variables:{c}" for c in var_caps}
        out[name] = caps
    return out


def test_nomad_policy_grants_the_autoscaler_its_namespaces_only() -> None:
    site = load_site(ROOT / "tests" / "golden" / "rollout-2.0.yaml")
    nomad, consul = acl_policies(site)
    assert (nomad.system, consul.system) == ("nomad", "consul")
    assert _nomad_policy_shape(nomad.rules) == {
        "grid": {"list-jobs", "read-job", "scale-job", "dispatch-job"},
        "ops": {"variables:read"},  # its Variable is outside nomad/jobs/<job id>
    }
    example = load_site(EXAMPLE)
    assert _nomad_policy_shape(acl_policies(example)[0].rules) == {
        "default": {"list-jobs", "read-job", "scale-job", "dispatch-job"}
    }
    assert "-job glasgow-autoscaler" in acl_policies(example)[0].install_command(example, Path("p.hcl"))


def test_the_rules_catch_a_template_that_reads_consul_without_a_consul_identity() -> None:
    body = next(r.job for r in render_site(load_site(EXAMPLE)) if r.flavour == "cntwn").body()
    task = body["Job"]["TaskGroups"][0]["Tasks"][0]
    task["Templates"].append({"EmbeddedTmpl": '{{ key "site/x" }}', "DestPath": "local/x", "ChangeMode": "noop"})
    errors, _ = nomad_rules.check(body, "1.10")
    assert errors == [
        "task worker.condor: a template reads Consul but the task has no consul block or consul_ identity"
    ]


def test_a_healthy_deadline_too_short_for_the_first_passing_check_is_noted() -> None:
    data = _site("2.0", {"min_healthy_time": "4m", "healthy_deadline": "5m"})  # progress_deadline: derived
    notes = site_notes(parse_site(data))  # default check: interval 60s + timeout 60s before the first pass
    assert [n.path for n in notes] == ["flavours.node.update.healthy_deadline"]
    assert "(6m)" in notes[0].message


@pytest.mark.parametrize(
    ("version", "kind", "rendered"),
    [
        ("1.10", "service", True),
        ("2.0", "service", True),
        ("1.10", "system", False),  # Canonicalize gives 1.10 system jobs no strategy
        ("2.0", "system", True),
    ],
)
def test_no_update_block_renders_nomads_default_with_a_deadline_retirement_can_meet(
    version: str, kind: str, rendered: bool
) -> None:
    """Nomad's default strategy has a 10m progress deadline; a 48h retirement needs more.

    api/jobs.go Job.Canonicalize (v1.10.5, v2.0.5) gives service jobs, and system jobs from
    1.11 on, DefaultUpdateStrategy when the job has none. A replacement waits for its old
    allocation to stop (up to kill_timeout), so that deadline would fail every rollout.
    """
    data = _site(version, {}, kind)
    del data["flavours"]["node"]["update"]
    if kind == "service":
        data["flavours"]["node"]["count"] = 2
    site = parse_site(data)
    (job,) = [r.job.body()["Job"] for r in render_site(site)]
    update = job.get("Update")
    if not rendered:
        assert update is None
        return
    kill_ns = job["TaskGroups"][0]["Tasks"][0]["KillTimeout"]
    assert update["ProgressDeadline"] == kill_ns + update["HealthyDeadline"]
    assert (update["MaxParallel"], update["AutoRevert"], update["Canary"]) == (1, False, 0)  # Nomad's own defaults
    errors, warnings = nomad_rules.check(render_site(site)[0].job.body(), version)
    assert (errors, warnings) == ([], [])
