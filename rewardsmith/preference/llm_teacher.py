"""An LLM teacher: reads two segments as text and says which better achieves the task.

Each segment is shown as one line per reward-state variable (start, end, mean, min and max over
the segment, with units; :func:`~rewardsmith.preference.render.describe_segment`), beside the
task's description and its variables' meanings (``prompts/pref_compare.j2``). The LLM is asked
through the coder protocol (:class:`~rewardsmith.coders.Coder`), one request per pair, and must
end its reply with ``Answer: 1``, ``Answer: 2`` or ``Answer: equal`` (:func:`parse_verdict` is
tolerant of markdown, ``Segment 2``, ``tie`` and a bare last line ``2``). An unusable reply (no
verdict, a refusal, a reply cut at the length limit) is answered with a request for the verdict
line, up to ``max_retries`` times; then the pair is skipped (NaN) and the reason recorded in
:attr:`LLMTeacher.errors`.

A :class:`~rewardsmith.coders.CoderError` (dead endpoint, bad key, budget spent) is raised: it is
a setting to fix, not an answer. The OpenAI coder caches every exchange on disk, so asking the
same pairs again after fixing it sends no request twice.

Labels: 1.0 = segment 1 (left) preferred, 0.0 = segment 2 (right), 0.5 = equal, NaN = skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rewardsmith.coders import CODER_KINDS, Coder, CoderError, default_coder_kind, make_coder
from rewardsmith.preference.render import describe_segment
from rewardsmith.preference.segments import Segment
from rewardsmith.prompting import render_prompt
from rewardsmith.tasks import TaskSpec, get_task

REASK = ("I could not find your verdict. Reply with exactly one line: `Answer: 1` if segment 1 better "
         "achieves the task, `Answer: 2` if segment 2 does, or `Answer: equal`.")
_WORDS = {"1": 1.0, "one": 1.0, "first": 1.0, "left": 1.0, "2": 0.0, "two": 0.0, "second": 0.0, "right": 0.0,
          "equal": 0.5, "equally": 0.5, "tie": 0.5, "same": 0.5, "neither": 0.5, "both": 0.5}
_CHOICE = r"(?:segment\s*|#)?(1|2|one|two|first|second|left|right|equal(?:ly)?|tie|same|neither|both)\b"
_VERDICT = re.compile(r"\b(?:answer|verdict|preference|preferred)\s*(?:is\s*)?[:=\-]?\s*[*_`\"'(\[]*\s*" + _CHOICE,
                      re.IGNORECASE)
_BARE = re.compile(r"[*_`\"'(\[\s]*" + _CHOICE + r"[*_`\"')\].!\s]*", re.IGNORECASE)


def parse_verdict(text: str) -> float | None:
    """The label a reply ends with: 1.0 (segment 1), 0.0 (segment 2), 0.5 (equal), or None.

    The last ``Answer: X`` in the reply wins (also ``**Answer:** 2``, ``answer is segment 1``,
    ``Verdict: tie``); failing that, a last non-empty line that is only the choice (``2``,
    ``Segment 1.``, ``Equal``).
    """
    matches = _VERDICT.findall(text or "")
    if matches:
        return _WORDS[matches[-1].lower()]
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if lines:
        bare = _BARE.fullmatch(lines[-1])
        if bare:
            return _WORDS[bare.group(1).lower()]
    return None


def default_judge() -> Coder:
    """The OpenAI coder at temperature 0, when ``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` is set.

    Raises:
        CoderError: no LLM endpoint is configured.
    """
    if default_coder_kind() != "openai":
        raise CoderError("the llm teacher needs an LLM endpoint: set OPENAI_BASE_URL (any OpenAI-compatible "
                         "server: vLLM, Ollama, llama.cpp) and/or OPENAI_API_KEY, or pass coder=; without an "
                         "LLM, use the scripted teacher (or the human one)")
    return make_coder("openai", temperature=0.0)


def _coder(coder: Coder | str | None) -> Coder:
    if coder is None:
        return default_judge()
    if isinstance(coder, str):
        if coder == "offline":
            raise CoderError("the offline coder writes reward programs and cannot judge segments: the llm "
                             "teacher needs an LLM endpoint (coder='openai' with OPENAI_BASE_URL/OPENAI_API_KEY)")
        if coder not in CODER_KINDS:
            raise CoderError(f"unknown coder {coder!r} for the llm teacher: use 'openai' or a Coder object")
        return make_coder(coder, **({"temperature": 0.0} if coder == "openai" else {}))
    if not callable(getattr(coder, "complete", None)):
        raise TypeError(f"coder must be a Coder (with complete()), a coder kind or None, got {coder!r}")
    return coder


class LLMTeacher:
    """Labels pairs of segments by asking an LLM which better achieves the task.

    Args:
        task: the task the segments come from (its description and variables go into the prompt).
        coder: a :class:`~rewardsmith.coders.Coder`, a coder kind (``"openai"``), or None: the
            OpenAI coder when ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` is set (else
            :class:`~rewardsmith.coders.CoderError` at once).
        render: ``render(task, segment) -> str``, the text a segment is shown as (default:
            :func:`~rewardsmith.preference.render.describe_segment` with ``decimals``).
        max_retries: re-asks of one pair after an unusable reply, before it is skipped (NaN).
        prompts_dir: a folder whose ``pref_compare.j2`` overrides the shipped template.
        decimals: rounding of the default description.

    Attributes:
        errors: one line per skipped pair: which pair and why.
        requests: requests sent through the coder.
        history: per pair asked: ``{"pair", "messages"`` (the first request), ``"replies", "label"}``.
    """

    def __init__(self, task: str | TaskSpec, coder: Coder | str | None = None,
                 render: Callable[[TaskSpec, Segment], str] | None = None, max_retries: int = 2,
                 prompts_dir: str | None = None, decimals: int = 3) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.task = get_task(task)
        self.render = render if render is not None else (lambda t, s: describe_segment(t, s, decimals))
        self.max_retries, self.prompts_dir = int(max_retries), prompts_dir
        self.coder = _coder(coder)
        self.errors: list[str] = []
        self.requests = 0
        self.history: list[dict[str, Any]] = []

    def messages(self, left: Segment, right: Segment) -> list[dict[str, str]]:
        """The chat messages that ask for one pair's verdict."""
        text = render_prompt("pref_compare", self.prompts_dir, task=self.task,
                             left=self.render(self.task, left), right=self.render(self.task, right),
                             left_steps=left.length, right_steps=right.length)
        return [{"role": "user", "content": text}]

    def compare(self, left: Sequence[Segment], right: Sequence[Segment]) -> np.ndarray:
        """``(N,)`` labels, one request (plus re-asks) per pair; NaN where no verdict came.

        Raises:
            CoderError: the coder failed (dead endpoint, bad key, budget spent).
        """
        if len(left) != len(right):
            raise ValueError(f"{len(left)} left segments but {len(right)} right ones")
        return np.array([self._judge(i, a, b) for i, (a, b) in enumerate(zip(left, right))], dtype=np.float64)

    def _judge(self, index: int, left: Segment, right: Segment) -> float:
        messages = self.messages(left, right)
        record: dict[str, Any] = {"pair": index, "messages": messages, "replies": [], "label": math.nan}
        self.history.append(record)
        why = ""
        for _ in range(1 + self.max_retries):
            self.requests += 1
            try:
                [reply] = self.coder.complete(messages, n=1)
            except CoderError as exc:
                raise CoderError(f"the llm teacher could not ask pair {index}: {exc}") from exc
            record["replies"].append(reply.text)
            label = None if reply.failed else parse_verdict(reply.text)
            if label is not None:
                record["label"] = label
                return label
            excerpt = " ".join((reply.text or "").split())
            excerpt = excerpt if len(excerpt) <= 80 else excerpt[:77] + "..."
            why = f"failed sample: {reply.error}" if reply.failed else f"no verdict in the reply {excerpt!r}"
            # the re-ask carries the bad reply, so it is a new request (a cache would repeat the old one)
            messages = [*messages, {"role": "assistant", "content": reply.text or "(no reply)"},
                        {"role": "user", "content": REASK}]
        tries = 1 + self.max_retries
        self.errors.append(f"pair {index}: skipped after {tries} {'reply' if tries == 1 else 'replies'} "
                           f"without a verdict (last: {why})")
        return math.nan

    def __repr__(self) -> str:
        return f"LLMTeacher({self.task.name!r}, coder={getattr(self.coder, 'name', type(self.coder).__name__)!r})"


__all__ = ["REASK", "LLMTeacher", "default_judge", "parse_verdict"]
