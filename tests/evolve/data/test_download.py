"""download_shards against a real HTTP server on 127.0.0.1 serving small generated parquet shards.

Covers: parallel download, skip of complete files, retry after 500/429 and a cut-short body, 404
reported (not raised, not retried), resume over a leftover .tmp and a partial file, a closed port
(clear one-line error) and the 'host unreachable' breaker. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evolve.data.download import DownloadReport, download_shards, is_complete_parquet, shard_name

FAST = dict(progress=False, timeout_s=5, backoff_s=0.01)  # keeps retry waits to milliseconds


def make_shard(index: int, rows: int = 300) -> bytes:
    texts = [f"shard {index} document {i}: " + "lorem ipsum dolor sit amet " * (1 + i % 7) for i in range(rows)]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": texts, "id": list(range(rows))}), sink, row_group_size=100)
    return sink.getvalue().to_pybytes()


class ShardServer(ThreadingHTTPServer):
    """Serves `files` under /data/; `script[name]` lists misbehaviours for the first requests."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.script: dict[str, list[str]] = {}
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/data"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        server: ShardServer = self.server  # type: ignore[assignment]
        name = self.path.rsplit("/", 1)[-1]
        with server.lock:
            server.hits[name] += 1
            steps = server.script.get(name, [])
            step = steps.pop(0) if steps else "serve"
        body = server.files.get(name)
        if step in ("500", "429"):
            self.send_error(int(step))
        elif step == "html":
            self._reply(b"<html>a login page, not parquet</html>")
        elif body is None or not self.path.startswith("/data/"):
            self.send_error(404)
        elif step == "truncate":  # promise the whole body, send half, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        else:
            self._reply(body)

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def shards() -> dict[str, bytes]:
    return {shard_name(i): make_shard(i) for i in (0, 1, 2, 3, 6542)}


@pytest.fixture
def server(shards):
    srv = ShardServer(dict(shards))
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_downloads_in_parallel_then_skips_complete_files(server, shards, tmp_path):
    report = download_shards([0, 1, 2, 6542], tmp_path, server.base_url, workers=4, **FAST)
    assert isinstance(report, DownloadReport) and report.ok
    assert sorted(report.downloaded) == sorted(shard_name(i) for i in (0, 1, 2, 6542))
    assert report.skipped == () and report.bytes_downloaded == sum(len(shards[n]) for n in report.downloaded)
    for name in report.downloaded:
        assert (tmp_path / name).read_bytes() == shards[name]
    assert not list(tmp_path.glob("*.tmp"))
    hits_before = sum(server.hits.values())
    again = download_shards([0, 1, 2, 6542], tmp_path, server.base_url + "/", **FAST)
    assert again.downloaded == () and again.failed == () and len(again.skipped) == 4
    assert sum(server.hits.values()) == hits_before  # nothing requested for complete files


def test_retries_after_500_429_cut_short_body_and_html(server, shards, tmp_path):
    server.script = {shard_name(0): ["500"], shard_name(1): ["429", "500"],
                     shard_name(2): ["truncate"], shard_name(3): ["html"]}
    report = download_shards([0, 1, 2, 3], tmp_path, server.base_url, retries=3, **FAST)
    assert report.failed == ()
    assert sorted(report.downloaded) == [shard_name(i) for i in (0, 1, 2, 3)]
    assert [server.hits[shard_name(i)] for i in (0, 1, 2, 3)] == [2, 3, 2, 2]
    for i in (0, 1, 2, 3):
        assert (tmp_path / shard_name(i)).read_bytes() == shards[shard_name(i)]


def test_gives_up_after_retries_with_the_reason(server, tmp_path):
    server.script = {shard_name(0): ["500"] * 10}
    report = download_shards([0], tmp_path, server.base_url, retries=2, **FAST)
    assert report.downloaded == () and len(report.failed) == 1
    assert report.failed[0].startswith(shard_name(0) + ": HTTP 500")
    assert server.hits[shard_name(0)] == 3  # one try plus two retries
    assert not (tmp_path / shard_name(0)).exists() and not list(tmp_path.glob("*.tmp"))


def test_missing_shard_is_reported_once_not_raised(server, tmp_path):
    report = download_shards([0, 77], tmp_path, server.base_url, retries=4, **FAST)
    assert report.downloaded == (shard_name(0),)
    assert len(report.failed) == 1 and "\n" not in report.failed[0]
    assert report.failed[0].startswith("shard_00077.parquet: HTTP 404")
    assert server.hits["shard_00077.parquet"] == 1  # a 404 is final, never retried
    assert not (tmp_path / "shard_00077.parquet").exists()


def test_resume_replaces_leftover_tmp_and_partial_file(server, shards, tmp_path):
    (tmp_path / (shard_name(0) + ".tmp")).write_bytes(b"left behind by a killed run")
    (tmp_path / shard_name(1)).write_bytes(shards[shard_name(1)][:1000])  # torn file in place
    (tmp_path / shard_name(2)).write_bytes(shards[shard_name(2)])  # complete from before
    assert not is_complete_parquet(tmp_path / shard_name(1))
    report = download_shards([0, 1, 2], tmp_path, server.base_url, **FAST)
    assert sorted(report.downloaded) == [shard_name(0), shard_name(1)]
    assert report.skipped == (shard_name(2),) and server.hits[shard_name(2)] == 0
    for i in (0, 1, 2):
        assert (tmp_path / shard_name(i)).read_bytes() == shards[shard_name(i)]
    assert not list(tmp_path.glob("*.tmp"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_gives_one_clear_line_per_file(tmp_path):
    port = _closed_port()
    report = download_shards([0, 1, 2], tmp_path / "new", f"http://127.0.0.1:{port}", retries=2, **FAST)
    assert report.downloaded == () and len(report.failed) == 3
    for line in report.failed:
        assert "\n" not in line
        assert f"cannot reach 127.0.0.1:{port}:" in line
        assert line.endswith("check the network or use --dataset stdlib")
    assert not list((tmp_path / "new").iterdir())


def test_breaker_stops_other_files_after_one_gave_up(tmp_path):
    # A listener that hangs up on every connection: the host is 'there' but never answers.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)  # so the thread notices `stop` quickly
    accepted, stop = [], threading.Event()

    def hang_up() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:  # timeout: look at `stop` again
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        report = download_shards([0, 1, 2, 3], tmp_path, url, workers=1, retries=2, **FAST)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    assert len(report.failed) == 4 and all("cannot reach" in line for line in report.failed)
    assert len(accepted) == 3  # the first file's 1 + 2 retries; the other three failed without a request


def test_progress_bar_counts_files(server, tmp_path, capsys):
    report = download_shards([0, 1], tmp_path, server.base_url, progress=True, backoff_s=0.01)
    assert report.ok
    err = capsys.readouterr().err
    assert "download" in err and "2/2" in err and "shard" in err
