"""Replay the exchanges recorded in an earlier run directory, offline."""

from __future__ import annotations

import os
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from rewardsmith.coders.base import CoderContext, CoderError, Completion, Usage
from rewardsmith.coders.cache import completion_from_dict, request_key
from rewardsmith.coders.recorder import ExchangeRecorder, exchanges_dir, load_exchanges

__all__ = ["ReplayCoder"]


def _match_key(messages: list[dict[str, str]], n: int) -> str:
    return request_key({"messages": messages, "n": n})


class ReplayCoder:
    """Answers each request with the responses recorded for the identical request.

    Requests match on their messages and ``n`` (not the model or temperature, which are the
    recorded run's); the k-th identical request gets the k-th recorded answer.

    Args:
        run_dir: an earlier run directory (or its ``exchanges/`` folder).
        recorder: also record the replayed exchanges (``cached=True``) into a new run directory.

    Raises:
        CoderError: the directory holds no recorded exchanges.
    """

    name = "replay"

    def __init__(self, run_dir: str | os.PathLike[str],
                 recorder: ExchangeRecorder | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.recorder = recorder
        self.usage = Usage()
        exchanges = load_exchanges(self.run_dir)
        if not exchanges:
            raise CoderError(
                f"no recorded exchanges in {exchanges_dir(self.run_dir)}; pass the directory of "
                "a run made with an LLM coder")
        self._queue: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        for ex in exchanges:
            req = ex["request"]
            self._queue[_match_key(req["messages"], int(req.get("n", 1)))].append(ex)
        self.model = str(exchanges[0]["request"].get("model", ""))
        self.temperature = exchanges[0]["request"].get("temperature")

    def complete(self, messages: list[dict[str, str]], n: int = 1,
                 context: CoderContext | None = None) -> list[Completion]:
        """The recorded responses for this exact request (``cached=True``, 0 tokens).

        Raises:
            CoderError: no recorded response for this request (the prompts changed?).
        """
        queue = self._queue.get(_match_key(messages, n))
        if not queue:
            raise CoderError(
                f"no recorded response for this request in {self.run_dir} (the prompts "
                "changed?); rerun with an LLM coder, or replay the run it was recorded from")
        exchange = queue.popleft()
        completions = [completion_from_dict(d) for d in exchange["responses"]][:n]
        if len(completions) < n:
            raise CoderError(f"the recorded exchange in {self.run_dir} has {len(completions)} "
                             f"responses, {n} requested")
        self.usage.cache_hits += 1
        if self.recorder is not None:
            self.recorder.record(exchange["request"], completions, cached=True)
        return completions
