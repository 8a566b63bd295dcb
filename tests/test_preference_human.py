"""The human teacher: rendering real segments, side-by-side GIFs, and a real terminal session.

The terminal test drives a child Python process under a pseudo-terminal (pexpect): it answers,
mistypes, is interrupted with Ctrl-C, and is run again to check that only the unanswered query
is asked. Segments are random-policy rollouts of real envs with simulator snapshots.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rewardsmith.errors import RewardsmithError
from rewardsmith.preference.human import HumanTeacher, TeacherInterrupted, load_answers, pair_key
from rewardsmith.preference.render import (
    LABEL_HEIGHT,
    SEPARATOR,
    RenderError,
    describe_segment,
    render_segment,
    side_by_side_gif,
    snapshot,
    summarize_segment,
)
from rewardsmith.preference.segments import Segment
from rewardsmith.preference.teaching import make_teacher
from rewardsmith.state import StateReader
from rewardsmith.tasks import get_task, list_tasks

SIZE = 48


def rollout(task_name: str, steps: int = 12, seed: int = 0) -> Segment:
    """A random-policy segment of a real env: reward states, actions, true rewards, snapshots."""
    task = get_task(task_name)
    env = task.make_env()
    reader = StateReader(task, env)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    states, actions, rewards, snaps = [], [], [], []
    for _ in range(steps):
        a = env.action_space.sample()
        obs, r, _, _, info = env.step(a)
        states.append(reader.read(obs, info, a).copy())
        actions.append(np.atleast_1d(a).astype(float))
        rewards.append(r)
        snaps.append(snapshot(env))
    env.close()
    return Segment(np.array(states), np.array(actions), rewards=np.array(rewards), snapshots=np.array(snaps),
                   origin=f"seed{seed}")


@pytest.fixture(scope="module")
def car() -> list[Segment]:
    return [rollout("mountain-car", seed=s) for s in range(6)]


# ------------------------------------------------------------------------------ rendering


@pytest.mark.parametrize("name", ["mountain-car", "reacher", "pendulum"])
def test_render_segment_restores_every_snapshot(name: str) -> None:
    if name not in {t.name for t in list_tasks()}:
        pytest.skip(f"no task {name!r} registered")
    seg = rollout(name, steps=6)
    frames = render_segment(name, seg, size=SIZE)
    assert len(frames) == 6 and all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
    assert max(frames[0].shape[:2]) == SIZE
    assert len(render_segment(name, seg, every=4, size=SIZE)) == 2
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])  # the snapshots move the scene


def test_no_snapshots_is_a_clear_error(tmp_path: Path, car: list[Segment]) -> None:
    bare = Segment(car[0].states, origin="replay")
    with pytest.raises(RenderError, match=r"origin 'replay'.*no simulator snapshots") as info:
        render_segment("mountain-car", bare)
    assert isinstance(info.value, RewardsmithError)
    with pytest.raises(RenderError, match="no simulator snapshots"):
        side_by_side_gif("mountain-car", car[0], bare, tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()
    t = HumanTeacher("mountain-car", gif_dir=tmp_path, input=io.StringIO("1\n"), output=io.StringIO())
    with pytest.raises(RenderError, match=r"render=False"):
        t.compare([bare], [car[1]])
    t.close()


def test_side_by_side_gif_is_twice_as_wide(tmp_path: Path, car: list[Segment]) -> None:
    [frame] = render_segment("mountain-car", car[0], every=100, size=SIZE)
    h, w = frame.shape[:2]
    path = side_by_side_gif("mountain-car", car[0], car[1], tmp_path / "gifs" / "pair.gif", size=SIZE, every=3)
    with Image.open(path) as im:
        assert im.size == (2 * w + SEPARATOR, h + LABEL_HEIGHT)
        assert im.n_frames >= 2 and im.info.get("loop") == 0


def test_text_summaries_name_every_variable(car: list[Segment]) -> None:
    text = describe_segment("mountain-car", car[0])
    for var in get_task("mountain-car").variables:
        assert var.name in text
    assert "start " in text and " max " in text and "(1/step)" in text
    line = summarize_segment("mountain-car", car[0])
    assert line.startswith("12 steps from seed0: position ") and "\n" not in line


# ------------------------------------------------------------------------------ in process


def _teacher(tmp_path: Path, answers: str, **kw) -> tuple[HumanTeacher, io.StringIO]:
    out = io.StringIO()
    t = HumanTeacher("mountain-car", answers=tmp_path / "answers.jsonl", input=io.StringIO(answers),
                     output=out, render=False, **kw)
    return t, out


def test_quit_and_eof_raise_after_saving(tmp_path: Path, car: list[Segment]) -> None:
    left, right = car[:3], car[3:]
    t, out = _teacher(tmp_path, "1\ns\nq\n")
    with pytest.raises(TeacherInterrupted, match=r"after 2 of 3 queries.*ask again to resume") as info:
        t.compare(left, right)
    assert info.value.answered == 2 and info.value.labels[0] == 1.0 and np.isnan(info.value.labels[1:]).all()
    assert "(no GIF)" in out.getvalue()
    saved = load_answers(tmp_path / "answers.jsonl")
    assert saved[pair_key(left[0], right[0])] == 1.0 and math.isnan(saved[pair_key(left[1], right[1])])
    t, _ = _teacher(tmp_path, "")  # EOF at once
    with pytest.raises(TeacherInterrupted, match="after 2 of 3"):
        t.compare(left, right)
    t, _ = _teacher(tmp_path, "equal\n")
    labels = t.compare(left, right)
    assert labels[0] == 1.0 and np.isnan(labels[1]) and labels[2] == 0.5 and (t.asked, t.reused) == (1, 2)
    t, _ = _teacher(tmp_path, "2\n")  # a new pair twice in one call: asked once
    np.testing.assert_array_equal(t.compare([car[0], car[0]], [car[5], car[5]]), [0.0, 0.0])
    assert t.asked == 1
    t, _ = _teacher(tmp_path, "")  # the same pairs the other way round: flipped, nothing asked
    flipped = t.compare(right, left)
    assert flipped[0] == 0.0 and np.isnan(flipped[1]) and flipped[2] == 0.5 and t.asked == 0


def test_torn_last_line_is_ignored_and_not_joined(tmp_path: Path, car: list[Segment]) -> None:
    (tmp_path / "answers.jsonl").write_text('{"key": "abc", "lab')
    t, _ = _teacher(tmp_path, "2\n")
    assert t.compare(car[:1], car[1:2])[0] == 0.0
    assert load_answers(tmp_path / "answers.jsonl") == {pair_key(car[0], car[1]): 0.0}


def test_make_teacher_builds_the_human_teacher(tmp_path: Path) -> None:
    t = make_teacher("human", "mountain-car", answers=tmp_path / "a.jsonl", render=False)
    assert isinstance(t, HumanTeacher) and t.answers_path == tmp_path / "a.jsonl"


# ------------------------------------------------------------------------------ real terminal

CHILD = """
import json, sys
import numpy as np
from rewardsmith.preference.human import HumanTeacher, TeacherInterrupted
from rewardsmith.preference.segments import Segment
data = np.load(sys.argv[1])
segs = [Segment(data[f"s{i}"], snapshots=data[f"p{i}"], origin=f"seed{i}") for i in range(6)]
teacher = HumanTeacher("mountain-car", answers=sys.argv[2], size=48, every=4)
try:
    labels = teacher.compare(segs[:3], segs[3:])
except TeacherInterrupted as exc:
    print("INTERRUPTED", exc)
    sys.exit(3)
print("LABELS", json.dumps([None if np.isnan(x) else float(x) for x in labels]), teacher.asked, teacher.reused)
"""


def _spawn(tmp_path: Path):
    pexpect = pytest.importorskip("pexpect")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    child = pexpect.spawn(sys.executable, [str(tmp_path / "child.py"), str(tmp_path / "segs.npz"),
                                           str(tmp_path / "answers.jsonl")],
                          env=env, encoding="utf-8", timeout=60, cwd=str(tmp_path))
    return pexpect, child


def test_real_terminal_session_resumes_after_ctrl_c(tmp_path: Path, car: list[Segment]) -> None:
    np.savez(tmp_path / "segs.npz", **{f"s{i}": s.states for i, s in enumerate(car)},
             **{f"p{i}": s.snapshots for i, s in enumerate(car)})
    (tmp_path / "child.py").write_text(CHILD)
    pexpect, child = _spawn(tmp_path)
    child.expect(r"Query 1/3: watch (\S+\.gif)")
    gif1 = Path(child.match.group(1))
    child.expect(r"1 \(left\):  12 steps from seed0: position")
    child.expect_exact("[1] left  [2] right  [e]qual  [s]kip  [q]uit: ")
    child.sendline("2")
    child.expect(r"Query 2/3: watch (\S+\.gif)")
    gif2 = Path(child.match.group(1))
    child.expect_exact("[q]uit: ")
    child.sendline("x")
    child.expect_exact("'x' is not an answer: type 1 (left is better), 2 (right is better)")
    child.expect_exact("[q]uit: ")  # asked again
    child.sendline("e")
    child.expect(r"Query 3/3: watch \S+\.gif")
    child.expect_exact("[q]uit: ")
    child.sendintr()  # Ctrl-C before the third answer
    child.expect("KeyboardInterrupt")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus != 0 or child.signalstatus is not None
    lines = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [(r["answer"], r["label"]) for r in lines] == [("2", 0.0), ("e", 0.5)]
    assert lines[0]["key"] == pair_key(car[0], car[3]) and lines[1]["key"] == pair_key(car[1], car[4])
    assert gif1.parent == tmp_path / "answers_gifs" and gif1.is_file() and gif2.is_file()
    [frame] = render_segment("mountain-car", car[0], every=100, size=48)
    for gif in (gif1, gif2):
        with Image.open(gif) as im:
            assert im.size == (2 * frame.shape[1] + SEPARATOR, frame.shape[0] + LABEL_HEIGHT)

    pexpect, child = _spawn(tmp_path)  # run again: only the third query is asked
    child.expect(r"Query 1/1 \(2 answered before\): watch \S+\.gif")
    child.expect(r"1 \(left\):  12 steps from seed2")
    child.expect_exact("[q]uit: ")
    child.sendline("1")
    child.expect(r"LABELS (\[.*\]) (\d+) (\d+)")
    assert json.loads(child.match.group(1)) == [0.0, 0.5, 1.0]
    assert (child.match.group(2), child.match.group(3)) == ("1", "2")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert len((tmp_path / "answers.jsonl").read_text().splitlines()) == 3
