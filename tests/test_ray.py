"""The Ray executor on a real local Ray instance (2 CPUs): the loop, time limits, errors, files back."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

from test_executor import FINE, HANGS_LATE, _job  # noqa: E402

from rewardsmith.errors import RewardsmithError  # noqa: E402
from rewardsmith.executor import make_executor  # noqa: E402
from rewardsmith.loop import SynthesisConfig, synthesize  # noqa: E402
from rewardsmith.ray_executor import RayExecutor, pack, unpack  # noqa: E402
from rewardsmith.tasks import get_task  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayExecutor]:
    """One local Ray instance for the module, started (and stopped) by an executor."""
    if ray.is_initialized():
        pytest.skip("a Ray session is already open in this process")
    owner = RayExecutor(num_cpus=2)
    owner._connect()
    assert owner.started_cluster and ray.is_initialized()
    yield owner
    owner.close()
    assert not ray.is_initialized(), "the executor stops the Ray instance it started"


def _assert_cpus_freed() -> None:
    """Both CPUs are free again soon: a cancelled endless training would hold one for ever."""
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2, ray.available_resources()


def test_synthesize_through_ray_lands_files_in_the_run_directory(cluster: RayExecutor, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = synthesize(SynthesisConfig(task="inverted-pendulum", executor="ray", steps=512, workers=2, n_envs=2,
                                         eval_episodes=2, iterations=1, samples=2, final_seeds=1, baselines=False,
                                         screen="off"),
                         out=out, log=lambda _: None)
    assert ray.is_initialized(), "the loop's executor joined the open session and left it open"
    results = json.loads((out / "rounds" / "r00" / "results.json").read_text())
    assert [c["status"] for c in results] == ["trained", "trained"], [c["error"] for c in results]
    for c in ("c00", "c01"):
        folder = out / "rounds" / "r00" / c
        result = json.loads((folder / "result.json").read_text())
        assert result["out_dir"] == str(folder), "worker paths are rewritten to the run directory's"
        assert (folder / "model.zip").stat().st_size > 0 and (folder / "vecnormalize.pkl").is_file()
        assert (folder / "trainer.json").is_file() and list((folder / "tensorboard").rglob("events.*"))
        assert not list(folder.glob(".incoming-*")), "no staging folder left behind"
    assert summary["best"]["n"] == 1 and summary["best"]["fitness_mean"] is not None


def test_a_task_past_its_time_limit_is_cancelled_and_the_other_finishes(cluster: RayExecutor, tmp_path: Path) -> None:
    seen = []
    jobs = [_job(tmp_path, "hangs", HANGS_LATE, time_limit_s=12), _job(tmp_path, "fine", FINE)]
    with RayExecutor() as executor:
        hangs, fine = executor.run(jobs, on_done=seen.append)
    assert ray.is_initialized(), "a joined session is not shut down"
    assert hangs.status == "timeout" and "out of time" in hangs.error and "its time limit" in hangs.error
    assert 12 <= hangs.wall_s < 45 and 0 < hangs.steps_done < 512
    assert fine.status == "ok" and fine.result["steps"] >= 512 and (tmp_path / "fine" / "model.zip").is_file()
    assert [o.job.name for o in seen] == ["fine", "hangs"]
    assert not (tmp_path / "hangs" / "result.json").exists()
    _assert_cpus_freed()


def test_errors_come_back_as_one_line(cluster: RayExecutor, tmp_path: Path) -> None:
    import dataclasses

    bad_env = dataclasses.replace(get_task("point-goal"), name="point-goal-bad-env", env_id="NoSuchEnv-v9")
    jobs = [_job(tmp_path, "bad-env", FINE, task=bad_env),
            _job(tmp_path, "no-builtin", "builtin", task=get_task("halfcheetah-backward"))]
    with RayExecutor() as executor:
        env, builtin = executor.run(jobs)
    assert env.status == "error" and "NoSuchEnv-v9" in env.error and ": " in env.error and "\n" not in env.error
    # a RewardsmithError's text as is, without the type's name
    assert builtin.status == "error" and builtin.error.startswith("task 'halfcheetah-backward' has no built-in")


def test_a_continuation_resumes_from_the_shipped_checkpoint(cluster: RayExecutor, tmp_path: Path) -> None:
    task = get_task("point-goal")
    first = _job(tmp_path, "cand", FINE, task=task, steps=512)
    with RayExecutor() as executor:
        one = executor.run([first])[0]
        assert one.status == "ok" and one.result["continued_from"] == 0
        longer = _job(tmp_path, "cand", FINE, task=task, steps=1024, continue_from=first.out)
        warm = _job(tmp_path, "warm", FINE, task=task, steps=512, seed=100, init_from=first.out)
        two, started = executor.run([longer, warm])
        again = executor.run([longer])[0]
    assert two.status == "ok", two.error
    assert two.result["continued_from"] == 512 and two.result["steps"] == 1024 and two.steps_done >= 1024
    on_disk = json.loads((tmp_path / "cand" / "result.json").read_text())
    assert on_disk["continued_from"] == 512 and on_disk["out_dir"] == first.out
    assert json.loads((tmp_path / "cand" / "trainer.json").read_text())["num_timesteps"] == 1024
    assert started.status == "ok" and started.result["warm_from"] == first.out
    assert again.status == "resumed" and again.result["fitness_mean"] == two.result["fitness_mean"]


def test_an_interrupted_run_cancels_its_tasks(cluster: RayExecutor, tmp_path: Path) -> None:
    def stop(_outcome) -> None:
        raise KeyboardInterrupt

    jobs = [_job(tmp_path, "fine", FINE), _job(tmp_path, "hangs", HANGS_LATE, steps=100_000)]
    with RayExecutor() as executor, pytest.raises(KeyboardInterrupt):
        executor.run(jobs, on_done=stop)
    _assert_cpus_freed()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_killed_from_outside_is_crashed(cluster: RayExecutor, tmp_path: Path) -> None:
    """As when the OOM killer takes a Ray worker: that job is 'crashed', not retried."""
    import signal
    import threading

    result: list = []
    job = _job(tmp_path, "hangs", HANGS_LATE, time_limit_s=120)
    thread = threading.Thread(target=lambda: result.extend(RayExecutor().run([job])))
    thread.start()
    pid, deadline = None, time.monotonic() + 60
    while pid is None and time.monotonic() < deadline:  # Ray titles a busy worker ray::<task name>
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and b"ray::rewardsmith:hangs" in (proc / "cmdline").read_bytes():
                    pid = int(proc.name)
            except OSError:
                continue
        time.sleep(0.5)
    assert pid is not None, "no Ray worker runs the job"
    time.sleep(3)
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=60)
    assert result and result[0].status == "crashed" and "worker died" in result[0].error, result


def test_make_executor_builds_it_or_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    executor = make_executor("ray", workers=3, cpus_per_job=0.5, gpus_per_job=0.25, address="10.0.0.1:6379")
    assert isinstance(executor, RayExecutor) and executor.name == "ray" and executor.num_cpus == 2
    assert executor.address == "10.0.0.1:6379" and executor.gpus_per_job == 0.25
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "rewardsmith.ray_executor")
    with pytest.raises(RewardsmithError, match=r'pip install "rewardsmith\[ray\]"'):
        make_executor("ray")
    with pytest.raises(RewardsmithError, match="use local or ray"):
        make_executor("slurm")


def test_pack_and_unpack_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "tensorboard").mkdir(parents=True)
    (src / "model.zip").write_bytes(b"zip")
    (src / "result.json").write_text("{}")
    (src / ".model.123.tmp.zip").write_bytes(b"half")
    (src / "tensorboard" / "events.1").write_text("tb")
    assert sorted(p.relative_to(tmp_path / "a").as_posix() for p in unpack(pack(src), tmp_path / "a")) == \
        ["model.zip", "result.json", "tensorboard/events.1"]
    placed = unpack(pack(src, top_only=True, skip=("result.json",)), tmp_path / "b")
    assert [p.name for p in placed] == ["model.zip"]
    assert [p.name for p in unpack(pack(src), tmp_path / "c", last="result.json")][-1] == "result.json"


def test_a_dead_cluster_address_is_one_clear_error(tmp_path: Path) -> None:
    import time

    from rewardsmith.errors import RewardsmithError
    from rewardsmith.executor import TrainJob, make_executor
    from rewardsmith.tasks import get_task

    job = TrainJob(name="j", task=get_task("inverted-pendulum"), reward="builtin", steps=256, seed=0,
                   out=str(tmp_path / "j"))
    executor = make_executor("ray", address="127.0.0.1:1")
    t0 = time.perf_counter()
    try:
        with pytest.raises(RewardsmithError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1"):
            executor.run([job])
    finally:
        executor.close()
    assert time.perf_counter() - t0 < 30
