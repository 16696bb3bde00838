"""Benchmark: failure detection latency of the watcher on the fake Nomad.

Run: ``python -m bench.watch_latency [--smoke]`` (prints a table; nothing is asserted;
``--smoke``: one run per job kind).

For each job kind, a job is registered on the stateful fake Nomad
(``tests/fake_nomad.py``, real HTTP on loopback, blocking queries) and rolled out;
while the watcher follows it, one allocation is failed at a known moment
(``FakeNomad.fail_alloc``) and the time until the watcher's verdict is measured.
The watcher's longest blocking query is 5 s, so a latency well under that shows
the blocking query woke on the change rather than timing out.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from pathlib import Path

from bench._args import parser
from nomadwn.deploy import rollout_of
from nomadwn.nomad import Allocation, NomadSettings
from nomadwn.nomad_client import NomadClient
from nomadwn.render import build_job
from nomadwn.sitefile import load_site
from nomadwn.watch import Verdict, Watcher
from tests.fake_nomad import FakeNomad

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "glasgow.yaml"
RUNS = 20
FLAVOURS = {"service": "elastic", "system": "cntwn", "batch": "ephemeral"}


def _one(fake: FakeNomad, flavour: str) -> float:
    site = load_site(EXAMPLE)
    job = build_job(site, flavour)
    # Slow steps keep the rollout in progress (deployment running) while we fail an allocation.
    fake.script(job.ID, "healthy", delay=30.0)
    nomad = NomadClient(NomadSettings(address=fake.address))
    registered = nomad.register(job, enforce_index=None, preserve_counts=True)
    status = nomad.job(job.ID)
    assert status is not None
    verdicts: list[Verdict] = []
    watcher = Watcher(nomad)
    # The example's own rollout rules, with an hour of min_healthy_time so no healthy verdict comes first.
    rollout = dataclasses.replace(rollout_of(site, flavour), min_healthy_time=3600.0, healthy_deadline=7200.0)
    thread = threading.Thread(
        target=lambda: verdicts.append(
            watcher.watch(job.ID, job.Type, registered.eval_id, status.version, 60.0, rollout)
        )
    )
    thread.start()
    deadline = time.monotonic() + 10
    allocs: list[Allocation] = []
    while not allocs and time.monotonic() < deadline:
        allocs = [a for a in nomad.allocations(job.ID).value if a.job_version == status.version]
        time.sleep(0.01)
    time.sleep(0.2)  # let the watcher settle into its blocking query
    start = time.perf_counter()
    fake.fail_alloc(allocs[0].id, "Driver Failure", "benchmark: injected failure")
    thread.join(timeout=30)
    elapsed = time.perf_counter() - start
    assert verdicts and verdicts[0].outcome == "failed", verdicts
    nomad.stop(job.ID, purge=True)
    return elapsed


def main(argv: list[str] | None = None) -> None:
    """Print latency statistics per job kind."""
    args = parser(__doc__).parse_args(argv)
    runs = 1 if args.smoke else RUNS
    print(f"{'kind':>8} | {'runs':>4} | {'min ms':>7} | {'median ms':>9} | {'p95 ms':>7} | {'max ms':>7}")
    print(f"{'-' * 8}-+-{'-' * 4}-+-{'-' * 7}-+-{'-' * 9}-+-{'-' * 7}-+-{'-' * 7}")
    for kind, flavour in FLAVOURS.items():
        with FakeNomad(step_delay=0.01) as fake:
            samples = sorted(_one(fake, flavour) * 1000 for _ in range(runs))
        p95 = samples[int(0.95 * (len(samples) - 1))]
        print(
            f"{kind:>8} | {runs:>4} | {samples[0]:>7.1f} | {statistics.median(samples):>9.1f} | "
            f"{p95:>7.1f} | {samples[-1]:>7.1f}"
        )


if __name__ == "__main__":
    main()
