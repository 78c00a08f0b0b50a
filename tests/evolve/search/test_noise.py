"""The noise floor pools the variance of repeated evaluations and ignores single ones."""

from __future__ import annotations

import math

import pytest

from evolve.search.noise import pooled_std


def test_pooled_std_by_hand():
    # genome a: 1.0, 1.2 (ss 0.02, dof 1); b: 2.0, 2.0, 2.3 (ss 0.06, dof 2); c: once, ignored.
    pairs = [("a", 1.0), ("a", 1.2), ("b", 2.0), ("b", 2.0), ("b", 2.3), ("c", 9.0)]
    assert pooled_std(pairs) == pytest.approx(math.sqrt(0.08 / 3))


def test_no_repeats_no_floor():
    assert pooled_std([("a", 1.0), ("b", 2.0)]) is None
