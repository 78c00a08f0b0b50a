"""Relations between module-level hyperparameters that a mutated or crossed child must keep.

    violations(values, references) -> list of one-line reasons (empty: all kept)

`values` maps constant names to literal values (genome.literals.numeric_values); `references`
are the value maps of the parents, known to be valid. A rule applies only when the constants it
names are all present as literals, so a seed that derives MODEL_DIM from DEPTH is not held to a
rule about a literal MODEL_DIM.

Rules:
- batch: TOTAL_BATCH_TOKENS is a multiple of DEVICE_BATCH_SIZE x SEQ_LEN. When the sequence
  length is not a literal (it usually is `harness.SEQ_LEN`, known only at run time), the child's
  TOTAL / DEVICE must be a whole multiple of some parent's TOTAL / DEVICE: then, since the parent's
  ratio was a multiple of SEQ_LEN, so is the child's. Halving TOTAL alone is therefore refused
  without a literal SEQ_LEN; mutate_constants halves DEVICE_BATCH_SIZE with it instead.
- heads: HEAD_DIM divides the width (MODEL_DIM and its synonyms); N_HEAD divides the width;
  N_KV_HEAD divides N_HEAD; HEAD_DIM is even (rotary embeddings rotate pairs of channels).
- schedule: WARMUP_RATIO + WARMDOWN_RATIO <= 1; fractions stay in [0, 1].

Name synonyms are listed below; add one when a seed spells a constant differently.

What it does not do: follow derived constants (MODEL_DIM = DEPTH * ASPECT_RATIO) or run code.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

TOTAL_BATCH = ("TOTAL_BATCH_TOKENS", "TOTAL_BATCH_SIZE", "TOTAL_BATCH")
DEVICE_BATCH = ("DEVICE_BATCH_SIZE", "DEVICE_BATCH", "MICRO_BATCH_SIZE", "BATCH_SIZE")
SEQ = ("SEQ_LEN", "MAX_SEQ_LEN", "SEQUENCE_LEN", "SEQUENCE_LENGTH", "BLOCK_SIZE",
       "CONTEXT_LEN", "CONTEXT_LENGTH")
WIDTH = ("MODEL_DIM", "N_EMBD", "D_MODEL", "EMBED_DIM", "WIDTH", "HIDDEN_SIZE", "DIM")
HEAD_DIM = ("HEAD_DIM",)
N_HEAD = ("N_HEAD", "N_HEADS", "NUM_HEADS")
N_KV = ("N_KV_HEAD", "N_KV_HEADS", "NUM_KV_HEADS")
WARMUP = ("WARMUP_RATIO", "WARMUP_FRAC")
WARMDOWN = ("WARMDOWN_RATIO", "WARMDOWN_FRAC", "COOLDOWN_RATIO", "COOLDOWN_FRAC")
FRACTIONS = ("SHORT_WINDOW_FRAC", "FINAL_LR_FRAC", "RESID_LR_FRAC", "DROPOUT") + WARMUP + WARMDOWN


def _int(values: Mapping[str, Any], names: Sequence[str]) -> tuple[str, int] | None:
    for name in names:
        value = values.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return name, value
    return None


def _num(values: Mapping[str, Any], names: Sequence[str]) -> tuple[str, float] | None:
    for name in names:
        value = values.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return name, value
    return None


def _batch(values: Mapping[str, Any], references: Sequence[Mapping[str, Any]]) -> list[str]:
    total, dev = _int(values, TOTAL_BATCH), _int(values, DEVICE_BATCH)
    if total is None or dev is None:
        return []
    if total[1] < 1 or dev[1] < 1:
        return [f"{total[0]} and {dev[0]} must be positive"]
    seq = _int(values, SEQ)
    if seq is not None:
        if seq[1] < 1 or total[1] % (dev[1] * seq[1]):
            return [f"{total[0]} {total[1]} is not a multiple of {dev[0]} x {seq[0]} "
                    f"= {dev[1] * seq[1]}"]
        return []
    for ref in references:
        rt, rd = _int(ref, TOTAL_BATCH), _int(ref, DEVICE_BATCH)
        if rt is None or rd is None or rt[1] < 1 or rd[1] < 1:
            continue
        # child ratio / parent ratio = (total * rd) / (dev * rt) must be a positive integer
        if (total[1] * rd[1]) % (dev[1] * rt[1]) == 0:
            return []
    if not references:
        return [] if total[1] % dev[1] == 0 else [f"{total[0]} is not a multiple of {dev[0]}"]
    return [f"{total[0]} / {dev[0]} = {total[1] / dev[1]:g} is not a whole multiple of a "
            f"parent's (the sequence length is known only at run time)"]


def _heads(values: Mapping[str, Any]) -> list[str]:
    out = []
    width, head_dim = _int(values, WIDTH), _int(values, HEAD_DIM)
    n_head, n_kv = _int(values, N_HEAD), _int(values, N_KV)
    for pair in (width, head_dim, n_head, n_kv):
        if pair is not None and pair[1] < 1:
            out.append(f"{pair[0]} must be at least 1")
    if out:
        return out
    if width and head_dim and width[1] % head_dim[1]:
        out.append(f"{head_dim[0]} {head_dim[1]} does not divide {width[0]} {width[1]}")
    if width and n_head and width[1] % n_head[1]:
        out.append(f"{n_head[0]} {n_head[1]} does not divide {width[0]} {width[1]}")
    if n_head and n_kv and n_head[1] % n_kv[1]:
        out.append(f"{n_kv[0]} {n_kv[1]} does not divide {n_head[0]} {n_head[1]}")
    if head_dim and head_dim[1] % 2:
        out.append(f"{head_dim[0]} {head_dim[1]} is odd (rotary needs pairs)")
    return out


def _schedule(values: Mapping[str, Any]) -> list[str]:
    out = []
    for name in FRACTIONS:
        value = values.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not 0 <= value <= 1:
            out.append(f"{name} {value} is outside [0, 1]")
    warmup, warmdown = _num(values, WARMUP), _num(values, WARMDOWN)
    if warmup and warmdown and warmup[1] + warmdown[1] > 1:
        out.append(f"{warmup[0]} + {warmdown[0]} = {warmup[1] + warmdown[1]:g} exceeds 1")
    return out


def violations(values: Mapping[str, Any],
               references: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """Every broken rule of the module docstring, one line each."""
    return _batch(values, references) + _heads(values) + _schedule(values)
