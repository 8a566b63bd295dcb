"""The run directory of ``synthesize``: every file written atomically, every read tolerant.

Layout::

    manifest.json            the settings (task pinned as name@version) and library versions
    events.jsonl             one line per event (start, responses, round_done, resume, error, done)
    exchanges/               every prompt and response (the coder's recorder)
    rounds/rNN/prompt.json   the round's messages
    rounds/rNN/candidates.json  the accepted / rejected candidates, before training
    rounds/rNN/cMM/          reward.py, result.json, model, TensorBoard logs (failure.json if it failed)
    rounds/rNN/results.json  the candidates after training and reflection
    final/, baselines/       the re-training of the best program and the baselines
    summary.json, best_reward.py, report.png

A file cut short (a killed process, a full disk) reads as missing, so its work is redone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rewardsmith.fsutil import atomic_write_json, atomic_write_text, read_json


class RunDir:
    """A run directory (created if needed)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def event(self, kind: str, **data: Any) -> None:
        """Append one line to ``events.jsonl`` (a line cut short by a kill is skipped by :meth:`events`)."""
        with open(self.path / "events.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"t": round(time.time(), 3), "event": kind, **data}, default=str) + "\n")

    def events(self) -> list[dict[str, Any]]:
        """Every readable event, in order."""
        out = []
        try:
            lines = (self.path / "events.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def write_json(self, rel: str, data: Any) -> Path:
        """Write ``data`` as JSON at ``rel``, atomically."""
        return atomic_write_json(self.path / rel, data)

    def write_text(self, rel: str, text: str) -> Path:
        """Write ``text`` at ``rel``, atomically."""
        return atomic_write_text(self.path / rel, text)

    def read_json(self, rel: str) -> Any:
        """The JSON at ``rel``; None when missing or unreadable."""
        return read_json(self.path / rel)


__all__ = ["RunDir"]
