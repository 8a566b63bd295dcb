"""Reward coders: an OpenAI-compatible LLM, replay of a recorded run, and the offline coder.

:func:`make_coder` builds one by kind; :func:`extract_code` pulls the program out of a response.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from rewardsmith.coders.base import Coder, CoderContext, CoderError, Completion, Usage
from rewardsmith.coders.cache import ResponseCache, default_cache_dir, request_key
from rewardsmith.coders.extract import extract_code
from rewardsmith.coders.openai_coder import OpenAICoder
from rewardsmith.coders.recorder import ExchangeRecorder, RecordingCoder, load_exchanges
from rewardsmith.coders.replay import ReplayCoder

__all__ = [
    "CODER_KINDS",
    "DEFAULT_MODEL",
    "Coder",
    "CoderContext",
    "CoderError",
    "Completion",
    "ExchangeRecorder",
    "OpenAICoder",
    "RecordingCoder",
    "ReplayCoder",
    "ResponseCache",
    "Usage",
    "default_cache_dir",
    "default_coder_kind",
    "extract_code",
    "load_exchanges",
    "make_coder",
    "request_key",
]

CODER_KINDS = ("openai", "offline", "replay")
DEFAULT_MODEL = "gpt-4o-mini"


def default_coder_kind() -> str:
    """``"openai"`` when ``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` is set, else ``"offline"``."""
    if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
        return "openai"
    return "offline"


def make_coder(kind: str, *, model: str | None = None, base_url: str | None = None,
               api_key: str | None = None, temperature: float = 1.0,
               max_tokens: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
               no_cache: bool = False, replay_dir: str | os.PathLike[str] | None = None,
               record_dir: str | os.PathLike[str] | None = None, **kw: Any) -> Coder:
    """Build a coder.

    Args:
        kind: ``openai``, ``replay`` or ``offline``.
        model: the LLM (``openai`` only; default :data:`DEFAULT_MODEL`).
        base_url: the endpoint (default ``$OPENAI_BASE_URL``).
        api_key: the key (default ``$OPENAI_API_KEY``).
        temperature: sampling temperature.
        max_tokens: total token budget of the run (prompt + completion).
        cache_dir: the response cache (default :func:`default_cache_dir`).
        no_cache: send every request, read and write no cache.
        replay_dir: the run directory to replay (``replay`` only).
        record_dir: the run directory every exchange is recorded into (``exchanges/``).
        **kw: passed to the coder's constructor (e.g. ``timeout_s``, ``max_retries``).

    Raises:
        CoderError: unknown kind (with a did-you-mean), or a bad setting for that kind.
    """
    recorder = ExchangeRecorder(record_dir) if record_dir is not None else None
    if kind == "openai":
        cache = None if no_cache else ResponseCache(
            Path(cache_dir) if cache_dir is not None else default_cache_dir())
        return OpenAICoder(model or DEFAULT_MODEL, base_url=base_url, api_key=api_key,
                           temperature=temperature, max_tokens=max_tokens, cache=cache,
                           recorder=recorder, **kw)
    if kind == "replay":
        if replay_dir is None:
            raise CoderError("the replay coder needs the run directory to replay: pass --replay")
        return ReplayCoder(replay_dir, recorder=recorder, **kw)
    if kind == "offline":
        from rewardsmith.coders.offline import OfflineCoder

        coder: Coder = OfflineCoder(**kw)
        return RecordingCoder(coder, recorder) if recorder is not None else coder
    raise CoderError(unknown_coder_message(kind))


def unknown_coder_message(kind: str) -> str:
    """``unknown coder 'x'. Did you mean ...? Known coders: ...`` (for make_coder and the settings)."""
    close = difflib.get_close_matches(kind, CODER_KINDS, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown coder {kind!r}.{hint} Known coders: {', '.join(CODER_KINDS)}."
