"""The coder protocol: messages in, n responses out.

A coder writes reward programs. Every backend (an OpenAI-compatible endpoint, the built-in
offline coder, replay of a recorded run) implements :class:`Coder`. Coders know nothing of
training; the loop gives them chat messages and, optionally, a structured :class:`CoderContext`
(which only the offline coder reads: an LLM gets everything it needs in the messages).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rewardsmith.errors import RewardsmithError


class CoderError(RewardsmithError):
    """A coder could not answer (dead endpoint, bad key, unknown model, budget spent, ...)."""


@dataclass
class Completion:
    """One response.

    Attributes:
        text: the raw response text (prose and code blocks).
        prompt_tokens, completion_tokens: tokens this response cost (0 for offline / cached).
        cached: whether it came from the response cache or a replay (no request sent).
        model: the model that wrote it.
        error: ``None`` for a usable answer; else why this is a *failed sample* (a refusal, a
            reply cut at the length limit, an empty reply), one line: the caller rejects it and
            may send that line back in a repair request. ``text`` then holds whatever came back
            (the cut-off part, a refusal's wording, or ``""``) and must not be used as a program.
        finish_reason: the server's ``finish_reason`` (``stop``, ``length``, ...), if it gave one.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    model: str = ""
    error: str | None = None
    finish_reason: str | None = None

    @property
    def failed(self) -> bool:
        """Whether this is a failed sample (see :attr:`error`)."""
        return self.error is not None


@dataclass
class Usage:
    """Running totals for a coder."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready copy."""
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cache_hits": self.cache_hits}


@dataclass
class CoderContext:
    """Structured facts beside the messages (read by the offline coder only).

    Attributes:
        task: the :class:`~rewardsmith.tasks.TaskSpec`.
        round: 0-based iteration of the loop.
        seed: seed for any randomness in the coder.
        history: per earlier candidate: ``{"source", "fitness", "ok", "error", "reflection"}``
            (``reflection`` is the structured statistics the reflection text was made from).
        human_feedback: free text from the user, if any.
        repair_of: the source being repaired when this is an error-repair request.
        error: the error being repaired.
        shaping: ``"potential"`` when the loop asks for shaping potentials (``compute_potential``)
            instead of reward programs, else ``"none"``.
        preference: with ``select="preference"`` (ICPL), the teacher's verdict on the last ranked
            round: ``{"preferred", "rejected"}`` (sources; rejected may be None), ``"order"``
            (names, best first), ``"informative"`` (False when every comparison was skipped) and
            ``"preferred_trace"`` / ``"rejected_trace"`` (see :func:`rewardsmith.icpl.reward_trace`).
            The history then carries no fitness and no reflection: a human teacher gives none.
    """

    task: Any
    round: int = 0
    seed: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    human_feedback: str | None = None
    repair_of: str | None = None
    error: str | None = None
    shaping: str = "none"
    preference: dict[str, Any] | None = None


@runtime_checkable
class Coder(Protocol):
    """Anything that turns chat messages into ``n`` responses."""

    name: str
    usage: Usage

    def complete(self, messages: list[dict[str, str]], n: int = 1,
                 context: CoderContext | None = None) -> list[Completion]:
        """Return ``n`` completions for ``messages`` (``[{"role": ..., "content": ...}]``)."""
        ...
