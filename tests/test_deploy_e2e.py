"""End to end: the CLI against the stateful fake Nomad HTTP API (tests/fake_nomad.py).

Each test runs ``nomadwn plan|deploy|status|promote|rollback|stop`` through
CliRunner with ``NOMAD_ADDR`` pointing at a fresh fake, and checks the exit code,
the printed reason and what reached Nomad.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from tests.conftest import EXAMPLE
from tests.fake_consul import FakeConsul
from tests.fake_nomad import FakeNomad
from typer_cli import app

runner = CliRunner()
TOKEN = "e2e-secret-token-1234"


_CONSUL: dict[int, str] = {}  # the fake Consul serving each fake Nomad's service registrations


@pytest.fixture
def fake() -> Iterator[FakeNomad]:
    with FakeNomad(token=TOKEN, step_delay=0.02) as server, FakeConsul(server) as consul:
        _CONSUL[id(server)] = consul.address
        yield server
        del _CONSUL[id(server)]


def cli(fake: FakeNomad, *args: str) -> Result:
    env = {
        "NOMAD_ADDR": fake.address,
        "NOMAD_TOKEN": TOKEN,
        "NOMAD_NAMESPACE": "",
        "NOMAD_REGION": "",
        "CONSUL_HTTP_ADDR": _CONSUL.get(id(fake), "http://127.0.0.1:1"),
        "CONSUL_HTTP_TOKEN": "",
    }
    result = runner.invoke(app, list(args), env=env)
    assert TOKEN not in result.output
    return result


def site_with(tmp_path: Path, **flavour_changes: Mapping[str, object]) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for flavour, changes in flavour_changes.items():
        data["flavours"][flavour].update(changes)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_good_deploy_is_healthy_and_uses_check_and_set(fake: FakeNomad) -> None:
    result = cli(fake, "deploy", str(EXAMPLE), "--timeout", "30s", "--min-healthy-time", "0.5s")
    assert result.exit_code == 0, result.output
    assert (
        "cntwn: healthy: glasgow-cntwn: 2 of 2 nodes on version 0, each passing its Consul checks for 0.5s"
        in result.output
    )
    assert "elastic: healthy: glasgow-elastic: deployment successful, 4/4 worker(s) healthy" in result.output
    assert "ephemeral: healthy: glasgow-ephemeral: 2 ephemeral worker(s) running" in result.output
    assert "burst: healthy: registered a parameterized job: `nomadwn autoscale` dispatches its workers" in result.output
    assert "autoscaler: healthy: glasgow-autoscaler: deployment successful, 2/2 worker(s) healthy" in result.output
    registers = [r for r in fake.requests if r.method in ("POST", "PUT") and r.path == "/v1/jobs"]
    assert len(registers) == 5
    for r in registers:
        assert isinstance(r.body, dict)
        assert r.body["EnforceIndex"] is True and r.body["JobModifyIndex"] == 0 and r.body["PreserveCounts"] is True


def test_redeploy_without_change_registers_nothing(fake: FakeNomad) -> None:
    assert cli(fake, "deploy", str(EXAMPLE), "--timeout", "30s", "--min-healthy-time", "0.5s").exit_code == 0
    fake.settle()
    fake.clear_requests()
    again = cli(fake, "deploy", str(EXAMPLE), "--timeout", "30s", "--min-healthy-time", "0.5s")
    assert again.exit_code == 0, again.output
    assert again.output.count(": no change") == 5
    assert fake.requests_to("POST", "/v1/jobs") == []


def test_redeploy_keeps_a_count_the_autoscaler_set(fake: FakeNomad, tmp_path: Path) -> None:
    assert cli(fake, "deploy", str(EXAMPLE), "elastic", "--timeout", "30s", "--min-healthy-time", "0.5s").exit_code == 0
    fake.settle()
    fake.set_count("glasgow-elastic", "worker", 7)
    fake.settle()
    changed = site_with(tmp_path, elastic={"meta": {"release": "2"}})
    result = cli(fake, "deploy", str(changed), "elastic", "--timeout", "30s", "--min-healthy-time", "0.5s")
    assert result.exit_code == 0, result.output
    job = fake.job("glasgow-elastic")
    assert job is not None and job["TaskGroups"][0]["Count"] == 7
    assert job["Meta"]["release"] == "2"


@pytest.mark.parametrize(
    ("scenario", "flavour", "reason"),
    [
        ("bad_image", "elastic", "Driver Failure: Failed to pull"),
        ("unplaceable", "cntwn", "group worker cannot be placed:"),
        ("failing_check", "elastic", 'healthcheck: check "startd" unhealthy'),
        ("oom", "cntwn", "ran out of memory"),
        ("failing_check", "cntwn", 'healthcheck: check "startd" unhealthy'),  # 1.10: nomadwn's own verdict
    ],
)
def test_failed_deploys_exit_1_with_the_reason(fake: FakeNomad, scenario: str, flavour: str, reason: str) -> None:
    fake.script(f"glasgow-{flavour}", scenario)
    result = cli(fake, "deploy", str(EXAMPLE), flavour, "--timeout", "30s", "--min-healthy-time", "0.5s")
    assert result.exit_code == 1, result.output
    assert reason in result.output
    assert f"{flavour}: failed:" in result.output


def test_plan_exit_codes(fake: FakeNomad) -> None:
    first = cli(fake, "plan", str(EXAMPLE), "cntwn")
    assert first.exit_code == 1, first.output
    assert "cntwn (glasgow-cntwn): added" in first.output
    assert cli(fake, "deploy", str(EXAMPLE), "cntwn", "--timeout", "30s", "--min-healthy-time", "0.5s").exit_code == 0
    fake.settle()
    unchanged = cli(fake, "plan", str(EXAMPLE), "cntwn")
    assert unchanged.exit_code == 0, unchanged.output
    assert "cntwn (glasgow-cntwn): no change" in unchanged.output
    fake.fail_next(status=500, message="rpc error: No cluster leader")
    broken = cli(fake, "plan", str(EXAMPLE), "cntwn")
    assert broken.exit_code == 255
    assert "Nomad answered HTTP 500: rpc error: No cluster leader" in broken.output


def test_wrong_token_is_a_clear_error(fake: FakeNomad) -> None:
    result = runner.invoke(app, ["plan", str(EXAMPLE)], env={"NOMAD_ADDR": fake.address, "NOMAD_TOKEN": "wrong"})
    assert result.exit_code == 255
    assert "permission denied: check that NOMAD_TOKEN is set" in result.output


def test_detach_registers_without_watching(fake: FakeNomad) -> None:
    result = cli(fake, "deploy", str(EXAMPLE), "ephemeral", "--detach")
    assert result.exit_code == 0, result.output
    assert "ephemeral: registered glasgow-ephemeral; not watching (--detach)" in result.output
    assert fake.requests_to("GET", "/v1/job/glasgow-ephemeral/allocations") == []


def test_rollback_reverts_to_the_previous_stable_version(fake: FakeNomad, tmp_path: Path) -> None:
    assert cli(fake, "deploy", str(EXAMPLE), "cntwn", "--timeout", "30s", "--min-healthy-time", "0.5s").exit_code == 0
    fake.settle()
    assert (
        cli(
            fake,
            "deploy",
            str(site_with(tmp_path, cntwn={"meta": {"v": "2"}})),
            "cntwn",
            "--timeout",
            "30s",
            "--min-healthy-time",
            "0.5s",
        ).exit_code
        == 0
    )
    fake.settle()
    result = cli(fake, "rollback", str(EXAMPLE), "cntwn")
    assert result.exit_code == 0, result.output
    assert "reverted glasgow-cntwn from version 1 to version 0" in result.output


def test_stop_and_purge(fake: FakeNomad) -> None:
    assert (
        cli(fake, "deploy", str(EXAMPLE), "ephemeral", "--timeout", "30s", "--min-healthy-time", "0.5s").exit_code == 0
    )
    result = cli(fake, "stop", str(EXAMPLE), "ephemeral", "--purge")
    assert result.exit_code == 0, result.output
    assert "stopped glasgow-ephemeral and purged it" in result.output
    assert fake.job("glasgow-ephemeral") is None


def test_status_without_consul(fake: FakeNomad) -> None:
    assert cli(fake, "deploy", str(EXAMPLE), "cntwn", "--timeout", "30s", "--min-healthy-time", "0.5s").exit_code == 0
    fake.settle()
    result = cli(fake, "status", str(EXAMPLE), "--no-consul", "--no-condor", "--json")
    assert result.exit_code == 0, result.output
    import json

    rows = {r["flavour"]: r for r in json.loads(result.output)["flavours"]}
    assert rows["cntwn"]["registered"] is True and rows["cntwn"]["running"] == 2
    assert rows["elastic"]["job_status"] == "not registered"


def test_promote_a_waiting_canary(fake: FakeNomad, tmp_path: Path) -> None:
    manual = {"update": {"max_parallel": 1, "canary": 1, "auto_promote": False, "auto_revert": True}}
    first = site_with(tmp_path, elastic=manual)
    assert cli(fake, "deploy", str(first), "elastic", "--timeout", "30s").exit_code == 0
    fake.settle()
    second_dir = tmp_path / "v2"
    second_dir.mkdir()
    second = site_with(second_dir, elastic={**manual, "meta": {"release": "2"}})
    detached = cli(fake, "deploy", str(second), "elastic", "--detach")
    assert detached.exit_code == 0, detached.output
    fake.settle()
    deployment = max(fake.deployments("glasgow-elastic"), key=lambda d: int(d["JobVersion"]))
    assert deployment["Status"] == "running" and deployment["TaskGroups"]["worker"]["Promoted"] is False
    result = cli(fake, "promote", str(second), "elastic")
    assert result.exit_code == 0, result.output
    assert f"promoted deployment {deployment['ID']} of glasgow-elastic" in result.output
    assert fake.requests_to("POST", f"/v1/deployment/promote/{deployment['ID']}")
    again = cli(fake, "promote", str(EXAMPLE), "cntwn")
    assert again.exit_code == 1 and "has no running deployment to promote" in again.output


def test_ctrl_c_while_watching_stops_watching_not_the_job(fake: FakeNomad, monkeypatch: pytest.MonkeyPatch) -> None:
    from nomadwn.watch import Watcher

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Watcher, "watch", interrupted)
    result = cli(fake, "deploy", str(EXAMPLE), "cntwn", "--timeout", "30s")
    assert result.exit_code == 130
    assert "stopped watching; anything already submitted keeps running in Nomad" in result.output
    assert fake.job("glasgow-cntwn") is not None  # registered, and not stopped
    assert fake.requests_to("DELETE", "/v1/job/glasgow-cntwn") == []


# ---------------------------------------------------------------------------
# autoscale (the real-pool runs are in tests/integration/test_autoscale_pool.py)


def test_autoscale_once_with_htcondor_unreachable_holds_and_exits_1(fake: FakeNomad) -> None:
    assert cli(fake, "deploy", str(EXAMPLE), "elastic", "burst", "--timeout", "30s").exit_code == 0
    fake.settle()
    env = {"NOMAD_ADDR": fake.address, "NOMAD_NAMESPACE": "", "_CONDOR_COLLECTOR_HOST": "127.0.0.1:1"}
    result = runner.invoke(app, ["autoscale", str(EXAMPLE), "--once", "--dry-run"], env=env)
    assert result.exit_code == 1, result.output
    assert "elastic (service)\n  demand: unknown\n  supply: unknown\n  count:  unknown\n" in result.output
    assert "  reason: holding: the flavour's workers could not be observed (fail static)\n" in result.output
    assert "error: HTCondor: locating schedds at 127.0.0.1:1 failed" in result.output
    assert fake.requests_to("POST", "/v1/job/glasgow-elastic/scale") == []


def test_autoscale_refuses_a_bad_metrics_address(fake: FakeNomad) -> None:
    env = {"NOMAD_ADDR": fake.address, "_CONDOR_COLLECTOR_HOST": "127.0.0.1:1"}
    result = runner.invoke(app, ["autoscale", str(EXAMPLE), "--dry-run", "--metrics-address", "9120"], env=env)
    assert result.exit_code == 1
    assert "--metrics-address: 1 problem(s)\n  write host:port, such as 0.0.0.0:9120, not '9120'" in result.output


def test_autoscale_help_names_the_options() -> None:
    result = runner.invoke(app, ["autoscale", "--help"])
    assert result.exit_code == 0
    for option in ("--once", "--dry-run", "--no-lock", "--metrics-address", "--holder"):
        assert option in result.output


def test_plan_of_new_jobs_is_nomads_summary_one_screen_per_job(fake: FakeNomad) -> None:
    result = cli(fake, "plan", str(EXAMPLE))
    assert result.exit_code == 1, result.output
    blocks = result.output.strip().split("\n")
    assert "cntwn (glasgow-cntwn): added (Place 2)" in blocks
    assert '  + Job: "glasgow-cntwn"' in blocks
    assert '  + Task Group: "worker" (2 create)' in blocks
    assert '    + Task: "condor" (forces create)' in blocks
    per_job = len(blocks) / 5
    assert per_job <= 10, result.output  # no field dump: a screen holds every job
    assert "EmbeddedTmpl" not in result.output


def test_plan_of_a_changed_template_shows_a_line_diff_and_verbose_the_fields(fake: FakeNomad, tmp_path: Path) -> None:
    assert cli(fake, "deploy", str(EXAMPLE), "cntwn", "--detach").exit_code == 0
    fake.settle()
    changed = site_with(
        tmp_path, cntwn={"htcondor": {"collector": ["cm.example"], "extra_config": {"STARTD_DEBUG": "D_FULLDEBUG"}}}
    )
    result = cli(fake, "plan", str(changed), "cntwn")
    assert result.exit_code == 1, result.output
    assert '  +/- Task Group: "worker" (2 create/destroy update)' in result.output
    assert "    template local/nomadwn/99-nomadwn.conf (task condor):" in result.output
    assert "      +STARTD_DEBUG = D_FULLDEBUG" in result.output
    assert "      -COLLECTOR_HOST = condor-cm.scotgrid.example:9618" in result.output
    assert "\\n" not in result.output  # no escaped template string
    meta = site_with(tmp_path, cntwn={"meta": {"release": "7"}})
    verbose = cli(fake, "plan", str(meta), "cntwn", "--verbose")
    assert "~ Meta[release]" in verbose.output or "+ Meta[release]" in verbose.output, verbose.output
    assert "Meta[release]" not in cli(fake, "plan", str(meta), "cntwn").output


def test_deploy_autoscaler_prints_the_acl_step_and_applies_it_when_asked(fake: FakeNomad) -> None:
    printed = cli(fake, "deploy", str(EXAMPLE), "autoscaler", "--detach")
    assert printed.exit_code == 0, printed.output
    assert (
        "    nomad acl policy apply -namespace default -job glasgow-autoscaler "
        '-description "nomadwn autoscaler of site glasgow" glasgow-autoscaler '
        "jobspecs/glasgow/acl/autoscaler.nomad-policy.hcl"
    ) in printed.output
    assert "consul acl policy create -name glasgow-autoscaler-lock" in printed.output
    assert fake.acl_policies == {}
    fake.settle()
    applied = cli(fake, "deploy", str(EXAMPLE), "autoscaler", "--detach", "--apply-policies")
    assert applied.exit_code == 0, applied.output
    assert "autoscaler: applied Nomad ACL policy glasgow-autoscaler to job glasgow-autoscaler" in applied.output
    policy = fake.acl_policies["glasgow-autoscaler"]
    assert policy["JobACL"] == {"Namespace": "default", "JobID": "glasgow-autoscaler"}
    assert policy["Rules"] == (EXAMPLE.parent.parent / "jobspecs/glasgow/acl/autoscaler.nomad-policy.hcl").read_text()
