"""Benchmark: ``nomadwn simulate`` on real traces, the example site's policy.

Run: ``python -m bench.simulate_bench [--trace FILE] [--smoke]`` (prints a table;
nothing is asserted). Rows: the shipped week of LPC-EGEE-2004
(``examples/traces/``), then the whole trace (``--trace``, default
``../shared/traces/LPC-EGEE-2004-1.2-cln.swf.gz`` next to the checkout, skipped
when absent). ``--smoke`` runs one day of the shipped week only.

Per row: reading the trace, the autoscaler's run (the real loop, one evaluation per
``evaluation_interval``) and its cost per evaluation, the static-baseline bisection
(how many static runs it took), the total, and resident memory (RSS) sampled every
30 simulated days during the autoscaler's run: flat numbers mean the model keeps no
per-step history.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench._args import parser
from nomadwn.simulate.runner import Options, default_cluster, run, smallest_static, static_flavour
from nomadwn.simulate.trace import read_trace, window
from nomadwn.sitefile import load_site

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "glasgow.yaml"
WEEK = ROOT / "examples" / "traces" / "LPC-EGEE-2004-week.swf.gz"
_NAME = "LPC-EGEE-2004-1.2-cln.swf.gz"
# ../shared/traces next to the checkout (or next to the worktrees' parent).
FULL = next(
    (
        p
        for p in (ROOT.parent / "shared" / "traces" / _NAME, ROOT.parent.parent / "shared" / "traces" / _NAME)
        if p.exists()
    ),
    ROOT.parent / "shared" / "traces" / _NAME,
)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench(label: str, path: Path, days: float | None) -> str:
    """One row of the table."""
    site = load_site(EXAMPLE)
    t0 = time.perf_counter()
    trace = read_trace(path)
    if days is not None:
        trace = window(trace, days=days)
    t_read = time.perf_counter() - t0
    opts = Options(cluster=default_cluster(site))
    rss: list[float] = []
    next_month = [0.0]

    def sample(done: float) -> None:
        if done * trace.span >= next_month[0]:
            rss.append(_rss_mib())
            next_month[0] += 30 * 86400

    t1 = time.perf_counter()
    auto, _ = run(site, trace, opts, progress=sample)
    t_auto = time.perf_counter() - t1
    rss.append(_rss_mib())
    t2 = time.perf_counter()
    assert opts.cluster is not None
    n, base, runs = smallest_static(site, trace, opts, auto.wait_p95, opts.cluster.holds(static_flavour(site)))
    t_base = time.perf_counter() - t2
    per_eval = 1e6 * t_auto / max(1, auto.evaluations)
    memory = " ".join(f"{x:.0f}" for x in rss)
    ratio = base.idle / auto.idle if auto.idle else float("inf")
    return (
        f"{label:<22} | {len(trace):>7,} | {t_read:>6.1f} | {auto.evaluations:>7,} | {t_auto:>7.1f} | {per_eval:>6.0f} "
        f"| {runs:>4} | {t_base:>6.1f} | {t_read + t_auto + t_base:>7.1f} | {auto.payloads_killed:>6} "
        f"| {n:>4} | {ratio:>5.1f}x | {memory}"
    )


def main(argv: list[str] | None = None) -> None:
    """Print one row per trace."""
    p = parser(__doc__)
    p.add_argument("--trace", type=Path, default=FULL, help=f"the whole trace (default {FULL})")
    args = p.parse_args(argv)
    rows: list[tuple[str, Path, float | None]] = [("shipped week, 1 day", WEEK, 1.0)] if args.smoke else []
    if not args.smoke:
        rows.append(("shipped week", WEEK, None))
    if not args.smoke and args.trace.is_file():
        rows.append((args.trace.name[:22], args.trace, None))
    print("nomadwn simulate, examples/glasgow.yaml, default cluster; times in s, RSS in MiB every 30 days")
    print(
        f"{'trace':<22} | {'jobs':>7} | {'read':>6} | {'evals':>7} | {'auto':>7} | {'us/ev':>6} | {'runs':>4} "
        f"| {'static':>6} | {'total':>7} | {'killed':>6} | {'N':>4} | {'idle÷':>6} | RSS"
    )
    for label, path, days in rows:
        print(bench(label, path, days), flush=True)


if __name__ == "__main__":
    main()
