"""The scales of numeric moves (genome.perturb) and the relations children keep
(genome.constraints), checked over many draws."""

from __future__ import annotations

import random

import pytest

from genome.constraints import violations
from genome.perturb import kind, propose, propose_exponent

DRAWS = 300


@pytest.mark.parametrize("name, value, expected", [
    ("SEED", 42, "frozen"), ("LOG_EVERY", 10, "frozen"), ("DEPTH", 8, "count"),
    ("N_KV_HEAD", 2, "count"), ("HEAD_DIM", 128, "pow2"), ("DEVICE_BATCH_SIZE", 128, "pow2"),
    ("LR_REF_DIM", 768, "int"), ("ADAM_BETAS", 0.95, "beta"), ("MUON_MOMENTUM_END", 0.95, "beta"),
    ("WARMDOWN_RATIO", 0.5, "fraction"), ("ROPE_BASE", 10000.0, "base"),
    ("HEAD_WD", 0.0, "decay"), ("MATRIX_LR", 0.04, "scale"), ("LOGIT_SOFTCAP", 15.0, "scale"),
])
def test_kind_from_name_and_value(name, value, expected):
    assert kind(name, value) == expected


def test_moves_stay_in_range_and_always_change():
    rng = random.Random(0)
    for _ in range(DRAWS):
        depth = propose("DEPTH", 8, rng)
        assert depth in (7, 9)
        assert propose("N_HEAD", 1, rng) == 2                 # never below 1
        assert propose("HEAD_DIM", 128, rng) in (64, 256)
        assert propose("DEVICE_BATCH_SIZE", 1, rng) == 2
        steps = propose("MUON_MOMENTUM_STEPS", 300, rng)
        assert isinstance(steps, int) and steps >= 1 and steps != 300
        beta = propose("ADAM_BETA2", 0.95, rng)
        assert 0.5 < beta < 1 and beta != 0.95
        frac = propose("WARMDOWN_RATIO", 0.9, rng)
        assert 0 < frac <= 1 and frac != 0.9
        lr = propose("MATRIX_LR", 0.04, rng)
        assert lr > 0 and lr != 0.04 and 1.09 < max(lr / 0.04, 0.04 / lr)   # |z| >= 0.3
        assert 1e-3 <= propose("HEAD_WD", 0.0, rng) <= 0.1           # switched on, small
        assert propose("MATRIX_LR", -0.04, rng) < 0                   # sign kept
    assert propose("SEED", 42, rng) is None and propose("MATRIX_LR", 0.0, rng) is None
    assert propose_exponent(19, rng) in (18, 20) and propose_exponent(1, rng) == 2


def test_log_normal_moves_go_both_ways_with_spread():
    rng = random.Random(1)
    ratios = [propose("MATRIX_LR", 0.04, rng) / 0.04 for _ in range(DRAWS)]
    up = sum(r > 1 for r in ratios)
    assert 0.35 * DRAWS < up < 0.65 * DRAWS
    assert max(ratios) > 1.5 and min(ratios) < 1 / 1.5
    bases = [propose("ROPE_BASE", 10000.0, rng) for _ in range(DRAWS)]
    assert max(bases) > 50000                                     # RoPE bases move by factors


def test_batch_rule_with_and_without_a_literal_sequence_length():
    parent = {"TOTAL_BATCH_TOKENS": 2**19, "DEVICE_BATCH_SIZE": 128}
    assert violations({**parent, "TOTAL_BATCH_TOKENS": 2**18}, [parent])      # SEQ_LEN unknown
    assert not violations({"TOTAL_BATCH_TOKENS": 2**18, "DEVICE_BATCH_SIZE": 64}, [parent])
    assert not violations({**parent, "DEVICE_BATCH_SIZE": 64}, [parent])
    assert violations({**parent, "DEVICE_BATCH_SIZE": 256}, [parent])
    known = {**parent, "SEQ_LEN": 2048}
    assert not violations({**known, "TOTAL_BATCH_TOKENS": 2**18}, [known])
    assert violations({**known, "TOTAL_BATCH_TOKENS": 2**17}, [known])


def test_head_and_schedule_rules():
    assert not violations({"MODEL_DIM": 512, "HEAD_DIM": 128, "N_HEAD": 4, "N_KV_HEAD": 2})
    assert violations({"MODEL_DIM": 512, "HEAD_DIM": 96})
    assert violations({"MODEL_DIM": 512, "N_HEAD": 3})
    assert violations({"N_HEAD": 4, "N_KV_HEAD": 3})
    assert violations({"HEAD_DIM": 63})
    assert violations({"N_HEAD": 0})
    assert violations({"WARMUP_RATIO": 0.6, "WARMDOWN_RATIO": 0.5})
    assert violations({"FINAL_LR_FRAC": 1.5})
    assert not violations({"WARMUP_RATIO": 0.0, "WARMDOWN_RATIO": 0.75, "FINAL_LR_FRAC": 0.05})
