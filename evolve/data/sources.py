"""Where the training text comes from: a `Corpus` of documents (strings), split into train and val.

`open_corpus(dataset, data_dir)` returns a frozen `CorpusResult` holding either a corpus or one
line saying what to do. Three kinds of dataset:

- "stdlib" (default, no network): the *.py sources of the running Python's standard library, the
  same on every machine with the same Python build. Test suites (folders test, tests, idle_test),
  site-packages and dist-packages are left out: distributions strip or move them, and the tests
  alone would double the corpus. Files that are not UTF-8 (a few encoding fixtures) are skipped.
- "climbmix": the parquet shards of karpathy/climbmix-400b-shuffle (column "text"): training shards
  0 .. num_shards-1, validation = the pinned shard 06542, downloaded into data_dir/climbmix/ from
  CLIMBMIX_URL or the environment variable AUTOEVOLVE_CLIMBMIX_URL.
- anything else is a PATH: one file or a folder (searched recursively, hidden names skipped) of
  .txt, .jsonl (one JSON object per line, string field "text") and .parquet (column "text").
  To use a folder named like a built-in dataset, write it as a path: ./stdlib.

Document units. Rows of the CPU task hold 256 tokens, so whole source files would nearly always be
cropped: stdlib files and .txt files are cut into documents of at most MAX_DOC_CHARS characters at
blank lines (code: preferably before a top-level def/class/decorator; text: between paragraphs),
then at line ends, then anywhere. A short .txt file is one document; a book becomes many.
A .jsonl line or a parquet row is one document as given (never cut). Whitespace-only documents are
dropped everywhere.

Train/val split, deterministic: stdlib by package, val = STDLIB_VAL_PACKAGES (IDLE and the turtle
demos, ~7 % of the text): packages no training code imports and that no other Python package on
a system ships, so the supervisor can hide exactly these directories from every genome
(`stdlib_hidden_paths`): a genome cannot rebuild the validation text from files it can read.
PATH datasets
by file the same way when at least MIN_FILES_FOR_FILE_SPLIT files hold documents, otherwise by
document index (an even spread of 5 %, at least one); val and train are never empty.

    python -m evolve.data.sources [stdlib|climbmix|PATH] [DATA_DIR]   # prints counts, characters, read time

What this module does not do: tokenize, shuffle, deduplicate or clean text.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import platform
import re
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from evolve.data.download import download_shards, shard_name

MAX_DOC_CHARS = 2000  # ~500-700 tokens of code: a few 256-token rows, little cropping waste
VAL_FRACTION = 0.05
MIN_FILES_FOR_FILE_SPLIT = 20  # fewer files than this: one file could be a third of val, split by document
CLIMBMIX_URL = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
CLIMBMIX_VAL_SHARD = 6542  # the last shard, pinned as validation
SUFFIXES = (".txt", ".jsonl", ".parquet")
STDLIB_VAL_PACKAGES = ("idlelib", "turtledemo")
SCHEME = (f"sources-v2 max_doc_chars={MAX_DOC_CHARS} val={VAL_FRACTION} "
          f"stdlib_val={','.join(STDLIB_VAL_PACKAGES)}")  # goes into every identity
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test", "lib-dynload"}
_BATCH_ROWS = 1024  # parquet rows per batch: bounded memory however large a shard is
_FULL_HASH_BYTES = 64 << 20  # files up to 64 MiB are hashed whole; larger: size + first and last MiB


class Corpus(abc.ABC):
    """A named, fingerprinted source of documents, split into "train" and "val".

    Contract every implementation keeps:
    - `name`: a short label for logs and folder names ("stdlib-3.11.7", "climbmix-10", "files-1a2b3c4d").
    - `identity`: a hex digest that changes whenever the raw data (or how it is cut into documents)
      changes; callers put it into their data fingerprint to know when caches are stale.
    - `documents(split)`: split is "train" or "val" (anything else: ValueError). Each call starts a
      fresh iterator that yields non-empty strings in the same order every time. Train and val are
      disjoint (by file; by document index in small PATH datasets) and neither is empty. Memory
      stays bounded: documents are streamed.
    - Immutable and picklable, so several threads or worker processes may iterate one corpus at once.
    - `open_corpus` validated all input once; if files change or vanish afterwards, iteration may
      raise OSError or ValueError (that is the only case where it raises).
    """

    name: str
    identity: str

    @abc.abstractmethod
    def documents(self, split: str) -> Iterator[str]:
        """Yield the documents of `split` ("train" or "val") in a fixed order."""


@dataclass(frozen=True)
class CorpusResult:
    corpus: Corpus | None
    error: str | None  # one line saying what to do; set exactly when corpus is None


class _BadInput(Exception):
    """Internal: a file does not have the promised format; becomes CorpusResult.error."""


def _check_split(split: str) -> None:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")


# ---- cutting long text into documents ---------------------------------------------------------

_TOP_LEVEL = re.compile(r"\n[ \t]*\n(?=@|def |class |async def )")  # blank line before a top-level unit
_BLANK = re.compile(r"\n[ \t]*\n")
_EOL = re.compile(r"\n")
CODE_CUTS = (_TOP_LEVEL, _BLANK, _EOL)
TEXT_CUTS = (_BLANK, _EOL)


def chunk_text(text: str, max_chars: int = MAX_DOC_CHARS, cuts: tuple = CODE_CUTS) -> list[str]:
    """Cut `text` into non-empty pieces of at most max_chars whose concatenation is `text` exactly.

    Tries the cut patterns in order (cut right after each match), merges neighbouring pieces
    greedily while they fit, and falls back to fixed windows for a single over-long line.
    """
    if len(text) <= max_chars:
        return [text] if text else []
    if not cuts:
        return [text[i:i + max_chars] for i in range(0, len(text), max_chars)]
    pieces, start = [], 0
    for match in cuts[0].finditer(text):
        pieces.append(text[start:match.end()])
        start = match.end()
    pieces.append(text[start:])
    small: list[str] = []
    for piece in pieces:
        small.extend(chunk_text(piece, max_chars, cuts[1:]) if len(piece) > max_chars else [piece])
    chunks, current = [], ""
    for piece in small:
        if current and len(current) + len(piece) > max_chars:
            chunks.append(current)
            current = ""
        current += piece
    if current:
        chunks.append(current)
    return chunks


def _documents_of_text(text: str, cuts: tuple) -> Iterator[str]:
    return (c for c in chunk_text(text, MAX_DOC_CHARS, cuts) if c.strip())


# ---- deterministic file split and fingerprints ------------------------------------------------

def _split_key(rel: str) -> int:
    return int.from_bytes(hashlib.sha256(rel.encode("utf-8")).digest()[:8], "big")


def _val_set(rels: list[str], minimum: int) -> frozenset[str]:
    """Files whose key falls in the lowest VAL_FRACTION, topped up to `minimum`, never all files."""
    ranked = sorted(rels, key=_split_key)
    val = [r for r in ranked if _split_key(r) < VAL_FRACTION * 2**64]
    target = min(max(len(val), minimum), len(rels) - 1)
    return frozenset(ranked[:target])


def _file_digest(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= _FULL_HASH_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:  # Why: big shards change as a whole; head, tail (parquet footer) and size suffice
            h.update(f.read(1 << 20))
            f.seek(size - (1 << 20))
            h.update(f.read())
    return h.hexdigest()


# ---- stdlib -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StdlibCorpus(Corpus):
    name: str
    identity: str
    root: Path
    train_files: tuple[str, ...]  # relative posix paths, in split-key order (a fixed shuffle)
    val_files: tuple[str, ...]

    def documents(self, split: str) -> Iterator[str]:
        _check_split(split)
        for rel in self.train_files if split == "train" else self.val_files:
            yield from _documents_of_text((self.root / rel).read_bytes().decode("utf-8"), CODE_CUTS)


def _stdlib_files(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(("config-", "."))]
        for fn in filenames:
            if fn.endswith(".py"):
                found.append(Path(dirpath, fn).relative_to(root).as_posix())
    return sorted(found)


def stdlib_hidden_paths() -> list[str]:
    """Directories holding the stdlib dataset's validation text, which no genome may read."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return [os.path.realpath(root / name) for name in STDLIB_VAL_PACKAGES if (root / name).is_dir()]


def _open_stdlib() -> CorpusResult:
    root = Path(sysconfig.get_paths()["stdlib"])
    version = platform.python_version()
    h = hashlib.sha256(f"{SCHEME} stdlib {platform.python_implementation()} {version}".encode())
    kept = []
    try:
        for rel in _stdlib_files(root) if root.is_dir() else []:
            data = (root / rel).read_bytes()
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                continue  # a handful of deliberately mis-encoded fixtures
            h.update(f"\0{rel}\0{len(data)}\0".encode())
            h.update(data)
            kept.append(rel)
    except OSError as err:
        return CorpusResult(None, f"cannot read the standard library under {root}: {err}; "
                                  "use --dataset climbmix or --dataset PATH")
    if len(kept) < 2:
        return CorpusResult(None, f"no standard-library sources found under {root} (this Python ships "
                                  "compiled files only); use --dataset climbmix or --dataset PATH")
    val = frozenset(r for r in kept if r.split("/", 1)[0] in STDLIB_VAL_PACKAGES)
    if not val or len(val) == len(kept):
        return CorpusResult(None, f"this Python's standard library under {root} has no "
                                  f"{' or '.join(STDLIB_VAL_PACKAGES)} (the validation split of the "
                                  "stdlib dataset); use --dataset climbmix or --dataset PATH")
    order = sorted(kept, key=_split_key)
    return CorpusResult(StdlibCorpus(
        name=f"stdlib-{version}", identity=h.hexdigest(), root=root,
        train_files=tuple(r for r in order if r not in val), val_files=tuple(r for r in order if r in val)), None)


# ---- climbmix ---------------------------------------------------------------------------------

def _parquet_texts(path: Path) -> Iterator[str]:
    """Non-blank values of column "text", streamed batch by batch; _BadInput on a wrong schema."""
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:
        raise _BadInput(f"{path} is not a readable parquet file ({err}); replace or remove it") from None
    schema = pf.schema_arrow
    if "text" not in schema.names:
        raise _BadInput(f"{path} has no column \"text\" (columns: {', '.join(schema.names) or 'none'}); "
                        "rename the column that holds the text to \"text\"")
    kind = schema.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise _BadInput(f"{path}: column \"text\" holds {kind}, not strings; store the text as strings")
    for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=["text"]):
        for text in batch.column(0).to_pylist():
            if text and text.strip():
                yield text


@dataclass(frozen=True)
class ParquetShardsCorpus(Corpus):
    name: str
    identity: str
    train_paths: tuple[Path, ...]
    val_paths: tuple[Path, ...]

    def documents(self, split: str) -> Iterator[str]:
        _check_split(split)
        for path in self.train_paths if split == "train" else self.val_paths:
            yield from _parquet_texts(path)


def _open_climbmix(data_dir: Path, num_shards: int, progress: bool) -> CorpusResult:
    if not 1 <= num_shards <= CLIMBMIX_VAL_SHARD:
        return CorpusResult(None, f"--num-shards must be between 1 and {CLIMBMIX_VAL_SHARD}, not {num_shards}")
    base_url = os.environ.get("AUTOEVOLVE_CLIMBMIX_URL") or CLIMBMIX_URL
    dest = data_dir / "climbmix"
    indices = [*range(num_shards), CLIMBMIX_VAL_SHARD]
    report = download_shards(indices, dest, base_url, progress=progress)
    if report.failed:
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        return CorpusResult(None, f"download failed: {report.failed[0]}{more}")
    paths = [dest / shard_name(i) for i in indices]
    h = hashlib.sha256(f"{SCHEME} climbmix".encode())
    for path in paths:
        try:
            next(_parquet_texts(path), None)  # checks the schema and the first batch
            h.update(f"\0{path.name}\0{_file_digest(path)}".encode())
        except (_BadInput, OSError) as err:
            return CorpusResult(None, f"{err}")
    return CorpusResult(ParquetShardsCorpus(
        name=f"climbmix-{num_shards}", identity=h.hexdigest(),
        train_paths=tuple(paths[:-1]), val_paths=(paths[-1],)), None)


# ---- files from a path ------------------------------------------------------------------------

def _file_documents(path: Path) -> Iterator[str]:
    """Documents of one .txt/.jsonl/.parquet file in file order; _BadInput on malformed content."""
    try:
        if path.suffix == ".parquet":
            yield from _parquet_texts(path)
        elif path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise _BadInput(f"{path} line {lineno} is not JSON ({err.msg}); write one object "
                                        "per line, like {\"text\": \"...\"}") from None
                    text = record.get("text") if isinstance(record, dict) else None
                    if not isinstance(text, str):
                        raise _BadInput(f"{path} line {lineno} has no string field \"text\"; "
                                        "write one object per line, like {\"text\": \"...\"}")
                    if text.strip():
                        yield text
        else:
            # Why: read paragraph groups of ~64 documents at a time, so a 1 GB book needs little memory.
            with open(path, encoding="utf-8") as f:
                buffer: list[str] = []
                size = 0
                for line in f:
                    buffer.append(line)
                    size += len(line)
                    if size >= 64 * MAX_DOC_CHARS and not line.strip():
                        yield from _documents_of_text("".join(buffer), TEXT_CUTS)
                        buffer, size = [], 0
                yield from _documents_of_text("".join(buffer), TEXT_CUTS)
    except UnicodeDecodeError as err:
        raise _BadInput(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); convert it to UTF-8") from None


@dataclass(frozen=True)
class FilesCorpus(Corpus):
    name: str
    identity: str
    paths: tuple[Path, ...]  # sorted by relative path
    val_paths: frozenset[Path]  # used when split_by_file
    split_by_file: bool
    total: int  # documents in all files (used when not split_by_file)
    num_val: int

    def _is_val_index(self, i: int) -> bool:
        # Why: exactly num_val indices, evenly spread: the last index of each of num_val equal buckets.
        return (i * self.num_val) // self.total != ((i + 1) * self.num_val) // self.total

    def documents(self, split: str) -> Iterator[str]:
        _check_split(split)
        want_val = split == "val"
        index = 0
        for path in self.paths:
            if self.split_by_file:
                if (path in self.val_paths) == want_val:
                    yield from _file_documents(path)
                continue
            for doc in _file_documents(path):
                if self._is_val_index(index) == want_val:
                    yield doc
                index += 1


def _open_path(dataset: str) -> CorpusResult:
    root = Path(dataset).expanduser()
    if not root.exists():
        return CorpusResult(None, f"dataset not found: {dataset}; pass --dataset stdlib, --dataset climbmix, "
                                  "or an existing file or folder of .txt/.jsonl/.parquet files")
    try:
        if root.is_file():
            files = [root] if root.suffix in SUFFIXES else []
        else:
            files = sorted((p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(root).parts)),
                           key=lambda p: p.relative_to(root).as_posix())
    except OSError as err:
        return CorpusResult(None, f"cannot list {dataset}: {err}")
    if not files:
        return CorpusResult(None, f"no .txt, .jsonl or .parquet files in {dataset}; "
                                  "put the text in files with one of those suffixes")
    h = hashlib.sha256(f"{SCHEME} files".encode())
    counts: dict[Path, int] = {}
    for path in files:
        rel = path.name if root.is_file() else path.relative_to(root).as_posix()
        try:
            counts[path] = sum(1 for _ in _file_documents(path))
            h.update(f"\0{rel}\0{_file_digest(path)}".encode())
        except _BadInput as err:
            return CorpusResult(None, str(err))
        except OSError as err:
            return CorpusResult(None, f"cannot read {path}: {err}")
    total = sum(counts.values())
    if total < 2:
        return CorpusResult(None, f"{dataset} holds {total} non-empty document(s); at least 2 are needed, "
                                  "one for training and one for validation")
    identity = h.hexdigest()
    nonempty = [p for p in files if counts[p] > 0]
    by_file = len(nonempty) >= MIN_FILES_FOR_FILE_SPLIT
    val_paths = frozenset()
    if by_file:
        rel_of = {p.relative_to(root).as_posix(): p for p in nonempty}
        val_paths = frozenset(rel_of[r] for r in _val_set(list(rel_of), 1))
    return CorpusResult(FilesCorpus(
        name=f"files-{identity[:8]}", identity=identity, paths=tuple(files), val_paths=val_paths,
        split_by_file=by_file, total=total, num_val=max(1, round(VAL_FRACTION * total))), None)


# ---- the one door -----------------------------------------------------------------------------

def open_corpus(dataset: str, data_dir: Path, num_shards: int = 10, progress: bool = True) -> CorpusResult:
    """Open "stdlib", "climbmix" (downloading into data_dir/climbmix) or a PATH; never raises for bad input."""
    if dataset == "stdlib":
        return _open_stdlib()
    if dataset == "climbmix":
        return _open_climbmix(Path(data_dir), num_shards, progress)
    if not dataset:
        return CorpusResult(None, "no dataset given; pass --dataset stdlib, --dataset climbmix or a PATH")
    return _open_path(dataset)


def _main(argv: list[str]) -> int:
    start = time.perf_counter()
    result = open_corpus(argv[0] if argv else "stdlib", Path(argv[1] if len(argv) > 1 else "data"))
    if result.corpus is None:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    corpus = result.corpus
    print(f"corpus: {corpus.name}\nidentity: {corpus.identity}\nopen_seconds: {time.perf_counter() - start:.2f}")
    for split in ("train", "val"):
        start = time.perf_counter()
        n = chars = longest = 0
        for doc in corpus.documents(split):
            n, chars, longest = n + 1, chars + len(doc), max(longest, len(doc))
        print(f"{split}_documents: {n}\n{split}_chars: {chars}\n{split}_longest_doc: {longest}\n"
              f"{split}_read_seconds: {time.perf_counter() - start:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
