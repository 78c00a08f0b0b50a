"""A real OpenAI-compatible HTTP server for tests: scripted replies, recorded requests.

    with LLMServer(api_key="k") as server:            # 127.0.0.1, a free port
        server.push(Reply(content="DESCRIPTION: ...\\n<<<<<<< SEARCH ..."), Reply(status=429))
        client = openai.OpenAI(base_url=server.url, api_key="k")
        ...
        server.requests          # [Request(method, path, headers, body)], in arrival order

Routes: POST /v1/chat/completions answers with the next scripted Reply (a 500 with "no
scripted reply" when the queue is empty, so an unexpected extra call shows up as an error, not
a hang); GET /v1/models lists `models`. With `api_key` set, a request without
`Authorization: Bearer <api_key>` gets 401 in OpenAI's error format. A Reply can set the status,
the content (wrapped in a chat completion), a raw body instead, a delay before answering, the
usage, headers and the finish reason. Delays end early when the server stops.

What it does not do: streaming, tools, or any route but the two above. It listens on 127.0.0.1
only and is meant for tests (http.server is not a production server).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content: str | None = ""                      # the assistant's message (status 200)
    body: str | None = None                       # raw body, sent instead of a completion
    delay_s: float = 0.0                          # wait before answering
    trickle_s: float = 0.0                        # > 0: send the body 8 bytes at a time, this
                                                  # long apart (a server that never times out)
    usage: tuple[int, int] | None = (120, 30)     # (prompt_tokens, completion_tokens)
    headers: tuple[tuple[str, str], ...] = ()
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict
    body: dict | None                             # parsed JSON, None when not JSON

    def text(self) -> str:
        """Every message content of a chat request, joined (for `in` assertions)."""
        messages = (self.body or {}).get("messages") or []
        return "\n".join(str(m.get("content", "")) for m in messages)


def completion(content: str | None, model: str, usage: tuple[int, int] | None,
               finish_reason: str = "stop") -> dict:
    body = {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content}}]}
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                         "total_tokens": usage[0] + usage[1]}
    return body


def error_body(message: str, kind: str = "invalid_request_error") -> str:
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": None}})


class LLMServer:
    def __init__(self, replies=(), models=("test-model",), api_key: str | None = None) -> None:
        self.models = tuple(models)
        self.api_key = api_key
        self.requests: list[Request] = []
        self._queue: deque[Reply] = deque(replies)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def chat_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> "LLMServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "LLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------------

    def _next(self) -> Reply | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:      # keep test output clean
                pass

            def send(self, status: int, body: str, headers=(), trickle_s: float = 0.0) -> None:
                data = body.encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers:
                        self.send_header(name, value)
                    self.end_headers()
                    if trickle_s <= 0:
                        self.wfile.write(data)
                        return
                    for k in range(0, len(data), 8):
                        self.wfile.write(data[k:k + 8])
                        self.wfile.flush()
                        if server._stopping.wait(trickle_s):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    pass                               # the client gave up (a timeout test)

            def read_body(self) -> dict | None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    return json.loads(raw) if raw else None
                except ValueError:
                    return None

            def authorised(self) -> bool:
                if server.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self.send(401, error_body("Incorrect API key provided.",
                                          "invalid_api_key"))
                return False

            def do_GET(self) -> None:
                server._record(Request("GET", self.path, dict(self.headers), None))
                if not self.authorised():
                    return
                if self.path.rstrip("/").endswith("/models"):
                    data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"}
                            for m in server.models]
                    self.send(200, json.dumps({"object": "list", "data": data}))
                else:
                    self.send(404, error_body(f"no route {self.path}"))

            def do_POST(self) -> None:
                body = self.read_body()
                server._record(Request("POST", self.path, dict(self.headers), body))
                if not self.authorised():
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self.send(404, error_body(f"no route {self.path}"))
                    return
                reply = server._next()
                if reply is None:
                    self.send(500, error_body("no scripted reply", "server_error"))
                    return
                if reply.delay_s > 0 and server._stopping.wait(reply.delay_s):
                    return                             # the server is stopping
                if reply.body is not None:
                    text = reply.body
                elif reply.status == 200:
                    model = (body or {}).get("model", "test-model")
                    text = json.dumps(completion(reply.content, model, reply.usage,
                                                 reply.finish_reason))
                else:
                    text = error_body(f"scripted status {reply.status}",
                                      "rate_limit_exceeded" if reply.status == 429
                                      else "server_error")
                self.send(reply.status, text, reply.headers, reply.trickle_s)

        return Handler
