"""Accepting the scorer's verdict: exit 0 and exactly one well-formed record, nothing else; the
genome's model file is read without following links."""

from __future__ import annotations

import json
import os

import pytest

from evolve.evaluation.verdict import copy_regular, parse_verdict


def test_one_record_with_exit_zero_is_accepted():
    rec = {"status": "ok", "val_bpb": 1.5}
    assert parse_verdict(0, (json.dumps(rec) + "\n").encode()) == rec


@pytest.mark.parametrize("code, out, words", [
    (1, b'{"status": "ok", "val_bpb": 0.1}\n', "exit 1"),
    (-9, b'{"status": "ok", "val_bpb": 0.1}\n', "signal 9"),
    (0, b"", "0 records"),
    (0, b'{"status": "ok", "val_bpb": 0.1}\n{"status": "ok", "val_bpb": 0.2}\n', "2 records"),
    (0, b"val_bpb: 0.1\n", "malformed"),
    (0, b'{"status": "great", "val_bpb": 0.1}\n', "known status"),
    (0, b'["ok", 0.1]\n', "known status"),
])
def test_anything_else_is_a_crash_never_ok(code, out, words):
    rec = parse_verdict(code, out)
    assert rec["status"] == "crash" and "val_bpb" not in rec and words in rec["reason"], rec


def test_a_regular_file_is_copied(tmp_path):
    (tmp_path / "model.pt2").write_bytes(b"x" * 10)
    assert copy_regular(tmp_path / "model.pt2", tmp_path / "copy", 100) is None
    assert (tmp_path / "copy").read_bytes() == b"x" * 10


def test_links_fifos_and_huge_files_are_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("not the genome's")
    os.symlink(secret, tmp_path / "link.pt2")
    assert "symbolic link" in copy_regular(tmp_path / "link.pt2", tmp_path / "c1", 100)
    os.mkfifo(tmp_path / "fifo.pt2")
    assert "not a regular file" in copy_regular(tmp_path / "fifo.pt2", tmp_path / "c2", 100)
    (tmp_path / "big.pt2").write_bytes(b"x" * 101)
    assert "larger" in copy_regular(tmp_path / "big.pt2", tmp_path / "c3", 100)
    assert not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()
