"""The noise floor: how much val_bpb moves when the same genome is evaluated again.

`pooled_std` pools the sample variance of every genome measured OK at least twice (seed
confirmations, replays of the same code), so one number says how far apart two scores must be
before the search may call one better. The engine reads it from the archive after each
generation (`noise_floor_of`); evolve.inspect shows it. This module computes; it stores nothing.
"""

from __future__ import annotations

import math

from evolve.search.archive import Archive


def pooled_std(pairs) -> float | None:
    """Pooled sample std of val_bpb over genomes measured OK at least twice: the noise floor.
    `pairs` is an iterable of (genome_id, val_bpb)."""
    groups: dict[str, list[float]] = {}
    for gid, bpb in pairs:
        groups.setdefault(gid, []).append(float(bpb))
    ss = dof = 0.0
    for xs in groups.values():
        if len(xs) >= 2:
            m = sum(xs) / len(xs)
            ss += sum((x - m) ** 2 for x in xs)
            dof += len(xs) - 1
    return math.sqrt(ss / dof) if dof else None


def noise_floor_of(archive: Archive) -> float | None:
    return pooled_std(archive.conn.execute(
        "SELECT genome_id, val_bpb FROM evals WHERE status = 'ok' AND kind IN ('eval', 'confirm')"))
