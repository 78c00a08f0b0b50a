"""The genome tree's cgroup (evolve.evaluation.cgroups), on the real cgroup filesystem."""

import os

import pytest

from evolve.evaluation import cgroups


def test_cgroups_of_dead_supervisors_are_swept():
    dead = cgroups.MemoryCgroup.create(f"autoevolve-eval-999999999-{os.getpid()}", 2 ** 30)
    if dead is None:
        pytest.skip("no writable memory cgroup here")
    alive = cgroups.MemoryCgroup.create(f"autoevolve-eval-{os.getpid()}-sweep", 2 ** 30)
    try:
        removed = cgroups.MemoryCgroup.sweep(lambda pid: pid == os.getpid())
        assert removed >= 1 and not dead.path.exists()
        assert alive.path.exists()                  # a live supervisor's cgroup is kept
    finally:
        for cg in (dead, alive):
            if cg is not None and cg.path.exists():
                cg.remove()
