"""Byte-level BPE: trained with `tokenizers`, saved as plain ranks, encoded with tiktoken.

Why two libraries: `tokenizers` trains BPE quickly from an iterator of documents; tiktoken
encodes several times faster and needs only the merge ranks and the split pattern. A trained
tokenizer is saved as one small JSON file (split pattern, special tokens, base64 bytes of every
token in rank order), so loading needs no training library and the file's hash identifies it.

Layout of ids: 0..n-1 are the learned byte-level tokens (all 256 single bytes included), then
four special tokens (the first is BOS). The task's VOCAB_SIZE may exceed n + 4 on a small
corpus; the unused ids are simply never produced.

This module does not read corpora or write token files (see evolve.data.prepare).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

# The GPT-4 (cl100k) split pattern: letters, up to 3 digits, punctuation runs, whitespace.
SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                 r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
SPECIAL_TOKENS = ("<|bos|>", "<|reserved_0|>", "<|reserved_1|>", "<|reserved_2|>")
BOS = SPECIAL_TOKENS[0]


@functools.lru_cache(maxsize=1)
def _byte_level_alphabet() -> dict[str, int]:
    """The printable-character stand-in for each byte used by byte-level BPE trainers."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def train_bpe(documents: Iterable[str], vocab_size: int) -> list[bytes]:
    """Learn byte-level BPE tokens from documents; returns token bytes in rank order.

    At most vocab_size - len(SPECIAL_TOKENS) tokens; fewer when the corpus runs out of pairs.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[], show_progress=False, min_frequency=2)
    tok.train_from_iterator(documents, trainer)
    unmap = _byte_level_alphabet()
    by_id = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    return [bytes(unmap[c] for c in s) for s, _ in by_id]


class BPE:
    """A loaded tokenizer: tiktoken encoding plus the facts the data pipeline needs."""

    def __init__(self, tokens: list[bytes], vocab_size: int):
        import tiktoken

        if len(tokens) + len(SPECIAL_TOKENS) > vocab_size:
            raise ValueError(f"{len(tokens)} tokens + specials exceed vocab_size {vocab_size}")
        if len(set(tokens)) != len(tokens) or not all(bytes([b]) in set(tokens) for b in range(256)):
            raise ValueError("token list must be unique and contain all 256 single bytes")
        self.tokens = tokens
        self.vocab_size = vocab_size
        n = len(tokens)
        self.specials = {name: n + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.bos_id = self.specials[BOS]
        self._enc = tiktoken.Encoding(
            name="autoevolve-bpe", pat_str=SPLIT_PATTERN,
            mergeable_ranks={t: i for i, t in enumerate(tokens)},
            special_tokens=self.specials)

    def encode(self, text: str) -> list[int]:
        """Ordinary text to ids; special-token strings in the text are treated as plain text."""
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        return self._enc.decode(list(ids), errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self._enc.decode_bytes([i for i in ids if i < len(self.tokens)])

    def token_bytes(self) -> np.ndarray:
        """UTF-8 byte length of every id (int32, length vocab_size); specials and unused: 0.

        This is the denominator of bits per byte: special tokens stand for no text.
        """
        out = np.zeros(self.vocab_size, dtype=np.int32)
        out[: len(self.tokens)] = [len(t) for t in self.tokens]
        return out

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"format": "autoevolve-bpe/1", "pattern": SPLIT_PATTERN,
                           "specials": list(SPECIAL_TOKENS), "vocab_size": self.vocab_size,
                           "tokens": [base64.b64encode(t).decode() for t in self.tokens]})

    def save(self, path: Path) -> str:
        """Write the tokenizer file; returns its sha256 (part of the data fingerprint)."""
        blob = self.to_json().encode()
        Path(path).write_bytes(blob)
        return hashlib.sha256(blob).hexdigest()

    @classmethod
    def load(cls, path: Path) -> "BPE":
        d = json.loads(Path(path).read_text())
        if d.get("format") != "autoevolve-bpe/1" or d.get("pattern") != SPLIT_PATTERN:
            raise ValueError(f"{path} is not an autoevolve tokenizer of this version")
        return cls([base64.b64decode(t) for t in d["tokens"]], int(d["vocab_size"]))


def encode_documents(bpe: BPE, documents: Iterable[str], batch: int = 512) -> Iterator[np.ndarray]:
    """Yield uint16 arrays, one per batch of documents: BOS, doc tokens, BOS, doc tokens, ..."""
    buf: list[str] = []

    def flush() -> np.ndarray:
        ids = bpe.encode_batch(buf)
        total = sum(len(x) for x in ids) + len(ids)
        out = np.empty(total, dtype=np.uint16)
        pos = 0
        for x in ids:
            out[pos] = bpe.bos_id
            out[pos + 1: pos + 1 + len(x)] = x
            pos += 1 + len(x)
        buf.clear()
        return out

    for doc in documents:
        if doc:
            buf.append(doc)
        if len(buf) >= batch:
            yield flush()
    if buf:
        yield flush()
