"""The rewardsmith exception tree.

Every error a user can cause is a :class:`RewardsmithError` whose message says what failed and
how to fix it. The CLI prints the message as one line and exits with status 1.
"""

from __future__ import annotations

import difflib


class RewardsmithError(Exception):
    """Base class of every error rewardsmith raises on purpose."""


class TaskNotFoundError(RewardsmithError, KeyError):
    """An unknown task name."""

    def __init__(self, name: str, known: list[str]) -> None:
        words = {k.split("-")[0]: k for k in sorted(known)}
        close = [k for k in sorted(known) if k.startswith(name) or name in k][:1]
        close = close or difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        close = close or [words[w] for w in difflib.get_close_matches(name, list(words), n=1)]
        close = close or difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"unknown task {name!r}.{hint} Known tasks: {', '.join(sorted(known))} "
            "(`rewardsmith tasks` lists them)."
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class TaskSpecError(RewardsmithError, ValueError):
    """A malformed task definition (bad variable source, duplicate name, ...)."""


class RewardProgramError(RewardsmithError, ValueError):
    """A reward program was rejected.

    Attributes:
        stage: where it was rejected: ``parse``, ``validate``, ``signature``, ``compile`` or ``probe``.
        line: the 1-based source line at fault, when known.
    """

    def __init__(self, stage: str, message: str, line: int | None = None) -> None:
        self.stage = stage
        self.line = line
        self.detail = message
        where = f" (line {line})" if line else ""
        super().__init__(f"{stage} error{where}: {message}")


class TrainingError(RewardsmithError, RuntimeError):
    """Training could not start or finish (bad algorithm, device, budget, ...)."""
