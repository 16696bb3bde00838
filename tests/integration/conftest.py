"""Fixtures shared by the integration tests: real peers, failing (never skipping) when missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers import CondorPool, ConsulAgent


@pytest.fixture(scope="module")
def consul() -> Iterator[ConsulAgent]:
    """A real Consul dev agent for the module."""
    missing = ConsulAgent.available()
    if missing is not None:
        pytest.fail(missing)
    with ConsulAgent() as agent:
        yield agent


@pytest.fixture(scope="module")
def pool() -> Iterator[CondorPool]:
    """A real HTCondor personal pool for the module (test_condor_source.py has its own, with jobs)."""
    missing = CondorPool.available()
    if missing is not None:
        pytest.fail(missing)
    with CondorPool() as started:
        yield started
