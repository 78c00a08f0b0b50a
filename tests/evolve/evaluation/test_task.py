"""The task's constants: the autocast dtype the scorer runs models in, and fingerprints."""

from __future__ import annotations

import pytest

from evolve.evaluation.task import Task


def test_cuda_scores_under_bf16_autocast_and_cpu_as_exported():
    assert Task.for_device("cuda").autocast == "bfloat16"
    assert Task.for_device("cpu").autocast == ""
    with pytest.raises(ValueError, match="autocast must be one of"):
        Task.for_device("cpu", autocast="int8")


def test_the_field_changes_no_fingerprint_of_a_run_made_before_it():
    # golden values of the code before the field (HEAD a31ecc4): a CPU run keeps comparing
    # with its old results; a cuda run, now scored under autocast, does not
    assert Task.for_device("cpu").fingerprint("abc") == "dc621adf048f6037"
    assert Task.for_device("cuda").fingerprint("abc") != "7468db5c266cb2eb"
    assert Task.for_device("cpu", autocast="bfloat16").fingerprint("abc") != "dc621adf048f6037"
    old = {k: v for k, v in Task.for_device("cpu").to_dict().items() if k != "autocast"}
    assert Task(**old).fingerprint("abc") == "dc621adf048f6037"     # an archive's stored task


def test_the_default_dataset_follows_the_device():
    import argparse

    from evolve.cli import _task

    assert Task.for_device("cuda").dataset == "climbmix"          # comparable with autoresearch
    assert Task.for_device("cpu").dataset == "stdlib"             # embedded, no network
    for device, dataset in (("cuda", "climbmix"), ("cpu", "stdlib")):
        args = argparse.Namespace(device=device, dataset=None, vocab_size=None, budget=None)
        assert _task(args)[0].dataset == dataset
    args = argparse.Namespace(device="cuda", dataset="stdlib", vocab_size=None, budget=None)
    assert _task(args)[0].dataset == "stdlib"


def test_the_command_line_counts_cpu_seconds_on_cpu_where_it_can_and_wall_seconds_on_cuda():
    import argparse
    import os

    from evolve.cli import _task
    from evolve.evaluation.supervisor import cpu_clock_problem

    def task(device, clock=None):
        return _task(argparse.Namespace(device=device, dataset=None, vocab_size=None,
                                        budget=None, clock=clock))

    cpu = task("cpu")[0]
    assert cpu.clock == ("wall" if cpu_clock_problem() else "cpu")
    assert cpu.threads == len(os.sched_getaffinity(0))   # the cores this process may use
    assert task("cpu", "wall")[0].clock == "wall" and task("cpu", "wall")[0].threads == cpu.threads
    assert task("cuda")[0].clock == "wall" and task("cuda")[0].threads == 0
    # a cpu clock divides by the cores granted, which only the CPU task decides
    assert task("cuda", "cpu")[0] is None and "threads >= 1" in task("cuda", "cpu")[1]


def test_the_clock_and_threads_enter_the_fingerprint_only_when_set():
    import dataclasses

    wall = Task.for_device("cpu")
    assert wall.clock == "wall" and wall.threads == 0
    assert "clock" not in wall.constants() and "threads" not in wall.constants()
    cpu = dataclasses.replace(wall, clock="cpu", threads=2)
    prints = {t.fingerprint("d") for t in (wall, cpu, dataclasses.replace(cpu, threads=4),
                                           dataclasses.replace(wall, threads=2))}
    assert len(prints) == 4
    assert "clock must be one of" in dataclasses.replace(wall, clock="tsc").problem()


def test_the_run_header_says_what_the_budget_counts():
    import dataclasses

    from evolve.cli import run_header
    from evolve.search.engine import EngineConfig

    config = EngineConfig(population=3, generations=1)
    wall = Task.for_device("cpu", budget_s=1.0)
    assert run_header(config, wall, 1, None, 1) == \
        "evolve: population 3, generations 1, budget 1 s on cpu x1, 1 seed(s)"
    cpu = dataclasses.replace(wall, clock="cpu", threads=2)
    assert run_header(config, cpu, 1, "tcp://h:8786", 2) == (
        "evolve: population 3, generations 1, budget 1 s of core time (2 core(s) per genome) "
        "on cpu x1 (Dask cluster tcp://h:8786), 2 seed(s)")
