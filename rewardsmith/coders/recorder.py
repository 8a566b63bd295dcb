"""Every prompt and response of a run, one JSON file per exchange in the run directory.

Files are ``<run_dir>/exchanges/NNNN-<key12>.json`` (``NNNN`` counts from 0001 in the order the
exchanges happened; ``key12`` is the start of the request's cache key). Each holds::

    {"index", "key", "timestamp", "cached", "request": {"model", "messages", "n",
     "temperature", "occurrence"}, "responses": [{"text", "prompt_tokens",
     "completion_tokens", "model"}], "prompt_tokens", "completion_tokens"}

A resumed run that repeats an exchange already on file writes nothing new.
:class:`~rewardsmith.coders.replay.ReplayCoder` reads these files back.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rewardsmith.coders.base import Coder, CoderContext, Completion, Usage
from rewardsmith.coders.cache import completion_to_dict, request_key, write_json_atomic

__all__ = ["ExchangeRecorder", "RecordingCoder", "exchanges_dir", "load_exchanges"]

_NAME = re.compile(r"^(\d{4,})-([0-9a-f]{12})\.json$")


def exchanges_dir(run_dir: str | os.PathLike[str]) -> Path:
    """``run_dir/exchanges``, or ``run_dir`` itself when it already is an exchanges folder."""
    path = Path(run_dir)
    if path.name != "exchanges" and (path / "exchanges").is_dir():
        return path / "exchanges"
    if path.name == "exchanges" or any(_NAME.match(p.name) for p in _listdir(path)):
        return path
    return path / "exchanges"


def _listdir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError:
        return []


def load_exchanges(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The recorded exchanges of a run, in the order they happened (unreadable files skipped)."""
    out = []
    for path in _listdir(exchanges_dir(run_dir)):
        if not _NAME.match(path.name):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "request" in data and "responses" in data:
            out.append(data)
    out.sort(key=lambda d: int(d.get("index", 0)))
    return out


class ExchangeRecorder:
    """Writes each exchange of a run to ``<run_dir>/exchanges/``.

    Args:
        run_dir: the run directory (``exchanges/`` is created inside it on the first record).
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.directory = Path(run_dir) / "exchanges"
        self._lock = threading.Lock()
        self._next: int | None = None
        self._keys: set[str] = set()

    def _scan(self) -> int:
        last = 0
        for path in _listdir(self.directory):
            match = _NAME.match(path.name)
            if match:
                last = max(last, int(match.group(1)))
                try:
                    self._keys.add(json.loads(path.read_text(encoding="utf-8"))["key"])
                except (OSError, ValueError, KeyError, TypeError):
                    pass
        return last + 1

    def record(self, request: dict[str, Any], completions: list[Completion], *,
               cached: bool = False) -> Path | None:
        """Write one exchange; return its file, or ``None`` if this request is already on file.

        Args:
            request: the request dict (see :mod:`rewardsmith.coders.cache`).
            completions: the responses, in order.
            cached: whether they came from the cache or a replay (no request was sent).
        """
        key = request_key(request)
        with self._lock:
            index = self._scan() if self._next is None else self._next
            if key in self._keys:
                self._next = index
                return None
            self._next = index + 1
            self._keys.add(key)
        path = self.directory / f"{index:04d}-{key[:12]}.json"
        write_json_atomic(path, {
            "index": index,
            "key": key,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "cached": cached,
            "request": request,
            "responses": [completion_to_dict(c) for c in completions],
            "prompt_tokens": sum(c.prompt_tokens for c in completions),
            "completion_tokens": sum(c.completion_tokens for c in completions),
        })
        return path


class RecordingCoder:
    """Wraps any coder (e.g. the offline one) so its exchanges are recorded too.

    Args:
        inner: the coder that answers.
        recorder: where the exchanges go.
    """

    def __init__(self, inner: Coder, recorder: ExchangeRecorder) -> None:
        self.inner = inner
        self.recorder = recorder
        self.name = inner.name
        self._seen: Counter[str] = Counter()

    @property
    def usage(self) -> Usage:
        """The inner coder's totals."""
        return self.inner.usage

    def complete(self, messages: list[dict[str, str]], n: int = 1,
                 context: CoderContext | None = None) -> list[Completion]:
        """Ask the inner coder, record the exchange, return its completions."""
        completions = self.inner.complete(messages, n=n, context=context)
        model = completions[0].model if completions else self.inner.name
        request = {"model": model or self.inner.name, "messages": messages, "n": n,
                   "temperature": getattr(self.inner, "temperature", None)}
        base = request_key(request)
        request["occurrence"] = self._seen[base]
        self._seen[base] += 1
        self.recorder.record(request, completions, cached=all(c.cached for c in completions))
        return completions
