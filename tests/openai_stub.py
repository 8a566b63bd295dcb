"""A loopback OpenAI-compatible chat server for the coder tests (127.0.0.1 only).

The real ``openai`` client talks to it over HTTP. Tests queue behaviours with :meth:`StubServer.push`
(one per request, in order; when the queue is empty, :func:`ok` answers), and read back every
request received from :attr:`StubServer.requests`.

Token counts are deterministic: a prompt costs :func:`count_tokens` of all message contents,
a completion :func:`count_tokens` of its text (both word counts).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REWARD = '''def compute_reward(pos, goal):
    dist = ((pos - goal) ** 2).sum() ** 0.5
    return -dist, {"dist": -dist}
'''
HELPER = '''def shaped(d):
    return 1.0 / (1.0 + d)
'''
PLAIN = f"Here is the reward.\n\n```python\n{REWARD}```\n\nIt penalises the distance.\n"
PROSE_BLOCKS = (
    "First a helper:\n\n```python\n" + HELPER + "```\n\n"
    "Then the reward:\n\n```\n" + REWARD.replace("-dist, ", "shaped(dist), ") + "```\n\n"
    "Usage:\n\n```python\nr, terms = compute_reward(p, g)\n```\n"
)
NO_CODE = "I would reward the agent for getting closer to the goal, and penalise energy use."
BROKEN = "```python\ndef compute_reward(pos, goal)\n    return -abs(pos - goal\n```\n"


def count_tokens(text: str) -> int:
    """The stub's token count for ``text``: its number of words."""
    return len(text.split())


@dataclass
class Reply:
    """One scripted behaviour.

    Attributes:
        status: the HTTP status (200 for a normal reply).
        content: the reply text (status 200), one per choice unless ``n`` is not honoured;
            ``None`` sends ``"content": null`` (a refusal).
        delay_s: sleep this long before answering (to trip the client's timeout).
        error: the ``error`` object of a non-200 answer.
        usage: include ``usage`` in the reply.
        headers: extra response headers.
        finish_reason: each choice's ``finish_reason``.
        refusal: the message's ``refusal`` field, if set.
        choices: send this many choices (``0``: ``"choices": []``) instead of ``n``.
        body: send these bytes verbatim as the body instead of a chat completion.
        content_type: the ``content-type`` header.
    """

    status: int = 200
    content: str | None = PLAIN
    delay_s: float = 0.0
    error: dict[str, Any] = field(default_factory=dict)
    usage: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    refusal: str | None = None
    choices: int | None = None
    body: str | None = None
    content_type: str = "application/json"


def ok(content: str = PLAIN, **kw: Any) -> Reply:
    """A normal reply."""
    return Reply(content=content, **kw)


def error(status: int, message: str, code: str | None = None, type_: str = "error",
          param: str | None = None) -> Reply:
    """An OpenAI-style error answer."""
    return Reply(status=status, error={"message": message, "type": type_, "code": code,
                                       "param": param})


def rate_limited() -> Reply:
    """A 429 that is worth retrying."""
    return error(429, "Rate limit reached, try again shortly.", "rate_limit_exceeded", "requests")


def server_error() -> Reply:
    """A 500."""
    return error(500, "The server had an error while processing your request.", None, "server_error")


def slow(delay_s: float = 2.0) -> Reply:
    """A normal reply, but late."""
    return Reply(delay_s=delay_s)


def unauthorized() -> Reply:
    """A 401: bad key."""
    return error(401, "Incorrect API key provided: sk-bad.", "invalid_api_key",
                 "invalid_request_error")


def model_not_found(model: str = "gpt-nope") -> Reply:
    """A 404: unknown model."""
    return error(404, f"The model `{model}` does not exist or you do not have access to it.",
                 "model_not_found", "invalid_request_error")


def insufficient_quota() -> Reply:
    """A 429 that no retry fixes: the account is empty."""
    return error(429, "You exceeded your current quota, please check your plan and billing details.",
                 "insufficient_quota", "insufficient_quota")


def n_rejected() -> Reply:
    """A 400 refusing ``n > 1`` (as some servers do)."""
    return error(400, "n > 1 is not supported by this server", None, "invalid_request_error", "n")


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Open WebUI</title></head>
<body><div id="app">Loading...</div><script src="/static/app.js"></script></body></html>
"""


def html_page() -> Reply:
    """A 200 carrying a web page, as a web UI or a proxy serves for an unknown path."""
    return Reply(body=HTML_PAGE, content_type="text/html; charset=utf-8")


def cut_json() -> Reply:
    """A 200 whose JSON body stops half-way (a proxy or server that cut the reply)."""
    return Reply(body='{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"index": 0, '
                      '"message": {"role": "assistant", "content": "def compute_rew')


def no_choices() -> Reply:
    """A 200 chat completion with ``"choices": []``."""
    return Reply(choices=0)


def refusal(text: str | None = "I can't help with that.") -> Reply:
    """A refusal: ``"content": null`` (with the message's ``refusal`` field, if ``text``)."""
    return Reply(content=None, refusal=text)


def length_cut(content: str = PLAIN[: len(PLAIN) // 2]) -> Reply:
    """A reply cut at the length limit: ``finish_reason: "length"``, the text half-way."""
    return Reply(content=content, finish_reason="length")


class StubServer:
    """The server; use :func:`serve` to run one.

    Attributes:
        requests: every request received: ``{"path", "body", "headers"}``.
        n_supported: honour ``n``; when false, ignore it and answer one choice.
        web_ui: serve :data:`HTML_PAGE` with a 200 for every path outside ``/v1/`` (as a web
            UI in front of the API does), so a base URL without ``/v1`` gets web pages.
        responder: when the script is empty, ``responder(body)`` (the request's JSON body) makes
            the reply, so it can depend on the request; ``None`` (the default), or a ``None``
            answer: :func:`ok`.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.n_supported = True
        self.web_ui = False
        self.responder: Callable[[dict[str, Any]], Reply | None] | None = None
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def root_url(self) -> str:
        """The base URL without ``/v1``: ``http://127.0.0.1:<port>``."""
        return self.url.removesuffix("/v1")

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """The chat-completion requests received."""
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def push(self, *replies: Reply) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._lock:
            self._script.extend(replies)

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; wake any slow reply so it ends at once."""
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, body: dict[str, Any] | None = None) -> Reply:
        with self._lock:
            if self._script:
                return self._script.popleft()
        reply = self.responder(body or {}) if self.responder is not None else None
        return reply if reply is not None else ok()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
        """The status, raw body and headers (``content-type`` included) for one request."""
        json_type = {"content-type": "application/json"}
        if self.web_ui and not path.startswith("/v1/"):
            return 200, HTML_PAGE.encode(), {"content-type": "text/html; charset=utf-8"}
        if not path.rstrip("/").endswith("/chat/completions"):
            return 404, json.dumps({"error": {"message": f"no route {path}", "code": None,
                                              "type": "invalid_request_error", "param": None}}
                                   ).encode(), json_type
        reply = self._next(body)
        if reply.delay_s:
            self._stop.wait(reply.delay_s)
        headers = {"content-type": reply.content_type, **reply.headers}
        if reply.status != 200:
            return reply.status, json.dumps({"error": reply.error}).encode(), headers
        if reply.body is not None:
            return 200, reply.body.encode(), headers
        n = int(body.get("n") or 1) if self.n_supported else 1
        if reply.choices is not None:
            n = reply.choices
        prompt = sum(count_tokens(str(m.get("content", ""))) for m in body.get("messages", []))
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        choices = [{"index": i, "finish_reason": reply.finish_reason, "message": message}
                   for i in range(n)]
        out: dict[str, Any] = {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion",
                               "created": 0, "model": body.get("model", ""), "choices": choices}
        if reply.usage:
            completion = n * count_tokens(reply.content or "")
            out["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                            "total_tokens": prompt + completion}
        return 200, json.dumps(out).encode(), headers

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                with server._lock:
                    server.requests.append({"path": self.path, "body": body,
                                            "headers": dict(self.headers)})
                status, data, headers = server.answer(self.path, body)
                with contextlib.suppress(OSError):  # the client may have given up (timeout)
                    self.send_response(status)
                    self.send_header("content-length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)

        return Handler


@contextlib.contextmanager
def serve() -> Iterator[StubServer]:
    """Run a :class:`StubServer` for the duration of the ``with`` block."""
    server = StubServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def dead_url() -> str:
    """A loopback base URL with nothing listening (a port just freed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
