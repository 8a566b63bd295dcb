"""The reward-coder loop end to end, on tiny budgets: offline coder, a loopback LLM, resume."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from openai_stub import StubServer, html_page, length_cut, ok, refusal, serve

from rewardsmith.errors import RewardsmithError
from rewardsmith.loop import SynthesisConfig, synthesize

TINY = {"task": "inverted-pendulum", "steps": 512, "workers": 1, "n_envs": 2, "eval_episodes": 2}
GOOD = '''Balance the pole, stay centred.

```python
def compute_reward(pole_angle, cart_position, action):
    upright = 1.0 - abs(pole_angle)
    centre = -0.01 * cart_position * cart_position
    return upright + centre, {"upright": upright, "centre": centre}
```
'''
BROKEN = '''```python
def compute_reward(pole_angle):
    while True:
        pass
```
'''


@pytest.fixture(scope="module")
def _server() -> Iterator[StubServer]:
    with serve() as server:
        yield server


@pytest.fixture
def stub(_server: StubServer, monkeypatch: pytest.MonkeyPatch) -> StubServer:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    _server.requests.clear()
    _server._script.clear()
    _server.n_supported = True
    return _server


def test_offline_loop_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    lines: list[str] = []
    # screen=flag: every candidate trains (the default screen may reject a near-duplicate; tests/test_screen.py)
    summary = synthesize(SynthesisConfig(**TINY, iterations=2, samples=2, final_seeds=2, screen="flag"), out=out,
                         log=lines.append)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["task"] == "inverted-pendulum" == summary["task"]
    for key in ("fitness_mean", "fitness_std", "source"):
        assert on_disk["best"][key] is not None
    assert on_disk["baselines"]["human"]["n"] == 2 and on_disk["baselines"]["sparse"]["n"] == 2
    assert on_disk["hns"] is None or isinstance(on_disk["hns"], float)
    assert on_disk["tokens"] == {"prompt": 0, "completion": 0} and on_disk["requests"] >= 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["coder"] == "offline" and "torch" in manifest["versions"]
    events = [json.loads(line)["event"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "done" and events.count("round_done") == 2
    assert list((out / "exchanges").glob("*.json")), "every prompt and response is recorded"
    for r in ("r00", "r01"):
        for c in ("c00", "c01"):
            assert (out / "rounds" / r / c / "reward.py").is_file()
            assert (out / "rounds" / r / c / "result.json").is_file()
    # round 2's prompt carries the reflection on round 1's best candidate
    prompt = json.loads((out / "rounds" / "r01" / "prompt.json").read_text())
    assert "Reward components at ~10 checkpoints" in prompt[1]["content"]
    # best_reward.py is standalone and importable
    spec = importlib.util.spec_from_file_location("best_reward", on_disk["best"]["source"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    total, comps = module.compute_reward(**{p: 0.0 if p != "action" else np.zeros(1)
                                           for p in module.compute_reward.__code__.co_varnames[
                                               : module.compute_reward.__code__.co_argcount]})
    assert np.isfinite(total) and comps
    assert any("round 2/2" in line for line in lines)
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG" and on_disk["report"] == str(out / "report.png")


def test_llm_loop_repairs_and_rerun_sends_zero_requests(tmp_path: Path, stub: StubServer) -> None:
    stub.push(ok(BROKEN), ok(GOOD))
    config = SynthesisConfig(**TINY, coder="openai", base_url=stub.url, model="stub-model", iterations=1,
                             samples=1, final_seeds=1, baselines=False)
    first = synthesize(config, out=tmp_path / "a", log=lambda _: None)
    assert len(stub.requests) == 2
    repair = stub.requests[1]["body"]["messages"]
    assert "while loops are not allowed" in repair[-1]["content"], "the precise error reaches the model"
    assert repair[-2]["role"] == "assistant" and "while True" in repair[-2]["content"]
    assert first["requests"] == 2 and first["tokens"]["prompt"] > 0 and first["tokens"]["completion"] > 0
    assert first["best"]["components"] == ["upright", "centre"]
    cands = json.loads((tmp_path / "a" / "rounds" / "r00" / "candidates.json").read_text())
    assert cands[0]["attempts"][0]["stage"] == "validate" and cands[0]["attempts"][1]["ok"]
    # a rerun in a new directory is served from the response cache: zero requests
    second = synthesize(config, out=tmp_path / "b", log=lambda _: None)
    assert len(stub.requests) == 2
    assert second["requests"] == 0 and second["cache_hits"] >= 1
    assert second["best"]["search_fitness"] == pytest.approx(first["best"]["search_fitness"])


def test_replay_coder_reruns_offline(tmp_path: Path, stub: StubServer) -> None:
    stub.push(ok(GOOD))
    config = SynthesisConfig(**TINY, coder="openai", base_url=stub.url, model="stub-model", iterations=1,
                             samples=1, final_seeds=1, baselines=False, no_cache=True)
    synthesize(config, out=tmp_path / "a", log=lambda _: None)
    n = len(stub.requests)
    replay = SynthesisConfig(**TINY, coder="replay", replay_dir=str(tmp_path / "a"), iterations=1, samples=1,
                             final_seeds=1, baselines=False)
    summary = synthesize(replay, out=tmp_path / "b", log=lambda _: None, progress=True)
    assert len(stub.requests) == n and summary["best"]["components"] == ["upright", "centre"]


class _Killed(Exception):
    pass


def test_killed_run_resumes_without_redoing_work(tmp_path: Path) -> None:
    out = tmp_path / "run"

    def die_at_final(line: str) -> None:
        if line.startswith("final:"):
            raise _Killed

    with pytest.raises(_Killed):
        synthesize(SynthesisConfig(**TINY, iterations=2, samples=1, final_seeds=1), out=out, log=die_at_final)
    done = {p: p.stat().st_mtime_ns for p in (out / "rounds").rglob("result.json")}
    assert len(done) == 2 and not (out / "summary.json").exists()
    lines: list[str] = []
    summary = synthesize(resume=out, log=lines.append)
    assert {p: p.stat().st_mtime_ns for p in (out / "rounds").rglob("result.json")} == done
    assert any("resuming" in line for line in lines)
    assert summary["best"]["fitness_mean"] is not None and (out / "summary.json").is_file()
    assert "resume" in (out / "events.jsonl").read_text()
    with pytest.raises(RewardsmithError, match="already holds a run"):
        synthesize(SynthesisConfig(**TINY), out=out)
    with pytest.raises(RewardsmithError, match="not a rewardsmith run"):
        synthesize(resume=tmp_path)


def test_interactive_feedback_reaches_the_next_round(tmp_path: Path) -> None:
    seen: list[list[dict]] = []

    def ask(round_idx: int, cands: list) -> str | None:
        seen.append(cands)
        return "more pole angle upright please" if round_idx == 0 else None

    out = tmp_path / "run"
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "human_feedback.j2").write_text("RESEARCHER SAYS: {{ feedback }}\n")
    synthesize(SynthesisConfig(**TINY, iterations=2, samples=1, final_seeds=1, baselines=False, gif_frames=3,
                               feedback="keep the cart centred", prompts_dir=str(prompts)),
               out=out, log=lambda _: None, ask_feedback=ask)
    assert len(seen) == 2
    gif = Path(seen[0][0].gif)
    assert gif.is_file() and gif.read_bytes()[:3] == b"GIF"
    second = json.loads((out / "rounds" / "r01" / "prompt.json").read_text())[1]["content"]
    assert "keep the cart centred" in second and "more pole angle upright please" in second
    assert "RESEARCHER SAYS: keep the cart centred" in second  # --prompts overrides a template by name
    first = json.loads((out / "rounds" / "r00" / "prompt.json").read_text())[1]["content"]
    assert "keep the cart centred" in first and "more pole angle" not in first


def test_early_stop_only_when_nothing_is_left_to_gain(tmp_path: Path) -> None:
    from rewardsmith.candidate import Candidate
    from rewardsmith.coders.offline import OfflineCoder
    from rewardsmith.loop import RunDir, Synthesizer

    loop = Synthesizer(SynthesisConfig(**TINY), RunDir(tmp_path), coder=OfflineCoder())
    assert not loop._solved()
    loop.history = [Candidate(0, 0, fitness_mean=1000.0, fitness_std=0.0)]
    assert loop._solved()  # every evaluation episode lasted the whole 1000-step limit
    loop.history[0].fitness_std = 5.0
    assert not loop._solved()
    hopper = Synthesizer(SynthesisConfig(**{**TINY, "task": "hopper-forward"}), RunDir(tmp_path / "h"),
                         coder=OfflineCoder())
    hopper.history = [Candidate(0, 0, fitness_mean=1000.0, fitness_std=0.0)]
    assert not hopper._solved()  # distance has no ceiling


def test_malformed_answers_never_stop_the_run(tmp_path: Path, stub: StubServer) -> None:
    """Transient HTML is retried; a refusal and a reply cut at the length limit go to repair."""
    stub.push(html_page(), refusal(None), ok(GOOD), length_cut(), ok(GOOD))
    config = SynthesisConfig(**TINY, coder="openai", base_url=stub.url, model="stub-model", iterations=2,
                             samples=1, final_seeds=1, baselines=False, no_cache=True, stop_when_solved=False,
                             screen="flag")  # round 2 repeats round 1's program: the default screen rejects it
    summary = synthesize(config, out=tmp_path / "run", log=lambda _: None)
    for r in ("r00", "r01"):
        cand = json.loads((tmp_path / "run" / "rounds" / r / "candidates.json").read_text())[0]
        assert cand["attempts"][0]["stage"] == "sample" and cand["attempts"][1]["ok"], cand
        assert cand["status"] in ("accepted", "trained")
    assert summary["best"]["fitness_mean"] is not None
