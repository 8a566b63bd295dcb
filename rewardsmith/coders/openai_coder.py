"""A coder backed by any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server).

Uses the official ``openai`` client, built lazily on the first request (importing it costs
seconds), with the client's own retries off: this module retries with exponential backoff on
429, 5xx, timeouts and connection errors, and turns every other failure (bad key, unknown
model, empty account, dead endpoint) into a one-line :class:`CoderError`.

A 200 answer that is no chat completion (an HTML page, cut-off JSON, no choices) is retried like
a 5xx; one that keeps coming ends in a one-line :class:`CoderError` naming the likely cause (an
HTML page: a base URL that lacks ``/v1``). A choice the model did not finish (a refusal, a reply
cut at the length limit, an empty reply) is a *failed sample*: a :class:`Completion` whose
``error`` says why, for the caller to reject and repair; it never stops the run.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rewardsmith.coders.base import CoderContext, CoderError, Completion, Usage
from rewardsmith.coders.cache import ResponseCache, request_key
from rewardsmith.coders.recorder import ExchangeRecorder

if TYPE_CHECKING:
    import openai

__all__ = ["ChatClient", "OpenAICoder"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
BACKOFF_CAP_S = 30.0
_N_PARAM = re.compile(r"(?:\bn\b|\bnumber of (?:choices|completions)|\bmultiple choices)", re.I)
_HTML = re.compile(r"<\s*(?:!doctype\s+html|html|head|body)\b", re.I)


class ChatClient(Protocol):
    """The part of ``openai.OpenAI`` this module uses: ``client.chat.completions.create``."""

    @property
    def chat(self) -> Any:
        """The chat resource."""
        ...


@dataclass
class _Choice:
    text: str
    error: str | None
    finish_reason: str | None


@dataclass
class _Reply:
    choices: list[_Choice]
    prompt_tokens: int
    completion_tokens: int
    model: str


class _NUnsupported(Exception):
    """The server refused ``n > 1``."""


class _Garbage(Exception):
    """A 200 answer that is no chat completion (retried like a 5xx): its ``kind`` (``html``,
    ``text``, ``json``: cut-off or invalid, ``choices``: none) and an excerpt, ``detail``."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


def _get(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``; ``None`` when absent (servers send odd shapes)."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _one_line(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _server_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and body.get("message"):
        return _one_line(body["message"])
    return _one_line(exc.message)


class OpenAICoder:
    """Writes reward programs with a chat model behind an OpenAI-compatible endpoint.

    Args:
        model: the model name the server knows (``gpt-4o``, ``qwen2.5-coder:7b``, ...).
        base_url: the endpoint, e.g. ``http://localhost:11434/v1``; default ``$OPENAI_BASE_URL``,
            else OpenAI's.
        api_key: default ``$OPENAI_API_KEY``; with neither but a ``base_url``, the dummy
            ``sk-none`` (local servers want no key).
        temperature: sampling temperature.
        max_tokens: total token budget of the run (prompt + completion over all requests);
            once spent, the next :meth:`complete` that needs the network raises
            :class:`CoderError`. ``None``: no limit.
        timeout_s: per-request timeout, in seconds.
        max_retries: retries after the first try on 429, 5xx, timeouts and connection errors.
        backoff_s: the first retry's wait, in seconds; doubled each retry, capped at 30 s.
        cache: the on-disk response cache; ``None`` sends every request (``--no-cache``).
        recorder: writes every exchange into the run directory.

    Raises:
        CoderError: no API key and no ``base_url`` anywhere, or a bad setting.
    """

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 temperature: float = 1.0, max_tokens: int | None = None,
                 timeout_s: float = 120.0, max_retries: int = 5, backoff_s: float = 1.0,
                 cache: ResponseCache | None = None,
                 recorder: ExchangeRecorder | None = None) -> None:
        if not model:
            raise CoderError("the openai coder needs a model name: pass --model")
        if max_tokens is not None and max_tokens <= 0:
            raise CoderError(f"--max-tokens must be positive, got {max_tokens}")
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0:
            raise CoderError("timeout_s must be > 0, max_retries and backoff_s >= 0")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or (
            "sk-none" if self.base_url else None)
        if self.api_key is None:
            raise CoderError(
                "no API key for the openai coder: set OPENAI_API_KEY (or pass --api-key), or "
                "point --base-url / OPENAI_BASE_URL at a local OpenAI-compatible server")
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.cache = cache
        self.recorder = recorder
        self.usage = Usage()
        self.n_supported: bool | None = None  # None: not known yet
        self._client: ChatClient | None = None
        self._seen: Counter[str] = Counter()

    @property
    def url(self) -> str:
        """The endpoint requests go to."""
        return (self.base_url or DEFAULT_BASE_URL).rstrip("/")

    @property
    def tokens_used(self) -> int:
        """Prompt + completion tokens of every request sent so far."""
        return self.usage.prompt_tokens + self.usage.completion_tokens

    def client(self) -> ChatClient:
        """The ``openai.OpenAI`` client, built on first use (its own retries off)."""
        if self._client is None:
            import openai

            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key,
                                         max_retries=0, timeout=self.timeout_s)
        return self._client

    # -- the protocol ---------------------------------------------------------------------------

    def complete(self, messages: list[dict[str, str]], n: int = 1,
                 context: CoderContext | None = None) -> list[Completion]:
        """Return ``n`` completions for ``messages``, from the cache when it has them.

        Raises:
            CoderError: one line saying what failed (key, model, quota, endpoint, budget).
        """
        if n < 1:
            raise CoderError(f"n must be at least 1, got {n}")
        request: dict[str, Any] = {"model": self.model, "messages": messages, "n": n,
                                   "temperature": self.temperature}
        base = request_key(request)
        request["occurrence"] = self._seen[base]
        self._seen[base] += 1
        if self.cache is not None:
            hit = self.cache.get(request)
            if hit is not None:
                self.usage.cache_hits += 1
                if self.recorder is not None:
                    self.recorder.record(request, hit, cached=True)
                return hit
        self._check_budget()
        completions = self._sample(messages, n)
        if self.cache is not None:
            self.cache.put(request, completions)
        if self.recorder is not None:
            self.recorder.record(request, completions, cached=False)
        return completions

    # -- sampling -------------------------------------------------------------------------------

    def _check_budget(self) -> None:
        if self.max_tokens is not None and self.tokens_used >= self.max_tokens:
            raise CoderError(
                f"token budget spent: {self.tokens_used} tokens used of --max-tokens "
                f"{self.max_tokens} ({self.model} at {self.url}); raise --max-tokens to go on")

    def _sample(self, messages: list[dict[str, str]], n: int) -> list[Completion]:
        """``n`` completions: one request with ``n`` if the server honours it, else several."""
        out: list[Completion] = []
        if n > 1 and self.n_supported is not False:
            try:
                out = self._completions(self._send(messages, n))
            except _NUnsupported:
                self.n_supported = False
            else:
                self.n_supported = len(out) >= n
        while len(out) < n:
            out.extend(self._completions(self._send(messages, 1)))
        return out[:n]

    def _completions(self, reply: _Reply) -> list[Completion]:
        """One completion per choice, counted in :attr:`usage`.

        The prompt's tokens go on the first; the completion tokens are split in proportion to
        the text lengths.
        """
        self.usage.requests += 1
        self.usage.prompt_tokens += reply.prompt_tokens
        self.usage.completion_tokens += reply.completion_tokens
        shares = _split(reply.completion_tokens, [len(c.text) for c in reply.choices])
        return [Completion(text=c.text, prompt_tokens=reply.prompt_tokens if i == 0 else 0,
                           completion_tokens=s, cached=False, model=reply.model, error=c.error,
                           finish_reason=c.finish_reason)
                for i, (c, s) in enumerate(zip(reply.choices, shares, strict=True))]

    def _send(self, messages: list[dict[str, str]], n: int) -> _Reply:
        """One request, retried on transient failures.

        Raises:
            _NUnsupported: the server rejected ``n``.
            CoderError: a failure that retrying cannot fix, or retries exhausted.
        """
        import openai

        client = self.client()
        extra = {"n": n} if n > 1 else {}
        tries = self.max_retries + 1
        for attempt in range(tries):
            try:
                response = client.chat.completions.create(
                    model=self.model, messages=messages, temperature=self.temperature, **extra)
                return self._parse(response, messages)
            except openai.OpenAIError as exc:
                message, retry_after = self._diagnose(exc, n, tries)
            except json.JSONDecodeError as exc:  # a JSON body cut off or mangled on the way
                bad = _Garbage("json", f"{exc.msg.lower()}, character {exc.pos}")
                message, retry_after = self._garbage_message(bad, tries), 0.0
            except _Garbage as exc:
                message, retry_after = self._garbage_message(exc, tries), 0.0
            if retry_after is None or attempt + 1 >= tries:
                raise CoderError(message) from None
            time.sleep(min(max(self.backoff_s * 2.0**attempt, retry_after), BACKOFF_CAP_S))
        raise CoderError(f"{self.model} at {self.url}: no answer after {tries} tries")

    def _diagnose(self, exc: Exception, n: int, tries: int) -> tuple[str, float | None]:
        """The final one-line message for ``exc``, and the least wait before a retry.

        The wait is ``None`` when retrying cannot help.

        Raises:
            _NUnsupported: a 400 that refuses ``n``.
        """
        import openai

        where = f"{self.model!r} at {self.url}"
        if isinstance(exc, openai.APITimeoutError):
            return (f"{where}: no answer within {self.timeout_s:g} s, {tries} tries; "
                    "the server is overloaded or the model too slow: raise the timeout"), 0.0
        if isinstance(exc, openai.APIConnectionError):
            return (f"cannot reach {self.url} (connection refused or unknown host) after "
                    f"{tries} tries; start the server or fix --base-url / OPENAI_BASE_URL"), 0.0
        if not isinstance(exc, openai.APIStatusError):
            return f"{where}: bad response: {_one_line(exc)}", None
        status, code = exc.status_code, str(exc.code or exc.type or "")
        said = _server_message(exc)
        if status == 401:
            return (f"{self.url} rejected the API key (401: {said}); set OPENAI_API_KEY or "
                    "pass --api-key with a valid key"), None
        if status == 403:
            return f"{where}: permission denied (403: {said}); check the key's access", None
        if status == 404:
            return (f"model {self.model!r} not found at {self.url} (404: {said}); check --model "
                    "(and --base-url: it should end in /v1)"), None
        if status == 429 and "insufficient_quota" in code + said:
            return (f"the account behind the API key for {self.url} has no quota left "
                    "(429 insufficient_quota); add credit, or use another key or --base-url"), None
        if status == 400 and n > 1 and (exc.param == "n" or _N_PARAM.search(said)):
            raise _NUnsupported(said)
        if status == 429 or status >= 500 or status in (408, 409):
            kind = "rate limited" if status == 429 else f"server error {status}"
            return (f"{where}: {kind} after {tries} tries ({said}); wait and resume the run"), \
                _retry_after(exc)
        return f"{where}: request rejected ({status}: {said})", None

    def _garbage_message(self, bad: _Garbage, tries: int) -> str:
        """The final one-line message for an answer that kept being no chat completion."""
        where = f"{self.model!r} at {self.url}"
        if bad.kind == "html":
            if not self.url.endswith("/v1"):
                return (f"{where} answered with an HTML web page instead of an API reply "
                        f"({tries} tries): the base URL probably lacks /v1; try --base-url "
                        f"{self.url}/v1 (or OPENAI_BASE_URL)")
            return (f"{where} answered with an HTML web page instead of an API reply "
                    f"({tries} tries): {self.url} is probably not an OpenAI-compatible API "
                    "(a web UI or a proxy page?); check --base-url / OPENAI_BASE_URL")
        if bad.kind == "text":
            return (f"{where} answered with text that is not JSON ({bad.detail}), {tries} tries; "
                    "is it an OpenAI-compatible endpoint? check --base-url / OPENAI_BASE_URL")
        if bad.kind == "json":
            return (f"{where}: the reply was cut-off or invalid JSON ({bad.detail}), {tries} "
                    "tries; the server or a proxy in between truncates its answers")
        return f"{where}: the response had no choices, {tries} tries ({bad.detail})"

    def _parse(self, response: Any, messages: list[dict[str, str]]) -> _Reply:
        """The choices and token counts of one answer.

        Raises:
            _Garbage: the answer is no chat completion (retry it).
        """
        if isinstance(response, (str, bytes)):  # the client hands back a non-JSON body as text
            text = response.decode("utf-8", "replace") if isinstance(response, bytes) else response
            kind = "html" if _HTML.search(text[:4000]) else "text"
            raise _Garbage(kind, _one_line(text, 80) or "an empty body")
        raw = _get(response, "choices")
        if not isinstance(raw, list) or not raw:
            raise _Garbage("choices", f"choices: {_one_line(raw, 60)}")
        choices = sorted(raw, key=lambda c: _count(_get(c, "index")))
        parsed = [_choice(c) for c in choices]
        usage = _get(response, "usage")
        if usage is not None:
            prompt = _count(_get(usage, "prompt_tokens"))
            completion = _count(_get(usage, "completion_tokens"))
        else:  # some servers omit usage: estimate at ~4 characters a token
            prompt = sum(len(m.get("content") or "") for m in messages) // 4 + 1
            completion = sum(len(c.text) // 4 + 1 for c in parsed)
        return _Reply(parsed, prompt, completion, str(_get(response, "model") or self.model))


def _choice(choice: Any) -> _Choice:
    """One choice: its text, and why it is a failed sample (``None`` if it is not)."""
    message = _get(choice, "message")
    content = _get(message, "content")
    content = content if isinstance(content, str) else None
    refusal = _get(message, "refusal")
    refusal = _one_line(refusal) if isinstance(refusal, str) and refusal.strip() else None
    finish = _get(choice, "finish_reason")
    finish = str(finish) if finish is not None else None
    error: str | None = None
    if finish == "length":
        error = ("the reply was cut off at the length limit (finish_reason 'length') before "
                 "the code was complete; write a shorter answer")
    elif content is None:
        error = (f"the model refused to answer: {refusal}" if refusal
                 else "the model gave no content (a refusal)")
    elif finish == "content_filter":
        error = "the reply was withheld by the server's content filter"
    elif not content.strip():
        error = "the reply was empty"
    return _Choice(text=content or refusal or "", error=error, finish_reason=finish)


def _retry_after(exc: openai.APIStatusError) -> float:
    try:
        return max(0.0, float(exc.response.headers.get("retry-after", 0)))
    except (TypeError, ValueError):
        return 0.0


def _split(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` into integers in proportion to ``weights`` (the remainder to the first)."""
    if not weights:
        return []
    wsum = sum(weights)
    if wsum == 0:
        shares = [total // len(weights)] * len(weights)
    else:
        shares = [total * w // wsum for w in weights]
    shares[0] += total - sum(shares)
    return shares
