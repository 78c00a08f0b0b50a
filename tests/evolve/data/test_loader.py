"""Best-fit packing: BOS first, no padding, whole documents where they fit, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from evolve.data.loader import BestFitPacker, document_bounds, eval_rows

BOS = 0


def make_tokens(lengths, start=1):
    """Documents of the given lengths (BOS included); doc i's body is its id repeated."""
    parts = []
    for i, n in enumerate(lengths):
        parts.append(np.array([BOS] + [start + i] * (n - 1), dtype=np.uint16))
    return np.concatenate(parts)


def test_rows_start_with_bos_and_have_no_padding():
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 40, size=300)
    tokens = make_tokens(lengths)
    packer = BestFitPacker(tokens, BOS, row_len=33)
    rows = packer.rows(50)
    assert rows.shape == (50, 33)
    assert (rows[:, 0] == BOS).all()
    for row in rows:
        # Split the row at BOS: every piece is a prefix of one document (whole, or the one
        # cropped piece at the end), so there is no padding and nothing from elsewhere.
        cuts = list(np.flatnonzero(row == BOS)) + [len(row)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            piece = row[a:b]
            doc = int(piece[1]) - 1 if len(piece) > 1 else None
            if doc is not None:
                assert (piece[1:] == doc + 1).all()
                assert len(piece) <= lengths[doc]
                if b != len(row):
                    assert len(piece) == lengths[doc]      # only the last piece may be cropped


def test_best_fit_prefers_the_longest_document_that_fits():
    tokens = make_tokens([5, 3, 8, 2])
    packer = BestFitPacker(tokens, BOS, row_len=10, seed=None)
    row = packer.rows(1)[0]
    # space 10: longest fitting is 8, then space 2: the 2-token doc fills it exactly.
    assert list(row) == [BOS] + [3] * 7 + [BOS, 4]


def test_crops_the_shortest_when_nothing_fits():
    tokens = make_tokens([12, 15])
    row = BestFitPacker(tokens, BOS, row_len=10, seed=None).rows(1)[0]
    assert list(row) == [BOS] + [1] * 9


def test_deterministic_and_eval_rows_fixed():
    tokens = make_tokens(np.random.default_rng(2).integers(2, 30, size=200))
    a = BestFitPacker(tokens, BOS, 17, seed=5).rows(20)
    b = BestFitPacker(tokens, BOS, 17, seed=5).rows(20)
    assert (a == b).all()
    assert (eval_rows(tokens, BOS, 17, 8) == eval_rows(tokens, BOS, 17, 8)).all()


def test_token_file_must_start_with_bos():
    with pytest.raises(ValueError):
        document_bounds(np.array([5, 0, 3], dtype=np.uint16), BOS)
