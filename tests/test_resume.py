"""The loop survives what users do to it: endless rewards, kill -9, files cut short."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_executor import FINE, HANGS_LATE, TIMED

from rewardsmith.coders.base import Completion, Usage
from rewardsmith.loop import SynthesisConfig, synthesize
from rewardsmith.tasks import register_task


class ScriptedCoder:
    """Answers every request with the next scripted programs (a real Coder, no LLM)."""

    name = "scripted"

    def __init__(self, programs: list[str]) -> None:
        self.programs = programs
        self.usage = Usage()

    def complete(self, messages, n=1, context=None):
        self.usage.requests += 1
        return [Completion(text=f"```python\n{self.programs[i % len(self.programs)]}\n```") for i in range(n)]


def test_reward_that_hangs_only_in_training_is_reported_out_of_time(tmp_path: Path) -> None:
    register_task(TIMED, overwrite=True)
    out = tmp_path / "run"
    lines: list[str] = []
    # the pre-screen would catch this reward on its stored states (next test): off, training must
    summary = synthesize(SynthesisConfig(task=TIMED.name, iterations=1, samples=2, steps=512, workers=2, n_envs=2,
                                         eval_episodes=1, final_seeds=1, baselines=False, time_limit=25,
                                         screen="off"),
                         out=out, coder=ScriptedCoder([HANGS_LATE, FINE]), log=lines.append)
    results = json.loads((out / "rounds" / "r00" / "results.json").read_text())
    assert [c["status"] for c in results] == ["timeout", "trained"]
    assert "ran out of time" in results[0]["error"] and results[0]["stage"] == "timeout"
    assert summary["best"]["index"] == 1 and summary["best"]["fitness_mean"] is not None
    assert json.loads((out / "rounds" / "r00" / "c00" / "failure.json").read_text())["status"] == "timeout"
    assert any("ran out of time" in line for line in lines)
    # resuming does not spend the time limit again
    t0 = time.perf_counter()
    again = synthesize(resume=out, coder=ScriptedCoder([HANGS_LATE, FINE]), log=lambda _: None)
    assert time.perf_counter() - t0 < 20 and again["best"]["index"] == 1


def test_the_pre_screen_kills_a_reward_endless_on_stored_states(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The screen runs programs on stored states in the loop's own process: an endless one must not hang it."""
    from rewardsmith import screen

    monkeypatch.setattr(screen, "TIMEOUT_S", 5.0)
    register_task(TIMED, overwrite=True)
    out = tmp_path / "run"
    t0 = time.perf_counter()
    summary = synthesize(SynthesisConfig(task=TIMED.name, iterations=1, samples=2, steps=512, workers=2, n_envs=2,
                                         eval_episodes=1, final_seeds=1, baselines=False, time_limit=25),
                         out=out, coder=ScriptedCoder([HANGS_LATE, FINE]), log=lambda _: None)
    assert time.perf_counter() - t0 < 120
    results = json.loads((out / "rounds" / "r00" / "results.json").read_text())
    assert [c["status"] for c in results] == ["rejected", "trained"]
    assert results[0]["stage"] == "screen" and "did not return within 5 s" in results[0]["error"]
    assert summary["best"]["index"] == 1
    assert not (out / "rounds" / "r00" / "c00" / "result.json").exists()  # never trained


_RUN = """
import sys
from rewardsmith.loop import SynthesisConfig, synthesize
synthesize(SynthesisConfig(task="inverted-pendulum", iterations=1, samples=2, steps=512, workers=1, n_envs=2,
                           eval_episodes=2, final_seeds=3, baselines=False), out=sys.argv[1], log=print)
"""


def _wait_for(path: Path, proc: subprocess.Popen, within: float = 240) -> None:
    deadline = time.time() + within
    while not path.is_file():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill -9 semantics")
def test_kill_9_and_a_cut_result_file_resume_and_complete(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _RUN, str(out)], env={**os.environ}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait_for(out / "final" / "seed0" / "result.json", proc)  # final seeds: 0, 100, 200
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert not (out / "summary.json").exists()
    c0, c1 = (out / "rounds" / "r00" / f"c{i:02d}" / "result.json" for i in (0, 1))
    f0 = out / "final" / "seed0" / "result.json"
    kept = {p: p.stat().st_mtime_ns for p in (c0, f0)}
    c1.write_text(c1.read_text()[:57])  # cut short, as a full disk or a kill mid-copy leaves it
    summary = synthesize(resume=out, log=lambda _: None)
    assert {p: p.stat().st_mtime_ns for p in (c0, f0)} == kept, "intact trainings are reused"
    assert json.loads(c1.read_text())["seed"] == 100_100, "the cut file's training is redone"
    assert summary["best"]["n"] == 3 and (out / "summary.json").is_file()
    events = [json.loads(line)["event"] for line in (out / "events.jsonl").read_text().splitlines() if line]
    assert "resume" in events and events[-1] == "done"
