"""Mutation: tune a few of a genome's numbers with a model of what scored well (Optuna).

    tune(parent, rng, trials) -> OpResult        # "tune: MATRIX_LR 0.04 -> 0.0551, WARMDOWN ..."

A genome's tunable numbers are the module-level ALL_CAPS numbers the `constant` operator moves
(genome.mutate_constants: frozen ones such as SEED excluded; a `2**19` moves by its exponent, a
tuple by its elements). Two genomes that differ only in those numbers share a *structure*:
`structure(source)` is the identity of the source with every tunable number abstracted. For a
parent, `tune` picks K of its numbers (drawn from `rng`), builds a search space around the
parent's values (log scale for rates and sizes, integers where the number is an int, 1 - beta
for betas), tells an Optuna TPE sampler every scored genome of the same structure whose values
fall in that space (`trials`: source and mean val_bpb, from the archive), and asks it for new
values. With fewer than N_STARTUP such trials TPE samples at random within the space, which is
still a coordinated move of K numbers. The child must keep genome.constraints; a proposal that
breaks a rule is told to the study as failed and another is asked for.

The study lives in memory for one call and is rebuilt from `trials` every time, so the archive
stays the one source of truth (a resumed run tells it the same trials) and the result depends
only on the parent, `rng` and `trials`.

Run: python -m genome mutate FILE --operator tune --seed 1     (no trials: random in the space)

What it does not do: read an archive (the engine passes the trials), change numbers inside
functions or keywords (genome.mutate_literals), or change structure.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from dataclasses import dataclass
from typing import Sequence

import libcst as cst

from genome import constraints, perturb
from genome.cst_tree import apply_edits, code, parse
from genome.literals import module_constants, number_node, numeric_values, slots
from genome.record import Genome, identity
from genome.result import OpResult, finish, source_of

K = 3                  # numbers tuned together: a coordinated move, small enough for TPE
N_STARTUP = 5          # trials of the same structure before TPE models instead of sampling
ASKS = 8               # proposals tried before giving up (each broken one is told as failed)
LOG_SPAN = 4.0         # log-scale numbers range over [value / 4, value * 4]
INT_SPAN = 2           # counts +-2, exponents of powers of two +-2
PLACEHOLDER = "_TUNED_"


@dataclass(frozen=True)
class Trial:
    """A scored genome: its source and its mean val_bpb."""
    source: str
    value: float


@dataclass(frozen=True)
class _Param:
    name: str          # "MATRIX_LR", "ADAM_BETAS[1]", "TOTAL_BATCH_TOKENS**"
    index: int         # of the constant's statement in module.body
    node: cst.BaseExpression
    value: int | float
    kind: str          # genome.perturb's kind, or "exponent"
    base: int | None = None   # for "exponent": the number is base ** value


def _params(source: str) -> list[_Param] | None:
    """The tunable numbers of `source` in source order (None: it does not parse)."""
    if parse(source) is None:
        return None
    out = []
    for const in module_constants(source):
        found = slots(const.value)
        for i, s in enumerate(found):
            suffix = "**" if s.base is not None else (f"[{i}]" if len(found) > 1 else "")
            if s.base is not None:
                if perturb.kind(const.name, 2) == "frozen":
                    continue
                kind = "exponent"
            else:
                kind = perturb.kind(const.name, s.value)
                if kind == "frozen" or (s.value == 0 and kind != "decay") or s.value < 0:
                    continue
            out.append(_Param(const.name + suffix, const.index, s.node, s.value, kind, s.base))
    return out


def structure(source: str) -> str | None:
    """The identity of `source` with every tunable number replaced by one placeholder, or None
    when it does not parse: equal for genomes that differ only in those numbers."""
    return _shape(source)[0]


@functools.lru_cache(maxsize=4096)
def _shape(source: str) -> tuple[str | None, dict[str, int | float]]:
    """(structure, tunable number name -> value); cached: a run's trials are parsed once."""
    params = _params(source)
    if params is None:
        return None, {}
    edits = [(p.index, p.node, cst.Name(PLACEHOLDER)) for p in params]
    return (identity(apply_edits(source, edits) if edits else source),
            {p.name: p.value for p in params})


def _distribution(p: _Param):
    """The search space of one number around its current value (optuna distribution)."""
    from optuna.distributions import FloatDistribution, IntDistribution

    v = p.value
    if p.kind == "exponent" or p.kind == "pow2":
        e = int(v) if p.kind == "exponent" else int(v).bit_length() - 1
        return IntDistribution(max(1 if p.kind == "exponent" else 0, e - INT_SPAN), e + INT_SPAN)
    if p.kind == "count":
        return IntDistribution(max(1, int(v) - INT_SPAN), int(v) + INT_SPAN)
    if p.kind == "int":
        return IntDistribution(max(1, int(v // LOG_SPAN)), int(v * LOG_SPAN), log=True)
    if p.kind == "beta":                  # searched as 1 - beta, on a log scale
        gap = 1.0 - v
        return FloatDistribution(gap / LOG_SPAN, min(0.5, gap * LOG_SPAN), log=True)
    if p.kind == "decay" and v == 0:
        return FloatDistribution(0.0, 0.1)
    high = v * LOG_SPAN
    if p.kind == "fraction":
        high = min(1.0, high)
    return FloatDistribution(v / LOG_SPAN, high, log=True)


def _to_space(p: _Param, value: int | float) -> int | float | None:
    """The parameter's coordinate for a number in the source (None: not representable)."""
    if p.kind == "pow2":
        value = int(value)
        return value.bit_length() - 1 if value >= 1 and value & (value - 1) == 0 else None
    if p.kind == "beta":
        return 1.0 - value
    return value


def _from_space(p: _Param, x: int | float) -> int | float:
    """The number to write for a coordinate, rounded as genome.perturb rounds (readable)."""
    if p.kind == "pow2":
        return 2 ** int(x)
    if p.kind in ("exponent", "count", "int"):
        return int(x)
    if p.kind == "beta":
        return round(1.0 - perturb.round_sig(x, 2), 10)
    return perturb.round_sig(float(x))


def _told(study, chosen: list[_Param], dists: dict, trials: Sequence[Trial], shape: str) -> int:
    """Tell the study every trial of the same structure whose numbers are in the space."""
    import optuna

    n = 0
    for t in trials:
        theirs_shape, theirs = _shape(t.source)
        if not math.isfinite(t.value) or theirs_shape != shape:
            continue
        params = {}
        for p in chosen:
            x = _to_space(p, theirs[p.name]) if p.name in theirs else None
            if x is None or not dists[p.name]._contains(dists[p.name].to_internal_repr(x)):
                break
            params[p.name] = x
        else:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                      value=t.value))
            n += 1
    return n


def _change(p: _Param, new: int | float) -> str:
    """'MATRIX_LR 0.04 -> 0.0551', 'TOTAL_BATCH_TOKENS 2**19 -> 2**20'."""
    if p.kind == "exponent":
        return f"{p.name.rstrip('*')} {p.base}**{p.value} -> {p.base}**{new}"
    return f"{p.name} {code(p.node)} -> {code(number_node(new, p.node))}"


def tune(parent: Genome | str, rng: random.Random, trials: Sequence[Trial] = ()) -> OpResult:
    """Move K tunable numbers together to values an Optuna sampler proposes; see the module
    docstring."""
    import optuna

    source = source_of(parent)
    params = _params(source) if source is not None else None
    if params is None:
        return OpResult.not_applicable("the source does not parse")
    if not params:
        return OpResult.not_applicable("no module-level ALL_CAPS number to tune")
    chosen = sorted(rng.sample(params, min(K, len(params))), key=lambda p: params.index(p))
    dists = {p.name: _distribution(p) for p in chosen}
    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(
        seed=rng.randrange(2 ** 31), n_startup_trials=N_STARTUP, multivariate=True))
    told = _told(study, chosen, dists, trials, structure(source))
    values = numeric_values(source)
    refused = ""
    for _ in range(ASKS):
        trial = study.ask(dists)
        new = {p.name: _from_space(p, trial.params[p.name]) for p in chosen}
        moved = [p for p in chosen if new[p.name] != p.value]
        if not moved:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        edits = [(p.index, p.node, number_node(new[p.name], p.node)) for p in moved]
        child = apply_edits(source, edits)
        broken = constraints.violations(numeric_values(child), [values])
        if broken:
            refused = broken[0]
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        changes = ", ".join(_change(p, new[p.name]) for p in moved)
        basis = f" ({told} trials of this structure)" if told else ""
        return finish([source], child, f"tune{basis}: {changes}")
    return OpResult.not_applicable("no proposal kept the constraints"
                                   + (f" (last: {refused})" if refused else ""))
