"""The jobspec file formats ``nomadwn render`` writes (apart from :mod:`nomadwn.render`, so the CLI's
``--format`` option costs no import of the model or the templates)."""

from __future__ import annotations

from typing import Literal

Format = Literal["hcl", "json", "both"]
"""``hcl``: ``<flavour>.nomad.hcl`` for review; ``json``: ``<flavour>.json`` for the HTTP API; ``both``."""
