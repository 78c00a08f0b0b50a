"""The pruning rule on synthetic curves (golden decisions)."""

from __future__ import annotations

import math

import pytest

from evolve.search.pruning import decide, first_prune, loss_at

# a reference run: loss falls from 6 to 3 over the budget, reported every 5 %
REF = [(p / 20, 6.0 - 3.0 * p / 20) for p in range(21)]


def shifted(by: float):
    return [(p, x + by) for p, x in REF]


def test_loss_at_averages_the_window_and_says_when_there_is_nothing():
    assert loss_at(REF, 0.2) == (REF[3][1] + REF[4][1]) / 2     # 0.15 and 0.2 in (0.1, 0.2]
    assert loss_at([(0.9, 1.0)], 0.2) is None


def test_a_run_far_above_every_reference_is_pruned_at_the_first_checkpoint():
    d = first_prune(shifted(1.0), [REF, shifted(0.1)])
    assert d is not None and d.checkpoint == 0.2
    assert math.isclose(d.bar, loss_at(shifted(0.1), 0.2) * 1.05)     # the worst reference
    assert d.loss > d.bar


def test_within_the_margin_of_the_worst_reference_goes_on():
    assert first_prune(shifted(0.2), [REF]) is None               # +0.2 on ~5.3: under 5 %
    assert not decide(shifted(0.2), [REF, shifted(1.0)], 0.4).prune


def test_no_reference_or_no_report_near_the_checkpoint_never_prunes():
    assert first_prune(shifted(5.0), []) is None
    assert first_prune([(0.95, 99.0)], [REF]) is None


def test_a_late_start_is_judged_where_it_falls_behind():
    late = [(p, x + (2.0 if p > 0.3 else 0.0)) for p, x in REF]
    assert first_prune(late, [REF]).checkpoint == 0.4


def test_a_curve_that_claims_far_better_than_it_scored_is_no_reference():
    from evolve.search.pruning import credible, end_ratio

    honest = [(p / 10, 6.0 - 3 * p / 10) for p in range(1, 11)]       # ends at 3.0
    forged = [(p / 10, 0.01) for p in range(1, 11)]                    # tests/fixtures/adversarial/forged_curve.py
    typical = end_ratio(honest, 3.0)                                  # 1.0: loss 3.0 at bpb 3.0
    assert credible(honest, 3.1, typical) and not credible(forged, 3.08, typical)
    assert credible(forged, 3.08, None)                               # too few runs to tell
    # As a reference, the forged curve would have pruned an honest child (its parent's curve
    # plus a little) at once.
    child = [(p, x + 0.1) for p, x in honest]
    assert first_prune(child, [forged]) is not None
    assert first_prune(child, [c for c in (forged, honest) if credible(c, 3.08, typical)]) is None


def test_one_genome_cannot_put_the_bar_below_the_run_s_median():
    from evolve.search.pruning import credible, end_ratio, median_curve

    honest = [(p / 10, 6.0 - 3 * p / 10) for p in range(1, 11)]
    # right at its end (3.0 at bpb 3.0), but claims 0.01 at every checkpoint before it: no
    # reference (below 0.9 x its own end), and were it one, the median would still hold
    early_liar = [(p / 10, 0.01 if p < 9 else 3.0) for p in range(1, 11)]
    assert end_ratio(early_liar, 3.0) == end_ratio(honest, 3.0)
    assert not credible(early_liar, 3.0, end_ratio(honest, 3.0))
    child = [(p, x + 0.1) for p, x in honest]
    assert first_prune(child, [early_liar]) is not None          # alone, it would decide
    population = [honest, [(p, x + 0.2) for p, x in honest], early_liar]
    assert first_prune(child, [early_liar, median_curve(population)]) is None
    assert [x for _, x in median_curve(population)] == pytest.approx([5.4, 4.8, 4.2])


def test_references_wait_for_three_credible_runs_and_always_add_the_median():
    from evolve.search.pruning import MIN_RUNS, median_curve, references

    runs = [(shifted(d), 3.0 + d) for d in (0.0, 0.1, 0.2)]
    assert references(runs[:1], runs[:1], runs[:MIN_RUNS - 1]) == []        # too few to judge
    refs = references(runs[:1], runs[2:], runs)
    assert refs[:2] == [runs[0][0], runs[2][0]]
    assert refs[2] == median_curve([c for c, _ in runs])
    assert references([], [], runs) == []                 # no parent nor best: nothing to judge
    # a parent that is also the best counts once
    assert len(references(runs[:1], runs[:1], runs)) == 2
    # a curve claiming far below what it scored is no reference, and does not count as a run
    forged = ([(p, 0.01) for p, _ in REF], 3.0)
    assert references([forged], [forged], runs) == []
    assert references([forged], [], runs[:2] + [forged]) == []


def test_a_pruner_is_a_small_immutable_value_that_decides_like_the_rule():
    import dataclasses
    import pickle

    from evolve.search.pruning import Pruner

    assert Pruner.of([], stop=True) is None
    p = Pruner.of([REF, shifted(0.1)], stop=False)
    assert pickle.loads(pickle.dumps(p)) == p
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.stop = True
    assert p.decide(shifted(1.0), 0.2) == decide(shifted(1.0), [REF, shifted(0.1)], 0.2)
    assert p.decide(shifted(1.0), 0.2).prune and not p.decide(REF, 0.2).prune


def test_forged_curves_cannot_get_an_honest_child_pruned_by_discrediting_its_parent():
    """Adversary round 6 (tests/fixtures/adversarial/prune_capture_{high,low}.py are the genomes): curves
    that claim a high loss only at their end raised the run's typical end/val_bpb ratio until
    the honest parent's curve looked atypical and was dropped; a curve claiming 6.47 at every
    checkpoint then set the bar, and the honest child (6.83 at 20 %) was pruned, where its
    parent's own curve (7.58 there) would have let it run."""
    from evolve.search.pruning import Pruner, references

    cps = (0.2, 0.4, 0.6)
    parent = ([(0.15, 7.7), (0.2, 7.58), (0.35, 7.2), (0.4, 7.07), (0.55, 6.7), (0.6, 6.6),
               (0.95, 6.1)], 2.945)                                     # end / val = 2.07
    low = ([(0.2, 6.468), (0.4, 6.468), (0.6, 6.468), (0.95, 7.147)], 2.292)     # 3.12
    child = [(0.15, 6.9), (0.2, 6.83), (0.4, 6.5)]
    for complete_end_claims in (False, True):
        if complete_end_claims:        # end claims 2.3 x the truth, checkpoints kept above 0.9 x
            high = [([(p, 9.6) for p in (0.2, 0.4, 0.6)] + [(0.95, 9.53)], 2.197),
                    ([(p, 13.1) for p in (0.2, 0.4, 0.6)] + [(0.95, 13.0)], 2.750)]
        else:                          # nothing reported before 85 % of the budget
            high = [([(0.9, 9.53), (0.95, 9.53)], 2.197), ([(0.9, 13.0), (0.95, 13.0)], 2.750)]
        done = high + [low, parent]
        refs = references([parent], [high[0]], done, cps)
        pruner = Pruner.of(refs, stop=True)
        assert pruner is None or not pruner.decide(child, 0.2).prune, refs
    # the honest case still judges: three honest runs, a hopeless child of the parent
    honest = [parent, (parent[0], 2.95), ([(p, x + 0.05) for p, x in parent[0]], 2.97)]
    refs = references([parent], [parent], honest, cps)
    assert Pruner.of(refs, stop=True).decide([(0.2, 9.9)], 0.2).prune


def test_a_genome_votes_once_however_often_it_was_evaluated():
    """Adversary round 7 (tests/fixtures/adversarial/prune_sybil.py): a genome that trains
    honestly but claims 0.5 throughout, and its confirmation, were two of three complete curves;
    the median became 0.5, and its honest child (6.48 at 20 %) was pruned. One vote per genome."""
    from evolve.search.pruning import Pruner, references

    cps = (0.2, 0.4, 0.6)
    liar = ([(p / 40, 0.5) for p in range(1, 41)], 2.471)
    honest = ([(p / 20, 7.5 - 1.5 * p / 20) for p in range(1, 21)], 2.4205)
    child = [(0.15, 6.6), (0.2, 6.48)]
    done = [liar, honest, liar]
    refs = references([liar], [liar], done, cps, owners=["A", "H", "A"])
    assert Pruner.of(refs, stop=True) is None                   # two genomes: too few to judge
    # without owners every evaluation votes, as before: the capture the fix closes
    captured = Pruner.of(references([liar], [liar], done, cps), stop=True)
    assert captured is not None and captured.decide(child, 0.2).prune
    # with three honest genomes the liar is outvoted: the median bar protects the child
    others = [([(p, x + d) for p, x in honest[0]], 2.42 + d / 10) for d in (0.05, 0.1)]
    refs = references([liar], [liar], [liar, honest, liar, *others], cps,
                      owners=["A", "H", "A", "H2", "H3"])
    pruner = Pruner.of(refs, stop=True)
    assert pruner is None or not pruner.decide(child, 0.2).prune


def test_the_parent_and_the_best_do_not_vote_in_the_median():
    """Adversary round 8: a genome that is both parent and best, lying low but credibly
    (1.7 at every checkpoint, 1.8 at its end), was a reference and also pulled the median
    down a place, so its honest child (6.7 at 20 %) was pruned against a bar of 6.3."""
    from evolve.search.pruning import Pruner, references

    cps = (0.2, 0.4, 0.6)

    def honest(at20):
        return ([(0.2, at20), (0.4, at20 - 1), (0.6, at20 - 1.5), (0.95, 3.5)], 1.2)
    liar = ([(0.2, 1.7), (0.4, 1.7), (0.6, 1.7), (0.95, 1.8)], 1.15)
    done = [honest(5), honest(6), honest(7), honest(8), liar]
    owners = ["h1", "h2", "h3", "h4", "A"]
    child = [(0.15, 6.8), (0.2, 6.7)]
    captured = Pruner.of(references([liar], [liar], done, cps, owners=owners), stop=True)
    assert captured.decide(child, 0.2).prune                     # the old counting
    refs = references([liar], [liar], done, cps, owners=owners, named={"A"})
    assert not Pruner.of(refs, stop=True).decide(child, 0.2).prune
