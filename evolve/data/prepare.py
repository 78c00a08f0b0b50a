"""Prepared data: `python -m evolve prepare` writes it, the supervisor reads it.

For a task (device, vocabulary size, dataset) this module:

1. opens the corpus (evolve.data.sources: the embedded stdlib corpus, climbmix shards, or a path);
2. trains a byte-level BPE tokenizer on the training split (evolve.data.tokenizer);
3. encodes both splits into flat uint16 token files, BOS before every document;
4. writes meta.json with counts and a fingerprint: a hash of the corpus identity, the tokenizer
   file and both token files. Every result carries it (via Task.fingerprint), so results on
   different data are never compared.

Everything is written into a temporary sibling directory that is renamed into place at the
end, so a crash never leaves a half-prepared directory that looks complete. Layout:

    $AUTOEVOLVE_HOME/data/<dataset>-v<vocab>/
        tokenizer.json  token_bytes.npy  train.bin  val.bin  meta.json

`PreparedData.open` loads it back and checks the files against meta.json. This module does not
download (evolve.data.download does) and does not pack rows (evolve.data.loader does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from evolve.evaluation.task import Task

FORMAT = "autoevolve-data/1"
TOKENIZER_TRAIN_CHARS = 400_000_000  # cap on characters fed to BPE training (~minutes on 2 cores)


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def _capped(documents, max_chars: int):
    total = 0
    for d in documents:
        if total >= max_chars:
            return
        total += len(d)
        yield d


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """A prepared data directory, loaded. Token arrays are read-only memory maps."""

    root: Path
    meta: dict
    train: np.ndarray
    val: np.ndarray
    token_bytes: np.ndarray

    @property
    def bos_id(self) -> int:
        return int(self.meta["bos_id"])

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    @classmethod
    def open(cls, root: Path, verify: bool = True) -> "PreparedData | str":
        """Load a prepared directory; returns the data, or a one-line error string."""
        root = Path(root)
        meta_path = root / "meta.json"
        if not meta_path.exists():
            return f"no prepared data in {root}"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            return f"{meta_path} is unreadable ({e}); delete {root} and prepare again"
        if meta.get("format") != FORMAT:
            return f"{root} was prepared by another version; delete it and prepare again"
        try:
            if verify:
                for name in ("val.bin", "token_bytes.npy", "tokenizer.json"):
                    if _sha256_file(root / name) != meta["sha256"][name]:
                        return (f"{root / name} does not match its recorded hash (changed after "
                                f"prepare); delete {root} and prepare again")
                if (root / "train.bin").stat().st_size != 2 * meta["train_tokens"]:
                    return f"{root / 'train.bin'} has the wrong size; delete {root} and prepare again"
            train = np.memmap(root / "train.bin", dtype=np.uint16, mode="r")
            val = np.memmap(root / "val.bin", dtype=np.uint16, mode="r")
            token_bytes = np.load(root / "token_bytes.npy")
        except (OSError, KeyError, ValueError) as e:
            return f"{root} is incomplete ({e}); delete it and prepare again"
        return cls(root=root, meta=meta, train=train, val=val, token_bytes=token_bytes)


def _encode_split(bpe, documents, path: Path, label: str, progress: bool) -> tuple[int, int]:
    from tqdm import tqdm

    from evolve.data.tokenizer import encode_documents

    n_tokens = n_docs = 0
    bar = tqdm(desc=f"encode {label}", unit="tok", unit_scale=True, disable=not progress,
               file=sys.stderr, mininterval=0.5)
    with open(path, "wb") as f:
        for arr in encode_documents(bpe, documents):
            f.write(arr.tobytes())
            n_tokens += len(arr)
            n_docs += int((arr == bpe.bos_id).sum())
            bar.update(len(arr))
    bar.close()
    return n_tokens, n_docs


def prepare(task: Task, num_shards: int = 10, progress: bool = True,
            force: bool = False, log=print) -> PreparedData | str:
    """Prepare the task's data directory (a no-op when it is already there and intact).

    Returns PreparedData, or a one-line error string saying what to do.
    """
    from evolve.data.sources import open_corpus
    from evolve.data.tokenizer import BPE, train_bpe

    root = task.data_dir()
    if root.exists() and not force:
        data = PreparedData.open(root)
        if isinstance(data, PreparedData):
            return data
        log(f"prepare: {data}; preparing again")
    opened = open_corpus(task.dataset, home_dir_for_downloads(), num_shards=num_shards,
                         progress=progress)
    if opened.corpus is None:
        return opened.error or f"cannot open dataset {task.dataset!r}"
    corpus = opened.corpus
    tmp = root.with_name(root.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        t0 = time.time()
        log(f"prepare: training a {task.vocab_size}-token BPE on {corpus.name} (train split)")
        tokens = train_bpe(_capped(corpus.documents("train"), TOKENIZER_TRAIN_CHARS),
                           task.vocab_size)
        bpe = BPE(tokens, task.vocab_size)
        bpe.save(tmp / "tokenizer.json")
        np.save(tmp / "token_bytes.npy", bpe.token_bytes())
        log(f"prepare: tokenizer has {len(tokens)} tokens + 4 special ({time.time() - t0:.1f} s)")
        counts = {}
        for split in ("train", "val"):
            counts[split] = _encode_split(bpe, corpus.documents(split), tmp / f"{split}.bin",
                                          split, progress)
            if counts[split][0] == 0:
                return f"dataset {task.dataset!r} has an empty {split} split"
        sha = {n: _sha256_file(tmp / n) for n in
               ("tokenizer.json", "token_bytes.npy", "train.bin", "val.bin")}
        fingerprint = hashlib.sha256(json.dumps(
            {"corpus": corpus.identity, **sha}, sort_keys=True).encode()).hexdigest()[:16]
        meta = {"format": FORMAT, "dataset": task.dataset, "corpus": corpus.name,
                "corpus_identity": corpus.identity, "vocab_size": task.vocab_size,
                "bos_id": bpe.bos_id, "learned_tokens": len(tokens),
                "train_tokens": counts["train"][0], "train_docs": counts["train"][1],
                "val_tokens": counts["val"][0], "val_docs": counts["val"][1],
                "sha256": sha, "fingerprint": fingerprint,
                "seconds": round(time.time() - t0, 1)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
        log(f"prepare: {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens "
            f"in {root} ({meta['seconds']} s); fingerprint {fingerprint}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PreparedData.open(root)


def home_dir_for_downloads() -> Path:
    """Raw downloads (climbmix shards) are shared by every vocabulary size."""
    from evolve.evaluation.task import home_dir

    return home_dir() / "raw"


def ensure_prepared(task: Task, progress: bool = True, log=print) -> PreparedData | str:
    """Open the task's data, preparing it first when the dataset is the embedded default.

    Downloads are never started implicitly: for other datasets the error says what to run.
    """
    data = PreparedData.open(task.data_dir())
    if isinstance(data, PreparedData):
        return data
    if task.dataset != "stdlib":
        return (f"{data}. Run: python -m evolve prepare --dataset {task.dataset} "
                f"--device {task.device}")
    log("prepare: no prepared data yet; preparing the embedded stdlib corpus (once)")
    return prepare(task, progress=progress, log=log)


