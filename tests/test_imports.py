"""Model, renderer, the pool's value types, the strategy and the loop import no client library (STYLE.md)."""

from __future__ import annotations

import json
import subprocess
import sys

CLIENTS = ("nomad", "consul", "htcondor", "htcondor2", "classad", "classad2", "requests", "urllib3", "httpx")


def test_pure_modules_import_no_client_library() -> None:
    code = (
        "import sys, json; import nomadwn.model, nomadwn.render, nomadwn.sitefile, nomadwn.autopilot, "
        "nomadwn.autoscale.strategy, nomadwn.pool, nomadwn.autoscale.loop, nomadwn.metrics; "
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert loaded.isdisjoint(CLIENTS), loaded & set(CLIENTS)
