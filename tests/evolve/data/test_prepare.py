"""prepare: a small user corpus end to end, determinism, tamper detection, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evolve.data.prepare import PreparedData, ensure_prepared, prepare
from evolve.evaluation.task import Task


@pytest.fixture()
def corpus_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOEVOLVE_HOME", str(tmp_path / "home"))
    d = tmp_path / "corpus"
    d.mkdir()
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    for i in range(30):
        text = "\n\n".join(" ".join(rng.choice(words, 40)) + "." for _ in range(5))
        (d / f"doc{i:02d}.txt").write_text(text)
    return d


def task_for(path) -> Task:
    return Task.for_device("cpu", vocab_size=300, dataset=str(path))


def test_prepare_small_corpus(corpus_dir):
    data = prepare(task_for(corpus_dir), progress=False, log=lambda m: None)
    assert isinstance(data, PreparedData), data
    m = data.meta
    assert m["train_tokens"] == len(data.train) > 0 and m["val_tokens"] == len(data.val) > 0
    assert data.train[0] == data.bos_id and data.val[0] == data.bos_id
    assert (data.train == data.bos_id).sum() == m["train_docs"]
    assert data.token_bytes.shape == (300,) and data.token_bytes[data.bos_id] == 0
    assert not list(data.root.parent.glob("*.tmp-*"))         # no half-written directory left
    first = data.fingerprint
    again = prepare(task_for(corpus_dir), progress=False, force=True, log=lambda m: None)
    assert again.fingerprint == first                          # deterministic end to end
    (corpus_dir / "doc00.txt").write_text("changed text entirely " * 50)
    changed = prepare(task_for(corpus_dir), progress=False, force=True, log=lambda m: None)
    assert changed.fingerprint != first


def test_tampered_val_file_is_detected(corpus_dir):
    data = prepare(task_for(corpus_dir), progress=False, log=lambda m: None)
    raw = bytearray((data.root / "val.bin").read_bytes())
    raw[2] ^= 1
    (data.root / "val.bin").write_bytes(bytes(raw))
    err = PreparedData.open(data.root)
    assert isinstance(err, str) and "val.bin" in err and "prepare again" in err


def test_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOEVOLVE_HOME", str(tmp_path / "home"))
    err = prepare(task_for(tmp_path / "missing"), progress=False, log=lambda m: None)
    assert isinstance(err, str) and "\n" not in err
    task = Task.for_device("cpu", vocab_size=300, dataset="climbmix")
    err = ensure_prepared(task, log=lambda m: None)
    assert isinstance(err, str) and "python -m evolve prepare --dataset climbmix" in err
    root = task.data_dir()
    root.mkdir(parents=True)
    (root / "meta.json").write_text("{not json")
    assert "unreadable" in PreparedData.open(root)
    (root / "meta.json").write_text(json.dumps({"format": "other"}))
    assert "another version" in PreparedData.open(root)
