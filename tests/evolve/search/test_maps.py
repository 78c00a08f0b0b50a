"""The conformance suite of evaluation maps: every backend of the engine's one swappable map
(LocalMap on this machine, DaskMap on a Dask cluster) passes the same tests, on fake
evaluations (tests/evolve/search/map_fakes.py) so the map, not the genome, is under test:
completion order, failures as values, at most `slots` at once and pinned, closing the stream
cancels what has not started, no evaluation run twice, a job's pruner reaches its evaluation."""

from __future__ import annotations

import time
import warnings

import pytest

from tests.evolve.search.map_fakes import FakeSupervisor, fake_on_worker, marks


@pytest.fixture(params=["local", "dask"])
def emap(request):
    if request.param == "local":
        # Two fake GPUs: two slots, each evaluation pinned through CUDA_VISIBLE_DEVICES.
        return LocalMapUnderTest()
    from evolve.search.cluster import DaskMap

    client = request.getfixturevalue("fragile")      # the session's LocalCluster (conftest)
    client.wait_for_workers(2, timeout=60)           # a cluster test may have killed one
    m = DaskMap(client, {"device": "cpu"}, "f" * 16, evaluate=fake_on_worker)
    list(m.imap([("warm", "name=warm")]))         # workers import the fakes once
    return m


class LocalMapUnderTest:
    def __new__(cls):
        from evolve.search.workers import LocalMap

        return LocalMap(FakeSupervisor("cuda"), devices=["0", "1"])


def _job(name: str, d, **kw) -> tuple[str, str]:
    return name, ";".join([f"name={name}", f"marks={d}"] + [f"{k}={v}" for k, v in kw.items()])


def test_results_come_in_completion_order(emap, tmp_path):
    assert emap.slots == 2
    jobs = [_job("slow", tmp_path, sleep=1.5), _job("fast1", tmp_path, sleep=0.05),
            _job("fast2", tmp_path, sleep=0.05)]
    keys = [d.key for d in emap.imap(jobs)]
    assert sorted(keys) == ["fast1", "fast2", "slow"]
    assert keys[-1] == "slow", keys


def test_failures_are_values_and_the_rest_goes_on(emap, tmp_path):
    done = {d.key: d for d in emap.imap([_job("c", tmp_path, crash=1), _job("r", tmp_path, **{"raise": 1}),
                                         _job("ok", tmp_path, bpb=1.25)])}
    assert done["c"].result.status.value == "crash"
    assert done["r"].result.status.value == "crash"
    assert "fault in trusted code" in done["r"].result.reason
    assert done["ok"].result.ok and done["ok"].result.val_bpb == 1.25
    assert all(d.finished_at >= d.started_at for d in done.values())


def test_at_most_slots_at_once_each_on_its_own_slot(emap, tmp_path):
    list(emap.imap([_job(f"j{i}", tmp_path, sleep=0.4) for i in range(4)]))
    runs = marks(tmp_path)
    assert len(runs) == 4
    overlap = max(sum(s <= t < e for _, s, e, _ in runs) for _, t, _, _ in runs)
    assert overlap == 2                              # both slots used, never more
    for a in runs:                                   # runs at the same time are on different slots
        for b in runs:
            if a is not b and a[1] <= b[1] < a[2] and a[3]:
                assert a[3] != b[3], (a, b)


def test_closing_the_stream_cancels_what_has_not_started(emap, tmp_path):
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        stream = emap.imap([_job(f"j{i}", tmp_path, sleep=0.3) for i in range(8)])
        next(stream)
        stream.close()
        time.sleep(1.6)                              # 8 x 0.3 s on 2 slots would end by now
    assert 1 <= len(marks(tmp_path)) <= 5, marks(tmp_path)
    # Cancelling is the point of closing: no warning about it reaches the user.
    assert not [w for w in said if "cancel" in str(w.message) or "not used" in str(w.message)], \
        [str(w.message) for w in said]


def test_each_job_runs_once_and_nothing_else_runs(emap, tmp_path):
    jobs = [_job(f"j{i}", tmp_path) for i in range(5)]
    keys = [d.key for d in emap.imap(jobs)]
    assert sorted(keys) == [k for k, _ in jobs]
    assert sorted(name for name, *_ in marks(tmp_path)) == [k for k, _ in jobs]
    assert list(emap.imap([])) == []


def test_a_jobs_pruner_reaches_its_evaluation_and_only_its_own(emap, tmp_path):
    from evolve.search.pruning import Pruner

    stop = Pruner.of([((0.2, 3.0),)], stop=True)
    done = {d.key: d.result for d in emap.imap([(*_job("p", tmp_path), stop),
                                                (*_job("n", tmp_path), None),
                                                _job("plain", tmp_path)])}
    assert done["p"].status.value == "pruned" and done["p"].pruned_at == 0.2
    assert done["n"].ok and done["plain"].ok
