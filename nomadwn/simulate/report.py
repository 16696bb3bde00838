"""The simulator's output: a plain-text table, and a plot of the pool over time.

The plot uses matplotlib's non-interactive Agg backend (no display needed), imported
only when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path

from nomadwn.errors import RenderError
from nomadwn.simulate.runner import STATES, Result, Stats


def _wait(x: float) -> str:
    if x == float("inf"):
        return "never"
    if x < 120:
        return f"{x:.0f}s"
    if x < 7200:
        return f"{x / 60:.1f}m"
    return f"{x / 3600:.1f}h"


def _rows(s: Stats, workers: str) -> list[str]:
    return [
        f"{s.jobs:,}",
        _wait(s.wait_p50),
        _wait(s.wait_p95),
        _wait(s.wait_max),
        f"{s.provisioned:,.0f}",
        f"{s.used:,.0f}",
        f"{s.idle:,.0f}",
        f"{100 * s.utilisation:.1f}%",
        workers,
        str(s.peak_cores),
        str(s.scaling_actions),
        str(s.payloads_killed),
        str(s.unfinished),
    ]


_LABELS = [
    "jobs",
    "wait p50",
    "wait p95",
    "wait max",
    "core-hours provisioned",
    "core-hours used by payloads",
    "core-hours idle",
    "utilisation",
    "peak workers",
    "peak cores",
    "scaling actions",
    "payloads killed",
    "jobs unfinished",
]


def table(result: Result) -> str:
    """The autoscaler and its static baseline side by side."""
    a, b = result.autoscaler, result.baseline
    how = "smallest with p95 no worse" if result.baseline_searched else "as given"
    right = f"static {result.baseline_workers} ({how})"
    left = "autoscaler"
    cols = list(zip(_LABELS, _rows(a, str(a.peak_workers)), _rows(b, str(result.baseline_workers)), strict=True))
    w0 = max(len(c[0]) for c in cols)
    w1 = max(len(left), *(len(c[1]) for c in cols))
    w2 = max(len(right), *(len(c[2]) for c in cols))
    c = result.cluster
    lines = [
        f"site {result.site}, trace {Path(result.trace).name}: {result.jobs_in_trace:,} jobs "
        f"({result.skipped:,} in the file never ran), cluster {c.nodes}x{c.cores} cores x{c.memory_mb} MB",
        f"{'':<{w0}}  {left:>{w1}}  {right:>{w2}}",
    ]
    lines += [f"{k:<{w0}}  {x:>{w1}}  {y:>{w2}}" for k, x, y in cols]
    if a.unrunnable:
        lines.append(f"{a.unrunnable:,} job(s) fit no autoscaled worker (cores or memory) and were left out")
    if a.payloads_killed:
        lines.append(f"WARNING: {a.payloads_killed:,} payload(s) killed: see 'Tuning the autoscaler' in the README")
    if b.idle > 0 and a.idle > 0:
        lines.append(f"idle core-hours: the static pool wastes {b.idle / a.idle:.1f}x what the autoscaler does")
    return "\n".join(lines)


def plot(result: Result, path: Path) -> None:
    """Idle and running jobs, and workers by state, over simulated days, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise RenderError(f"--plot needs matplotlib ({exc}); pip install matplotlib") from exc
    s = result.samples
    days = [t / 86400 for t in s.t]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), dpi=80)
    top.plot(days, list(s.idle), label="idle jobs", color="tab:red", linewidth=0.8)
    top.plot(days, list(s.running), label="running jobs", color="tab:blue", linewidth=0.8)
    top.set_ylabel("jobs")
    top.legend(loc="upper right", fontsize="small")
    top.set_title(f"{result.site} on {Path(result.trace).name}: the autoscaler's pool")
    colours = {
        "unplaced": "tab:gray",
        "starting": "tab:orange",
        "unclaimed": "tab:olive",
        "claimed": "tab:green",
        "draining": "tab:purple",
    }
    bottom.stackplot(
        days,
        *[list(s.workers[state]) for state in STATES],
        labels=list(STATES),
        colors=[colours[state] for state in STATES],
        linewidth=0,
    )
    bottom.axhline(result.baseline_workers, color="black", linestyle="--", linewidth=0.8)
    bottom.annotate(
        f"static baseline: {result.baseline_workers} workers",
        (days[0] if days else 0, result.baseline_workers),
        xytext=(0, 3),
        textcoords="offset points",
        fontsize="small",
    )
    bottom.set_ylabel("workers")
    bottom.set_xlabel("simulated days")
    bottom.legend(loc="upper right", fontsize="small", ncol=5)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    except OSError as exc:
        raise RenderError(f"cannot write the plot to {path}: {exc}") from exc
    finally:
        plt.close(fig)
