"""Fixtures of the search tests: one Dask LocalCluster for the session (the map conformance
suite and the cluster tests share it; starting one takes seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def fragile(prepared):
    """Two one-thread worker processes; an evaluation may kill one worker and is then re-run, a
    second kill ends it (allowed failures 1). Started after the data is prepared: workers
    inherit AUTOEVOLVE_HOME. Tests that kill workers leave them restarting: wait for both."""
    pytest.importorskip("distributed")
    from evolve.search.cluster import connect

    client, cluster = connect("local:2", type("T", (), {"device": "cpu"})(), allowed_failures=1)
    yield client
    client.close()
    cluster.close()
