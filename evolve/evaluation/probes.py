"""Probes: eval batches built to catch a model that looks ahead or keeps state.

The scorer sends these batches to the model process mixed at random among the scored ones;
they are built from the scored rows themselves, so nothing in their statistics sets them apart.

- causality: a probe row is a scored row r with its tokens after a cut t replaced by the tokens
  at the same positions of another scored row (real text, not random tokens). A causal model's
  log-probability of r's targets at positions 0..t cannot change. The cut is drawn uniformly
  over every position 0..T-1, so no position is safe (a cut at T-1 changes nothing in the row
  itself: the whole row is compared in a batch of other rows, so no position, the last one
  included, may read the other rows). A model that looks ahead at a fraction f of
  positions (any positions, chosen any way, at any distance) is caught by one probe row with
  probability >= f (the cut must fall on one of them; a longer look-ahead is caught by more
  cuts), so PROBE_ROWS = 240 rows catch f = 2 % with probability 1 - 0.98^240 = 99.2 %
  (f = 1 %: 91 %, f = 5 %: 99.99 %). Cost: 240 extra rows per evaluation (CPU task: 256 scored
  rows, so about 1.9x the forward passes of scoring; GPU task: 10,240 rows, +2.3 %).
- rows: one scored batch sent again with its rows permuted must give the same per-row results
  (a row may not read another row). The scorer also times its training speed on this batch
  (evolve.evaluation.scorer.model_tokens_per_sec): drawn here, after the program was fixed.
- state: the first batch sent is sent again at the end and must give the same results.

Comparisons are on log-softmax probabilities of the targets, with one absolute tolerance (nats):
adding a constant to every logit, or scaling the logits, moves nothing here, and a difference
smaller than the tolerance is worth at most that many nats per token.

What they cannot catch: a look-ahead at fewer positions than 1/PROBE_ROWS of them (each such
position gains the model at most its share of the score), and anything that is not a function of
the inputs it is sent (that is the allow-list's and the model process's job).
"""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np

PROBE_ROWS = 240
# Absolute tolerance on target log-probabilities (nats), the same for every dtype: the model
# chooses its logits' dtype, so a looser bound for 16-bit logits would let it pick its own
# tolerance (an adversary used bf16's to look ahead by 0.0155 nats at every position). Honest
# models measured 0.0 here on CPU in fp32, fp16 and bf16: per-row results do not depend on the
# other rows or on later tokens. A look-ahead hidden under it gains at most 1e-3 nats per token
# (~0.0005 bpb at ~3 bytes per token, the published seed-noise level).
TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class Request:
    """One batch sent to the model: which scored rows it is built from and how."""

    kind: str                  # "score", "causal", "rows", "state"
    rows: tuple[int, ...]      # scored row index per batch row
    cuts: tuple[int, ...] = ()     # causal: last unchanged position per row
    donors: tuple[int, ...] = ()   # causal: the row whose tokens replace positions > cut


def plan(n_rows: int, batch: int, seq_len: int, rng: random.Random) -> list[Request]:
    """Every scored batch once, the causality and row probes, in a random order; the state
    probe (the first request again) is appended by the caller after the rest."""
    assert n_rows % batch == 0 and seq_len >= 1
    out = [Request("score", tuple(range(b * batch, (b + 1) * batch))) for b in range(n_rows // batch)]
    for _ in range(math.ceil(PROBE_ROWS / batch)):
        rows = tuple(rng.randrange(n_rows) for _ in range(batch))
        cuts = tuple(rng.randrange(seq_len) for _ in range(batch))
        donors = tuple(_other(rng, n_rows, r) for r in rows)
        out.append(Request("causal", rows, cuts, donors))
    b = rng.randrange(n_rows // batch)
    perm = list(range(b * batch, (b + 1) * batch))
    rng.shuffle(perm)
    out.append(Request("rows", tuple(perm)))
    rng.shuffle(out)
    return out


def _other(rng: random.Random, n: int, r: int) -> int:
    if n == 1:
        return r
    d = rng.randrange(n - 1)
    return d + (d >= r)


def inputs(req: Request, x: np.ndarray) -> np.ndarray:
    """The [batch, T] input tokens of a request, from the scored inputs x [rows, T]."""
    out = x[list(req.rows)].copy()
    for i, (t, d) in enumerate(zip(req.cuts, req.donors)):
        out[i, t + 1:] = x[d, t + 1:]
    return out


def compared(req: Request, seq_len: int) -> np.ndarray:
    """Boolean [batch, T]: the positions whose results must equal the scored ones."""
    mask = np.ones((len(req.rows), seq_len), dtype=bool)
    for i, t in enumerate(req.cuts):
        mask[i, t + 1:] = False
    return mask


def max_change(req: Request, logp: np.ndarray, ref: np.ndarray) -> float:
    """Largest |change| in target log-probability over the compared positions (inf for NaN)."""
    want = ref[list(req.rows)]
    mask = compared(req, logp.shape[1])
    diff = np.abs(logp.astype(np.float64) - want.astype(np.float64))[mask]
    if diff.size == 0:
        return 0.0
    diff = np.where(np.isfinite(diff), diff, np.inf)
    return float(diff.max())


def verdict(kind: str, change: float, tol: float) -> str | None:
    """None when a probe passed; otherwise the one-line reason."""
    if change <= tol:
        return None
    if kind == "causal":
        return (f"causality probe: target log-probabilities moved by {change:.3g} nats at "
                "positions before the tokens that were changed (the model looks ahead)")
    if kind == "rows":
        return f"row probe: permuting the batch rows changed log-probabilities by {change:.3g} nats"
    return (f"state probe: the first batch sent again gives log-probabilities that differ by "
            f"{change:.3g} nats (the model keeps state across calls)")
