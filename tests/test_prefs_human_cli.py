"""`rewardsmith prefs --teacher human` driven through a real terminal: answer, quit, resume."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pexpect = pytest.importorskip("pexpect")

PROMPT = "[1] left  [2] right  [e]qual  [s]kip  [q]uit: "


def _spawn(args: list[str], cwd: Path):
    exe = shutil.which("rewardsmith")
    cmd, argv = (exe, args) if exe else (sys.executable, ["-m", "rewardsmith.cli", *args])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return pexpect.spawn(cmd, argv, env=env, encoding="utf-8", timeout=180, cwd=str(cwd))


def test_human_prefs_session_quits_and_resumes_from_the_terminal(tmp_path: Path) -> None:
    run = tmp_path / "run"
    child = _spawn(["prefs", "--task", "mountain-car", "--teacher", "human", "--queries", "3", "--updates", "1",
                    "--steps", "256", "--episodes", "2", "--segment", "10", "--out", str(run)], tmp_path)
    child.expect(r"Query 1/1: watch (\S+\.gif)")  # iteration 0: one query on random-policy segments
    first_gif = Path(child.match.group(1))
    child.expect_exact(PROMPT)
    child.sendline("1")
    child.expect(r"iteration 0/1: \d+ steps, 1 labels")
    child.expect(r"Query 1/2: watch \S+\.gif")  # iteration 1: two queries on the trained policy's segments
    child.expect_exact(PROMPT)
    child.sendline("2")
    child.expect(r"Query 2/2: watch \S+\.gif")
    child.expect_exact(PROMPT)
    child.sendline("q")
    child.expect(r"prefs --resume \S+")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert first_gif.is_file() and first_gif.parent == run / "gifs"
    answers = [json.loads(x) for x in (run / "answers.jsonl").read_text().splitlines()]
    assert [a["answer"] for a in answers] == ["1", "2"]
    assert (run / "queries" / "i01.pending.npz").is_file() and not (run / "queries" / "i01.npz").exists()

    child = _spawn(["prefs", "--resume", str(run)], tmp_path)
    child.expect(r"Query 1/1 \(1 answered before\): watch \S+\.gif")  # only the unanswered pair
    child.expect_exact(PROMPT)
    child.sendline("e")
    child.expect(r"final true fitness \S+ ± \S+ after \d+ steps and 3 answered queries \(human teacher")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    with np.load(run / "queries" / "i01.npz") as d:
        assert d["label"].tolist() == [0.0, 0.5]
    with np.load(run / "queries" / "i00.npz") as d:
        assert d["label"].tolist() == [1.0]
    assert json.loads((run / "summary.json").read_text())["queries"] == 3
