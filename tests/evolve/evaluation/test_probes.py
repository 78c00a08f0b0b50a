"""Probe batches: built from scored rows, spliced with real text, compared on log-probabilities."""

from __future__ import annotations

import math
import random

import numpy as np

from evolve.evaluation import probes


def test_plan_scores_every_row_once_and_probes_enough_rows():
    plan = probes.plan(n_rows=64, batch=8, seq_len=16, rng=random.Random(0))
    scored = [r for req in plan if req.kind == "score" for r in req.rows]
    assert sorted(scored) == list(range(64))
    causal = [req for req in plan if req.kind == "causal"]
    assert sum(len(req.rows) for req in causal) >= probes.PROBE_ROWS
    assert [req.kind for req in plan].count("rows") == 1
    cuts = [t for req in causal for t in req.cuts]
    assert min(cuts) >= 0 and max(cuts) <= 15               # every position 0..T-1 can be cut
    assert len(set(cuts)) == 16                              # and, over 240 rows, each one is
    assert all(d != r for req in causal for r, d in zip(req.rows, req.donors))


def test_probe_inputs_are_a_scored_prefix_and_another_rows_real_suffix():
    x = np.arange(4 * 6, dtype=np.uint16).reshape(4, 6)
    req = probes.Request("causal", rows=(2, 0), cuts=(1, 4), donors=(3, 1))
    got = probes.inputs(req, x)
    assert got[0].tolist() == [12, 13, 20, 21, 22, 23]      # row 2 up to t=1, then row 3
    assert got[1].tolist() == [0, 1, 2, 3, 4, 11]           # row 0 up to t=4, then row 1
    assert probes.compared(req, 6).tolist() == [[True, True, False, False, False, False],
                                                 [True] * 5 + [False]]


def test_changes_after_the_cut_do_not_count_and_before_it_do():
    ref = np.zeros((3, 5), dtype=np.float32)
    req = probes.Request("causal", rows=(1,), cuts=(2,), donors=(0,))
    after = np.array([[0, 0, 0, -9, -9]], dtype=np.float32)
    assert probes.max_change(req, after, ref) == 0.0
    before = np.array([[0, 0, -0.5, 0, 0]], dtype=np.float32)
    assert probes.max_change(req, before, ref) == 0.5
    assert "causality" in probes.verdict("causal", 0.5, probes.TOLERANCE)
    nan = np.array([[math.nan, 0, 0, 0, 0]], dtype=np.float32)
    assert probes.max_change(req, nan, ref) == math.inf


def test_detection_probability_claimed_in_the_docstring():
    # One probe row catches a look-ahead at a fraction f of positions with probability >= f.
    assert 1 - 0.98 ** probes.PROBE_ROWS >= 0.99
