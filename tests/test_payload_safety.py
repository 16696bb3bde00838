"""validate refuses every lifespan in which a Nomad-initiated stop would kill a running payload.

A property test over random lifespans and client caps. For each site that validates
(without ``accept_payload_loss``), the *rendered* job and HTCondor configuration are
read back - not :class:`nomadwn.model.ShutdownPlan` - and a Nomad stop is replayed as
Nomad does it: ``kill_signal``, then SIGKILL after ``min(kill_timeout, the clients'
max_kill_timeout)`` (client/allocrunner/taskrunner/task_runner.go; the docker driver's
StopTask). A payload that started just before the stop must get its full retirement
before HTCondor evicts it (MAXJOBRETIREMENTTIME - MachineMaxVacateTime), the vacate
must end before the startd and master give up, and the master before the SIGKILL.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nomadwn.autopilot import condor_config
from nomadwn.errors import ConfigError
from nomadwn.render import build_job
from nomadwn.sitefile import parse_site
from nomadwn.units import duration_text

SECONDS = st.integers(min_value=0, max_value=3 * 24 * 3600)


def _site(lifespan: dict[str, Any], cap: int) -> dict[str, Any]:
    return {
        "name": "prop",
        "nomad": {"max_kill_timeout": duration_text(timedelta(seconds=cap))},
        "flavours": {
            "w": {
                "kind": "service",
                "image": {"repository": "example/worker", "tag": "1"},
                "htcondor": {"collector": ["cm.example"]},
                "resources": {"cores": 8, "memory": "16GiB"},
                "update": {"max_parallel": 1},
                "lifespan": lifespan,
            }
        },
    }


def _knobs(text: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^([A-Za-z_.]+) = (\d+)$", text, re.M)}


@settings(max_examples=300, deadline=None)
@given(
    retirement=st.one_of(st.none(), SECONDS),
    kill_timeout=st.one_of(st.none(), SECONDS.filter(lambda s: s > 0)),
    cap=st.integers(min_value=1, max_value=4 * 24 * 3600),
    signal=st.sampled_from(["SIGTERM", "SIGQUIT"]),
)
def test_a_valid_site_never_lets_nomad_kill_a_retiring_payload(
    retirement: int | None, kill_timeout: int | None, cap: int, signal: str
) -> None:
    lifespan: dict[str, Any] = {"kill_signal": signal}
    if retirement is not None:
        lifespan["retirement"] = duration_text(timedelta(seconds=retirement))
    if kill_timeout is not None:
        lifespan["kill_timeout"] = duration_text(timedelta(seconds=kill_timeout))
    try:
        site = parse_site(_site(lifespan, cap), "prop.yaml")
    except ConfigError as exc:
        # Refused: the message names a lifespan or nomad field and says what to change.
        assert all(p.path.startswith("flavours.w.") for p in exc.problems), exc.problems
        assert any(
            "max_kill_timeout" in p.message or "SIGTERM" in p.message or "retirement" in p.message for p in exc.problems
        ), exc.problems
        return
    task = build_job(site, "w").TaskGroups[0].Tasks[0]
    k = _knobs(condor_config(site, "w"))
    sigkill_after = min(task.KillTimeout / 1e9, cap)  # Nomad caps kill_timeout at max_kill_timeout
    assert retirement  # none or 0s would evict payloads at once: refused
    assert task.KillSignal == "SIGTERM"  # SIGQUIT is HTCondor's fast shutdown: payloads die at once
    run_time = k["MAXJOBRETIREMENTTIME"] - k["MachineMaxVacateTime"]
    assert run_time >= (retirement or 0), k
    assert k["MachineMaxVacateTime"] >= 1
    # The vacate ends before the startd gives up, the startd before the master, the master before SIGKILL.
    assert k["STARTD.SHUTDOWN_GRACEFUL_TIMEOUT"] > k["MAXJOBRETIREMENTTIME"]
    assert k["MASTER.SHUTDOWN_GRACEFUL_TIMEOUT"] > k["STARTD.SHUTDOWN_GRACEFUL_TIMEOUT"]
    assert sigkill_after > k["MASTER.SHUTDOWN_GRACEFUL_TIMEOUT"], (sigkill_after, k)
    # Nomad requires kill_timeout <= progress_deadline; an old worker may retire that long.
    update = build_job(site, "w").Update
    assert update is not None and update.ProgressDeadline is not None
    assert update.ProgressDeadline >= task.KillTimeout


@pytest.mark.parametrize(
    ("lifespan", "cap", "path", "fix"),
    [
        ({"retirement": "24h"}, "30s", "flavours.w.lifespan.retirement", 'max_kill_timeout = "24h10m45s"'),
        ({"retirement": "2m", "kill_timeout": "3m"}, "1h", None, None),
        ({"retirement": "2m", "kill_timeout": "1m"}, "1h", "flavours.w.lifespan.kill_timeout", "at least 2m57s"),
        ({"kill_timeout": "30s"}, "30s", "flavours.w.lifespan.retirement", "not set"),
        ({"retirement": "1m", "kill_signal": "SIGQUIT"}, "1h", "flavours.w.lifespan.kill_signal", "use SIGTERM"),
    ],
    ids=["24h-retirement-default-cap", "covered", "kill-timeout-too-short", "no-retirement", "sigquit"],
)
def test_validate_names_the_field_and_the_fix(lifespan: dict[str, str], cap: str, path: str | None, fix: str) -> None:
    data = _site(lifespan, 0)
    data["nomad"]["max_kill_timeout"] = cap
    if path is None:
        parse_site(data, "s.yaml")
        return
    with pytest.raises(ConfigError) as caught:
        parse_site(data, "s.yaml")
    problems = {p.path: p.message for p in caught.value.problems}
    assert path in problems and fix in problems[path], problems
    assert "accept_payload_loss" in problems[path]


def test_accepting_the_risk_is_one_named_setting_reported_on_every_validate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from typer_cli import app

    data = _site({"retirement": "24h", "accept_payload_loss": True}, 30)
    site = parse_site(data, "s.yaml")
    task = build_job(site, "w").TaskGroups[0].Tasks[0]
    k = _knobs(condor_config(site, "w"))
    # Within the cap, HTCondor gives up (a clean eviction, the job goes back to the queue)
    # 15 s before Nomad's SIGKILL; drains and self-expiry still honour the 24h.
    assert task.KillTimeout == 30 * 10**9
    assert k["MASTER.SHUTDOWN_GRACEFUL_TIMEOUT"] == 15
    assert k["MAXJOBRETIREMENTTIME"] == 24 * 3600 + 600
    import yaml

    site_file = tmp_path / "s.yaml"
    site_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    for _ in range(2):
        result = CliRunner().invoke(app, ["validate", str(site_file)])
        assert result.exit_code == 0, result.output
        assert "warning: flavours.w.lifespan.accept_payload_loss: a Nomad stop" in result.output


def test_every_flavour_of_the_example_and_init_site_is_covered_as_shipped() -> None:
    """``nomadwn init`` writes the example site: as given, a Nomad stop lets every payload retire."""
    from nomadwn.model import shutdown_plan, site_warnings
    from nomadwn.resources import example_site_text

    site = parse_site(yaml.safe_load(example_site_text()), "init site")
    assert site_warnings(site) == []
    for name in site.flavours:
        plan = shutdown_plan(site, name)
        assert plan.covered, name
        assert plan.kill_timeout <= site.nomad.max_kill_timeout
        assert build_job(site, name).TaskGroups[0].Tasks[0].KillTimeout == int(plan.kill_timeout.total_seconds() * 1e9)
