"""What a user sees while evaluations run: lines and a heartbeat without a terminal, a bar with
phases on one; and the engine wiring the map's phases into it."""

from __future__ import annotations

import time

from evolve.evaluation.result import Status, make_result
from evolve.search.progress import EvalProgress

OK = make_result(Status.OK, val_bpb=2.34567, tokens_per_sec=8012.4)
CRASH = make_result(Status.CRASH, reason="exit code 1: ValueError: shapes")


def test_without_a_terminal_each_result_is_a_line_and_silence_gets_a_heartbeat():
    lines: list[str] = []
    shown = EvalProgress(2, "gen 1 eval", lines.append, "lines", heartbeat_s=0.2)
    try:
        shown.phase("abcdef1234", "training", 0.45)
        shown.phase("0123456789", "submitting", 1.0)
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lines[0] == ("gen 1 eval 0/2 done; running: abcdef12 training 45%, "
                            "01234567 exporting")
        shown.finished("abcdef1234", OK, 75.2)
        shown.finished("0123456789", CRASH, 3.0)
    finally:
        shown.close()
    assert "gen 1 eval 1/2: abcdef12 ok val_bpb 2.3457, 8,012 tok/s (75 s)" in lines
    assert lines[-1] == "gen 1 eval 2/2: 01234567 crash: exit code 1: ValueError: shapes (3 s)"


def test_on_a_terminal_the_bar_names_the_running_phase_and_the_last_result(capsys):
    shown = EvalProgress(2, "gen 0 eval", print, "bar")
    shown.phase("abcdef1234", "scoring", 1.0)
    shown.finished("0123456789", OK, 10.0)
    shown.close()
    err = capsys.readouterr().err
    assert "abcdef12 scoring" in err and "last 01234567 ok val_bpb 2.3457" in err


class _Map:
    """An evaluation map that reports phases like LocalMap and returns at once."""

    slots = 1
    progress = None

    def imap(self, jobs):
        from evolve.search.workers import Done

        for key, *_ in jobs:          # (key, source[, pruner])
            self.progress(key, "training", 0.5)
            time.sleep(0.3)
            yield Done(key, OK, "cpu", 0.0, 1.0)


def test_the_engine_shows_the_maps_phases_without_a_terminal(tmp_path):
    from genome.record import Genome

    from evolve.search.archive import Archive
    from evolve.search.engine import Engine, EngineConfig
    from tests.conftest import TINY

    archive = Archive.create(tmp_path, {"config": {}, "task": {}, "fingerprint": "x"})
    g = Genome.seed(TINY.read_text(), "seed")
    archive.add_genome(g, 0)
    lines: list[str] = []
    emap = _Map()
    engine = Engine(archive, emap, EngineConfig(population=1, generations=0), [g],
                    log=lines.append, show_progress=False, progress_lines=True, heartbeat_s=0.1)
    assert engine._evaluate([g.id], "eval", 0) == [OK]
    archive.close()
    assert any(line == f"gen 0 eval 0/1 done; running: {g.id[:8]} training 50%" for line in lines)
    assert lines[-1].startswith(f"gen 0 eval 1/1: {g.id[:8]} ok val_bpb 2.3457")
    assert emap.progress is None                 # the hook is taken back


def test_a_long_reason_is_cut_at_a_word_and_says_so():
    from evolve.evaluation.result import Status, make_result
    from evolve.search.progress import result_text

    r = make_result(Status.INVALID, reason="word " * 80)
    text = result_text(r)
    assert len(text) <= 160 and text.endswith(" …") and not text[:-2].endswith("wor")
    assert result_text(make_result(Status.CRASH, reason="short")) == "crash: short"
