"""python -m evolve bench: the run each strategy is (its command, capped by compute; resumed)."""

from __future__ import annotations

import types

import pytest

from evolve.search import bench


@pytest.mark.parametrize("strategy", bench.STRATEGIES)
def test_each_strategy_is_a_valid_run_command_capped_by_compute(strategy, tmp_path, monkeypatch):
    from evolve.cli import build_parser

    seen = []
    monkeypatch.setattr(bench.subprocess, "run",
                        lambda cmd, **kw: seen.append(cmd) or types.SimpleNamespace(returncode=0))
    bench.run_one(tmp_path / "r", strategy, 3, 120.0, 10.0, 4, ["a.py"], "cpu", log=lambda m: None)
    args = build_parser().parse_args(seen[0][3:])         # after python -m evolve
    assert args.compute == 120.0 and args.rng_seed == 3 and args.budget == 10.0
    assert args.population == 4 and args.seed == ["a.py"] and args.run_dir == str(tmp_path / "r")
    assert (args.strategy or "evolve") == strategy.split("-")[0]
    assert args.no_bandit == (strategy == "evolve-plain")
    assert "tune=" not in (args.operator_weights or "")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "archive.sqlite").write_bytes(b"")
    bench.run_one(tmp_path / "r", strategy, 3, 120.0, 10.0, 4, [], "cpu", log=lambda m: None)
    assert seen[1][3:] == ["--resume", str(tmp_path / "r")]          # a killed bench goes on
