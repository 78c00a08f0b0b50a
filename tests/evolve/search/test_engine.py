"""The engine on a real (tiny) CPU task: a whole run, reuse of evaluated genomes and the pieces
of selection. Kill -9 and resume through the CLI: tests/evolve/search/test_cluster.py."""

from __future__ import annotations

import json

import pytest

from evolve.search.archive import Archive
from evolve.search.engine import Engine, EngineConfig, Fitness, Individual, hypervolume
from evolve.inspect.run import load_run, pareto_mask
from tests.conftest import TINY, small_task


def make_engine(run_dir, supervisor, config, logs, on_generation=None):
    from genome.record import Genome

    from evolve.search.workers import LocalMap

    task = supervisor.task
    archive = (Archive.open(run_dir) if (run_dir / "archive.sqlite").exists() else
               Archive.create(run_dir, {"config": config.to_dict(), "task": task.to_dict(),
                                        "fingerprint": supervisor.fingerprint}))
    seeds = [Genome.seed(TINY.read_text(), "seed tiny.py")]
    return Engine(archive, LocalMap(supervisor), config, seeds, log=logs.append,
                  show_progress=False, on_generation=on_generation)


@pytest.fixture(scope="module")
def fast_supervisor(prepared):
    from evolve.evaluation.supervisor import Supervisor

    return Supervisor(small_task(budget_s=1.0), prepared)


def test_a_whole_run_lands_in_the_archive(small_run):
    # The session's shared run (tests/conftest.py): tiny.py and crash.py seeds, population 2,
    # generations 1; this test and the inspection tests only read it.
    run_dir, logs = small_run.dir, list(small_run.logs)
    assert small_run.exit_code == 0
    assert small_run.finished == (0, 1)           # the hook that refreshes the run's plots
    assert [line.split()[1] for line in logs] == ["0/1", "1/1"]
    run = load_run(run_dir)
    assert len(run.df) >= 4 and (run.df.status == "ok").sum() >= 2
    front = run.pareto()
    assert len(front) >= 1 and front.on_front.all()
    pts = run.df[run.df.val_bpb.notna()][["val_bpb", "tokens_per_sec"]].to_numpy()
    for b, t in front[["val_bpb", "tokens_per_sec"]].to_numpy():   # nothing dominates the front
        assert not ((pts[:, 0] <= b) & (pts[:, 1] >= t) & ((pts[:, 0] < b) | (pts[:, 1] > t))).any()
    best = run.best()
    chain = run.lineage(best.genome_id)
    assert chain.iloc[0].operator == "seed" and chain.iloc[-1].genome_id == best.genome_id
    assert "harness.submit" in run.source(best.genome_id)
    evals = run.evals[run.evals.kind == "eval"]
    assert evals.genome_id.is_unique                                 # nothing trained twice
    assert set(run.evals.kind) <= {"eval", "confirm"}
    gens = Archive.open(run_dir, readonly=True).generations()
    assert [g["generation"] for g in gens] == [0, 1] and all(g["population"] for g in gens)


def test_planned_genomes_already_evaluated_are_reused(small_run, fast_supervisor, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(small_run.dir, run_dir)                # the shared run is read-only
    archive = Archive.open(run_dir)
    before = archive.eval_count()
    ids = archive.genome_ids()
    archive.plan_generation(2, ids[:2] + ids[:1])        # duplicates of evaluated genomes
    archive.close()
    logs: list[str] = []
    engine = make_engine(run_dir, fast_supervisor, EngineConfig(population=3, generations=2), logs)
    assert engine.run() == 0
    assert engine.archive.eval_count() == before         # no evaluation at all
    assert "(+0, 2 reused)" in logs[-1]


def test_nsga2_pieces():
    a, b = Individual("a", 1.0, 10.0), Individual("b", 1.1, 5.0)
    assert a.fitness.dominates(b.fitness) and Fitness.weights == (-1.0, 1.0)
    assert hypervolume([(1.0, 10.0), (2.0, 20.0)], ref_bpb=3.0) == pytest.approx(30.0)
    assert hypervolume([(4.0, 10.0)], ref_bpb=3.0) == 0.0
    mask = pareto_mask(__import__("numpy").array([1.0, 2.0, 1.5]),
                       __import__("numpy").array([10.0, 20.0, 5.0]))
    assert list(mask) == [True, True, False]


def test_config_problems_are_one_line():
    assert "population" in EngineConfig(population=0).problem()
    assert "unknown operator" in EngineConfig(operator_weights=(("nope", 1.0),)).problem()
    assert EngineConfig().problem() is None
    assert EngineConfig.from_dict(json.loads(json.dumps(EngineConfig().to_dict()))) == EngineConfig()


def test_llm_token_cap_stops_proposing(tmp_path):
    """With --max-llm-tokens reached, no proposal is launched and the run says so once."""
    from genome.llm import LLMClient, LLMSettings
    from genome.record import Genome

    from evolve.search.proposals import Proposer

    # Never contacted: the cap is checked before any call.
    client = LLMClient(LLMSettings(models=(("m", 1.0),), base_url="http://127.0.0.1:9/v1",
                                   api_key="k"))
    proposer = Proposer(client, "program", max_tokens=0)
    archive = Archive.create(tmp_path / "run", {"config": {}, "task": {}, "fingerprint": "x"})
    logs: list[str] = []
    engine = Engine(archive, None, EngineConfig(population=4), [Genome.seed(TINY.read_text())],
                    log=logs.append, show_progress=False, proposer=proposer)
    engine._launch_llm(1, None)
    engine._launch_llm(2, None)
    assert proposer.pending == {}
    assert len(logs) == 1 and "token cap" in logs[0]
    proposer.close()
    archive.close()


class _ConfirmationFails:
    """A stand-in supervisor: a genome scores the first time and crashes every time after, so
    the only failures of a run are its confirmations."""

    def __init__(self):
        self.task, self.fingerprint, self.seen = small_task(), "fake", set()

    def evaluate(self, source, progress=None, env=None):
        from evolve.evaluation.result import Status, make_result

        if source in self.seen:
            return make_result(Status.CRASH, reason="crashed on confirmation")
        self.seen.add(source)
        return make_result(Status.OK, val_bpb=2.0, tokens_per_sec=1000.0)


def test_a_generations_failures_count_its_confirmations(tmp_path):
    logs: list[str] = []
    engine = make_engine(tmp_path / "run", _ConfirmationFails(),
                         EngineConfig(population=1, generations=0), logs)
    assert engine.run() == 0                  # a failed confirmation does not fail the generation
    summary = engine.archive.generations()[0]["summary"]
    assert summary["failures"] == {"crash": 1}, summary
    assert "crash" in logs[-1], logs


class _Pruning:
    """A stand-in supervisor that acts on the pruner as the real one does: every genome's run
    reports an honest-looking curve, but one judged by a pruner (so not of generation 0: the
    references are honest) whose source hashes odd is hopeless (2 nats above); the pruner the
    engine sent is asked at each checkpoint, and a "stop" ends the run PRUNED there (with
    --prune on) or is only recorded (shadow). Every call is logged."""

    def __init__(self):
        self.task, self.fingerprint, self.calls = small_task(), "fake", []

    def evaluate(self, source, progress=None, env=None, pruner=None):
        import hashlib

        from evolve.evaluation.result import Status, make_result

        hopeless = pruner is not None and \
            int(hashlib.sha256(source.encode()).hexdigest(), 16) % 2 == 1
        curve = [(p / 20, 6.0 - 3.0 * p / 20 + (2.0 if hopeless else 0.0)) for p in range(1, 21)]
        self.calls.append((source, pruner))
        mark = {"pruner": ("on" if pruner.stop else "shadow")} if pruner else {}
        for c in (pruner.checkpoints if pruner else ()):
            d = pruner.decide([pt for pt in curve if pt[0] <= c], c)
            if d.prune and pruner.stop:
                return make_result(Status.PRUNED, reason="pruned", pruned_at=c, prune_bar=d.bar,
                                   curve=tuple(pt for pt in curve if pt[0] <= c),
                                   training_seconds=10.0 * c, **mark)
            if d.prune:
                return make_result(Status.OK, val_bpb=curve[-1][1], tokens_per_sec=1000.0,
                                   curve=tuple(curve), pruned_at=c, prune_bar=d.bar,
                                   training_seconds=10.0, **mark)
        return make_result(Status.OK, val_bpb=curve[-1][1], tokens_per_sec=1000.0,
                           curve=tuple(curve), training_seconds=10.0, **mark)


@pytest.mark.parametrize("mode", ["on", "shadow", "off"])
def test_pruning_modes_through_the_engine(tmp_path, mode):
    from evolve.inspect.prune_report import shadow, summary

    sup, logs = _Pruning(), []
    config = EngineConfig(population=6, generations=2, prune=mode)
    engine = make_engine(tmp_path / "run", sup, config, logs)
    assert engine.run() == 0                     # a generation of pruned runs is no failure
    archive = engine.archive
    first_gen = {g for g in archive.evaluated_in(0)}
    sources = {archive.genome(g).source: g for g in archive.genome_ids()}
    # nothing is judged before three credible runs: generation 0 ran without a pruner
    assert all(p is None for s, p in sup.calls if sources[s] in first_gen)
    judged = [(s, p) for s, p in sup.calls if p is not None]
    if mode == "off":
        assert not judged
    else:
        assert judged and all(p.stop == (mode == "on") for _, p in judged)
    # confirmations are never pruned, and no genome ran twice as a first evaluation
    confirms = [g for (g,) in archive.conn.execute("SELECT genome_id FROM evals WHERE kind = "
                                                   "'confirm'")]
    n_first = archive.conn.execute("SELECT genome_id, COUNT(*) FROM evals WHERE kind = 'eval' "
                                   "GROUP BY genome_id").fetchall()
    assert all(n == 1 for _, n in n_first)
    pruned = [g for (g,) in archive.conn.execute("SELECT genome_id FROM evals WHERE status = "
                                                 "'pruned'")]
    marked = [g for (g,) in archive.conn.execute("SELECT genome_id FROM evals WHERE pruned_at "
                                                 "IS NOT NULL")]
    if mode == "on":
        assert pruned and set(pruned) == set(marked) and not set(pruned) & set(confirms)
        assert archive.scored_curves() and all(archive.results(g)[0].val_bpb is None
                                               for g in pruned)
        summaries = [g["summary"] for g in archive.generations()]
        assert sum(s["pruned"] for s in summaries) == len(pruned)
        assert all("pruned" not in s["failures"] for s in summaries)
        assert any(f"pruned {s['pruned']}" in line for s in summaries if s["pruned"]
                   for line in logs)
        # the language model is told: pruned, where, and the child's loss beside its parent's
        from genome.prompt import _failures_section

        from evolve.search.proposals import prompt_context
        text = _failures_section(prompt_context(archive, "program"))
        assert "pruned" in text and "this child vs its parent:" in text, text
        assert "20 %: 7.4750 vs 5.4750" in text, text     # hopeless: 2 nats above its parent
    else:
        assert not pruned                          # shadow mode never kills
        assert bool(marked) == (mode == "shadow")
    # prune-report reads the recorded decisions: the same genomes as the archive
    run = load_run(tmp_path / "run")
    table = shadow(run)
    if mode != "off":
        assert set(table[table.pruned_at.notna()].genome_id) == set(marked)
        s = summary(run, table)
        assert s["live"] and s["stopped"] == len(pruned)
        # each stopped run saved (1 - c) of its 10 s; in shadow the same would have been saved
        full = 10.0 * len(table)
        saved = sum((1 - c) * 10.0 for c in table.pruned_at.dropna())
        assert s["saved_share"] == pytest.approx(saved / full)
        assert s["checked"] == (0 if mode == "on" else len(marked))
    # a resume after the last generation evaluates nothing again (pruned runs are kept)
    before = len(sup.calls)
    assert make_engine(tmp_path / "run", sup, config, logs).run() == 0
    assert len(sup.calls) == before


def test_tune_children_are_told_the_runs_scored_genomes(tmp_path):
    """With only the tune operator, the children of later generations are proposed by a sampler
    that was told the scored genomes of their parent's structure (the archive's, every time)."""
    sup, logs = _Pruning(), []
    config = EngineConfig(population=4, generations=2, prune="off", crossover_prob=0.0,
                          operator_weights=(("tune", 1.0),))
    engine = make_engine(tmp_path / "run", sup, config, logs)
    assert engine.run() == 0
    rows = engine.archive.conn.execute("SELECT operator, description, generation FROM genomes "
                                       "WHERE operator != 'seed'").fetchall()
    assert rows and all(op == "tune" for op, _, _ in rows)
    told = [d for _, d, gen in rows if gen >= 1]
    assert any("trials of this structure" in d for d in told), told


@pytest.mark.parametrize("bandit", [True, False])
def test_mutations_are_drawn_by_the_bandit_unless_switched_off(tmp_path, monkeypatch, bandit):
    from genome.operators import MUTATIONS

    from evolve.search.bandit import Arm

    # evidence that only `constant` children ever succeed
    monkeypatch.setattr(Engine, "arms", lambda self: [
        Arm(n, 50, 0) if n == "constant" else Arm(n, 0, 50) for n in MUTATIONS])
    config = EngineConfig(population=8, generations=1, prune="off", crossover_prob=0.0,
                          bandit=bandit)
    engine = make_engine(tmp_path / "run", _Pruning(), config, [])
    assert engine.run() == 0
    ops = [op for (op,) in engine.archive.conn.execute(
        "SELECT operator FROM genomes WHERE operator != 'seed'")]
    assert len(ops) >= 12
    if bandit:
        assert set(ops) == {"constant"}, ops
    else:                                   # uniform among those that apply to tiny.py
        assert set(ops) == {"constant", "tune"}, ops


def test_a_run_stops_when_its_evaluations_spent_the_compute_budget(tmp_path):
    sup, logs = _Pruning(), []
    config = EngineConfig(population=3, generations=50, prune="off", compute_s=1e-9)
    engine = make_engine(tmp_path / "run", sup, config, logs)
    assert engine.run() == 0
    assert [g["generation"] for g in engine.archive.generations()] == [0]    # one, then stop
    assert engine.archive.compute_seconds() > 0
    assert logs[-1].startswith("stopping: the evaluations took") and "--compute" in logs[-1]
    assert "eta 0m00s" in logs[-2], logs[-2]      # by the cap, not by 50 generations
    assert EngineConfig(compute_s=0.0).problem() == "--compute must be a positive number of seconds"


def test_a_drawn_operator_that_does_not_apply_passes_the_draw_on_by_the_same_weights(tmp_path):
    """`bool` never applies to tiny.py: with weights bool=1, constant=1 every child is a
    `constant` one. (The fallback used to draw among every operator: the evolve-plain ablation,
    weighted without tune, got tune children that way.)"""
    config = EngineConfig(population=8, generations=1, prune="off", crossover_prob=0.0,
                          operator_weights=(("bool", 1.0), ("constant", 1.0)))
    engine = make_engine(tmp_path / "run", _Pruning(), config, [])
    assert engine.run() == 0
    ops = {op for (op,) in engine.archive.conn.execute(
        "SELECT operator FROM genomes WHERE operator != 'seed'")}
    assert ops == {"constant"}, ops


def test_a_run_resumed_in_another_pruning_mode_is_reported_per_evaluation(tmp_path):
    """--prune off for two generations, then resumed with --prune shadow: prune-report reads
    the live decisions of what a pruner judged and replays the rest."""
    from evolve.inspect.prune_report import recorded, shadow

    sup = _Pruning()
    assert make_engine(tmp_path / "run", sup, EngineConfig(population=6, generations=1,
                                                           prune="off"), []).run() == 0
    assert not recorded(load_run(tmp_path / "run"))
    engine = make_engine(tmp_path / "run", sup, EngineConfig(population=6, generations=2,
                                                             prune="shadow"), [])
    engine.archive.set_meta("config", engine.config.to_dict())     # as the CLI does on resume
    assert engine.run() == 0
    run = load_run(tmp_path / "run")
    assert recorded(run)
    ev = run.evals[run.evals.kind == "eval"].set_index("eval_id")
    live = ev[ev.pruner == "shadow"]
    assert len(live) and set(live.generation) == {2}
    table = shadow(run).set_index("eval_id")
    for i in live.index:                                  # the pruner's own decisions
        a, b = table.loc[i, "pruned_at"], live.loc[i, "pruned_at"]
        assert (a != a and b != b) or a == b
    assert table.loc[live.index, "references"].isna().all()
    assert table.loc[ev[ev.generation < 2].index, "references"].notna().all()   # replayed


class _Hashed:
    """A stand-in supervisor whose scores differ by genome and never by call: val_bpb and
    tokens/s from the source's hash, so the bandit has evidence to learn from."""

    def __init__(self):
        self.task, self.fingerprint, self.calls = small_task(), "fake", []

    def evaluate(self, source, progress=None, env=None, pruner=None):
        import hashlib

        from evolve.evaluation.result import Status, make_result

        self.calls.append(source)
        h = int(hashlib.sha256(source.encode()).hexdigest(), 16)
        return make_result(Status.OK, val_bpb=2.5 + (h % 1000) / 1000,
                           tokens_per_sec=1000.0 + h % 500, training_seconds=10.0)


@pytest.mark.parametrize("share", [None, 0.0])
def test_crossover_is_a_bandit_arm_unless_its_share_is_fixed(tmp_path, monkeypatch, share):
    from evolve.search.bandit import CROSSOVER, Arm, arm_names

    # evidence that only crossover children ever succeed
    monkeypatch.setattr(Engine, "arms", lambda self: [
        Arm(n, 50, 0) if n == CROSSOVER else Arm(n, 0, 50)
        for n in arm_names(self.crossover_arm())])
    config = EngineConfig(population=6, generations=1, prune="off", crossover_prob=share)
    engine = make_engine(tmp_path / "run", _Hashed(), config, [])
    assert engine.run() == 0
    ops = [op for (op,) in engine.archive.conn.execute(
        "SELECT operator FROM genomes WHERE generation = 1")]
    crossed = [op for op in ops if op in ("constants", "definitions")]
    if share is None:       # a pair drawn as one genome twice is mutated instead
        assert len(ops) == 6 and len(crossed) >= 4, ops
    else:
        assert len(ops) == 6 and not crossed, ops


def test_a_resumed_run_plans_what_the_bandit_and_tune_would_have(tmp_path):
    """The bandit's arms (crossover included) and tune's trials come from the archive and the
    run's random stream: stopping after generation 1 and resuming to 3 plans the same genomes
    as running to 3 at once."""
    def plan(run_dir, stops):
        for generations in stops:
            config = EngineConfig(population=5, generations=generations, prune="off")
            engine = make_engine(run_dir, _Hashed(), config, [])
            engine.archive.set_meta("config", config.to_dict())     # as the CLI does on resume
            assert engine.run() == 0
        rows = engine.archive.conn.execute(
            "SELECT generation, genome_id, operator FROM genomes ORDER BY generation, rowid")
        return [tuple(r) for r in rows]

    straight = plan(tmp_path / "a", [3])
    assert plan(tmp_path / "b", [1, 3]) == straight
    ops = {op for _, _, op in straight}
    assert len(ops) >= 3, ops                      # several arms drawn


class _ModelClient:
    """A stand-in LLMClient behind the real Proposer: each proposal edits the parent's
    learning rate (a fresh value from the proposal's stream) and records which model the
    engine asked for. Model "good" writes rates that score well under _ByRate, "bad" ones
    that score badly."""

    def __init__(self, models):
        from genome.llm import LLMSettings

        self.settings = LLMSettings(models=tuple((m, 1.0) for m in models),
                                    base_url="http://127.0.0.1:9/v1", api_key="k")
        self.asked: list[str | None] = []

    def propose_mutation(self, parent_source, parent_meas, ctx, known_ids, rng, model=None):
        import re

        from genome.llm import CallRecord, Proposal

        self.asked.append(model)
        if model == "broken":                    # never a usable child
            return Proposal(None, "", "llm_mutate", (
                CallRecord(model, 100, 10, 0.01, "apply_failed", "no edit", 0.0),), "no edit")
        rate = (0.001 if model == "good" else 0.9) * (1 + rng.random())
        child = re.sub(r"LEARNING_RATE = [0-9.e-]+", f"LEARNING_RATE = {rate:.6f}",
                       parent_source)
        return Proposal(child, f"{model}: learning rate {rate:.6f}", "llm_mutate",
                        (CallRecord(model or "?", 100, 10, 0.01, "applied", "", 0.0),))

    def propose_crossover(self, a_src, a_meas, b_src, b_meas, ctx, known_ids, rng, model=None):
        return self.propose_mutation(a_src, a_meas, ctx, known_ids, rng, model)

    def close(self):
        pass


class _ByRate(_Hashed):
    """_Hashed (2.5-3.5 bpb), except that a learning rate below 0.0025 (good's) gains one,
    and one above 0.1 (bad's) loses one."""

    def evaluate(self, source, progress=None, env=None, pruner=None):
        import dataclasses
        import re

        result = super().evaluate(source, progress, env, pruner)
        rate = float(re.search(r"LEARNING_RATE = ([0-9.e-]+)", source).group(1))
        shift = -1.0 if rate < 0.0025 else (1.0 if rate > 0.1 else 0.0)
        return dataclasses.replace(result, val_bpb=result.val_bpb + shift)


@pytest.mark.parametrize("mode", ["bandit", "share", "fixed"])
def test_each_language_model_is_a_bandit_arm(tmp_path, mode):
    """With a model configured, the bandit decides how many offspring the models propose
    and which model, each model one arm credited with its own children (mode "bandit"); a
    fixed --llm-share fixes how many, the bandit still picks the model ("share"); with
    --operator-weights the share is LLM_SHARE and the models are left to their weights."""
    from genome.record import Genome

    from evolve.inspect.run import load_run
    from evolve.search.engine import LLM_SHARE
    from evolve.search.proposals import Proposer
    from evolve.search.workers import LocalMap

    client = _ModelClient(["good", "bad"])
    proposer = Proposer(client, "program", concurrency=1)
    config = EngineConfig(population=8, generations=4, prune="off", confirm=False,
                          llm_share=0.5 if mode == "share" else None,
                          operator_weights=(("constant", 1.0),) if mode == "fixed" else ())
    sup = _ByRate()
    archive = Archive.create(tmp_path / "run", {"config": config.to_dict(), "task": {},
                                                "fingerprint": "fake"})
    engine = Engine(archive, LocalMap(sup), config, [Genome.seed(TINY.read_text(), "tiny")],
                    log=lambda _: None, show_progress=False, proposer=proposer)
    assert engine.run() == 0
    llm = archive.conn.execute("SELECT generation, operator FROM genomes WHERE operator IN "
                               "('llm_mutate', 'llm_cross') ORDER BY rowid").fetchall()
    arms = {a.name: a for a in engine.arms(llm=True)}
    proposer.close()
    archive.close()
    if mode == "fixed":
        assert set(client.asked) == {None}                         # the weights pick
        assert len(client.asked) == 4 * round(LLM_SHARE * 8) and "llm:good" not in arms
        return
    assert set(client.asked) <= {"good", "bad"} and "good" in client.asked
    # the children of each model credit its arm: good's beat their parents more often (bad's
    # succeed only on the front, by their throughput)
    good, bad = arms["llm:good"], arms["llm:bad"]
    assert good.successes >= 1 and good.successes / good.children > \
        bad.successes / max(1, bad.children), (good, bad)
    assert arms["llm:good"].children + arms["llm:bad"].children == len(llm)
    if mode == "share":
        assert len(client.asked) == 4 * 4                          # half of 8, 4 generations
        assert client.asked[-4:].count("good") >= 3, client.asked   # learnt by the last one
    ops = load_run(tmp_path / "run").operators.set_index("operator")
    for name in ("llm:good", "llm:bad"):                  # run.operators: the same credit
        assert (ops.loc[name, "successes"], ops.loc[name, "failures"]) == \
            (arms[name].successes, arms[name].failures), (name, ops, arms)


def test_a_model_that_gives_no_child_loses_its_slots(tmp_path):
    """A proposal without a child (errors, edits that never apply) counts against its model's
    arm, so a model that only fails is drawn less and less instead of staying on the prior."""
    from genome.record import Genome

    from evolve.inspect.run import load_run
    from evolve.search.proposals import Proposer
    from evolve.search.workers import LocalMap

    client = _ModelClient(["good", "broken"])
    proposer = Proposer(client, "program", concurrency=1)
    config = EngineConfig(population=8, generations=5, prune="off", confirm=False, llm_share=0.5)
    run_dir = tmp_path / "run"
    archive = Archive.create(run_dir, {"config": config.to_dict(), "task": {}, "fingerprint": "f"})
    engine = Engine(archive, LocalMap(_ByRate()), config, [Genome.seed(TINY.read_text(), "tiny")],
                    log=lambda _: None, show_progress=False, proposer=proposer)
    assert engine.run() == 0
    arms = {a.name: a for a in engine.arms(llm=True)}
    failed = archive.llm_failed()
    proposer.close()
    archive.close()
    asked = client.asked
    assert len(asked) == 5 * 4 and {m for _, m in failed} == {"broken"}
    assert arms["llm:broken"].failures == asked.count("broken") and arms["llm:broken"].successes == 0
    assert asked[-4:].count("broken") <= 1, asked                # learnt by the last generation
    ops = load_run(run_dir).operators.set_index("operator")
    assert ops.loc["llm:broken", "failures"] == arms["llm:broken"].failures
