"""Benchmark: validating and rendering sites of growing size.

Run: ``python -m bench.render_bench [--smoke]`` (prints a table; nothing is asserted;
``--smoke``: the smallest site, one run). Each site has N flavours cloned round-robin
from the example's own (however many it has); times are the median of several runs,
memory is the peak traced by tracemalloc during one render.
"""

from __future__ import annotations

import copy
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml

from bench._args import parser
from nomadwn.render import render_site
from nomadwn.sitefile import parse_site

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "glasgow.yaml"
SIZES = (4, 40, 400)
REPEATS = 5


def _site_data(flavours: int) -> dict[str, Any]:
    """The example site with ``flavours`` flavours, cloned round-robin from its own (at least one)."""
    base = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    originals = list(base["flavours"].items())
    clones = {}
    for i in range(max(1, flavours)):
        name, spec = originals[i % len(originals)]
        clones[f"{name}-{i}"] = copy.deepcopy(spec)
    base["flavours"] = clones
    return dict(base)


def _median_seconds(fn: Any, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> None:
    """Print one row per site size."""
    args = parser(__doc__).parse_args(argv)
    sizes, repeats = (SIZES[:1], 1) if args.smoke else (SIZES, REPEATS)
    print(f"{'flavours':>8} | {'validate ms':>11} | {'render ms':>9} | {'ms/flavour':>10} | {'peak MiB':>8}")
    print(f"{'-' * 8}-+-{'-' * 11}-+-{'-' * 9}-+-{'-' * 10}-+-{'-' * 8}")
    for n in sizes:
        data = _site_data(n)
        validate = _median_seconds(lambda data=data: parse_site(copy.deepcopy(data)), repeats)
        site = parse_site(data)
        render = _median_seconds(lambda site=site: render_site(site), repeats)
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
