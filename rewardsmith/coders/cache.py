"""An on-disk response cache keyed by a hash of the full request.

A rerun, or a resumed run, sends zero requests for the exchanges it already made: the coder
looks every request up here before it touches the network. ``--no-cache`` is simply
``cache=None``.

A request is the dict ``{"model", "messages", "n", "temperature", "occurrence"}``;
``occurrence`` counts how many times the coder has already sent this exact request in this run
(0 the first time), so a deliberate resample of identical messages gets fresh responses, while a
rerun replays the same sequence. The endpoint URL is not part of the key: the same model behind
another URL answers from the same cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from rewardsmith.coders.base import Completion
from rewardsmith.fsutil import atomic_write_json, cache_root

__all__ = [
    "ResponseCache",
    "completion_from_dict",
    "completion_to_dict",
    "default_cache_dir",
    "request_key",
]


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(request: dict[str, Any]) -> str:
    """The sha256 hex digest of the canonical JSON of ``request``."""
    return hashlib.sha256(_canonical(request).encode("utf-8")).hexdigest()


def completion_to_dict(c: Completion) -> dict[str, Any]:
    """A JSON-ready copy of a completion (``cached`` is not stored: it describes one use).

    ``error`` and ``finish_reason`` are stored only when set, so usable answers keep the old form.
    """
    d: dict[str, Any] = {"text": c.text, "prompt_tokens": c.prompt_tokens,
                         "completion_tokens": c.completion_tokens, "model": c.model}
    if c.error is not None:
        d["error"] = c.error
    if c.finish_reason is not None:
        d["finish_reason"] = c.finish_reason
    return d


def completion_from_dict(d: dict[str, Any], *, cached: bool = True) -> Completion:
    """Rebuild a completion; a cached one cost nothing, so its token counts are 0."""
    return Completion(
        text=str(d["text"]),
        prompt_tokens=0 if cached else int(d.get("prompt_tokens", 0)),
        completion_tokens=0 if cached else int(d.get("completion_tokens", 0)),
        cached=cached,
        model=str(d.get("model", "")),
        error=None if d.get("error") is None else str(d["error"]),
        finish_reason=None if d.get("finish_reason") is None else str(d["finish_reason"]),
    )


def default_cache_dir() -> Path:
    """``$REWARDSMITH_CACHE/responses``, or ``~/.cache/rewardsmith/responses``."""
    return cache_root() / "responses"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`rewardsmith.fsutil.atomic_write_json`)."""
    atomic_write_json(path, data, indent=1)


class ResponseCache:
    """One JSON file per request, ``<directory>/<key[:2]>/<key>.json``.

    Args:
        directory: where the files live (created on the first :meth:`put`).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, request: dict[str, Any]) -> Path:
        """The file that holds (or would hold) the responses to ``request``."""
        key = request_key(request)
        return self.directory / key[:2] / f"{key}.json"

    def get(self, request: dict[str, Any]) -> list[Completion] | None:
        """The cached completions for ``request`` (``cached=True``, 0 tokens), or ``None``.

        A missing, unreadable or short entry (fewer responses than ``request["n"]``) is a miss.
        """
        try:
            data = json.loads(self.path(request).read_text(encoding="utf-8"))
            completions = [completion_from_dict(d) for d in data["completions"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if len(completions) < int(request.get("n", 1)):
            return None
        return completions[: int(request.get("n", len(completions)))]

    def put(self, request: dict[str, Any], completions: list[Completion]) -> Path:
        """Store ``completions`` as the answer to ``request``; return the file written."""
        path = self.path(request)
        write_json_atomic(path, {
            "key": request_key(request),
            "request": request,
            "completions": [completion_to_dict(c) for c in completions],
        })
        return path
