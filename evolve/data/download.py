"""Parallel, resumable download of parquet shards over HTTP(S).

`download_shards(indices, dest_dir, base_url)` fetches `<base_url>/shard_NNNNN.parquet` for each
index into `dest_dir`, eight files at a time, and returns a frozen `DownloadReport` saying which
files were downloaded, which were already there and which failed (one line each, with the reason).

    from evolve.data.download import download_shards
    report = download_shards(range(10), Path("data/climbmix"), BASE_URL)
    if report.failed: print(report.failed[0])

How it behaves:
- Resumable by file: a complete file already in place (it opens as parquet) is skipped; a file that
  does not open (truncated by a crash, another tool's partial write) is fetched again.
- Atomic: bytes go to `NAME.tmp`, are checked (length against Content-Length, parquet footer), and
  only then renamed onto `NAME` with os.replace, so `NAME` is either absent or complete.
- Retries with exponential backoff on connection errors, timeouts, truncated bodies, HTTP 429 and
  5xx; other HTTP errors (404, 403) fail at once. Once one file has used up its retries because the
  host cannot be reached, the files still waiting fail at once with the same reason instead of each
  waiting through its own backoff.
- No exception escapes for network, HTTP or disk problems: they become lines in `failed`.

What it does not do: resume half-downloaded files with HTTP Range (shards are ~90 MB, a retry is
cheap), verify checksums (the data set publishes none; the parquet footer check catches truncation),
or know anything about what the shards contain (see evolve/data/sources.py).
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

import pyarrow.parquet as pq
from tqdm import tqdm

CHUNK_BYTES = 1 << 20  # 1 MiB per read: few syscalls, little memory per worker
BACKOFF_CAP_S = 30.0  # the longest single wait between two attempts
USER_AGENT = "autoevolve/0.1 (+urllib)"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class DownloadReport:
    """What one call of download_shards did; file names only, the folder is the caller's."""

    downloaded: tuple[str, ...]  # fetched by this call
    skipped: tuple[str, ...]  # complete already, left untouched
    failed: tuple[str, ...]  # "shard_00007.parquet: HTTP 404 Not Found for <url>", one per file
    bytes_downloaded: int = 0  # bytes received over all attempts, retried ones included

    @property
    def ok(self) -> bool:
        return not self.failed


def shard_name(index: int) -> str:
    """File name of shard `index`: five digits, as the Hugging Face data sets name them."""
    return f"shard_{index:05d}.parquet"


def is_complete_parquet(path: Path) -> bool:
    """True when `path` opens as a parquet file (its footer is intact, so it was fully written)."""
    try:
        pq.ParquetFile(path).metadata
        return True
    except Exception:  # ArrowInvalid, OSError, ...: any reason to not trust the file
        return False


def unreachable_message(base_url: str, reason: object) -> str:
    """The one line a user sees when the download host cannot be reached."""
    host = urlsplit(base_url).netloc or base_url
    return f"cannot reach {host}: {reason}; check the network or use --dataset stdlib"


@dataclass(frozen=True)
class _Outcome:
    """Result of one attempt (or of one file): kind is 'ok', 'retry', 'fail' or 'unreachable'."""

    kind: str
    message: str = ""
    nbytes: int = 0
    wait_s: float = 0.0  # a server's Retry-After, when it sent one


class _Shared:
    """State the worker threads share: the progress bar and the 'host unreachable' breaker."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self.lock = threading.Lock()
        self.nbytes = 0
        self.failed = 0
        self.unreachable: str | None = None  # set once a file gave up because of the network

    def add_bytes(self, n: int) -> None:
        with self.lock:
            self.nbytes += n
            self._postfix()

    def file_done(self, ok: bool) -> None:
        with self.lock:
            self.failed += not ok
            self._postfix()
            self.bar.update(1)

    def _postfix(self) -> None:
        failed = f", {self.failed} failed" if self.failed else ""
        self.bar.set_postfix_str(f"{self.nbytes / 1e6:.1f} MB{failed}", refresh=False)


def _opener(base_url: str) -> urllib.request.OpenerDirector:
    # Why: a proxy configured for the internet must not swallow requests to this machine itself.
    if urlsplit(base_url).hostname in _LOOPBACK:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _retry_after(err: urllib.error.HTTPError) -> float:
    value = err.headers.get("Retry-After", "") if err.headers else ""
    return min(float(value), BACKOFF_CAP_S) if value.strip().isdigit() else 0.0


def _attempt(url: str, tmp: Path, opener, timeout_s: float, shared: _Shared, base_url: str) -> _Outcome:
    """One GET of `url` into `tmp`; classifies every failure instead of raising."""
    try:
        response = opener.open(urllib.request.Request(url, headers={"User-Agent": USER_AGENT}), timeout=timeout_s)
    except urllib.error.HTTPError as err:
        err.close()
        line = f"HTTP {err.code} {err.reason} for {url}"
        if err.code == 429 or err.code >= 500:
            return _Outcome("retry", line, wait_s=_retry_after(err))
        return _Outcome("fail", line)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        return _Outcome("unreachable", unreachable_message(base_url, reason))
    received = 0
    with response, open(tmp, "wb") as out:  # an OSError from open/write is a disk problem, see _fetch
        expected = response.headers.get("Content-Length")
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as err:
                return _Outcome("retry", f"connection to {urlsplit(url).netloc} broke after {received} bytes: {err!r}")
            if not chunk:
                break
            out.write(chunk)
            received += len(chunk)
            shared.add_bytes(len(chunk))
    if expected is not None and expected.isdigit() and received != int(expected):
        return _Outcome("retry", f"body cut short: {received} of {expected} bytes from {url}")
    if not is_complete_parquet(tmp):
        return _Outcome("retry", f"{url} did not return a readable parquet file ({received} bytes)")
    return _Outcome("ok", nbytes=received)


def _fetch(index: int, dest_dir: Path, base_url: str, retries: int, timeout_s: float,
           backoff_s: float, shared: _Shared) -> tuple[str, _Outcome]:
    """Fetch one shard with retries; returns (file name, final outcome). Never raises."""
    name = shard_name(index)
    final, tmp = dest_dir / name, dest_dir / f"{name}.tmp"
    url = f"{base_url}/{name}"
    opener = _opener(base_url)
    outcome = _Outcome("fail", "not attempted")
    ok = False
    try:
        for attempt in range(retries + 1):
            if shared.unreachable is not None:
                return name, _Outcome("fail", shared.unreachable)
            outcome = _attempt(url, tmp, opener, timeout_s, shared, base_url)
            if outcome.kind == "ok":
                os.replace(tmp, final)
                ok = True
                return name, outcome
            if outcome.kind == "fail":
                break
            if attempt < retries:
                # Why: doubling spreads 5 retries over ~15 s by default, enough for a server hiccup.
                time.sleep(max(outcome.wait_s, min(backoff_s * 2**attempt, BACKOFF_CAP_S)))
        if outcome.kind == "unreachable":
            shared.unreachable = outcome.message
        return name, _Outcome("fail", outcome.message)
    except OSError as err:  # open/write/replace on our side: disk full, permissions
        return name, _Outcome("fail", f"cannot write {tmp}: {err}")
    except Exception as err:  # the boundary: nothing escapes to the caller
        return name, _Outcome("fail", f"unexpected error: {err!r}")
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass
        shared.file_done(ok)


def download_shards(indices: Iterable[int], dest_dir: Path, base_url: str, workers: int = 8,
                    retries: int = 5, progress: bool = True, timeout_s: float = 60,
                    backoff_s: float = 0.5) -> DownloadReport:
    """Download the shards `indices` from `base_url` into `dest_dir`; see the module docstring.

    retries: extra attempts after the first one (so up to retries + 1 requests per file).
    timeout_s: socket timeout per connect and per read, in seconds.
    backoff_s: wait before the first retry; it doubles for every further one (capped at 30 s), so
        with the defaults a host that stays unreachable is reported after ~15 s (0.5+1+2+4+8).
    """
    base_url = base_url.rstrip("/")
    wanted = list(dict.fromkeys(int(i) for i in indices))  # unique, in the caller's order
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return DownloadReport((), (), tuple(f"{shard_name(i)}: cannot create {dest_dir}: {err}" for i in wanted))
    skipped = tuple(shard_name(i) for i in wanted if is_complete_parquet(dest_dir / shard_name(i)))
    todo = [i for i in wanted if shard_name(i) not in skipped]
    bar = tqdm(total=len(wanted), initial=len(skipped), unit="shard", desc="download", disable=not progress)
    shared = _Shared(bar)
    results: list[tuple[str, _Outcome]] = []
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
            results = list(pool.map(
                lambda i: _fetch(i, dest_dir, base_url, retries, timeout_s, backoff_s, shared), todo))
    bar.close()
    return DownloadReport(
        downloaded=tuple(name for name, out in results if out.kind == "ok"),
        skipped=skipped,
        failed=tuple(f"{name}: {out.message}" for name, out in results if out.kind != "ok"),
        bytes_downloaded=shared.nbytes,
    )
