"""Best-fit packing of BOS-delimited documents into fixed-length rows, with no padding.

A token file is `BOS doc BOS doc ...` (uint16). `BestFitPacker` cuts it into documents and fills
rows of `row_len` tokens (SEQ_LEN + 1, so that inputs and targets are one shift apart):

- every row starts with a document, hence with BOS;
- each slot is filled with the longest buffered document that still fits (best fit);
- when none fits, the shortest buffered document is cropped to the space left and its rest is
  dropped (a row never starts mid-document).

Documents are visited in a fixed pseudo-random order (a permutation seeded by `seed`), wrapping
around after an epoch, so a run sees the same stream on every machine. The packer runs in the
trusted supervisor, not in the genome's process; `benchmarks/bench_loader.py` measures its
throughput (see README). It does not move data to a device or build tensors.
"""

from __future__ import annotations

import bisect

import numpy as np


def document_bounds(tokens: np.ndarray, bos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and lengths (BOS included) of the documents in a token array."""
    starts = np.flatnonzero(tokens == bos_id).astype(np.int64)
    if len(starts) == 0 or starts[0] != 0:
        raise ValueError("token file must start with BOS")
    ends = np.append(starts[1:], len(tokens))
    return starts, ends - starts


class BestFitPacker:
    """Fills rows from a token array; call `rows(n)` for the next n rows (uint16 [n, row_len])."""

    def __init__(self, tokens: np.ndarray, bos_id: int, row_len: int,
                 buffer_docs: int = 1000, seed: int | None = 0,
                 bounds: tuple[np.ndarray, np.ndarray] | None = None):
        self.tokens = tokens
        self.row_len = row_len
        # bounds: precomputed document_bounds(tokens, bos_id), reused across packers because
        # scanning a multi-GB token file for BOS takes seconds.
        self.starts, self.lengths = bounds if bounds is not None else document_bounds(tokens, bos_id)
        n = len(self.starts)
        self.order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
        self.cursor = 0                     # next position in self.order
        self.epoch = 0
        # The buffer: parallel sorted lists of (length, doc) so that bisect finds the best fit.
        self.buf_len: list[int] = []
        self.buf_doc: list[int] = []
        for _ in range(min(buffer_docs, n)):
            self._refill()

    def _refill(self) -> None:
        if self.cursor >= len(self.order):
            self.cursor = 0
            self.epoch += 1
        doc = int(self.order[self.cursor])
        self.cursor += 1
        length = int(self.lengths[doc])
        i = bisect.bisect_right(self.buf_len, length)
        self.buf_len.insert(i, length)
        self.buf_doc.insert(i, doc)

    def _take(self, i: int) -> tuple[int, int]:
        length = self.buf_len.pop(i)
        doc = self.buf_doc.pop(i)
        self._refill()
        return int(self.starts[doc]), length

    def rows(self, n: int) -> np.ndarray:
        out = np.empty((n, self.row_len), dtype=np.uint16)
        tokens = self.tokens
        for r in range(n):
            row = out[r]
            pos = 0
            while pos < self.row_len:
                space = self.row_len - pos
                i = bisect.bisect_right(self.buf_len, space) - 1
                if i >= 0:                      # the longest document that fits whole
                    start, length = self._take(i)
                    row[pos:pos + length] = tokens[start:start + length]
                    pos += length
                else:                           # nothing fits: crop the shortest, drop its rest
                    start, _ = self._take(0)
                    row[pos:] = tokens[start:start + space]
                    pos = self.row_len
        return out


def eval_rows(tokens: np.ndarray, bos_id: int, row_len: int, n_rows: int) -> np.ndarray:
    """The fixed eval set: the first n_rows rows packed from the validation split, in file
    order (no shuffle), wrapping if the split is small. Same input, same rows, everywhere."""
    return BestFitPacker(tokens, bos_id, row_len, seed=None).rows(n_rows)
