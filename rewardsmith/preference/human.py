"""A human teacher: watch two segments side by side, answer on the terminal, resume after a stop.

For each pair, :class:`HumanTeacher` writes a GIF with the two segments playing side by side
("1" left, "2" right; :func:`~rewardsmith.preference.render.side_by_side_gif`), prints its path and
a one-line summary of each segment, and asks::

    [1] left  [2] right  [e]qual  [s]kip  [q]uit:

Every answer is appended to the answers file (JSON lines, flushed and fsynced) *as it comes*,
keyed by a content hash of the two segments' states, so that asking the same queries again after
an interrupt (Ctrl-C, ``q``, end of input) reuses the saved answers and asks only the rest. A pair
asked the other way round reuses its answer flipped. ``q`` and end of input raise
:class:`TeacherInterrupted` (after saving); Ctrl-C raises ``KeyboardInterrupt`` as usual, and
every answer given before it is already on disk.

Labels: 1.0 = left ("1") preferred, 0.0 = right ("2"), 0.5 = equal, NaN = skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from rewardsmith.errors import RewardsmithError
from rewardsmith.preference.render import (
    RenderError,
    make_render_env,
    side_by_side_gif,
    summarize_segment,
)
from rewardsmith.preference.segments import Segment
from rewardsmith.tasks import TaskSpec, get_task

PROMPT = "[1] left  [2] right  [e]qual  [s]kip  [q]uit: "
ANSWERS = {"1": 1.0, "left": 1.0, "l": 1.0, "2": 0.0, "right": 0.0, "r": 0.0, "e": 0.5, "equal": 0.5,
           "=": 0.5, "s": math.nan, "skip": math.nan}
QUIT = {"q", "quit", "exit"}


class TeacherInterrupted(RewardsmithError):
    """The teacher stopped before answering every query (``q`` or end of input).

    Every answer given so far is saved; ask the same queries again to resume.

    Attributes:
        labels: ``(N,)`` the labels known so far (NaN for the queries not answered).
        answered: how many of the N queries have an answer (saved ones included).
    """

    def __init__(self, message: str, labels: np.ndarray, answered: int) -> None:
        super().__init__(message)
        self.labels = labels
        self.answered = answered


def segment_hash(segment: Segment) -> str:
    """A content hash of a segment: sha256 of its states' shape and float64 bytes (16 hex digits)."""
    h = hashlib.sha256(str(segment.states.shape).encode())
    h.update(np.ascontiguousarray(segment.states, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def pair_key(left: Segment, right: Segment) -> str:
    """The answers file's key of one ordered pair: ``"<left hash>-<right hash>"``."""
    return f"{segment_hash(left)}-{segment_hash(right)}"


def load_answers(path: str | Path) -> dict[str, float]:
    """The saved labels by :func:`pair_key` (a later line wins; a torn last line is ignored)."""
    out: dict[str, float] = {}
    path = Path(path)
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
            out[str(rec["key"])] = math.nan if rec["label"] is None else float(rec["label"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash mid-write
    return out


class HumanTeacher:
    """Asks a person on the terminal which of two segments is better, from side-by-side GIFs.

    Args:
        task: the task the segments come from (its variables make the summaries).
        answers: the JSON-lines file answers are appended to and resumed from (None: kept in memory).
        gif_dir: where the GIFs go (default: ``<answers stem>_gifs`` beside ``answers``, or a
            temporary folder).
        input: where answers are read from, line by line (default ``sys.stdin``).
        output: where queries are written (default ``sys.stdout``).
        render: write GIFs (False: summaries only; segments then need no snapshots).
        fps: GIF playback rate (default: real time).
        every: render one step in ``every``.
        size: the longer side of each GIF panel in pixels.

    Attributes:
        asked: queries put to the person by this object; reused: queries answered from the file.
    """

    def __init__(self, task: str | TaskSpec, answers: str | Path | None = None, gif_dir: str | Path | None = None,
                 input: IO[str] | None = None, output: IO[str] | None = None, render: bool = True,
                 fps: float | None = None, every: int = 1, size: int | None = 160) -> None:
        self.task = get_task(task)
        self.answers_path = Path(answers) if answers is not None else None
        if gif_dir is None and render:
            gif_dir = (self.answers_path.with_name(self.answers_path.stem + "_gifs") if self.answers_path
                       else tempfile.mkdtemp(prefix="rewardsmith-gifs-"))
        self.gif_dir = Path(gif_dir) if gif_dir is not None else None
        self.input, self.output = input, output
        self.render, self.fps, self.every, self.size = render, fps, every, size
        self.saved: dict[str, float] = load_answers(self.answers_path) if self.answers_path else {}
        self.asked, self.reused = 0, 0
        self._env: Any = None

    # ---------------------------------------------------------------------------- lookup
    def known(self, left: Segment, right: Segment) -> float | None:
        """The saved label of this pair (flipped when saved the other way round), or None."""
        key = pair_key(left, right)
        if key in self.saved:
            return self.saved[key]
        flipped = key.split("-")[1] + "-" + key.split("-")[0]
        if flipped in self.saved:
            return 1.0 - self.saved[flipped]  # NaN stays NaN
        return None

    # --------------------------------------------------------------------------- asking
    def compare(self, left: Sequence[Segment], right: Sequence[Segment]) -> np.ndarray:
        """``(N,)`` labels for N pairs; saved answers are reused, the rest asked in order.

        Raises:
            TeacherInterrupted: the person typed ``q`` or input ended (answers so far are saved).
        """
        if len(left) != len(right):
            raise ValueError(f"{len(left)} left segments but {len(right)} right ones")
        n = len(left)
        labels = np.full(n, np.nan)
        todo = []
        for i, (a, b) in enumerate(zip(left, right)):
            old = self.known(a, b)
            if old is None:
                todo.append(i)
            else:
                labels[i] = old
        self.reused += n - len(todo)
        for j, i in enumerate(todo):
            again = self.known(left[i], right[i])  # the same pair twice in one call is asked once
            if again is not None:
                labels[i] = again
                continue
            header = f"Query {j + 1}/{len(todo)}" + (f" ({n - len(todo)} answered before)" if n > len(todo) else "")
            label = self._ask(left[i], right[i], header)
            if label is None:
                answered = n - len(todo) + j
                raise TeacherInterrupted(
                    f"the human teacher stopped after {answered} of {n} queries"
                    + (f"; answers are saved in {self.answers_path}: ask again to resume" if self.answers_path
                       else " (no answers file: pass answers= to resume later)"),
                    labels, answered)
            labels[i] = label
        return labels

    def _ask(self, left: Segment, right: Segment, header: str) -> float | None:
        """One query: GIF, summaries, the prompt until a valid answer. None: quit/EOF."""
        out = self.output if self.output is not None else sys.stdout
        inp = self.input if self.input is not None else sys.stdin
        key = pair_key(left, right)
        gif = self._gif(left, right, key)
        lines = [f"{header}: " + (f"watch {gif}" if gif is not None else "(no GIF)"),
                 f"  1 (left):  {summarize_segment(self.task, left)}",
                 f"  2 (right): {summarize_segment(self.task, right)}"]
        out.write("\n".join(lines) + "\n")
        while True:
            out.write(PROMPT)
            out.flush()
            line = inp.readline()
            if not line:  # end of input
                out.write("\n")
                out.flush()
                return None
            word = line.strip().lower()
            if word in QUIT:
                return None
            if word in ANSWERS:
                label = ANSWERS[word]
                self._save(key, label, word, left, right, gif)
                self.asked += 1
                return label
            out.write(f"{line.strip()!r} is not an answer: type 1 (left is better), 2 (right is better), "
                      "e (equal), s (skip) or q (quit)\n")

    def _gif(self, left: Segment, right: Segment, key: str) -> Path | None:
        if not self.render:
            return None
        assert self.gif_dir is not None
        if self._env is None:
            self._env = make_render_env(self.task, self.size)
        try:
            return side_by_side_gif(self.task, left, right, self.gif_dir / f"{key}.gif", fps=self.fps,
                                    every=self.every, size=self.size, env=self._env)
        except RenderError as exc:
            raise RenderError(f"{exc} (HumanTeacher(render=False) asks from the text summaries alone)") from exc

    def _save(self, key: str, label: float, answer: str, left: Segment, right: Segment, gif: Path | None) -> None:
        """Remember one answer and append it to the answers file at once (flush + fsync)."""
        self.saved[key] = label
        if self.answers_path is None:
            return
        rec = {"key": key, "label": None if math.isnan(label) else label, "answer": answer,
               "left_origin": left.origin, "right_origin": right.origin, "task": self.task.ref,
               "gif": str(gif) if gif is not None else None, "time": time.time()}
        self.answers_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.answers_path, "a+b") as fh:
            torn = False
            if fh.seek(0, os.SEEK_END) > 0:  # a line cut by a crash must not swallow this one
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
            fh.write((("\n" if torn else "") + json.dumps(rec) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())

    def close(self) -> None:
        """Close the rendering env (made on the first GIF)."""
        if self._env is not None:
            self._env.close()
            self._env = None

    def __repr__(self) -> str:
        return f"HumanTeacher({self.task.name!r}, answers={str(self.answers_path) if self.answers_path else None!r})"


__all__ = ["PROMPT", "HumanTeacher", "TeacherInterrupted", "load_answers", "pair_key", "segment_hash"]
