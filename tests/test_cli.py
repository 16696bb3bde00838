"""The CLI through Typer's CliRunner: commands, --help, exit codes, JSON output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLE, ROOT
from typer_cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "argv",
    [[], ["init"], ["validate"], ["render"], ["plan"], ["deploy"], ["status"], ["promote"], ["rollback"], ["stop"]],
    ids=lambda a: " ".join(a) or "root",
)
def test_help_everywhere(argv: list[str]) -> None:
    result = runner.invoke(app, [*argv, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("nomadwn ")


def test_init_writes_a_valid_example(tmp_path: Path) -> None:
    target = tmp_path / "site.yaml"
    assert runner.invoke(app, ["init", str(target)]).exit_code == 0
    assert target.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")
    assert runner.invoke(app, ["validate", str(target)]).exit_code == 0
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 1
    assert "exists; choose another path or pass --force" in again.output
    assert runner.invoke(app, ["init", str(target), "--force"]).exit_code == 0


def test_validate_ok_states_the_privilege() -> None:
    result = runner.invoke(app, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "valid site 'glasgow' with 4 flavour(s)" in result.output
    assert "PRIVILEGE: CVMFS fuse mode: the container gets capabilities SYS_ADMIN and MKNOD" in result.output


def test_validate_json() -> None:
    result = runner.invoke(app, ["validate", str(EXAMPLE), "--json"])
    doc = json.loads(result.output)
    assert doc["ok"] is True
    assert [f["kind"] for f in doc["flavours"]] == ["system", "service", "batch", "batch"]
    assert doc["flavours"][2]["privileges"]


def _bad_site(tmp_path: Path) -> Path:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("    kind: batch\n", "    kind: batch\n    update: {}\n")
    )
    return bad


def test_validate_error_exit_1_names_the_field(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(_bad_site(tmp_path))])
    assert result.exit_code == 1
    assert "flavours.ephemeral.update: a batch job may not have an update block" in result.output


def test_validate_error_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(_bad_site(tmp_path)), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["problems"][0]["path"] == "flavours.ephemeral.update"


def test_render_bad_site_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", str(_bad_site(tmp_path)), "--out", str(out)])
    assert result.exit_code == 1
    assert not out.exists()


def test_render_writes_then_check_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "jobspecs"
    first = runner.invoke(app, ["render", str(EXAMPLE), "--out", str(out)])
    assert first.exit_code == 0
    assert sorted(p.name for p in (out / "glasgow" / "acl").iterdir()) == [
        "autoscaler.consul-policy.hcl",
        "autoscaler.nomad-policy.hcl",
    ]
    assert sorted(p.name for p in (out / "glasgow").iterdir()) == [
        "acl",
        "autoscaler.json",
        "autoscaler.nomad.hcl",
        "burst.json",
        "burst.nomad.hcl",
        "cntwn.json",
        "cntwn.nomad.hcl",
        "elastic.json",
        "elastic.nomad.hcl",
        "ephemeral.json",
        "ephemeral.nomad.hcl",
        "monitoring",
    ]
    assert sorted(p.name for p in (out / "glasgow" / "monitoring").iterdir()) == [
        "grafana-dashboard.json",
        "prometheus.yml",
    ]
    assert first.output.count("wrote") == 14
    second = runner.invoke(app, ["render", str(EXAMPLE), "--out", str(out), "--json"])
    assert json.loads(second.output)["written"] == []
    check = runner.invoke(app, ["render", str(EXAMPLE), "--out", str(out), "--check"])
    assert check.exit_code == 0
    assert "14 jobspec file(s) are fresh" in check.output


def test_render_check_stale_prints_diff_and_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "jobspecs"
    shutil.copytree(ROOT / "jobspecs", out)
    hcl_file = out / "glasgow" / "cntwn.nomad.hcl"
    hcl_file.write_text(hcl_file.read_text(encoding="utf-8").replace("priority    = 50", "priority    = 51"))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["render", str(EXAMPLE), "--out", str(out), "--check"])
    assert result.exit_code == 1
    assert "-  priority    = 51" in result.output and "+  priority    = 50" in result.output
    assert "1 jobspec file(s) are stale" in result.output
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}  # --check writes nothing
    as_json = runner.invoke(app, ["render", str(EXAMPLE), "--out", str(out), "--check", "--json"])
    assert json.loads(as_json.stdout) == {"fresh": False, "stale": [str(hcl_file)]}


def test_render_format_json_only(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert runner.invoke(app, ["render", str(EXAMPLE), "--out", str(out), "--format", "json"]).exit_code == 0
    assert sorted(p.suffix for p in (out / "glasgow").iterdir() if p.is_file()) == [".json"] * 5  # jobs; acl/ too


def test_usage_error_exits_2() -> None:
    assert runner.invoke(app, ["render", str(EXAMPLE), "--format", "yaml"]).exit_code == 2
    assert runner.invoke(app, ["validate"]).exit_code == 2


def test_output_is_never_read_as_markup(tmp_path: Path) -> None:
    target = tmp_path / "[bold]site.yaml"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0
    assert f"wrote {target}" in result.output


def test_python_dash_m_runs_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nomadwn", "validate", str(EXAMPLE), "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["site"] == "glasgow"


def test_status_with_nomad_unreachable_says_so_and_exits_1() -> None:
    env = {"NOMAD_ADDR": "http://127.0.0.1:1", "NOMAD_TOKEN": "", "NOMAD_NAMESPACE": "", "NOMAD_REGION": ""}
    result = runner.invoke(app, ["status", str(EXAMPLE), "--no-consul", "--no-condor"], env=env)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Nomad UNREACHABLE" in result.output
    assert "reading job glasgow-cntwn at http://127.0.0.1:1: cannot connect" in " ".join(result.output.split())
    assert max(len(line) for line in result.output.splitlines()) <= 80


LEAN_CASES = [
    [],
    ["--help"],
    ["--version"],
    ["valdate"],
    *([name, "--help"] for name in ("init", "validate", "render", "plan", "deploy", "status", "autoscale", "simulate")),
    ["validate", str(EXAMPLE)],
    ["validate", str(EXAMPLE), "--bogus"],
]


@pytest.mark.parametrize("argv", LEAN_CASES, ids=lambda a: " ".join(a).replace(str(EXAMPLE), "EXAMPLE") or "root")
def test_the_console_script_builds_only_what_it_runs_with_the_same_result(argv: list[str]) -> None:
    from typer_cli import lean

    whole = runner.invoke(app, argv)
    reduced = runner.invoke(lean(argv), argv)
    assert (reduced.exit_code, reduced.output) == (whole.exit_code, whole.output)
