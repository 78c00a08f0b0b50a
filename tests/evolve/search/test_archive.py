"""The archive's schema: an archive written before a column existed opens and takes new rows."""

from __future__ import annotations

import sqlite3

from evolve.evaluation.result import Status, make_result
from evolve.search.archive import Archive


def test_an_older_archive_gains_the_new_columns(tmp_path):
    from genome.record import Genome

    archive = Archive.create(tmp_path, {"config": {}, "task": {}, "fingerprint": "x"})
    archive.close()
    conn = sqlite3.connect(tmp_path / "archive.sqlite")        # as an older version wrote it
    for column in ("model_tokens_per_sec", "device_memory_mb"):
        conn.execute(f"ALTER TABLE evals DROP COLUMN {column}")
    conn.commit()
    conn.close()
    archive = Archive.open(tmp_path)
    g = Genome.seed("print(1)\n", "seed")
    archive.add_genome(g, 0)
    r = make_result(Status.OK, val_bpb=1.5, tokens_per_sec=900.0, model_tokens_per_sec=1000.0)
    archive.add_eval(g.id, r, "eval", 0, "cpu", 0.0, 1.0)
    assert archive.results(g.id) == [r]
    archive.close()
