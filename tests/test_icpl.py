"""Preference selection (ICPL): rankings, the teacher's choice, the coder's feedback, resume, tiny budgets."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from openai_stub import StubServer, ok, serve
from typer.testing import CliRunner

from rewardsmith.candidate import Candidate
from rewardsmith.coders.base import CoderContext
from rewardsmith.coders.offline import OfflineCoder, parse_terms
from rewardsmith.errors import RewardsmithError
from rewardsmith.icpl import Ranking, rank, select_by_preference
from rewardsmith.loop import SynthesisConfig, synthesize
from rewardsmith.preference.segments import Segment
from rewardsmith.preference.teaching import RewardTeacher
from rewardsmith.tasks import get_task

TINY = {"task": "inverted-pendulum", "steps": 512, "workers": 1, "n_envs": 2, "eval_episodes": 2,
        "final_seeds": 1, "baselines": False, "screen": "flag", "stop_when_solved": False, "select": "preference"}
GOOD = '''Balance the pole.

```python
def compute_reward(pole_angle, action):
    upright = 1.0 - abs(pole_angle)
    effort = -0.01 * np.sum(action * action)
    return upright + effort, {"upright": upright, "effort": effort}
```
'''


class Counting:
    """A SegmentTeacher that counts its comparisons (the scripted oracle, or NaN for every pair)."""

    def __init__(self, skip: bool = False) -> None:
        self.calls = 0
        self.skip = skip
        self.inner = RewardTeacher()

    def compare(self, left: Sequence[Segment], right: Sequence[Segment]) -> np.ndarray:
        self.calls += len(left)
        if self.skip:
            return np.full(len(left), np.nan)
        return self.inner.compare(left, right)


def _seg(value: float) -> Segment:
    return Segment(np.zeros((3, 2)), returns=value)


# -- the stage alone ------------------------------------------------------------------------------
def test_round_robin_ranks_by_wins_and_restores_saved_labels() -> None:
    segs = {"r00/c00": _seg(1.0), "r00/c01": _seg(3.0), "r00/c02": _seg(2.0), "r00/c03": _seg(2.0)}
    teacher = Counting()
    ranking = rank(teacher, segs, Ranking(round=0, names=list(segs)))
    assert teacher.calls == 6 and len(ranking.labels) == 6
    assert ranking.order() == ["r00/c01", "r00/c02", "r00/c03", "r00/c00"]  # equal wins: the earlier first
    assert ranking.wins()["r00/c02"] == ranking.wins()["r00/c03"] == 1.5  # their tie split half and half
    again = rank(teacher, segs, Ranking.from_dict(json.loads(json.dumps(ranking.to_dict()))))
    assert teacher.calls == 6 and again.order() == ranking.order()


def test_the_top_is_kept_against_the_previous_choice() -> None:
    by = {n: Candidate(0, i) for i, n in enumerate(["r00/c00", "r00/c01"])}
    segs = {"r00/c00": _seg(1.0), "r00/c01": _seg(3.0)}
    prev = Candidate(5, 0)  # an earlier round's choice, better than this round's top
    ranking = rank(Counting(), segs, Ranking(round=6, names=list(segs)))
    assert select_by_preference(ranking, Counting(), segs, prev, _seg(9.0), by, log=lambda _: None) is prev
    assert ranking.versus == {"left": "r00/c01", "right": prev.name, "label": 0.0} and "earlier choice" in ranking.note
    ranking = rank(Counting(), segs, Ranking(round=6, names=list(segs)))
    assert select_by_preference(ranking, Counting(), segs, prev, _seg(0.0), by, log=lambda _: None) is by["r00/c01"]


def test_a_teacher_that_skips_everything_keeps_a_defined_choice() -> None:
    lines: list[str] = []
    segs = {"r00/c00": _seg(1.0), "r00/c01": _seg(3.0)}
    by = {n: Candidate(0, i) for i, n in enumerate(segs)}
    ranking = rank(Counting(skip=True), segs, Ranking(round=0, names=list(segs)))
    assert not ranking.informative and ranking.answered == 0
    assert select_by_preference(ranking, Counting(skip=True), segs, None, None, by, lines.append) is by["r00/c00"]
    assert "skipped every comparison" in lines[-1] and "first trained candidate" in lines[-1]
    prev = Candidate(3, 1)
    ranking = rank(Counting(skip=True), segs, Ranking(round=4, names=list(segs)))
    assert select_by_preference(ranking, Counting(skip=True), segs, prev, _seg(0.0), by, lines.append) is prev
    assert "previous choice" in lines[-1]


def test_offline_coder_moves_from_the_rejected_towards_the_preferred() -> None:
    task = get_task("inverted-pendulum")
    coder = OfflineCoder(seed=0)
    first = coder.complete([], n=3, context=CoderContext(task=task))
    preferred, rejected = first[1].text.split("```python\n")[1], first[0].text.split("```python\n")[1]
    pw = {t.name: t.weight for t in parse_terms(preferred)}
    rw = {t.name: t.weight for t in parse_terms(rejected)}
    out = coder.complete([], n=1, context=CoderContext(task=task, round=1, history=[{"source": preferred,
                         "fitness": None, "ok": True, "error": None, "reflection": None}],
                         preference={"preferred": preferred, "rejected": rejected, "informative": True,
                                     "order": ["a", "b"]}))[0]
    assert "improved the teacher's preferred program" in out.text
    new = {t.name: t.weight for t in parse_terms(out.text.split("```python\n")[1])}
    assert set(new) == set(pw)
    for name, w in pw.items():
        if name in rw and abs(w / rw[name] - 1) > 1e-3:  # further from the rejected weight, on the same side
            assert np.sign(np.log(new[name] / w)) == np.sign(np.log(w / rw[name]))
        elif name not in rw:
            assert new[name] > w


# -- the loop -------------------------------------------------------------------------------------
class _Killed(Exception):
    pass


def test_offline_icpl_end_to_end_and_resume_asks_nothing_again(tmp_path: Path) -> None:
    out = tmp_path / "run"
    teacher = Counting()

    def die_at_final(line: str) -> None:
        if line.startswith("final:"):
            raise _Killed

    with pytest.raises(_Killed):
        synthesize(SynthesisConfig(**TINY, iterations=2, samples=3), out=out, log=die_at_final, teacher=teacher)
    first = json.loads((out / "rounds" / "r00" / "ranking.json").read_text())
    second = json.loads((out / "rounds" / "r01" / "ranking.json").read_text())
    assert len(first["labels"]) == 3 and len(second["labels"]) == 3 and second["versus"] is not None
    assert teacher.calls == 7  # 3 + 3 pairs and the top against the previous choice
    # round 2's prompt: the ranking, the preferred and the rejected code; no fitness reflection
    prompt = json.loads((out / "rounds" / "r01" / "prompt.json").read_text())[1]["content"]
    cands = {c["index"]: c for c in json.loads((out / "rounds" / "r00" / "results.json").read_text())}
    top, bottom = int(first["chosen"][-2:]), int(first["order"][-1][-2:])
    assert "The teacher's ranking" in prompt and first["chosen"] in prompt
    assert cands[top]["source"].strip() in prompt and cands[bottom]["source"].strip() in prompt
    assert "Reward trace over the episode the teacher watched" in prompt
    assert "Task fitness" not in prompt and "Reward components at ~10 checkpoints" not in prompt
    # resume: every label is restored, no comparison asked again; best = the teacher's choice
    again = Counting()
    summary = synthesize(resume=out, log=lambda _: None, teacher=again)
    assert again.calls == 0
    chosen = second["chosen"]
    assert summary["select"] == "preference" and summary["preference"]["chosen"] == chosen
    assert f"r{summary['best']['round']:02d}/c{summary['best']['index']:02d}" == chosen
    assert summary["preference"]["chosen_search_fitness"] is not None  # fitness recorded beside the choice
    assert [r["round"] for r in summary["preference"]["rounds"]] == [0, 1]
    assert summary["preference"]["fitness_best"] is not None
    finished = Counting()  # resuming a finished run asks nothing either
    assert synthesize(resume=out, log=lambda _: None, teacher=finished)["preference"]["chosen"] == chosen
    assert finished.calls == 0


def test_skipping_teacher_in_the_loop(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = synthesize(SynthesisConfig(**TINY, iterations=2, samples=2), out=tmp_path / "run",
                         log=lines.append, teacher=Counting(skip=True))
    assert sum("skipped every comparison" in line for line in lines) == 2
    assert summary["preference"]["chosen"] == "r00/c00"  # the first round's first trained candidate, kept
    prompt = json.loads((tmp_path / "run" / "rounds" / "r01" / "prompt.json").read_text())[1]["content"]
    assert "The teacher gave no preference this round" in prompt


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with serve() as server:
        yield server


def test_llm_coder_gets_the_ranking_in_round_two(tmp_path: Path, stub: StubServer) -> None:
    stub.push(ok(GOOD), ok(GOOD))
    config = SynthesisConfig(**{**TINY, "screen": "off"}, coder="openai", base_url=stub.url, model="stub-model",
                             iterations=2, samples=2, no_cache=True)
    synthesize(config, out=tmp_path / "run", log=lambda _: None)
    second = stub.chat_requests[1]["body"]["messages"][-1]["content"]
    assert "The teacher's ranking (1 of 1 comparisons answered" in second
    assert "1. r00/c0" in second and "def compute_reward(pole_angle, action):" in second
    assert "The rejected program (lowest-ranked" in second and "Task fitness" not in second


# -- settings and the command line -----------------------------------------------------------------
def test_settings_reject_unknown_selection_and_halving() -> None:
    with pytest.raises(RewardsmithError, match="unknown select"):
        SynthesisConfig(task="inverted-pendulum", select="vote").validated()
    with pytest.raises(RewardsmithError, match="unknown teacher"):
        SynthesisConfig(task="inverted-pendulum", teacher="crowd").validated()
    with pytest.raises(RewardsmithError, match="schedule full"):
        SynthesisConfig(task="inverted-pendulum", select="preference", schedule="halving").validated()


def test_cli_select_preference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardsmith.cli import app

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["synthesize", "--task", "inverted-pendulum", "--iterations", "1", "--samples", "2",
                                      "--steps", "256", "--final-seeds", "1", "--n-envs", "2", "--workers", "1",
                                      "--no-baselines", "--select", "preference", "--teacher", "scripted", "--json",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["select"] == "preference" and data["preference"]["teacher"] == "scripted"
    assert (out / "rounds" / "r00" / "ranking.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["select"] == "preference" and manifest["config"]["teacher"] == "scripted"


def test_human_teacher_watches_rollouts_rerun_with_snapshots(tmp_path: Path) -> None:
    import io

    from rewardsmith.preference.human import HumanTeacher

    shown = io.StringIO()
    human = HumanTeacher("inverted-pendulum", answers=tmp_path / "answers.jsonl", input=io.StringIO("2\n"),
                         output=shown, size=48)
    summary = synthesize(SynthesisConfig(**TINY, teacher="human", iterations=1, samples=2), out=tmp_path / "run",
                         log=lambda _: None, teacher=human)
    ranking = json.loads((tmp_path / "run" / "rounds" / "r00" / "ranking.json").read_text())
    assert ranking["source"] == "rollouts" and ranking["labels"][0]["label"] == 0.0 and human.asked == 1
    assert summary["preference"]["chosen"] == "r00/c01"  # the right one ("2") was preferred
    assert list((tmp_path / "answers_gifs").glob("*.gif")), shown.getvalue()
