"""The one command line every bench takes: ``--smoke`` runs its smallest size once.

Convention (see the README's Development table): a bench is a module ``bench/<name>.py``
with ``main(argv: list[str] | None = None) -> None`` that parses ``argv`` with
:func:`parser`, prints a table on stdout, asserts nothing about time, and with
``--smoke`` runs only its smallest size and fewest repeats. ``tests/test_benches.py``
finds every such module and runs it once with ``--smoke``.
"""

from __future__ import annotations

import argparse


def parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the shared ``--smoke`` flag; a bench may add its own options."""
    p = argparse.ArgumentParser(description=(description or "").strip().splitlines()[0] if description else None)
    p.add_argument("--smoke", action="store_true", help="run the smallest size once (CI: it must finish)")
    return p
