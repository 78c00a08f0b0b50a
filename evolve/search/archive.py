"""The run archive: one SQLite file per run directory, written only by the engine.

    RUN_DIR/archive.sqlite

Crash safety: WAL journal and one transaction per write, so a `kill -9` of the engine at any
moment leaves every committed evaluation intact and nothing half-written (SQLite rolls a torn
transaction back on the next open; the engine reports that it did). Tables:

- meta:        key -> JSON value: format, config, task, fingerprint, created_at
- genomes:     every genome ever proposed (source, identity, parents, operator, description,
               diffs, the engine generation that made it)
- evals:       every evaluation (all EvalResult fields, kind = eval | confirm | replay, worker,
               start and end timestamps); a row is written the moment an evaluation finishes
- llm_calls:   every call to a language model (model, prompt and completion tokens, latency,
               outcome, error), with the genome it produced when it produced one
- llm_proposals: every proposal (the calls of one request for a child): generation, model,
               and the child, NULL when the model gave none (the bandit counts those against
               the model)
- generations: per generation, the planned offspring (written before any is evaluated) and,
               once done, the selected population and a summary; this is what --resume reads

What it does not do: decide anything (evolve.search.engine does) or shape data for people (evolve.inspect.run
turns it into pandas DataFrames).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from evolve.evaluation.result import FLOAT_FIELDS, EvalResult

FORMAT = "autoevolve-archive/1"
FILENAME = "archive.sqlite"

_EVAL_COLUMNS = ("status", "reason", "val_bpb", "tokens_per_sec", "training_seconds",
                 "total_seconds", "startup_seconds", "scoring_seconds", "peak_memory_mb",
                 "num_params", "mfu", "tokens", "exit_code", "signal", "stderr_tail", "losses",
                 "device", "sandbox", "fingerprint", "model_tokens_per_sec", "device_memory_mb",
                 "curve", "pruned_at", "prune_bar", "pruner")


def _column_type(name: str) -> str:
    return "REAL" if name in FLOAT_FIELDS else \
        "INTEGER" if name in ("num_params", "tokens", "exit_code") else "TEXT"


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS genomes (
    genome_id TEXT PRIMARY KEY, source TEXT NOT NULL, parent_ids TEXT NOT NULL,
    operator TEXT NOT NULL, description TEXT NOT NULL, diffs TEXT NOT NULL,
    generation INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS evals (
    eval_id INTEGER PRIMARY KEY AUTOINCREMENT, genome_id TEXT NOT NULL REFERENCES genomes,
    kind TEXT NOT NULL, generation INTEGER NOT NULL, worker TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL NOT NULL,
    {", ".join(c + " " + _column_type(c) for c in _EVAL_COLUMNS)});
CREATE INDEX IF NOT EXISTS evals_genome ON evals (genome_id);
CREATE TABLE IF NOT EXISTS llm_calls (
    call_id INTEGER PRIMARY KEY AUTOINCREMENT, generation INTEGER NOT NULL,
    genome_id TEXT, operator TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER,
    completion_tokens INTEGER, latency_s REAL NOT NULL, outcome TEXT NOT NULL,
    error TEXT NOT NULL, started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS llm_proposals (
    proposal_id INTEGER PRIMARY KEY AUTOINCREMENT, generation INTEGER NOT NULL,
    model TEXT NOT NULL, operator TEXT NOT NULL, genome_id TEXT);
CREATE TABLE IF NOT EXISTS generations (
    generation INTEGER PRIMARY KEY, planned TEXT NOT NULL, population TEXT,
    summary TEXT, finished_at REAL);
"""


class ArchiveError(Exception):
    """The file is not an archive of this format (message says what to do)."""


class Archive:
    """Read/write access to one run's archive. Use from one thread (the engine's)."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: Path, meta: dict[str, Any]) -> "Archive":
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / FILENAME
        if path.exists():
            raise ArchiveError(f"{run_dir} already holds a run; use --resume {run_dir} or "
                               "another --run-dir")
        conn = cls._connect(path)
        with conn:
            conn.executescript(SCHEMA)
            rows = {"format": FORMAT, "created_at": time.time(), **meta}
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [(k, json.dumps(v)) for k, v in rows.items()])
        return cls(path, conn)

    @classmethod
    def open(cls, run_dir: Path, readonly: bool = False) -> "Archive":
        path = Path(run_dir) / FILENAME
        if not path.is_file():
            raise ArchiveError(f"{run_dir} is not a run directory (no {FILENAME})")
        try:
            conn = cls._connect(path, readonly)
            fmt = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError as e:
            raise ArchiveError(f"{path} is not a readable archive ({e})") from None
        if fmt is None or json.loads(fmt[0]) != FORMAT:
            raise ArchiveError(f"{path} is an archive of another format ({fmt and fmt[0]})")
        if not readonly:
            conn.executescript(SCHEMA)        # adds tables that newer versions introduced
            have = {r[1] for r in conn.execute("PRAGMA table_info(evals)")}
            with conn:                        # and columns: older rows read them as NULL
                for c in _EVAL_COLUMNS:
                    if c not in have:
                        conn.execute(f"ALTER TABLE evals ADD COLUMN {c} {_column_type(c)}")
        return cls(path, conn)

    def has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (name,)).fetchone() is not None

    @staticmethod
    def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None if readonly else "DEFERRED")
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL survives process kills
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        self.conn.close()

    # -- meta ----------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def set_meta(self, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # -- genomes -------------------------------------------------------------------------------
    def add_genome(self, genome, generation: int) -> bool:
        """Store a genome once (by identity); returns False if it was already there."""
        with self.conn:
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO genomes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (genome.id, genome.source, json.dumps(list(genome.parents)), genome.operator,
                 genome.description, json.dumps(list(genome.diffs)), generation, time.time()))
        return cur.rowcount == 1

    def genome(self, genome_id: str):
        from genome.record import Genome

        row = self.conn.execute("SELECT source, parent_ids, operator, description, diffs, generation "
                                "FROM genomes WHERE genome_id = ?", (genome_id,)).fetchone()
        if row is None:
            return None
        src, parents, op, desc, diffs, gen = row
        return Genome.from_dict({"source": src, "parents": json.loads(parents), "operator": op,
                                 "description": desc, "diffs": json.loads(diffs),
                                 "generation": gen, "id": genome_id})

    def genome_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT genome_id FROM genomes ORDER BY rowid")]

    # -- evaluations ---------------------------------------------------------------------------
    def add_eval(self, genome_id: str, result: EvalResult, kind: str, generation: int,
                 worker: str, started_at: float, finished_at: float) -> int:
        d = result.to_dict()
        d["losses"] = json.dumps(d["losses"])
        d["curve"] = json.dumps(d["curve"])
        values = [d[c] for c in _EVAL_COLUMNS]
        with self.conn:
            cur = self.conn.execute(
                f"INSERT INTO evals (genome_id, kind, generation, worker, started_at, finished_at, "
                f"{', '.join(_EVAL_COLUMNS)}) VALUES ({', '.join('?' * (6 + len(_EVAL_COLUMNS)))})",
                [genome_id, kind, generation, worker, started_at, finished_at, *values])
        return int(cur.lastrowid)

    def results(self, genome_id: str, kinds: Iterable[str] = ("eval", "confirm")) -> list[EvalResult]:
        kinds = tuple(kinds)
        rows = self.conn.execute(
            f"SELECT {', '.join(_EVAL_COLUMNS)} FROM evals WHERE genome_id = ? AND kind IN "
            f"({', '.join('?' * len(kinds))}) ORDER BY eval_id", (genome_id, *kinds)).fetchall()
        out = []
        for row in rows:
            d = dict(zip(_EVAL_COLUMNS, row))
            d["losses"] = json.loads(d["losses"] or "[]")
            d["curve"] = json.loads(d["curve"] or "[]")
            out.append(EvalResult.from_dict(d))
        return out

    def scored_curves(self) -> list[tuple[str, list[tuple[float, float]], float]]:
        """(genome_id, curve, val_bpb) of every OK evaluation and confirmation, oldest first."""
        rows = self.conn.execute("SELECT genome_id, curve, val_bpb FROM evals WHERE status = 'ok' "
                                 "AND kind IN ('eval', 'confirm') ORDER BY eval_id").fetchall()
        return [(g, [tuple(p) for p in json.loads(c or "[]")], b) for g, c, b in rows]

    def compute_seconds(self) -> float:
        """Wall-clock seconds of every evaluation and confirmation, summed (what a run spent)."""
        row = self.conn.execute("SELECT SUM(finished_at - started_at) FROM evals WHERE kind IN "
                                "('eval', 'confirm')").fetchone()
        return float(row[0] or 0.0)

    def eval_count(self, kinds: Iterable[str] = ("eval", "confirm")) -> int:
        kinds = tuple(kinds)
        return self.conn.execute(f"SELECT COUNT(*) FROM evals WHERE kind IN "
                                 f"({', '.join('?' * len(kinds))})", kinds).fetchone()[0]

    def evaluated_in(self, generation: int) -> set[str]:
        """Genomes with an evaluation (kind eval) recorded in `generation`."""
        rows = self.conn.execute("SELECT DISTINCT genome_id FROM evals WHERE generation = ? AND "
                                 "kind = 'eval'", (generation,)).fetchall()
        return {r[0] for r in rows}

    # -- language-model calls ------------------------------------------------------------------
    def add_llm_calls(self, generation: int, genome_id: str | None, operator: str, calls) -> None:
        """Store the CallRecords of one proposal (genome_id: the child, None if there was none)."""
        with self.conn:
            self.conn.executemany(
                "INSERT INTO llm_calls (generation, genome_id, operator, model, prompt_tokens, "
                "completion_tokens, latency_s, outcome, error, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(generation, genome_id, operator, c.model, c.prompt_tokens, c.completion_tokens,
                  c.latency_s, c.outcome, c.error, c.started_at) for c in calls])
            if calls:                         # one proposal: its model is every call's
                self.conn.execute("INSERT INTO llm_proposals (generation, model, operator, "
                                  "genome_id) VALUES (?, ?, ?, ?)",
                                  (generation, calls[0].model, operator, genome_id))

    def llm_models(self) -> dict[str, str]:
        """The model that wrote each language-model child: genome_id -> model (the applied
        call's; a child proposed twice keeps its first)."""
        rows = self.conn.execute("SELECT genome_id, model FROM llm_calls WHERE genome_id IS NOT "
                                 "NULL AND outcome = 'applied' ORDER BY call_id DESC").fetchall()
        return dict(rows)

    def llm_failed(self, before: int | None = None) -> list[tuple[int, str]]:
        """(generation, model) of every proposal that gave no child, oldest first; `before`:
        only those made for earlier generations."""
        rows = self.conn.execute("SELECT generation, model FROM llm_proposals WHERE genome_id "
                                 "IS NULL ORDER BY proposal_id").fetchall()
        return [(g, m) for g, m in rows if before is None or g < before]

    def llm_tokens(self) -> int:
        """Prompt plus completion tokens of every call so far (for --max-llm-tokens)."""
        row = self.conn.execute("SELECT COALESCE(SUM(COALESCE(prompt_tokens, 0) + "
                                "COALESCE(completion_tokens, 0)), 0) FROM llm_calls").fetchone()
        return int(row[0])

    # -- generations ---------------------------------------------------------------------------
    def plan_generation(self, generation: int, planned: list[str]) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO generations (generation, planned) VALUES (?, ?)",
                              (generation, json.dumps(planned)))

    def finish_generation(self, generation: int, population: list[str], summary: dict) -> None:
        with self.conn:
            self.conn.execute("UPDATE generations SET population = ?, summary = ?, finished_at = ? "
                              "WHERE generation = ?",
                              (json.dumps(population), json.dumps(summary), time.time(), generation))

    def generations(self) -> list[dict]:
        rows = self.conn.execute("SELECT generation, planned, population, summary, finished_at "
                                 "FROM generations ORDER BY generation").fetchall()
        return [{"generation": g, "planned": json.loads(p),
                 "population": json.loads(pop) if pop else None,
                 "summary": json.loads(s) if s else None, "finished_at": f}
                for g, p, pop, s, f in rows]
