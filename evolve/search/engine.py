"""The search loop: NSGA-II over (val_bpb down, tokens/s up), and two baselines.

    Engine(archive, eval_map, config, seeds).run()

Generation 0 is the initial population: every seed, filled up to `population` with mutants of
the seeds. Each later generation plans `population` offspring (mutations from genome.operators and
crossover, drawn by the operator bandit of evolve.search.bandit, or crossover with the fixed
probability `crossover_prob` when one is given), writes the plan to the archive, evaluates the
offspring that were never evaluated (a genome with the same identity reuses its stored result),
confirms a new best by evaluating it a second time, and selects the next population:

- evolve:    mu + lambda with DEAP's selNSGA2 on (mean val_bpb, mean tokens/s);
- hillclimb: autoresearch's keep/discard loop, batched: `population` mutants of the incumbent,
             and the incumbent is replaced only by a better (confirmed) val_bpb;
- random:    operators applied to parents drawn uniformly from every scored genome, no selection.
All three spend the same number of evaluations for the same flags, so they compare fairly.

With a language model configured (evolve.search.proposals), some of each generation's offspring
come from LLM mutation or crossover. How many, and by which model, the operator bandit decides,
each model one arm beside the AST operators (a fixed `llm_share` fixes how many, and the bandit
then picks only the models; with --no-bandit or --operator-weights the share is LLM_SHARE
unless given and the --llm-model weights pick). Those proposals are launched one generation
ahead, while the evaluations of the current one run, from the arms credited with the children
of the finished generations; the time the engine still had to wait for them is reported in the
generation summary. A resumed run launches them again (the model's replies are not
reproducible; the AST offspring of a plan are).

Resume: everything the loop needs is derived from the archive (the last finished
generation's population, and the plan of an unfinished one), and the random stream of each
generation is seeded by (rng_seed, generation), so a resumed run plans what the killed one
planned and re-runs only evaluations that never finished. Nothing here raises for what a
genome does; the loop stops early, with a message, after `max_failed_generations` generations
in which every evaluation failed.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections import Counter
from typing import Callable

from deap import base, tools

from evolve.search.archive import Archive
from evolve.search.pruning import MODES, Pruner, references
from evolve.evaluation.result import EvalResult, Status
from evolve.search.workers import EvalMap

STRATEGIES = ("evolve", "hillclimb", "random")
MAX_TRIES = 20              # attempts at a never-seen child before a duplicate is accepted
CROSSOVER_PROB = 0.2        # the crossover share when neither the user nor the bandit sets it
LLM_SHARE = 0.25            # the LLM's share of offspring when neither the user nor the bandit
                            # sets it


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    population: int = 8
    generations: int = 50
    strategy: str = "evolve"
    crossover_prob: float | None = None         # chance an offspring comes from two parents;
                                                # None: the bandit decides (CROSSOVER_PROB
                                                # where it does not draw)
    operator_weights: tuple[tuple[str, float], ...] = ()   # mutation name -> weight; () = equal
    confirm: bool = True                        # re-evaluate a new best before declaring it
    max_failed_generations: int = 3
    rng_seed: int = 0
    llm_share: float | None = None              # share of offspring proposed by the LLM, when
                                                # on; None: the bandit decides (LLM_SHARE where
                                                # it does not draw)
    prune: str = "shadow"                       # off | shadow (judge, record) | on (judge, stop)
    bandit: bool = True                         # draw mutations by the operator bandit, else
                                                # uniformly (operator_weights, when given, win)
    compute_s: float | None = None              # stop before a generation once the evaluations
                                                # took this many seconds (wall clock, summed)

    def problem(self) -> str | None:
        from genome.operators import MUTATIONS

        if self.population < 1:
            return "--population must be at least 1"
        if self.max_failed_generations < 1:
            return "--max-failed-generations must be at least 1"
        if self.generations < 0:
            return "--generations must be 0 or more"
        if self.strategy not in STRATEGIES:
            return f"--strategy must be one of {', '.join(STRATEGIES)}"
        if self.crossover_prob is not None and not 0.0 <= self.crossover_prob <= 1.0:
            return "--crossover-prob must be within 0..1"
        if self.llm_share is not None and not 0.0 <= self.llm_share <= 1.0:
            return "--llm-share must be within 0..1"
        if self.prune not in MODES:
            return f"--prune must be one of {', '.join(MODES)}"
        if self.compute_s is not None and not (self.compute_s > 0 and math.isfinite(self.compute_s)):
            return "--compute must be a positive number of seconds"
        for name, w in self.operator_weights:
            if name not in MUTATIONS:
                return f"unknown operator {name!r} in --operator-weights (see python -m genome list)"
            if not (w >= 0 and math.isfinite(w)):
                return f"operator weight for {name} must be a finite number >= 0"
        return None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["operator_weights"] = [list(p) for p in self.operator_weights]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EngineConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["operator_weights"] = tuple((str(n), float(w)) for n, w in d.get("operator_weights", ()))
        return cls(**d)


class Fitness(base.Fitness):
    """(val_bpb, tokens/s): minimise the first, maximise the second. A plain module-level
    class (not deap.creator), so it pickles by reference and never leaks into workers."""

    weights = (-1.0, 1.0)


class Individual:
    """What DEAP's selection sees: a genome id and its fitness."""

    def __init__(self, genome_id: str, bpb: float, tps: float):
        self.genome_id = genome_id
        self.fitness = Fitness((bpb, tps))


def hypervolume(points: list[tuple[float, float]], ref_bpb: float) -> float:
    """Area dominated by (bpb, tokens/s) points up to the reference (ref_bpb, 0 tokens/s), in
    bpb x tokens/s. Exact in two dimensions (DEAP's own is private API and n-dimensional);
    points worse than the reference add nothing."""
    pts = sorted((t, b) for b, t in points if b < ref_bpb and t > 0)     # ascending tokens/s
    area, prev_t = 0.0, 0.0
    for i, (t, _) in enumerate(pts):
        # The strip between prev_t and t is covered by every point at least this fast; the
        # best bpb among them sets its width.
        area += (ref_bpb - min(b for _, b in pts[i:])) * (t - prev_t)
        prev_t = t
    return area


@dataclasses.dataclass(frozen=True)
class Stats:
    bpb: float | None          # mean over OK evaluations (eval + confirm)
    bpb_std: float | None
    tps: float | None
    n_ok: int
    n: int


class Engine:
    def __init__(self, archive: Archive, eval_map: EvalMap, config: EngineConfig,
                 seeds: list, log: Callable[[str], None] = print, show_progress: bool = True,
                 proposer=None, on_generation: Callable[[int], None] | None = None,
                 progress_lines: bool = False, heartbeat_s: float = 60.0):
        self.archive = archive
        self.proposer = proposer            # evolve.search.proposals.Proposer, or None: AST operators only
        self.on_generation = on_generation  # called after each finished generation (plots)
        self._llm_note = ""                 # this generation's LLM line for the summary
        self._llm_wait = 0.0
        self._cap_said = False
        self.map = eval_map
        self.config = config
        self.seeds = seeds                  # genome.record.Genome, already contract-checked
        self.log = log
        self.show_progress = show_progress   # a live bar (a terminal)
        self.progress_lines = progress_lines  # else a line per evaluation and a heartbeat
        self.heartbeat_s = heartbeat_s
        self.t_start = time.time()
        self._stats: dict[str, Stats] = {}

    # -- facts derived from the archive --------------------------------------------------------
    def stats(self, gid: str) -> Stats:
        if gid not in self._stats:
            results = self.archive.results(gid)
            ok = [r for r in results if r.ok]
            bpbs = [r.val_bpb for r in ok]
            tps = [r.tokens_per_sec for r in ok if r.tokens_per_sec]
            mean = sum(bpbs) / len(bpbs) if bpbs else None
            std = (math.sqrt(sum((x - mean) ** 2 for x in bpbs) / (len(bpbs) - 1))
                   if len(bpbs) >= 2 else None)
            self._stats[gid] = Stats(mean, std, sum(tps) / len(tps) if tps else None, len(ok),
                                     len(results))
        return self._stats[gid]

    def scored(self, ids) -> list[str]:
        return [g for g in dict.fromkeys(ids) if self.stats(g).bpb is not None]

    def best(self) -> str | None:
        """Lowest mean val_bpb among confirmed genomes (two OK evaluations), or among all scored
        genomes when confirmation is off."""
        need = 2 if self.config.confirm else 1
        pool = [g for g in self.scored(self.archive.genome_ids()) if self.stats(g).n_ok >= need]
        return min(pool, key=lambda g: self.stats(g).bpb) if pool else None

    # -- variation -----------------------------------------------------------------------------
    def crossover_arm(self) -> bool:
        """Whether crossover is one of the bandit's arms: the bandit draws (no weights, not
        switched off), the strategy has two-parent draws, and no share was fixed."""
        c = self.config
        return (c.crossover_prob is None and c.bandit and not c.operator_weights
                and c.strategy == "evolve")

    def llm_arms(self) -> bool:
        """Whether each language model is one of the bandit's arms (a model is configured
        and the bandit draws)."""
        return (self.proposer is not None and self.config.bandit
                and not self.config.operator_weights)

    def arms(self, llm: bool = False, before: int | None = None) -> list:
        """The operator bandit's arms, credited from every evaluated child in the archive;
        `llm`: with one arm per language model; `before`: only children planned before that
        generation."""
        from evolve.search import bandit
        from evolve.search.noise import noise_floor_of

        front = set(self.front())
        models = self.archive.llm_models() if self.proposer is not None else {}
        children = []
        for g in self.archive.genome_ids():
            genome = self.archive.genome(g)
            operator = bandit.child_operator(genome.operator, models.get(g))
            if bandit.arm_of(operator) is None or (before is not None
                                                   and genome.generation >= before):
                continue
            parent = self.stats(genome.parents[0]).bpb if genome.parents else None
            children.append(bandit.Child(operator, self.stats(g).n > 0,
                                         self.stats(g).bpb, parent, g in front))
        if self.proposer is not None:
            # a proposal that gave no child (an error, edits that never applied) is a failure
            # of its model: a model that only fails must not keep its slots on the prior
            children += [bandit.Child(bandit.llm_arm(m), True, None, None, False)
                         for _, m in self.archive.llm_failed(before)]
        names = bandit.arm_names(self.crossover_arm(),
                                 self.proposer.models if llm and self.llm_arms() else ())
        return bandit.credit(names, children, noise_floor_of(self.archive))

    def front(self) -> list[str]:
        """The Pareto front over (mean val_bpb down, mean tokens/s up) of the scored genomes
        whose throughput was measured (as run.df's on_front)."""
        scored = [g for g in self.scored(self.archive.genome_ids()) if self.stats(g).tps]
        pts = {g: (self.stats(g).bpb, self.stats(g).tps) for g in scored}
        return [g for g in scored if not any(
            (o[0] <= pts[g][0] and o[1] >= pts[g][1] and o != pts[g]) for o in pts.values())]

    def _drawn(self, arms) -> bool:
        """Whether mutations are drawn by weights or the bandit (else uniformly by genome)."""
        return bool(self.config.operator_weights) or (self.config.bandit and bool(arms))

    def _mutation_name(self, rng: random.Random, arms, exclude=frozenset()) -> str | None:
        """The next mutation to try, by --operator-weights when given (only those with a weight
        above 0), else by the bandit; `exclude`: drawn already and not applicable to this
        parent. None when nothing is left."""
        from evolve.search import bandit

        if self.config.operator_weights:
            weights = {n: w for n, w in self.config.operator_weights if w > 0 and n not in exclude}
            names = list(weights)
            return rng.choices(names, [weights[n] for n in names])[0] if names else None
        left = [a for a in arms if a.name not in exclude]
        return bandit.choose(left, rng) if left else None

    def _trials(self) -> list:
        """Every scored genome as a tune trial (source, mean val_bpb), oldest first."""
        from genome.tune import Trial

        return [Trial(self.archive.genome(g).source, self.stats(g).bpb)
                for g in self.scored(self.archive.genome_ids())]

    def _child(self, parents: list, rng: random.Random, trials=(), arms=(), first=None):
        """A child of `parents` (crossed when two), or None; `first`: the mutation the bandit
        drew already for this one parent."""
        from genome.operators import cross, mutate
        from genome.record import Genome

        from evolve.search.bandit import CROSSOVER

        if len(parents) == 2:
            name, res = cross(parents[0], parents[1], rng)
        elif not self._drawn(arms):
            name, res = mutate(parents[0], rng, trials=trials)     # uniform among applicable
        else:
            # A drawn operator that does not apply to this parent passes the draw on to the
            # others, by the same rule: never to an operator the weights or the bandit would not
            # choose (the ablation without tune must not get tune children this way). One
            # parent cannot be crossed.
            tried: set[str] = {CROSSOVER}
            res = None
            chosen = first if first is not None else self._mutation_name(rng, arms, tried)
            while chosen is not None:
                name, res = mutate(parents[0], rng, chosen, trials=trials)
                if res.applied:
                    break
                tried.add(chosen)
                chosen = self._mutation_name(rng, arms, tried)
        if res is None or not res.applied:
            return None
        return Genome.child(res.child, parents, operator=name, description=res.description)

    def _offspring(self, rng: random.Random, pick_parents, n: int, generation: int) -> list[str]:
        known = set(self.archive.genome_ids())
        trials = self._trials()
        arms = self.arms() if self.config.bandit and not self.config.operator_weights else ()
        planned: list[str] = []
        for _ in range(n):
            child = None
            for _ in range(MAX_TRIES):
                candidate = self._draw_child(pick_parents, rng, trials, arms)
                if candidate is None:
                    continue
                child = candidate
                if child.id not in known and child.id not in planned:
                    break
            if child is None:
                continue
            self.archive.add_genome(child, generation)
            known.add(child.id)
            planned.append(child.id)
        return planned

    def _draw_child(self, pick_parents, rng: random.Random, trials, arms):
        """One candidate child: where crossover is an arm and the strategy draws pairs, the
        bandit's draw decides crossover or which mutation first, then the parents are drawn;
        else the parents first (a pair with the fixed crossover share)."""
        from evolve.search.bandit import CROSSOVER

        if not (arms and self.crossover_arm() and getattr(pick_parents, "pairs", False)):
            return self._child(pick_parents(rng), rng, trials, arms)
        first = self._mutation_name(rng, arms)
        if first == CROSSOVER:       # (a pair drawn as one genome twice is mutated instead)
            return self._child(pick_parents(rng, 2), rng, trials, arms)
        return self._child(pick_parents(rng, 1), rng, trials, arms, first=first)

    def _tournament(self, population: list[str]):
        """Binary tournament on Pareto rank, then crowding (NSGA-II's mating selection)."""
        inds = [Individual(g, self.stats(g).bpb, self.stats(g).tps or 0.0)
                for g in self.scored(population)]
        if not inds:
            return lambda rng: [self.archive.genome(population[0])]
        rank = {}
        for r, front in enumerate(tools.sortNondominated(inds, len(inds))):
            tools.emo.assignCrowdingDist(front)
            for ind in front:
                rank[ind.genome_id] = (r, -ind.fitness.crowding_dist)

        def one(rng):
            a, b = rng.choice(inds), rng.choice(inds)
            return a if rank[a.genome_id] <= rank[b.genome_id] else b

        share = self.config.crossover_prob
        share = CROSSOVER_PROB if share is None else share

        def pick(rng, k=None):
            """k parents (1 or 2; None: 2 with the crossover share); one when the two drawn
            are the same genome or there is only one."""
            if k is None:
                k = 2 if len(inds) >= 2 and rng.random() < share else 1
            k = min(k, 2 if len(inds) >= 2 else 1)
            chosen = [one(rng) for _ in range(k)]
            if k == 2 and chosen[0].genome_id == chosen[1].genome_id:
                chosen = chosen[:1]
            return [self.archive.genome(i.genome_id) for i in chosen]
        pick.pairs = len(inds) >= 2
        return pick

    def _picker(self, population: list[str] | None):
        """How this strategy draws parents: pick(rng) -> [Genome] or [Genome, Genome]."""
        if not population:
            seeds = list(self.seeds)
            return lambda r: [r.choice(seeds)]
        if self.config.strategy == "hillclimb":
            incumbent = self.archive.genome(population[0])
            return lambda r: [incumbent]
        if self.config.strategy == "random":
            pool = [self.archive.genome(g) for g in self.scored(self.archive.genome_ids())]
            return lambda r: [r.choice(pool)]
        return self._tournament(population)

    def plan(self, generation: int, population: list[str] | None) -> list[str]:
        rng = random.Random(f"{self.config.rng_seed}-{generation}")
        n = self.config.population
        if generation == 0:
            planned = []
            for g in self.seeds:
                self.archive.add_genome(g, 0)
                planned.append(g.id)
            return planned + self._offspring(rng, self._picker(None), n - len(planned), 0)
        planned = self._collect_llm(generation)
        return planned + self._offspring(rng, self._picker(population), n - len(planned),
                                         generation)

    # -- language-model offspring ------------------------------------------------------------
    def _launch_llm(self, generation: int, population: list[str] | None) -> None:
        """Start the LLM proposals of `generation` now, while the previous one evaluates."""
        if self.proposer is None or generation > self.config.generations:
            return
        if self.proposer.capped(self.archive.llm_tokens()):
            if not self._cap_said:
                self.log(f"LLM token cap of {self.proposer.max_tokens} reached: continuing with "
                         "the AST operators and crossover only")
                self._cap_said = True
            return
        rng = random.Random(f"{self.config.rng_seed}-llm-{generation}")
        models = self._llm_models(generation, rng)
        if not models:
            return
        from evolve.search.proposals import parent_measurement, prompt_context

        pick = self._picker(population)
        parents_list = [pick(rng) for _ in models]
        meas = {p.id: parent_measurement(self.archive, p.id) for ps in parents_list for p in ps}
        ctx = prompt_context(self.archive, self.proposer.program)
        self.proposer.launch(generation, parents_list, meas, ctx,
                             frozenset(self.archive.genome_ids()), models)

    def _llm_models(self, generation: int, rng: random.Random) -> list[str | None]:
        """The model of each LLM proposal for `generation` (None: drawn by --llm-model
        weights). Where the models are arms, the bandit draws once per offspring slot over every
        arm (a fixed --llm-share: as many draws over the models' arms as the share gives),
        from the children of the generations finished before this launch."""
        from evolve.search import bandit

        n, share = self.config.population, self.config.llm_share
        if not self.llm_arms():
            return [None] * round((LLM_SHARE if share is None else share) * n)
        arms = self.arms(llm=True, before=generation - 1)
        if share is not None:
            models = [a for a in arms if bandit.model_of(a.name)]
            draws = [bandit.choose(models, rng) for _ in range(round(share * n))]
        else:
            draws = [bandit.choose(arms, rng) for _ in range(n)]
        return [bandit.model_of(d) for d in draws if bandit.model_of(d)]

    def _collect_llm(self, generation: int) -> list[str]:
        self._llm_note, self._llm_wait = "", 0.0
        if self.proposer is None:
            return []
        from genome.record import Genome

        made, waited = self.proposer.collect(generation)
        planned, outcomes, tokens = [], Counter(), 0
        for proposal, parents in made:
            child = None
            if proposal.child_source is not None:
                child = Genome.child(proposal.child_source, parents, proposal.operator,
                                     proposal.description)
                self.archive.add_genome(child, generation)
                if child.id not in planned:
                    planned.append(child.id)
            self.archive.add_llm_calls(generation, child.id if child else None,
                                       proposal.operator, proposal.calls)
            outcomes.update(c.outcome for c in proposal.calls)
            tokens += proposal.prompt_tokens + proposal.completion_tokens
        self._llm_wait = waited
        if made:
            self._llm_note = (f"llm {len(planned)}/{len(made)} children, {tokens} tokens, "
                              f"waited {waited:.1f} s, calls " +
                              " ".join(f"{k}:{v}" for k, v in sorted(outcomes.items())))
        return planned

    # -- evaluation ----------------------------------------------------------------------------
    def _evaluate(self, ids: list[str], kind: str, generation: int,
                  already: int = 0) -> list[EvalResult]:
        """Evaluate ids; `already` of this generation's evaluations were done before a resume
        (the progress counts from there)."""
        from evolve.search.progress import EvalProgress

        if not ids:
            return []
        done = self.archive.scored_curves() if kind == "eval" and self.config.prune != "off" \
            else None                            # read once for the whole generation's pruners
        jobs = [(g, self.archive.genome(g).source, self._pruner(g, done) if done is not None
                 else None) for g in ids]
        mode = "bar" if self.show_progress else "lines" if self.progress_lines else None
        shown = EvalProgress(already + len(jobs), f"gen {generation} {kind}", self.log, mode,
                             heartbeat_s=self.heartbeat_s, done=already)
        hooked = mode is not None and getattr(self.map, "progress", False) is None
        if hooked:
            self.map.progress = shown.phase      # phases from the map's worker threads
        out = []
        try:
            for done in self.map.imap(jobs):
                self.archive.add_eval(done.key, done.result, kind, generation, done.worker,
                                      done.started_at, done.finished_at)
                self._stats.pop(done.key, None)
                out.append(done.result)
                shown.finished(done.key, done.result, done.finished_at - done.started_at)
        finally:
            if hooked:
                self.map.progress = None
            shown.close()
        return out

    def _pruner(self, gid: str, done: list) -> Pruner | None:
        """The pruner for a first evaluation of `gid` (a confirmation or replay is never
        pruned): references from what was scored before its generation started (its parent, the
        best genome by mean val_bpb, the run's median), or None with nothing to
        judge by yet. `done`: the archive's scored_curves()."""
        parents = self.archive.genome(gid).parents
        scored = self.scored(g for g, _, _ in done)
        best = min(scored, key=lambda g: self.stats(g).bpb) if scored else None
        refs = references([(c, b) for g, c, b in done if parents and g == parents[0]],
                          [(c, b) for g, c, b in done if g == best],
                          [(c, b) for _, c, b in done], owners=[g for g, _, _ in done],
                          named={parents[0], best} - {None} if parents else {best} - {None})
        return Pruner.of(refs, stop=self.config.prune == "on")

    def _confirm(self, planned: list[str], generation: int) -> list[EvalResult]:
        """Evaluate again the best new genome that beats the confirmed best (noise guard)."""
        if not self.config.confirm:
            return []
        best = self.best()
        bar = self.stats(best).bpb if best else math.inf
        new = [g for g in self.scored(planned) if self.stats(g).n_ok < 2
               and self.stats(g).bpb < bar]
        if new:
            return self._evaluate([min(new, key=lambda g: self.stats(g).bpb)], "confirm", generation)
        return []

    # -- selection -----------------------------------------------------------------------------
    def select(self, population: list[str] | None, planned: list[str]) -> list[str]:
        pool = self.scored((population or []) + planned)
        if not pool:
            return population or []
        strategy = self.config.strategy
        if strategy == "hillclimb":
            best = self.best() if self.config.confirm else None
            candidates = [best] if best in pool else pool
            return [min(candidates, key=lambda g: self.stats(g).bpb)]
        if strategy == "random":
            return pool
        inds = [Individual(g, self.stats(g).bpb, self.stats(g).tps or 0.0) for g in pool]
        return [i.genome_id for i in tools.selNSGA2(inds, min(self.config.population, len(inds)))]

    # -- the loop ------------------------------------------------------------------------------
    def summary(self, generation: int, population: list[str], planned: list[str],
                new_results: list[EvalResult]) -> dict:
        from evolve.search.noise import noise_floor_of

        scored = self.scored(self.archive.genome_ids())
        pts = {g: (self.stats(g).bpb, self.stats(g).tps or 0.0) for g in scored}
        front = self.front()
        ref = self.archive.meta().get("hv_ref_bpb")
        if ref is None and scored:
            ref = 1.1 * max(p[0] for p in pts.values())
            self.archive.set_meta("hv_ref_bpb", ref)
        best = self.best()
        elapsed = time.time() - self.t_start
        done_gens = generation + 1
        remaining = self.config.generations - generation
        return {
            "generation": generation, "best_id": best,
            "best_bpb": self.stats(best).bpb if best else None,
            "best_std": self.stats(best).bpb_std if best else None,
            "noise_floor": noise_floor_of(self.archive),
            "front_size": len(front),
            "hypervolume": hypervolume([pts[g] for g in front], ref) if ref else 0.0,
            "evals_total": self.archive.eval_count(), "evals_new": len(new_results),
            "failures": dict(Counter(r.status.value for r in new_results
                                     if not r.ok and r.status is not Status.PRUNED)),
            "pruned": sum(r.status is Status.PRUNED for r in new_results),
            "population": len(population), "elapsed_s": elapsed,
            "eta_s": self._eta(elapsed, done_gens, remaining),
        }

    def _eta(self, elapsed: float, done_gens: int, remaining: int) -> float | None:
        """Seconds left: by generations, or by the compute cap when that comes first (a
        capped run asks for 100,000 generations and stops long before)."""
        if not done_gens:
            return None
        eta = elapsed / done_gens * remaining
        spent = self.archive.compute_seconds()
        if self.config.compute_s is not None and spent > 0:
            eta = min(eta, elapsed * max(0.0, self.config.compute_s - spent) / spent)
        return eta

    def _resume_line(self, start: int, planned: list[str] | None) -> str:
        """What a resumed run found, said before anything runs."""
        line = (f"resuming: {start} generation(s) finished, {self.archive.eval_count()} "
                "evaluations kept (none is run again)")
        if planned:
            unique = list(dict.fromkeys(planned))
            done = len(self.archive.evaluated_in(start) & set(unique))
            left = sum(self.stats(g).n == 0 for g in unique)
            line += f"; generation {start}: {done} of {len(unique)} evaluated, {left} left"
        return line

    def run(self) -> int:
        """Run (or resume) to the last generation. Returns 0, or 1 when stopped by failures."""
        if self.proposer is not None:       # the models' arms, for run.operators and `show`
            known = self.archive.meta().get("llm_models", [])
            self.archive.set_meta("llm_models",
                                  list(dict.fromkeys([*known, *self.proposer.models])))
        gens = self.archive.generations()
        finished = [g for g in gens if g["population"] is not None]
        plans = {g["generation"]: g["planned"] for g in gens}
        population = finished[-1]["population"] if finished else None
        start = finished[-1]["generation"] + 1 if finished else 0
        if start or plans:
            self.log(self._resume_line(start, plans.get(start)))
        failed_streak = 0
        for generation in range(start, self.config.generations + 1):
            spent = self.archive.compute_seconds()
            if self.config.compute_s is not None and spent >= self.config.compute_s \
                    and generation not in plans:
                self.log(f"stopping: the evaluations took {spent:.0f} s, the compute budget is "
                         f"{self.config.compute_s:g} s (--compute)")
                return 0
            planned = plans.get(generation)
            if planned is None:
                planned = self.plan(generation, population)
                self.archive.plan_generation(generation, planned)
            self._launch_llm(generation + 1, population)
            unique = list(dict.fromkeys(planned))
            todo = [g for g in unique if self.stats(g).n == 0]
            # Done here before a resume ("kept") is not offspring identical to an earlier
            # genome ("reused": never trained twice).
            kept = len(self.archive.evaluated_in(generation) & set(unique))
            reused = len(unique) - len(todo) - kept
            results = self._evaluate(todo, "eval", generation, already=kept)
            confirmations = self._confirm(planned, generation)
            population = self.select(population, planned)
            # failures count every evaluation of the generation, confirmations too; `+N` and
            # the failed-generation rule stay about the offspring
            s = self.summary(generation, population, planned, results)
            s["failures"] = dict(Counter(r.status.value for r in results + confirmations
                                         if not r.ok and r.status is not Status.PRUNED))
            s["reused"] = reused
            s["kept"] = kept
            if self.proposer is not None:
                s.update(llm_wait_s=self._llm_wait, llm_tokens=self.archive.llm_tokens(),
                         llm=self._llm_note)
            self.archive.finish_generation(generation, population, s)
            self.log(format_summary(s, self.config.generations))
            if self.on_generation is not None:
                self.on_generation(generation)
            # A pruned run is the pruner's choice, not a failure of the genome or the machine.
            if results and not any(r.ok or r.status is Status.PRUNED for r in results):
                failed_streak += 1
                if failed_streak >= self.config.max_failed_generations:
                    self.log(f"stopping: every evaluation failed in {failed_streak} generations in "
                             f"a row (failures: {s['failures']}); see the stderr_tail column of "
                             "run.evals")
                    return 1
            else:
                failed_streak = 0
            if not population:
                self.log("stopping: no genome of the initial population produced a score")
                return 1
        return 0


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_summary(s: dict, generations: int) -> str:
    """One line per generation, e.g.
    gen 3/50  best 1.23456 ±0.00061 [ab12cd34]  front 4  hv 1.2e+05  evals 33 (+8, 1 reused)
    fail crash:1  pruned 2  12m05s  eta 1h30m    ("pruned" only when some were)"""
    best = (f"best {s['best_bpb']:.5f}" + (f" ±{s['best_std']:.5f}" if s.get("best_std") else "")
            + f" [{s['best_id'][:8]}]") if s.get("best_bpb") is not None else "best -"
    noise = f"  noise {s['noise_floor']:.5f}" if s.get("noise_floor") else ""
    fails = " ".join(f"{k}:{v}" for k, v in sorted(s["failures"].items())) or "none"
    line = (f"gen {s['generation']}/{generations}  {best}{noise}  front {s['front_size']}  "
            f"hv {s['hypervolume']:.3g}  evals {s['evals_total']} (+{s['evals_new']}, "
            + (f"{s['kept']} kept from before the resume, " if s.get("kept") else "")
            + f"{s.get('reused', 0)} reused)  fail {fails}  "
            + (f"pruned {s['pruned']}  " if s.get("pruned") else "")
            + f"{_duration(s['elapsed_s'])}  "
            f"eta {_duration(s['eta_s'])}")
    if "llm_tokens" in s:
        line += (f"\n    {s.get('llm') or 'llm: no proposals this generation'}; "
                 f"workers waited {s['llm_wait_s']:.1f} s; {s['llm_tokens']} tokens in total")
    return line
