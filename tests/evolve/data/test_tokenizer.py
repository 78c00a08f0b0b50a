"""Byte-level BPE: round trips, special tokens, persistence, byte counts."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

from evolve.data.tokenizer import BPE, encode_documents, train_bpe


@pytest.fixture(scope="module")
def bpe() -> BPE:
    lib = Path(sysconfig.get_paths()["stdlib"])
    docs = [(lib / name).read_text() for name in ("os.py", "textwrap.py", "string.py")]
    return BPE(train_bpe(docs, 400), 400)


@pytest.mark.parametrize("text", ["def f(x):\n    return x + 1\n", "héllo wörld 日本語 🙂\t\r\n",
                                  "", "<|bos|> is plain text here", "\x00\xff binary-ish"])
def test_round_trip(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_compresses_and_reserves_specials(bpe):
    text = "import os\nimport sys\n" * 20
    ids = bpe.encode(text)
    assert len(ids) < 0.8 * len(text)         # 144 merges already beat one token per byte
    assert bpe.bos_id == len(bpe.tokens) and max(ids) < bpe.bos_id
    assert len(bpe.tokens) + 4 <= 400


def test_save_load_and_token_bytes(bpe, tmp_path):
    digest = bpe.save(tmp_path / "tok.json")
    again = BPE.load(tmp_path / "tok.json")
    assert again.tokens == bpe.tokens and len(digest) == 64
    tb = bpe.token_bytes()
    assert tb.shape == (400,) and tb[bpe.bos_id] == 0 and (tb[:256] == 1).all()
    text = "a few words of text"
    assert tb[bpe.encode(text)].sum() == len(text.encode())


def test_encode_documents_puts_bos_before_each(bpe):
    arr = np.concatenate(list(encode_documents(bpe, ["ab", "", "cd ef"], batch=2)))
    assert arr[0] == bpe.bos_id and (arr == bpe.bos_id).sum() == 2
    assert arr.dtype == np.uint16
