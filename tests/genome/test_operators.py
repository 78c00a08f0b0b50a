"""Where operators must refuse: patterns that are close to, but not exactly, what they know."""

from __future__ import annotations

import random

import pytest

from genome.operators import MUTATIONS
from tests.genome.genome_paths import GOLDEN, read

HEAD = "import torch\nimport torch.nn.functional as F\nfrom evolve import harness\n\n"
TAIL = "\nharness.submit(torch.nn.Linear(4, 4))\n"


@pytest.mark.parametrize("op, body, reason", [
    ("constant", "SEED = 42\nLOG_EVERY = 10\n", "no module-level ALL_CAPS number"),
    ("constant", "DEPTH = 4\nDEPTH = 5\n", "no module-level ALL_CAPS number"),   # assigned twice
    ("keyword", "x = torch.zeros(3, dtype=torch.float32, out=None)\n", "no numeric keyword"),
    ("scale", "class A:\n    def forward(self, x):\n        return 0.5 * x\n", "no init or gate"),
    ("norm", "def n(x, b):\n    return F.layer_norm(x, (4,), None, b)\n", "no rms_norm"),
    ("swiglu", "def swiglu(x):\n    return x\n", "swiglu is already used"),
    ("window", 'MODE = "SSSL"\n', "no window pattern"),
    ("bool", "DEBUG = True\n", "no module-level ALL_CAPS boolean"),
    ("drop_warmup", "def lr(p):\n    if p < 0.5:\n        return p\n", "no `if ...warmup"),
    ("drop_warmup", "W = 0.1\n\ndef lr(warmup):\n    if warmup < W:\n        return 0\n",
     "no `if ...warmup"),                                                     # last statement
    ("drop_value_embeds", "def has_value_embedding(i):\n    x = i % 2\n    return x == 1\n",
     "no value-embedding switch"),
])
def test_near_misses_are_not_applicable(op, body, reason):
    result = MUTATIONS[op](HEAD + body + TAIL, random.Random(0))
    assert not result.applied and reason in result.reason, result


def test_x0_skip_stays_when_its_parameter_is_used_elsewhere():
    source = read(GOLDEN / "x0_skip.py").replace(
        "        return x\n", "        return x + self.x0_lambdas.sum()\n")
    result = MUTATIONS["drop_x0"](source, random.Random(0))
    assert not result.applied and "x0_lambdas is used outside" in result.reason


def test_batch_halving_without_a_device_batch_to_follow_is_refused():
    # DEVICE_BATCH_SIZE is computed, so halving TOTAL cannot be kept a multiple: only moves
    # up (or of other constants) remain.
    source = HEAD + "TOTAL_BATCH_TOKENS = 2**19\nDEVICE_BATCH_SIZE = int(2**7)\n" + TAIL
    for seed in range(20):
        result = MUTATIONS["constant"](source, random.Random(seed))
        assert result.applied and "2**19 -> 2**20" in result.description
