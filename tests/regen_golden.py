"""Regenerate every golden jobspec: ``python -m tests.regen_golden``.

Renders ``examples/*.yaml`` into ``jobspecs/`` and ``tests/golden/*.yaml`` into
``tests/golden/jobspecs/``, the same way ``nomadwn render`` does. Review the diff
before committing it.
"""

from __future__ import annotations

from pathlib import Path

from nomadwn.render import jobspec_files, write_jobspecs
from nomadwn.sitefile import load_site

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_SITES: dict[Path, Path] = {
    **{p: ROOT / "jobspecs" for p in sorted((ROOT / "examples").glob("*.yaml"))},
    **{p: ROOT / "tests" / "golden" / "jobspecs" for p in sorted((ROOT / "tests" / "golden").glob("*.yaml"))},
}


def main() -> None:
    """Render every golden site and report the files that changed."""
    for site_file, out_dir in GOLDEN_SITES.items():
        for path in write_jobspecs(jobspec_files(load_site(site_file), out_dir)):
            print(f"updated {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
