"""Benchmark: the autoscaler's decision cost and the loop's memory, on in-memory fakes.

Run: ``python -m bench.autoscale_bench [--smoke]`` (prints two tables; nothing is
asserted; ``--smoke``: 10 flavours, 5 repeats, 100 loop steps).

1. **decide** for 100 flavours: one :func:`decide` per flavour plus the site core
   quota, over observations with 20 job shapes and 40 workers each (median of 200).
2. **loop memory**: 10,000 steps of :class:`Autoscaler` on the example site over the
   in-memory fakes (``nomadwn/fakes.py``), with demand rising and falling so
   that it scales up, down and dispatches; resident memory (RSS) and Python's traced
   heap after warm-up and after every 2,500 steps. Flat numbers mean no leak per step.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from pathlib import Path

from bench._args import parser
from nomadwn.autoscale.loop import Autoscaler
from nomadwn.autoscale.strategy import Decision, History, Policy, apply_quota, decide
from nomadwn.fakes import FakeClock, MemoryCondor, MemoryNomad
from nomadwn.pool import Demand, JobShape, Observation, Supply, Worker, WorkerState
from nomadwn.sitefile import load_site

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "glasgow.yaml"
STATES: tuple[WorkerState, ...] = ("starting", "unclaimed", "claimed", "draining")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_decide(flavours: int = 100, repeats: int = 200) -> list[tuple[str, str]]:
    rng = random.Random(7)  # noqa: S311 - benchmark data, not crypto
    now = 1_800_000_000.0
    cases = []
    for i in range(flavours):
        policy = Policy(
            min=0,
            max=200,
            worker_cores=rng.choice([4, 8, 16]),
            worker_memory_mb=rng.choice([8192, 16384, 32768]),
            max_scale_up=10,
            max_scale_down=2,
            ramp=2.0,
            cooldown=300,
            cooldown_on_scale_up=120,
            stale_after=180,
            scale_from_zero=True,
            can_scale_in=i % 3 != 0,
        )
        shapes = tuple(JobShape(rng.randint(1, 16), rng.randint(500, 40000), rng.randint(0, 500)) for _ in range(20))
        workers = tuple(Worker(alloc_id=f"a{i}-{j}", index=j, state=rng.choice(STATES)) for j in range(40))
        obs = Observation(Demand(shapes, now - 5, ("s1",)), Supply(workers, now - 5, 40))
        cases.append((f"f{i}", obs, policy))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decisions: dict[str, Decision] = {name: decide(obs, policy, History(), now) for name, obs, policy in cases}
        apply_quota(decisions, {name: policy for name, _, policy in cases}, 20_000)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return [
        ("flavours", str(flavours)),
        ("shapes x workers per flavour", "20 x 40"),
        ("decide + quota, median", f"{median * 1e3:.2f} ms"),
        ("per flavour", f"{median / flavours * 1e6:.1f} us"),
        ("min / max", f"{min(times) * 1e3:.2f} / {max(times) * 1e3:.2f} ms"),
    ]


def bench_loop_memory(steps: int = 10_000, every: int = 2500, warm_up: int = 500) -> list[tuple[str, str, str, str]]:
    site = load_site(EXAMPLE)
    clock = FakeClock(1_800_000_000.0)
    nomad = MemoryNomad()
    nomad.add_service(site.job_id("elastic"), 4)
    condor = MemoryCondor(nomad, clock, flavours={site.job_id("elastic"): "elastic", site.job_id("burst"): "burst"})
    scaler = Autoscaler(site, condor, nomad, clock=clock, log_event=lambda _: None)
    rng = random.Random(11)  # noqa: S311 - benchmark data, not crypto
    rows = []

    def one_step(i: int) -> None:
        # Demand rises and falls in waves; some workers are claimed; burst children finish.
        wave = (i // 50) % 4
        condor.idle = {(8, 16000): [0, 30, 80, 10][wave], (4, 8000): [0, 20, 0, 5][wave]}
        alloc_ids = [a.id for a in nomad.allocs[site.job_id("elastic")]]
        condor.claims = {a: "claimed" for a in alloc_ids if rng.random() < 0.5}
        nomad.children[site.job_id("burst")] = nomad.children.get(site.job_id("burst"), [])[-20:]
        nomad.calls.clear()
        condor.requirements_seen.clear()  # the fake records every query; not the loop's memory
        condor.drain_calls.clear()
        clock.advance(61)
        scaler.step()

    for i in range(warm_up):
        one_step(i)
    gc.collect()
    tracemalloc.start()
    base_rss, (base_heap, _) = _rss_mib(), tracemalloc.get_traced_memory()
    rows.append((f"after {warm_up} warm-up steps", f"{base_rss:.1f}", "0.0", "-"))
    start = time.perf_counter()
    for i in range(warm_up, warm_up + steps):
        one_step(i)
        done = i - warm_up + 1
        if done % every == 0:
            gc.collect()
            heap, _ = tracemalloc.get_traced_memory()
            per = (time.perf_counter() - start) / done
            rows.append(
                (f"after {done} steps", f"{_rss_mib():.1f}", f"{(heap - base_heap) / 1024:.1f}", f"{per * 1e6:.0f}")
            )
    tracemalloc.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the decision cost and the loop's memory."""
    args = parser(__doc__).parse_args(argv)
    flavours, repeats, steps, every, warm_up = (10, 5, 100, 50, 20) if args.smoke else (100, 200, 10_000, 2500, 500)
    print("decision cost (pure decide + site core quota)")
    for key, value in bench_decide(flavours, repeats):
        print(f"  {key:<32} {value}")
    print()
    print(f"autoscaler loop on fakes: memory over {steps:,} steps (2 flavours, scaling up, down and dispatching)")
    print(f"  {'when':<26} {'RSS MiB':>8} {'heap growth KiB':>16} {'us/step (traced)':>17}")
    for when, rss, heap, per in bench_loop_memory(steps, every, warm_up):
        print(f"  {when:<26} {rss:>8} {heap:>16} {per:>17}")


if __name__ == "__main__":
    main()
