"""Golden before/after tests: one small genome per operator, and the exact child (and
description) it must give for a fixed seed. The files are in tests/fixtures/genomes/golden:
`CASE.py` is the parent, `CASE__OPERATOR_SEED.py` the expected child; crossovers use
parent_a.py and parent_b.py.

After an intended change of an operator, rewrite the expected children with
    GENOME_REGOLD=1 python -m pytest -q tests/genome/test_golden.py
and read every diff before keeping it: a golden file is a statement of what the operator does.
"""

from __future__ import annotations

import os
import random

import pytest

from genome.operators import CROSSOVERS, MUTATIONS
from genome.record import identity
from tests.genome.genome_paths import GOLDEN, read

CASES = [
    ("constant", 7, "constants", "TOTAL_BATCH_TOKENS 2**19 -> 2**18, DEVICE_BATCH_SIZE 128 -> 64 "
                                 "(keeps the batch a multiple of the row length)"),
    ("constant", 1, "constants", "ADAM_BETAS (0.8, 0.95) -> (0.86, 0.95)"),
    ("keyword", 0, "keywords", "betas=(0.9, 0.95) -> (0.9, 0.968) in module code"),
    ("keyword", 1, "keywords", "weight_decay=0.0 -> 0.002 in module code"),
    ("scale", 0, "scales", "init scale 0.5 -> 1.06 in Gate.init_weights"),
    ("scale", 1, "scales", "gate scale 2 -> 2.84 in Gate.forward"),
    ("activation", 2, "mlp", "activation relu2 -> gelu in MLP.forward"),
    ("swiglu", 0, "mlp", "MLP activation relu2 -> swiglu in MLP.forward "
                         "(Linear out features 32 doubled)"),
    ("norm", 0, "norm", "norm rms_norm -> layer_norm in norm"),
    ("window", 5, "window", 'WINDOW_PATTERN "SSSL" -> "SSSSL"'),
    ("bool", 0, "bools", "USE_BIAS True -> False"),
    ("drop_warmup", 0, "warmup", "LR warm-up removed from lr_multiplier "
                                 "(if progress < WARMUP_RATIO: return progress / WARMUP_RATIO)"),
    ("drop_x0", 0, "x0_skip", "x0 skip removed in Net.forward: x = self.resid_lambdas[i] * x "
                              "(x0_lambdas deleted)"),
    ("drop_value_embeds", 0, "value_embeds", "value embeddings off: has_value_embedding returns "
                                             "False"),
    ("kernel", 0, "norm", "kernel rms_norm: F.rms_norm(x, (x.size(-1),)) -> kernels.rms_norm(x) "
                          "in norm"),
    ("tune", 2, "constants", "tune: DEPTH 4 -> 6, TOTAL_BATCH_TOKENS 2**19 -> 2**20, "
                             "DEVICE_BATCH_SIZE 128 -> 32"),
]
CROSS_CASES = [
    ("constants", 0, "constants from b: MATRIX_LR 0.03, WARMDOWN_RATIO 0.7 (2 of 4)"),
    ("definitions", 0, "definitions from b: schedule (1 of 2), with FLOOR, clamp"),
    ("definitions", 1, "definitions from b: act (1 of 2)"),
]
REGOLD = os.environ.get("GENOME_REGOLD") == "1"


def _compare(result, expected_path, description):
    assert result.applied, result.reason
    if REGOLD:
        expected_path.write_text(result.child, encoding="utf-8")
    assert result.child == read(expected_path)
    assert result.description == description


def test_every_operator_has_a_golden_case():
    assert {op for op, *_ in CASES} == set(MUTATIONS)
    assert {op for op, *_ in CROSS_CASES} == set(CROSSOVERS)


@pytest.mark.parametrize("op, seed, case, description", CASES,
                         ids=[f"{op}-{seed}" for op, seed, *_ in CASES])
def test_mutation_golden(op, seed, case, description):
    before = read(GOLDEN / f"{case}.py")
    result = MUTATIONS[op](before, random.Random(seed))
    _compare(result, GOLDEN / f"{case}__{op}_{seed}.py", description)
    assert identity(result.child) != identity(before)


@pytest.mark.parametrize("op, seed, description", CROSS_CASES,
                         ids=[f"{op}-{seed}" for op, seed, _ in CROSS_CASES])
def test_crossover_golden(op, seed, description):
    a, b = read(GOLDEN / "parent_a.py"), read(GOLDEN / "parent_b.py")
    result = CROSSOVERS[op](a, b, random.Random(seed))
    _compare(result, GOLDEN / f"parents__{op}_{seed}.py", description)
