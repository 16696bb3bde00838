"""The simulator: trace readers on real SWF lines, and small replays worked out by hand."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nomadwn.errors import ConfigError
from nomadwn.simulate.runner import Options, run, run_static, simulate
from nomadwn.simulate.trace import read_trace, window
from nomadwn.simulate.world import Cluster
from nomadwn.sitefile import load_site
from typer_cli import app

ROOT = Path(__file__).resolve().parent.parent
SLICE = ROOT / "examples" / "traces" / "LPC-EGEE-2004-week.swf.gz"
EXAMPLE = ROOT / "examples" / "glasgow.yaml"

# Real lines of the LPC-EGEE-2004 log: header lines, its first five jobs and a job cancelled while queued.
SWF = """\
;         Version: 2.2
;     Acknowledge: Emmanuel Medernach - medernac AT clermont.in2p3.fr
;   UnixStartTime: 1091615532
;        MaxProcs: 140
  9933  3585977       4      16 1      2       0 1   7200     -1 1  1  1 -1 2 1 -1 -1
  9934  3585997       5       8 1      2       0 1   7200     -1 1  1  1 -1 2 1 -1 -1
  9935  3585997       6       8 1      2       0 1   7200     -1 1  1  1 -1 2 1 -1 -1
  9936  3585997       5      13 1      2   23208 1   7200     -1 1  1  1 -1 2 1 -1 -1
  9937  3586006       8       0 1      0       0 1   7200     -1 1  1  1 -1 2 1 -1 -1
 10153  3634297   84930      -1 0     -1      -1 1     -1     -1 5 -1 -1 -1 2 2 -1 -1
"""

SITE = """\
name: handmade
defaults:
  image: {repository: scotgrid/cntwn, tag: "1"}
  cvmfs: {mode: bind}
  htcondor: {collector: [cm.example:9618]}
  resources: {cores: 8, memory: 16GiB}
  # The simulator replays what HTCondor does with these; no Nomad stop is simulated here.
  lifespan: {accept_payload_loss: true}
flavours:
  elastic:
    kind: service
    count: 0
    scaling: {min: 0, max: 10}
    autoscale:
      evaluation_interval: 60s
      cooldown: 5m
      cooldown_on_scale_up: 2m
      max_scale_up: 10
      max_scale_down: 10
      ramp: 1
"""

BURST = """\
name: handmade
defaults:
  image: {repository: scotgrid/cntwn, tag: "1"}
  cvmfs: {mode: bind}
  htcondor: {collector: [cm.example:9618]}
  resources: {cores: 8, memory: 16GiB}
  # The simulator replays what HTCondor does with these; no Nomad stop is simulated here.
  lifespan: {accept_payload_loss: true}
flavours:
  burst:
    kind: batch
    scaling: {min: 0, max: 1}
    autoscale: {evaluation_interval: 60s, max_scale_up: 1, ramp: 1}
    lifespan: {max_age: 10m, retirement: 1m, check_interval: 60s}
    restart: {attempts: 0, mode: fail}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def swf(tmp_path: Path, jobs: list[tuple[int, int, int]]) -> Path:
    """An SWF file of (submit, run time, processors) jobs."""
    lines = [";   UnixStartTime: 1000000000"]
    lines += [f"{i + 1} {s} 0 {r} {p} -1 -1 {p} -1 -1 1 1 1 -1 1 1 -1 -1" for i, (s, r, p) in enumerate(jobs)]
    return write(tmp_path, "jobs.swf", "\n".join(lines) + "\n")


# ---- trace readers ---------------------------------------------------------------------------


def test_swf_real_lines(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "lpc.swf", SWF))
    # Job 10153 never ran (run time -1, no processor: cancelled while queued) and is skipped;
    # job 9937 ran for 0 s and is kept.
    assert (len(trace), trace.skipped) == (5, 1)
    assert trace.start == 1091615532 + 3585977
    assert list(trace.submit) == [0, 20, 20, 20, 29]
    assert list(trace.run) == [16, 8, 8, 13, 0]
    assert list(trace.cpus) == [1] * 5
    assert list(trace.memory_mb) == [2000] * 5  # unknown memory (-1): 2000 MB per core


def test_swf_gz_and_the_shipped_slice(tmp_path: Path) -> None:
    path = tmp_path / "lpc.swf.gz"
    path.write_bytes(gzip.compress(SWF.encode()))
    assert len(read_trace(path)) == 5
    week = read_trace(SLICE)
    assert len(week) + week.skipped == 13077
    assert week.span <= 7 * 86400
    header = gzip.decompress(SLICE.read_bytes()).decode()
    assert "Acknowledge: Emmanuel Medernach" in header and "Parallel Workloads Archive" in header


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("1 10 0 5", "line 3: an SWF job line has 18 fields, this one has 4"),
        ("1 10 0 five 1 -1 -1 1 -1 -1 1", "line 3: field 4 (run time) is not a number: 'five'"),
        ("1 -5 0 5 1 -1 -1 1 -1 -1 1", "line 3: field 2 (submit time) is negative: -5"),
    ],
    ids=["short", "not-a-number", "negative-submit"],
)
def test_swf_malformed_line(tmp_path: Path, line: str, problem: str) -> None:
    path = write(tmp_path, "bad.swf", f"; header\n1 0 0 5 1 -1 -1 1 -1 -1 1\n{line}\n")
    with pytest.raises(ConfigError) as err:
        read_trace(path)
    assert str(err.value) == f"{path}: 1 problem(s) in the trace (fix or delete those lines)\n  {problem}"


def test_history_csv_with_header_and_wait(tmp_path: Path) -> None:
    text = "QDate,wait,RemoteWallClockTime,RequestCpus,RequestMemory\n100,5,60,8,16000\n50,0,30,1,undefined\n"
    trace = read_trace(write(tmp_path, "history.csv", text))
    assert list(trace.submit) == [0, 50]
    assert trace.start == 50
    assert list(trace.run) == [30, 60]
    assert list(trace.cpus) == [1, 8]
    assert list(trace.memory_mb) == [2000, 16000]


def test_history_af_whitespace(tmp_path: Path) -> None:
    text = "1700000000 1700000060 3600 1 2048\n1700000010 undefined undefined 1 2048\n"
    trace = read_trace(write(tmp_path, "history.txt", text))
    assert (len(trace), trace.skipped) == (1, 1)  # the second job never started


def test_history_malformed(tmp_path: Path) -> None:
    path = write(tmp_path, "history.txt", "1700000000 1700000060 3600 1 2048\n1700000000 1700000060 3600 x 2048\n")
    with pytest.raises(ConfigError, match=r"line 2: requestcpus is not a number: 'x'"):
        read_trace(path)


def test_window_start_days_scale(tmp_path: Path) -> None:
    trace = read_trace(swf(tmp_path, [(0, 10, 1), (86400, 10, 1), (2 * 86400, 10, 1), (3 * 86400 + 600, 10, 1)]))
    assert list(window(trace, start="1d", days=2).submit) == [0, 86400]
    # UnixStartTime 1000000000 is 2001-09-09T01:46:40Z: a day later, arrivals twice as dense.
    assert list(window(trace, start="2001-09-10T01:46:40+00:00", scale=2).submit) == [0, 43200, 86400 + 300]
    with pytest.raises(ConfigError, match="no job was submitted in the window"):
        window(trace, start="10d")


# ---- the model, by hand ---------------------------------------------------------------------


def test_static_pool_by_hand(tmp_path: Path) -> None:
    """One 8-core worker, nine 1-core 100 s jobs at t=0, negotiator every 60 s.

    The first cycle (t=60) starts eight; the ninth waits for a core: at t=160 the first
    jobs end and the schedd reuses a claim (100 s old, under CLAIM_WORKLIFE) at once.
    Waits: eight of 60 s, one of 160 s; it ends at 260 s.
    """
    site = load_site(write(tmp_path, "site.yaml", SITE))
    trace = read_trace(swf(tmp_path, [(0, 100, 1)] * 9))
    stats = run_static(site, trace, Options(cluster=Cluster(1, 8, 65536)), 1)
    assert stats is not None
    assert (stats.wait_p50, stats.wait_p95, stats.wait_max) == (60, 160, 160)
    assert stats.duration_s == 260
    assert math.isclose(stats.provisioned, 8 * 260 / 3600)
    assert math.isclose(stats.used, 9 * 100 / 3600)
    assert stats.payloads_killed == 0


def test_autoscaler_by_hand(tmp_path: Path) -> None:
    """Sixteen 1-core 1000 s jobs at t=0; an empty service flavour of 8-core workers, ramp 1.

    t=0: the loop sees 16 idle jobs -> 2 workers needed, scales 0 -> 2 (one action);
    t=30: both join the collector (start delay 30 s); t=60: the negotiator starts all 16.
    Every wait is 60 s; the last job ends at 1060 s, the run with it: 16 cores x 1060 s.
    """
    site = load_site(write(tmp_path, "site.yaml", SITE))
    trace = read_trace(swf(tmp_path, [(0, 1000, 1)] * 16))
    stats, samples = run(site, trace, Options(cluster=Cluster(4, 8, 65536), start_delay=30))
    assert (stats.wait_p50, stats.wait_p95, stats.wait_max) == (60, 60, 60)
    assert (stats.peak_workers, stats.peak_cores, stats.scaling_actions) == (2, 16, 1)
    assert stats.duration_s == 1060
    assert math.isclose(stats.provisioned, 16 * 1060 / 3600)
    assert math.isclose(stats.used, 16 * 1000 / 3600)
    assert stats.payloads_killed == 0
    assert max(samples.workers["claimed"]) == 2


def test_full_cluster_leaves_workers_unplaced(tmp_path: Path) -> None:
    """The cluster holds one 8-core worker; 16 jobs ask for two: the second waits unplaced.

    The first worker runs 8 jobs (t=60..1060); when its jobs end the claims are reused
    (60 s old) for the other 8, which wait 1060 s; all done at 2060 s.
    """
    site = load_site(write(tmp_path, "site.yaml", SITE))
    trace = read_trace(swf(tmp_path, [(0, 1000, 1)] * 16))
    stats, samples = run(site, trace, Options(cluster=Cluster(1, 8, 65536), start_delay=30))
    assert (stats.wait_p50, stats.wait_max, stats.peak_workers) == (60, 1060, 1)
    assert max(samples.workers["unplaced"]) == 1
    assert stats.duration_s == 2060


def test_retirement_shorter_than_a_payload_kills_it(tmp_path: Path) -> None:
    """A batch worker with max_age 10m and retirement 1m, one 1000 s job.

    Ready at t=30, the job starts at t=60; the age check at 30 + 10 x 60 = 630 s retires
    the worker and the job may run until 60 + 60 s: it is killed at 630 s and requeued.
    Every later worker does the same, so the job never finishes.
    """
    site = load_site(write(tmp_path, "site.yaml", BURST))
    trace = read_trace(swf(tmp_path, [(0, 1000, 1)]))
    stats, _ = run(site, trace, Options(cluster=Cluster(1, 8, 65536), start_delay=30))
    assert stats.payloads_killed > 1
    assert stats.unfinished == 1
    assert stats.killed_work >= 570 / 3600  # the first attempt alone lost 570 s of one core


def test_example_site_on_the_shipped_week_kills_nothing() -> None:
    """The example site's policy on a week of LPC-EGEE-2004: no payload killed, less waste than static."""
    site = load_site(EXAMPLE)
    result = simulate(site, read_trace(SLICE), Options())
    auto, base = result.autoscaler, result.baseline
    assert auto.payloads_killed == 0
    assert auto.unfinished == 0
    assert base.wait_p95 <= auto.wait_p95
    assert auto.idle < base.idle


def test_cli_table_json_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "pool.png"
    args = ["simulate", str(EXAMPLE), "--trace", str(SLICE), "--days", "1", "--baseline", "static:6"]
    out = CliRunner().invoke(app, [*args, "--json", "--plot", str(png)])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert set(doc) >= {"jobs", "wait_s", "core_hours", "utilisation", "peak_workers", "peak_cores"}
    assert set(doc) >= {"scaling_actions", "payloads_killed", "baseline"}
    assert set(doc["wait_s"]) == {"p50", "p95", "max"}
    assert set(doc["core_hours"]) >= {"provisioned", "used", "idle"}
    assert doc["baseline"]["workers"] == 6 and doc["payloads_killed"] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0 and "payloads killed" in text.output and "static 6 (as given)" in text.output


def test_cli_bad_trace_names_the_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.swf", "1 0 0 5 1 -1 -1 1 -1 -1 1\n1 0 0\n")
    out = CliRunner().invoke(app, ["simulate", str(EXAMPLE), "--trace", str(bad)])
    assert out.exit_code == 1
    assert "line 2: an SWF job line has 18 fields, this one has 3" in out.output
    out = CliRunner().invoke(app, ["simulate", str(EXAMPLE), "--trace", str(bad), "--cluster", "4by8"])
    assert out.exit_code == 1 and "--cluster" in out.output
    out = CliRunner().invoke(app, ["simulate", str(EXAMPLE), "--trace", str(tmp_path / "none.swf")])
    assert out.exit_code == 1 and "none.swf: 1 problem(s)\n  no such file" in out.output
    out = CliRunner().invoke(app, ["simulate", str(EXAMPLE), "--trace", str(SLICE), "--cluster", "2x4"])
    assert out.exit_code == 1
    assert "a node of 4 cores and 16384 MB cannot hold one elastic worker (8 cores, 16384 MB)" in out.output


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    jobs=st.lists(
        st.tuples(st.integers(0, 7200), st.integers(0, 4 * 3600), st.sampled_from([1, 1, 1, 2, 4, 8])),
        min_size=1,
        max_size=40,
    )
)
def test_example_site_never_kills_a_payload(tmp_path: Path, jobs: list[tuple[int, int, int]]) -> None:
    """Any small queue, the example site's policy and a cluster that holds 24 cores: nothing killed, all done."""
    site = load_site(EXAMPLE)
    trace = read_trace(swf(tmp_path, sorted(jobs)))
    stats, _ = run(site, trace, Options(cluster=Cluster(3, 8, 65536)))
    assert stats.payloads_killed == 0
    assert stats.unfinished == 0
    assert stats.used <= stats.provisioned + 1e-9
    assert math.isclose(stats.used, trace.core_hours())


def test_drain_by_hand(tmp_path: Path) -> None:
    """condor_drain -graceful on the model: no new job, each payload retires from its own start.

    One static 8-core worker with retirement 300 s, one 1000 s job at t=0 (starts at 60)
    and one 100 s job at t=100. Drained at t=90: the second job stays idle, the first is
    evicted at 60 + 300 = 360 (killed, requeued). Cancelled at t=400: both start at the
    next negotiation cycle (t=420).
    """
    from nomadwn.simulate.world import SimFlavour, World

    trace = read_trace(swf(tmp_path, [(0, 1000, 1), (100, 100, 1)]))
    world = World(trace, Cluster(1, 8, 65536), start_delay=30)
    flavour = SimFlavour("static", "static", "service", 8, 16384, retirement=300)
    world.add_static(flavour, 1)
    (worker,) = world.workers.values()
    world.advance_to(90)
    assert world.running == 1
    world.drain(worker.name, on=True)
    assert worker.state == "draining"
    world.advance_to(359)
    assert (world.running, world.idle_jobs, world.killed) == (1, 1, 0)
    world.advance_to(360)
    assert (world.running, world.idle_jobs, world.killed) == (0, 2, 1)
    world.advance_to(400)
    world.drain(worker.name, on=False)
    world.advance_to(419)
    assert world.running == 0
    world.advance_to(420)
    assert (world.running, world.idle_jobs) == (2, 0)
    assert sorted(world.waits) == [60, 320]  # first starts only: the evicted job's wait was 60 s
