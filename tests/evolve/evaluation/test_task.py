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
