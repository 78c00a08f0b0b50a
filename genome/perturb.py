"""How far to move one hyperparameter: the scale of a numeric perturbation, from its name and value.

    propose(name, value, rng) -> new value, or None when the number should not be changed
    proposals(name, value, rng) -> several new values to try in turn (both ways for +-1, x2)
    propose_exponent(exp, rng) -> exp +- 1 (for sizes written as 2**exp)

Kinds, decided from the words of the name (split at "_") and the value:

    frozen    SEED, LOG_EVERY, PRINT_...: never changed. A new random seed moves val_bpb by
              ~0.0005, as much as many "wins" (CONTEXT.md), so it is noise, not an idea.
    count     DEPTH, N_LAYER, N_HEAD, N_KV_HEAD: +-1, at least 1.
    pow2      other ints that are powers of two (batch sizes, widths, HEAD_DIM): x2 or /2.
    int       other ints: times a log-normal factor, rounded, always changed by at least 1.
    beta      BETA*, MOMENTUM* in (0.5, 1): 1 - beta moves log-normally (0.95 -> 0.93 or 0.96).
    fraction  *_RATIO, *_FRAC, DROPOUT in (0, 1]: log-normal, capped at 1.
    base      *_BASE, THETA (RoPE): log-normal with a wide sigma (a factor of e per step).
    decay     WD, WEIGHT_DECAY, *_DECAY at 0.0: switched on at 10**U(-3, -1) (small decays on
              head and embeddings were published wins); when non-zero, like scale.
    scale     every other float (learning rates, init scales, softcaps, eps): log-normal.

Log-normal factors are exp(sigma * z) with z ~ N(0, 1) redrawn until |z| >= MIN_Z, so a proposal
is never a change below the noise floor. Floats are rounded to 3 significant digits (2 for
1 - beta) so that descriptions stay readable ("0.04 -> 0.0523").

What it does not do: keep relations between constants valid (genome.constraints does).
"""

from __future__ import annotations

import math
import random

SIGMA = 0.3          # ~ +-35 % at one standard deviation: a step a person would try
SIGMA_BASE = 1.0     # RoPE bases span orders of magnitude (10k -> 200k was a published win)
MIN_Z = 0.3          # smallest |z|: 0.3 * 0.3 = a 9 % change at least
FROZEN = {"SEED", "EVERY", "LOG", "PRINT", "VERBOSE", "DEBUG", "INTERVAL"}
COUNT = {"DEPTH", "LAYER", "LAYERS", "HEAD", "HEADS"}
FRACTION = {"RATIO", "FRAC", "FRACTION", "PROB", "DROPOUT"}
BASE = {"BASE", "THETA"}
DECAY = {"WD", "DECAY"}


def words(name: str) -> set[str]:
    return set(name.upper().split("_"))


def kind(name: str, value: int | float) -> str:
    w = words(name)
    if w & FROZEN or isinstance(value, bool):
        return "frozen"
    if isinstance(value, int):
        if w & COUNT and "DIM" not in w:
            return "count"
        if value >= 1 and value & (value - 1) == 0:
            return "pow2"
        return "int"
    if any(x.startswith(("BETA", "MOMENTUM")) for x in w) and 0.5 < value < 1:
        return "beta"
    if w & FRACTION and 0 < value <= 1:
        return "fraction"
    if w & BASE:
        return "base"
    if w & DECAY and value == 0:
        return "decay"
    return "scale"


def round_sig(x: float, digits: int = 3) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def lognormal(rng: random.Random, sigma: float = SIGMA) -> float:
    z = 0.0
    for _ in range(16):             # P(|z| < 0.3) ~ 0.24: sixteen draws all that small ~ 1e-10
        z = rng.gauss(0.0, 1.0)
        if abs(z) >= MIN_Z:
            break
    else:
        z = MIN_Z
    return math.exp(sigma * z)


def propose(name: str, value: int | float, rng: random.Random) -> int | float | None:
    """A new value for the constant `name` (see the module docstring), or None."""
    k = kind(name, value)
    if k == "frozen" or (value == 0 and k != "decay") or not math.isfinite(value):
        return None
    sign = -1 if value < 0 else 1
    mag = abs(value)
    if k == "count":
        step = rng.choice((-1, 1))
        new = mag + step if mag + step >= 1 else mag + 1
        return sign * new
    if k == "pow2":
        if mag == 1 or rng.random() < 0.5:
            return sign * mag * 2
        return sign * mag // 2
    if k == "int":
        new = max(1, round(mag * lognormal(rng)))
        if new == mag:
            new = mag + 1 if rng.random() < 0.5 or mag == 1 else mag - 1
        return sign * new
    if k == "decay":
        return round_sig(10 ** rng.uniform(-3.0, -1.0), 1)
    for _ in range(8):
        if k == "beta":
            new = 1.0 - round_sig((1.0 - mag) * lognormal(rng), 2)
            new = round(new, 10)     # 1 - 0.05 is 0.95000000000000001; keep the short repr
            if not 0.5 < new < 1.0:
                continue
        elif k == "fraction":
            new = min(1.0, round_sig(mag * lognormal(rng)))
        else:
            new = round_sig(mag * lognormal(rng, SIGMA_BASE if k == "base" else SIGMA))
        if new != mag and new > 0:
            return sign * new
    return None


def propose_exponent(exponent: int, rng: random.Random) -> int:
    """exponent +- 1, never below 1."""
    if exponent <= 1:
        return exponent + 1
    return exponent + rng.choice((-1, 1))


def proposals(name: str, value: int | float, rng: random.Random, n: int = 4) -> list:
    """Up to n different new values, in the order to try them: both ways in a random order for
    the two-way moves (count, pow2), so that a caller refused one way by a constraint can try
    the other; otherwise n independent draws of `propose`."""
    k = kind(name, value)
    if k in ("count", "pow2"):
        sign, mag = (-1 if value < 0 else 1), abs(value)
        options = [mag + 1, mag - 1] if k == "count" else [mag * 2, mag // 2]
        options = [sign * o for o in options if o >= 1]
        rng.shuffle(options)
        return options
    out: list = []
    for _ in range(n):
        new = propose(name, value, rng)
        if new is not None and new not in out:
            out.append(new)
    return out


def exponent_proposals(exponent: int, rng: random.Random) -> list[int]:
    """exponent +- 1 in a random order (only +1 from 1)."""
    options = [e for e in (exponent + 1, exponent - 1) if e >= 1]
    rng.shuffle(options)
    return options
