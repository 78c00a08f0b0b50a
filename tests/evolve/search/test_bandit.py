"""The operator bandit (evolve.search.bandit): the credit rule, Thompson draws, the prior."""

from __future__ import annotations

import random

from evolve.search.bandit import Arm, Child, choose, credit, probabilities, success


def test_a_child_succeeds_beyond_the_noise_floor_or_on_the_front():
    assert success(Child("constant", True, 2.90, 3.00, False), noise=0.05)
    assert not success(Child("constant", True, 2.97, 3.00, False), noise=0.05)   # within noise
    assert success(Child("constant", True, 3.10, 3.00, True), noise=0.05)        # on the front
    assert not success(Child("constant", True, None, 3.00, False), noise=0.05)   # failed
    arms = credit(["constant", "tune"], [
        Child("constant", True, 2.9, 3.0, False), Child("constant", True, None, 3.0, False),
        Child("constant", False, None, 3.0, False),                 # not evaluated: no credit
        Child("tune", True, 3.5, 3.0, False), Child("llm", True, 2.0, 3.0, True)], 0.05)
    assert arms == [Arm("constant", 1, 1), Arm("tune", 0, 1)]    # other operators ignored


def test_thompson_draws_follow_the_evidence_and_the_prior_keeps_every_arm():
    arms = [Arm("good", 8, 2), Arm("bad", 1, 9), Arm("new")]
    p = probabilities(arms)
    assert p["good"] > 0.6 and 0 < p["bad"] < 0.05 and p["new"] > 0.1, p
    assert abs(sum(p.values()) - 1) < 1e-9
    # draws come from the caller's stream only: the same seed, the same choices
    a = [choose(arms, random.Random(s)) for s in range(20)]
    assert a == [choose(arms, random.Random(s)) for s in range(20)] and set(a) > {"good"}


def test_crossover_children_credit_one_crossover_arm():
    from evolve.search.bandit import CROSSOVER, arm_names, arm_of

    assert arm_of("constants") == arm_of("definitions") == CROSSOVER     # genome.operators
    assert arm_of("tune") == "tune" and arm_of("seed") is None and arm_of("llm") is None
    assert arm_names(True)[-1] == CROSSOVER and CROSSOVER not in arm_names(False)
    arms = credit(arm_names(True), [Child("constants", True, 2.9, 3.0, False),
                                    Child("definitions", True, 3.1, 3.0, False)], 0.05)
    assert arms[-1] == Arm(CROSSOVER, 1, 1)
    # without the arm, crossover children credit nothing
    assert all(a.children == 0 for a in credit(arm_names(False), [
        Child("constants", True, 2.9, 3.0, False)], 0.05))


def test_each_language_model_is_an_arm_credited_with_its_own_children():
    from evolve.search.bandit import arm_names, arm_of, child_operator, llm_arm, model_of

    assert arm_names(False, ["a", "b:7b"])[-2:] == ["llm:a", "llm:b:7b"]
    assert model_of(llm_arm("b:7b")) == "b:7b" and model_of("tune") is None
    # a model's children credit its arm, whether they came from LLM mutation or crossover
    assert child_operator("llm_mutate", "a") == child_operator("llm_cross", "a") == "llm:a"
    assert child_operator("llm_mutate", None) == "llm_mutate"     # model unknown: no arm
    assert arm_of("llm:a") == "llm:a" and arm_of("llm_mutate") is None
    assert child_operator("tune", "a") == "tune"
    arms = credit(arm_names(False, ["a", "b"]), [
        Child("llm:a", True, 2.9, 3.0, False), Child("llm:a", True, 2.9, 3.0, False),
        Child("llm:b", True, 3.2, 3.0, False),
        Child("llm:gone", True, 2.0, 3.0, True)], 0.05)        # a model no longer configured
    assert arms[-2:] == [Arm("llm:a", 2, 0), Arm("llm:b", 0, 1)]
