"""open_corpus on the real standard library, on real files of every supported kind, and on climbmix
shards served by a real HTTP server on 127.0.0.1 (AUTOEVOLVE_CLIMBMIX_URL points there)."""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st

from evolve.data.download import shard_name
from evolve.data.sources import (CLIMBMIX_VAL_SHARD, MAX_DOC_CHARS, MIN_FILES_FOR_FILE_SPLIT, Corpus,
                            CODE_CUTS, CorpusResult, STDLIB_VAL_PACKAGES, TEXT_CUTS, chunk_text,
                            open_corpus, stdlib_hidden_paths)


def digest(docs) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    for doc in docs:
        h.update(doc.encode() + b"\0")
        n += 1
    return n, h.hexdigest()


def opened(dataset, data_dir=Path("."), **kw) -> Corpus:
    result = open_corpus(str(dataset), data_dir, progress=False, **kw)
    assert isinstance(result, CorpusResult) and result.error is None, result.error
    return result.corpus


def failed(dataset, data_dir=Path("."), **kw) -> str:
    result = open_corpus(str(dataset), data_dir, progress=False, **kw)
    assert result.corpus is None and result.error, "expected an error"
    assert "\n" not in result.error and "Traceback" not in result.error
    return result.error


def write_parquet(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=64)
    return path


# ---- chunking ---------------------------------------------------------------------------------

def test_chunks_prefer_the_blank_line_before_a_top_level_def():
    body = "    x = 1\n\n    y = 2\n" * 40  # ~800 characters with inner blank lines
    text = "import os\n\n\ndef first():\n" + body + "\n\nclass Second:\n" + body + "\n\n@decorated\ndef third():\n" + body
    chunks = chunk_text(text, 1000)
    assert "".join(chunks) == text
    assert [c.lstrip().split("\n", 1)[0] for c in chunks] == ["import os", "class Second:", "@decorated"]


def test_one_long_line_is_cut_into_windows():
    chunks = chunk_text("x" * 4500, 2000)
    assert [len(c) for c in chunks] == [2000, 2000, 500]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ab \t\n@dfc", max_size=400), st.integers(min_value=1, max_value=60))
def test_chunks_concatenate_to_the_text_and_respect_the_bound(text, max_chars):
    for cuts in (TEXT_CUTS, CODE_CUTS):
        chunks = chunk_text(text, max_chars, cuts)
        assert "".join(chunks) == text and all(0 < len(c) <= max_chars for c in chunks)


# ---- stdlib -----------------------------------------------------------------------------------

def test_stdlib_is_deterministic_split_by_package_and_bounded():
    a, b = opened("stdlib"), opened("stdlib")
    assert a.name.startswith("stdlib-3.") and a.identity == b.identity and len(a.identity) == 64
    size = {rel: (a.root / rel).stat().st_size for rel in a.train_files + a.val_files}
    val_share = sum(size[r] for r in a.val_files) / sum(size.values())
    assert len(a.val_files) >= 3 and 0.02 < val_share < 0.1, val_share     # ~7 % of the text
    # val is exactly the packages the supervisor hides from genomes
    assert {rel.split("/", 1)[0] for rel in a.val_files} <= set(STDLIB_VAL_PACKAGES)
    assert not any(rel.split("/", 1)[0] in STDLIB_VAL_PACKAGES for rel in a.train_files)
    hidden = stdlib_hidden_paths()
    assert all(any(str((a.root / rel).resolve()).startswith(h + "/") for h in hidden)
               for rel in a.val_files)
    assert not set(a.train_files) & set(b.val_files)
    assert not any(part in ("site-packages", "dist-packages", "test", "tests")
                   for rel in a.train_files + a.val_files for part in rel.split("/"))
    for split in ("train", "val"):
        docs = list(a.documents(split))
        assert docs and all(0 < len(d) <= MAX_DOC_CHARS and d.strip() for d in docs)
        assert digest(docs) == digest(b.documents(split))
    val_file = (a.root / a.val_files[0]).read_text(encoding="utf-8")
    assert "".join(chunk_text(val_file)) == val_file


def test_split_name_is_checked():
    with pytest.raises(ValueError):
        next(opened("stdlib").documents("test"))


# ---- path datasets ----------------------------------------------------------------------------

def test_folder_of_many_txt_files_is_split_by_file(tmp_path):
    n = MIN_FILES_FOR_FILE_SPLIT + 10
    for i in range(n):
        (tmp_path / f"story_{i:02d}.txt").write_text(f"Story {i}.\n\nIt was a quiet day number {i}.\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.txt").write_text("never read\n")
    corpus = opened(tmp_path)
    assert corpus.name == f"files-{corpus.identity[:8]}" and corpus.split_by_file
    train, val = list(corpus.documents("train")), list(corpus.documents("val"))
    assert val and train and len(train) + len(val) == n  # one document per short file
    assert not set(train) & set(val) and not any("never read" in d for d in train + val)
    assert digest(corpus.documents("val")) == digest(opened(tmp_path).documents("val"))
    clone = pickle.loads(pickle.dumps(corpus))
    assert digest(clone.documents("train")) == digest(train)


def test_single_long_txt_is_cut_at_paragraphs_and_split_by_index(tmp_path):
    paragraphs = [f"Paragraph {i}. " + "words and more words " * (5 + i % 30) for i in range(400)]
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(paragraphs) + "\n")
    corpus = opened(path)
    assert not corpus.split_by_file
    train, val = list(corpus.documents("train")), list(corpus.documents("val"))
    docs = train + val
    assert len(val) == max(1, round(0.05 * len(docs))) and train
    assert all(len(d) <= MAX_DOC_CHARS for d in docs)
    assert all(d.lstrip().startswith("Paragraph") for d in docs)  # cut between paragraphs only
    text = path.read_text()
    assert sum(map(len, docs)) == len(text) and all(d in text for d in docs)  # nothing lost or invented


def test_jsonl_and_parquet_records_are_documents(tmp_path):
    records = [{"text": f"record {i}", "meta": i} for i in range(10)]
    lines = [json.dumps(r) for r in records] + ["", json.dumps({"text": "   "})]  # blank line, blank text
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    write_parquet(tmp_path / "b.parquet", {"text": [f"row {i}" for i in range(30)] + [None, ""],
                                           "n": list(range(32))})
    corpus = opened(tmp_path)
    train, val = list(corpus.documents("train")), list(corpus.documents("val"))
    assert sorted(train + val) == sorted([f"record {i}" for i in range(10)] + [f"row {i}" for i in range(30)])
    assert len(val) == 2 and not set(train) & set(val)
    single = opened(tmp_path / "a.jsonl")
    assert len(list(single.documents("val"))) == 1 and len(list(single.documents("train"))) == 9


def test_identity_follows_the_content(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": f"t{i}"}) for i in range(5)))
    first = opened(tmp_path).identity
    assert opened(tmp_path).identity == first
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": f"u{i}"}) for i in range(5)))
    assert opened(tmp_path).identity != first


@pytest.mark.parametrize("setup, expected", [
    (lambda d: None, "dataset not found"),
    (lambda d: (d.mkdir(), (d / "x.csv").write_text("a,b\n")), "no .txt, .jsonl or .parquet files"),
    (lambda d: (d.mkdir(), (d / "x.jsonl").write_text('{"text": "ok"}\n{"text": oops}\n')), "line 2 is not JSON"),
    (lambda d: (d.mkdir(), (d / "x.jsonl").write_text('{"text": "ok"}\n{"body": "no"}\n')), 'line 2 has no string field "text"'),
    (lambda d: (d.mkdir(), (d / "x.jsonl").write_text('["text"]\n')), 'line 1 has no string field "text"'),
    (lambda d: (d.mkdir(), write_parquet(d / "x.parquet", {"body": ["a", "b"]})), 'has no column "text" (columns: body)'),
    (lambda d: (d.mkdir(), write_parquet(d / "x.parquet", {"text": [1, 2]})), 'column "text" holds int64'),
    (lambda d: (d.mkdir(), (d / "x.parquet").write_bytes(b"PAR1 not really")), "is not a readable parquet file"),
    (lambda d: (d.mkdir(), (d / "x.txt").write_bytes("caf\xe9\n".encode("latin-1"))), "is not UTF-8 text"),
    (lambda d: (d.mkdir(), (d / "a.txt").write_text(""), (d / "b.txt").write_text(" \n\n \n")), "holds 0 non-empty document(s)"),
    (lambda d: (d.mkdir(), (d / "a.txt").write_text("only one short document\n")), "holds 1 non-empty document(s)"),
], ids=["missing", "no-files", "bad-json", "no-text", "not-object", "no-column", "int-column",
        "not-parquet", "not-utf8", "empty", "one-doc"])
def test_bad_input_gives_one_clear_line(tmp_path, setup, expected):
    target = tmp_path / "ds"
    setup(target)
    assert expected in failed(target)


def test_empty_dataset_name_is_an_error():
    assert "pass --dataset" in failed("")


# ---- climbmix through a local server ----------------------------------------------------------

class _QuietFileHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def climbmix_server(tmp_path):
    """Serves shards 0, 1 and the validation shard from a folder with the standard handler."""
    served = tmp_path / "served"
    served.mkdir()
    for i in (0, 1, CLIMBMIX_VAL_SHARD):
        write_parquet(served / shard_name(i), {"text": [f"shard {i} doc {j}" for j in range(200)]})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFileHandler, directory=str(served)))
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", served
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_climbmix_downloads_and_streams_shards(climbmix_server, tmp_path, monkeypatch):
    url, served = climbmix_server
    monkeypatch.setenv("AUTOEVOLVE_CLIMBMIX_URL", url)
    corpus = opened("climbmix", tmp_path / "data", num_shards=2)
    assert corpus.name == "climbmix-2"
    assert list(corpus.documents("train")) == [f"shard {i} doc {j}" for i in (0, 1) for j in range(200)]
    assert list(corpus.documents("val")) == [f"shard {CLIMBMIX_VAL_SHARD} doc {j}" for j in range(200)]
    assert sorted(p.name for p in (tmp_path / "data" / "climbmix").iterdir()) == \
        sorted(shard_name(i) for i in (0, 1, CLIMBMIX_VAL_SHARD))
    for p in served.iterdir():
        p.unlink()  # the second open must not need the server: everything is complete locally
    assert opened("climbmix", tmp_path / "data", num_shards=2).identity == corpus.identity


def test_climbmix_missing_shard_and_bad_count(climbmix_server, tmp_path, monkeypatch):
    url, _ = climbmix_server
    monkeypatch.setenv("AUTOEVOLVE_CLIMBMIX_URL", url)
    error = failed("climbmix", tmp_path / "data", num_shards=3)
    assert error.startswith("download failed: shard_00002.parquet: HTTP 404")
    assert "--num-shards must be between 1 and 6542" in failed("climbmix", tmp_path, num_shards=0)
