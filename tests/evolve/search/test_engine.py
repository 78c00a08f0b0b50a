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
