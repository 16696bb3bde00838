"""Benchmark: validating and rendering sites of growing size.

Run: ``python -m bench.render_bench`` (prints a table; nothing is asserted).
Each site has N flavours cloned from the example's three; times are the median
of several runs, memory is the peak traced by tracemalloc during one render.
"""

from __future__ import annotations

import copy
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml

from nomadwn.render import render_site
from nomadwn.sitefile import parse_site

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "glasgow.yaml"
SIZES = (3, 30, 300)
REPEATS = 5


def _site_data(flavours: int) -> dict[str, Any]:
    base = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    originals = list(base["flavours"].items())
    base["flavours"] = {
        f"{name}-{i}": copy.deepcopy(spec) for i in range(flavours // len(originals)) for name, spec in originals
    }
    return dict(base)


def _median_seconds(fn: Any) -> float:
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    """Print one row per site size."""
    print(f"{'flavours':>8} | {'validate ms':>11} | {'render ms':>9} | {'ms/flavour':>10} | {'peak MiB':>8}")
    print(f"{'-' * 8}-+-{'-' * 11}-+-{'-' * 9}-+-{'-' * 10}-+-{'-' * 8}")
    for n in SIZES:
        data = _site_data(n)
        validate = _median_seconds(lambda data=data: parse_site(copy.deepcopy(data)))
        site = parse_site(data)
        render = _median_seconds(lambda site=site: render_site(site))
        tracemalloc.start()
        render_site(site)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"{n:>8} | {validate * 1000:>11.1f} | {render * 1000:>9.1f} | "
            f"{(validate + render) * 1000 / n:>10.2f} | {peak / 2**20:>8.1f}"
        )


if __name__ == "__main__":
    main()
