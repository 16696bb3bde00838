"""Rendering: golden files, HCL/JSON equivalence, exactness against Nomad's API, escaping."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomadwn import hcl
from nomadwn.render import build_job, jobspec_files, render_hcl, render_json, render_site
from nomadwn.sitefile import load_site, parse_site
from tests.conftest import EXAMPLE
from tests.hclmap import decode_string, hcl_to_api
from tests.regen_golden import GOLDEN_SITES

SITES = sorted(GOLDEN_SITES)


@pytest.mark.parametrize("site_file", SITES, ids=lambda p: p.name)
def test_golden_files_are_fresh(site_file: Path) -> None:
    """Committed jobspecs equal a fresh render (regenerate: python -m tests.regen_golden)."""
    for path, text in jobspec_files(load_site(site_file), GOLDEN_SITES[site_file]).items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run python -m tests.regen_golden"


@pytest.mark.parametrize("site_file", SITES, ids=lambda p: p.name)
def test_hcl_and_json_are_equivalent_field_by_field(site_file: Path) -> None:
    for rendered in render_site(load_site(site_file)):
        assert hcl_to_api(rendered.hcl) == json.loads(rendered.json), rendered.flavour


def test_rendering_is_byte_stable() -> None:
    site = load_site(SITES[0])
    first = [(r.hcl, r.json) for r in render_site(site)]
    assert first == [(r.hcl, r.json) for r in render_site(load_site(SITES[0]))]


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    out = [(path, value)]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _walk(v, f"{path}[{i}]")
    return out


DURATION_KEYS = {
    "Interval",
    "Timeout",
    "Grace",
    "KillTimeout",
    "Delay",
    "MaxDelay",
    "Stagger",
    "MinHealthyTime",
    "HealthyDeadline",
    "ProgressDeadline",
}


@pytest.mark.parametrize("site_file", SITES, ids=lambda p: p.name)
def test_json_is_exact_for_nomads_api(site_file: Path) -> None:
    for rendered in render_site(load_site(site_file)):
        body = json.loads(rendered.json)
        job = body["Job"]
        for path, value in _walk(body):
            key = path.rsplit(".", 1)[-1]
            if key in DURATION_KEYS and "Config" not in path:
                assert isinstance(value, int) and not isinstance(value, bool), f"{path} must be integer ns"
                if key in ("Interval", "Timeout") and ".Checks[" in path:
                    assert value >= 10**9, f"{path}: Nomad rejects checks below 1s"
        group = job["TaskGroups"][0]
        labels = {p["Label"] for n in group["Networks"] for p in n.get("ReservedPorts", []) + n.get("DynamicPorts", [])}
        task = group["Tasks"][0]
        for service in task["Services"]:
            assert service["PortLabel"] in labels
        assert set(task["Config"]["ports"]) <= labels
        mounted = {v["Volume"] for v in task.get("VolumeMounts", [])}
        assert mounted <= set(group.get("Volumes", {}))
        if job["Type"] == "batch":
            assert "Update" not in job and "Update" not in group
        if job["Type"] == "system":
            assert "Scaling" not in group and "Count" not in group and "Spreads" not in job


def test_json_uses_nomads_field_names() -> None:
    job = json.loads(render_json(build_job(load_site(SITES[0]), "elastic")))["Job"]
    task = job["TaskGroups"][0]["Tasks"][0]
    assert task["Services"][0]["PortLabel"] == "condor"
    assert task["Resources"] == {"Cores": 8, "MemoryMB": 16384}
    check = task["Services"][0]["Checks"][0]
    assert (check["Command"], check["Args"], check["Interval"], check["Timeout"]) == (
        "/bin/sh",
        ["/local/nomadwn/health.sh"],
        60_000_000_000,
        60_000_000_000,
    )
    # Restart only on critical (the startd does not answer), never on warning (alive but unfit).
    assert check["CheckRestart"] == {"Limit": 3, "Grace": 120_000_000_000, "IgnoreWarnings": True}
    assert job["TaskGroups"][0]["Scaling"] == {"Min": 0, "Max": 40, "Enabled": True}


def test_fuse_privilege_is_visible_in_the_job() -> None:
    site = load_site(SITES[0])
    hcl_text = render_hcl(site, "ephemeral")
    assert "# PRIVILEGE: CVMFS fuse mode" in hcl_text
    config = build_job(site, "ephemeral").TaskGroups[0].Tasks[0].Config
    assert config["cap_add"] == ["SYS_ADMIN", "MKNOD"]
    assert config["devices"] == [{"host_path": "/dev/fuse", "container_path": "/dev/fuse"}]
    assert "cap_add" not in build_job(site, "cntwn").TaskGroups[0].Tasks[0].Config


def test_worker_config_carries_the_paper_settings_and_lifespan() -> None:
    site = load_site(SITES[0])
    templates = build_job(site, "ephemeral").TaskGroups[0].Tasks[0].Templates
    conf = templates[0].EmbeddedTmpl
    for line in (
        "BASE_CGROUP =",
        "DISCARD_SESSION_KEYRING_ON_STARTUP = FALSE",
        "CCB_ADDRESS = $(COLLECTOR_HOST)",
        'NomadAllocId = "$ENV(NOMAD_ALLOC_ID)"',
        "STARTD_ATTRS = $(STARTD_ATTRS) StartJobs NomadAllocId NomadJobId NomadwnSite NomadwnFlavour",
        "STARTD_NOCLAIM_SHUTDOWN = 1200",
        # retirement 48h: + 10 min vacate, then 15 s per layer (nomadwn.model.ShutdownPlan)
        "MAXJOBRETIREMENTTIME = 173400",
        "MachineMaxVacateTime = 600",
        "STARTD.SHUTDOWN_GRACEFUL_TIMEOUT = 173415",
        "MASTER.SHUTDOWN_GRACEFUL_TIMEOUT = 173430",
        "NOMADWN_MAX_AGE = 43200",
        "UPDATE_INTERVAL = 60",
        "STARTD.DAEMON_SHUTDOWN = (time() - $(NOMADWN_START_TIME)) > $(NOMADWN_MAX_AGE)",
        "StartJobs = True",
        "START = ($(StartJobs)) && (MY.NomadwnHealthy =?= True) && (True)",
        "USER_JOB_WRAPPER = $ENV(NOMAD_TASK_DIR)/nomadwn/job-wrapper.sh",
        "NUM_CPUS = 4",
        "MEMORY = 8192",
        f"DISK = {(20 * 1024 - 100) * 1024}",  # ephemeral_disk less the task logs Nomad keeps there
        "EXECUTE = $ENV(NOMAD_ALLOC_DIR)/condor/execute",
        "use POLICY : HOLD_IF_MEMORY_EXCEEDED",
    ):
        assert line in conf.splitlines()
    secret = [t for t in templates if t.DestPath.startswith("secrets/")]
    assert [t.EmbeddedTmpl for t in secret] == [
        '{{ with nomadVar "nomad/jobs/glasgow-ephemeral" }}{{ .token }}{{ end }}\n'
    ]
    assert secret[0].Perms == "0600"


def test_start_script_stamps_start_time_and_maps_expiry_to_success() -> None:
    site = load_site(SITES[0])
    script = build_job(site, "cntwn").TaskGroups[0].Tasks[0].Templates[1]
    assert script.DestPath == "local/nomadwn/start.sh"
    lines = script.EmbeddedTmpl.splitlines()
    assert "export NOMADWN_START_TIME" in lines
    assert 'if [ "$status" -eq 99 ]; then' in lines
    assert "mount -t cvmfs" not in script.EmbeddedTmpl  # bind mode: the host mounts CVMFS
    fuse = build_job(site, "ephemeral").TaskGroups[0].Tasks[0].Templates[1].EmbeddedTmpl
    assert "for repo in grid.cern.ch atlas.cern.ch cms.cern.ch; do" in fuse


def test_no_secret_material_in_rendered_jobs() -> None:
    for site_file, out_dir in GOLDEN_SITES.items():
        for path, text in jobspec_files(load_site(site_file), out_dir).items():
            assert not re.search(r"eyJ[A-Za-z0-9_-]{5,}\.", text), path
            assert "BEGIN PRIVATE KEY" not in text, path


# ---------------------------------------------------------------------------
# Escaping: any string survives HCL and JSON unchanged.

# No surrogates (not encodable) and no private-use characters (tests/hclmap.py uses two
# of them as placeholders to work around a python-hcl2 bug).
TEXT = st.text(st.characters(exclude_categories=["Cs", "Co"]), max_size=40)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        'q"uote',
        "back\\slash",
        "${x}",
        "$${x}",
        "%{if}",
        "%%{x}",
        "$",
        "\\n",
        "a\nb\tc\r",
        "\x00\x7f",
        "é✓",
    ],
    ids=repr,
)
def test_hcl_string_round_trip_examples(value: str) -> None:
    assert decode_string(hcl.string(value)) == value


@given(TEXT)
def test_hcl_string_round_trips(value: str) -> None:
    assert decode_string(hcl.string(value)) == value


@given(st.lists(TEXT.map(lambda s: s.replace("\r", "")), max_size=5))
def test_hcl_heredoc_round_trips(lines: list[str]) -> None:
    allowed = [line for line in lines if not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line)]
    text = "".join(line + "\n" for line in allowed)
    if text:
        assert decode_string('"' + hcl.heredoc(text) + '"') == text


_IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tags=st.lists(TEXT, max_size=3),
    meta=st.dictionaries(_IDENT, TEXT, max_size=3),
    env=st.dictionaries(_IDENT, TEXT, max_size=3),
    constraint=TEXT,
    start=TEXT.filter(lambda s: s.strip() != "" and not re.search(r"[\x00-\x1f\x7f]", s)),
)
def test_any_user_string_renders_to_equivalent_hcl_and_json(
    tags: list[str],
    meta: dict[str, str],
    env: dict[str, str],
    constraint: str,
    start: str,
) -> None:
    example_data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    flavour = example_data["flavours"]["elastic"]
    flavour["service"]["tags"] = tags
    flavour["service"]["meta"] = meta
    flavour["env"] = env
    flavour["meta"] = meta
    flavour["placement"] = {
        "constraints": [{"attribute": "x" + constraint, "operator": "!=", "value": "v" + constraint}]
    }
    flavour["htcondor"] = {"start": start}
    try:
        site = parse_site(example_data)
    except Exception as exc:  # only secret-looking text may be refused
        assert "secret" in str(exc) or "token" in str(exc), exc
        return
    job = build_job(site, "elastic")
    body = json.loads(render_json(job))
    assert hcl_to_api(render_hcl(site, "elastic", job)) == body
    task = body["Job"]["TaskGroups"][0]["Tasks"][0]
    service = task["Services"][0]

    # What went in comes out, after HCL's Unicode normalisation (applied to both forms).
    def norm(s: str) -> str:
        return unicodedata.normalize("NFC", s)

    assert service["Tags"] == [norm(t) for t in tags]
    assert task.get("Env", {}) == {k: norm(v) for k, v in sorted(env.items())}
    assert body["Job"]["Constraints"][0]["LTarget"] == norm("x" + constraint)
