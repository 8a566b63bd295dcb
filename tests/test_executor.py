"""The local executor: envs in every worker, time limits, crash isolation, signals, resume."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rewardsmith.executor import LocalExecutor, TrainJob, derived_limit, finished_result
from rewardsmith.loop import SynthesisConfig, synthesize
from rewardsmith.tasks import Variable, get_task

# Point-goal with the episode clock as a variable. The reward below is endless once the clock
# passes 4.9 s: the probe's states (short random rollouts from resets) never get there, every
# training episode (100 steps of 0.05 s) does.
TIMED = dataclasses.replace(get_task("point-goal"), name="point-goal-timed",
                            variables=(*get_task("point-goal").variables,
                                       Variable("clock", (), "time since reset", "s", "data.time")))
HANGS_LATE = textwrap.dedent('''
    def compute_reward(position, goal, clock):
        d = np.sqrt(np.sum((position - goal) ** 2))
        acc = 0.0
        if clock > 4.9:
            for i in range(10 ** 15):
                acc = math.sin(acc + i)
        return -d + 0.0 * acc, {"distance": -d}
''')
FINE = textwrap.dedent('''
    def compute_reward(position, goal):
        d = np.sqrt(np.sum((position - goal) ** 2))
        return -d, {"distance": -d}
''')


def _job(tmp_path: Path, name: str, reward: str, **kw) -> TrainJob:
    args = {"task": TIMED, "reward": reward, "steps": 512, "seed": 0, "out": str(tmp_path / name), "n_envs": 2,
            "eval_episodes": 1, **kw}
    return TrainJob(name=name, **args)


def test_point_goal_loop_with_two_workers(tmp_path: Path) -> None:
    """rewardsmith's own env exists in spawned workers (it failed with 'Namespace rewardsmith not found')."""
    summary = synthesize(SynthesisConfig(task="point-goal", iterations=1, samples=2, steps=512, workers=2,
                                         n_envs=2, eval_episodes=2, final_seeds=2, baselines=False, screen="flag"),
                         out=tmp_path / "run", log=lambda _: None)
    results = json.loads((tmp_path / "run" / "rounds" / "r00" / "results.json").read_text())
    assert [c["status"] for c in results] == ["trained", "trained"], [c["error"] for c in results]
    assert summary["best"]["n"] == 2 and summary["task_version"] == 1


def test_endless_reward_in_training_is_killed_and_the_others_finish(tmp_path: Path) -> None:
    from rewardsmith.program import check_program

    assert check_program(HANGS_LATE, TIMED).ok, "the probe cannot see the endless branch"
    seen = []
    outcomes = LocalExecutor(workers=2).run(
        [_job(tmp_path, "hangs", HANGS_LATE, time_limit_s=15), _job(tmp_path, "fine", FINE)], on_done=seen.append)
    hangs, fine = outcomes
    assert hangs.status == "timeout" and "out of time" in hangs.error and "time limit" in hangs.error
    assert 15 <= hangs.wall_s < 50 and 0 < hangs.steps_done < 512
    assert fine.status == "ok" and fine.result["steps"] >= 512
    assert {o.job.name for o in seen} == {"hangs", "fine"}
    assert not (tmp_path / "hangs" / "result.json").exists()


def test_stuck_training_is_killed_without_a_hard_limit(tmp_path: Path) -> None:
    outcome = LocalExecutor(workers=1, stall_s=8).run([_job(tmp_path, "hangs", HANGS_LATE)])[0]
    assert outcome.status == "timeout" and "no training progress" in outcome.error


def test_derived_limit_scales_with_the_measured_rate() -> None:
    # 10% of 100k steps in 20 s: the rest projects to 180 s, the limit allows 4x that plus grace
    assert derived_limit(20.0, 10_000, 100_000) == pytest.approx(20 + 4 * 180 + 60)
    assert derived_limit(5.0, 100_000, 100_000) == pytest.approx(65.0)


def test_a_dead_worker_fails_only_its_own_job(tmp_path: Path) -> None:
    bad = dataclasses.replace(TIMED, name="point-goal-bad-env", env_id="NoSuchEnv-v9")
    outcomes = LocalExecutor(workers=2).run([_job(tmp_path, "bad", FINE, task=bad), _job(tmp_path, "fine", FINE)])
    assert outcomes[0].status == "error" and "NoSuchEnv-v9" in outcomes[0].error
    assert outcomes[1].status == "ok"


def test_finished_results_are_reused_and_cut_files_redone(tmp_path: Path) -> None:
    job = _job(tmp_path, "fine", FINE)
    first = LocalExecutor(workers=1).run([job])[0]
    assert first.status == "ok"
    again = LocalExecutor(workers=1).run([job])[0]
    assert again.status == "resumed" and again.result["fitness_mean"] == first.result["fitness_mean"]
    assert LocalExecutor(workers=1).run([dataclasses.replace(job, steps=4096, time_limit_s=1)])[0].status \
        != "resumed", "a bigger budget is not served by a smaller finished training"
    assert finished_result(dataclasses.replace(job, reward=FINE + "\n# changed\n")) is None
    assert finished_result(dataclasses.replace(job, seed=1)) is None
    result = Path(job.out) / "result.json"
    result.write_text(result.read_text()[:100])  # a file cut short
    redone = LocalExecutor(workers=1).run([job])[0]
    assert redone.status == "ok" and json.loads(result.read_text())["seed"] == 0


_STOPPABLE = """
import dataclasses, sys, textwrap
sys.path.insert(0, {tests!r})
from test_executor import HANGS_LATE, TIMED, _job
from pathlib import Path
from rewardsmith.executor import LocalExecutor
LocalExecutor(workers=1).run([_job(Path({tmp!r}), "hangs", HANGS_LATE, steps=100_000)])
"""


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found |= {int(p) for p in text}
    return found


def _cpu(pid: int) -> int:
    """User + system CPU time of ``pid`` in clock ticks (0 once it is gone)."""
    try:
        return sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().split()[13:15])
    except OSError:
        return 0


def _is_worker(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"multiprocessing" in cmd and b"resource_tracker" not in cmd


def _spinning_worker(parent: subprocess.Popen) -> int:
    """The pid of the training worker once it has been busy for a while."""
    deadline = time.time() + 90
    while time.time() < deadline:
        for pid in _children(parent.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                cpu = sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().split()[13:15])
            except OSError:
                continue
            if b"multiprocessing" in cmd and b"resource_tracker" not in cmd and cpu > 300:  # > 3 s of CPU
                return pid
        time.sleep(0.5)
    raise AssertionError("no training worker started")


def _gone(pid: int, within: float = 15) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["term", "int", "kill"])
def test_stopping_the_parent_stops_its_workers(tmp_path: Path, sig: signal.Signals) -> None:
    script = _STOPPABLE.format(tests=str(Path(__file__).parent), tmp=str(tmp_path))
    parent = subprocess.Popen([sys.executable, "-c", script], env={**os.environ}, stderr=subprocess.PIPE)
    try:
        worker = _spinning_worker(parent)
        parent.send_signal(sig)
        parent.wait(timeout=30)
        assert _gone(worker), f"worker {worker} still running after the parent got {sig.name}"
    finally:
        parent.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_killed_from_outside_fails_only_its_own_job(tmp_path: Path) -> None:
    """As when the OOM killer takes a worker: that job is 'crashed', the others finish, the run goes on."""
    import threading

    done: list = []
    result: list = []
    jobs = [_job(tmp_path, "hangs", HANGS_LATE, time_limit_s=120), _job(tmp_path, "fine", FINE)]
    thread = threading.Thread(target=lambda: result.extend(LocalExecutor(workers=2).run(jobs, on_done=done.append)))
    thread.start()
    deadline = time.time() + 120
    while not done and time.time() < deadline:
        time.sleep(0.2)
    assert done and done[0].job.name == "fine"
    workers = [pid for pid in _children(os.getpid()) if _is_worker(pid)]
    before = {pid: _cpu(pid) for pid in workers}
    time.sleep(1.0)
    busy = [pid for pid in workers if _cpu(pid) - before[pid] > 20]  # the spinning one, not the idle one
    assert len(busy) == 1, (workers, before)
    os.kill(busy[0], signal.SIGKILL)
    thread.join(timeout=60)
    hangs, fine = result
    assert hangs.status == "crashed" and "SIGKILL" in hangs.error
    assert fine.status == "ok"
