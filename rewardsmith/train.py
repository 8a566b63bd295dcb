"""Training an SB3 agent with a reward program (or any reward source, the env's own reward, the sparse baseline).

:func:`train` is the one-call facade over :class:`~rewardsmith.trainer.Trainer`: it builds
``n_envs`` copies of the task's env, each in a :class:`TaskWrapper`, applies the reward with one
call per step (:class:`RewardVecEnv`), normalises observations and rewards (``VecNormalize``),
trains PPO or SAC with a progress bar and TensorBoard logs of every reward component and of the
task's fitness, then evaluates the ground-truth fitness of the deterministic policy over several
episodes and saves the model, the normalisation statistics, a continuable checkpoint and
``result.json`` (each file atomically).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rewardsmith.errors import TrainingError
from rewardsmith.fsutil import atomic_write_json
from rewardsmith.tasks import TaskSpec, get_task

ALGOS = ("ppo", "sac")


@dataclass
class TrainResult:
    """What :func:`train` returns (``rewardsmith train --json`` prints it).

    Attributes:
        task: task name.
        reward: ``"builtin"``, ``"sparse"`` or the program's content key.
        algo, seed, steps: the run's settings (``steps`` = environment steps taken).
        wall_s: wall-clock seconds of training and evaluation.
        fitness_mean, fitness_std: ground-truth fitness of the final policy over ``episodes``.
        success_rate: fraction of evaluation episodes reaching the task's threshold (None if none).
        episodes: per-episode fitness of the evaluation.
        curve: ``[{"step", "fitness_mean", "episodes", "components": {name: mean}}]`` during training.
        nonfinite: reward values replaced by the runtime guard in this training (NaN/inf totals,
            including calls that raised).
        device: the torch device trained on.
        out_dir: where the model, VecNormalize statistics, TensorBoard logs and ``result.json`` are.
        task_version: the version of the task the result was measured on.
        warm_from: the checkpoint whose policy started this training (warm start), or None.
        continued_from: steps an earlier part of this training had done when it was continued
            (successive halving), 0 when it trained from scratch.
        replay_relabelled: transitions of a warm start's SAC replay buffer relabelled with this reward.
    """

    task: str
    reward: str
    algo: str
    seed: int
    steps: int
    wall_s: float
    fitness_mean: float
    fitness_std: float
    success_rate: float | None
    episodes: list[float] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)
    nonfinite: int = 0
    device: str = "cpu"
    out_dir: str | None = None
    task_version: int = 1
    warm_from: str | None = None
    continued_from: int = 0
    replay_relabelled: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def default_out_dir(task: TaskSpec) -> Path:
    """``runs/train-<task>-<timestamp>``: where a training goes when no folder is given."""
    return Path("runs") / f"train-{task.name}-{datetime.now():%Y%m%d-%H%M%S}"


#: ``device="auto"`` picks CUDA for SAC (many small gradient steps on replay batches, where a GPU
#: pays once the batch is large) and for any algorithm whose minibatch is at least this large; small
#: PPO MLPs (batch 64-256) train faster on one CPU thread than through CUDA launches.
CUDA_MIN_BATCH = 1024


def resolve_device(device: str, algo: str | None = None, batch_size: int | None = None) -> str:
    """The torch device to train on; validates explicit choices.

    ``auto``: ``cuda`` when CUDA is available **and** it pays (``algo == "sac"`` or
    ``batch_size >= CUDA_MIN_BATCH``), else ``cpu``. Without ``algo``, ``auto`` takes CUDA whenever
    it is available (the rule of earlier versions).
    """
    import torch

    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        if algo is None:
            return "cuda"
        pays = algo.lower() == "sac" or (batch_size is not None and batch_size >= CUDA_MIN_BATCH)
        return "cuda" if pays else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise TrainingError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {device!r} requested but CUDA is not available here (use --device cpu)")
    return device


def resolve_reward(task: TaskSpec, reward: Any) -> tuple[Any, str]:
    """Turn ``reward`` (None/"builtin", "sparse", a program, source text or path) into (program|None, label)."""
    from rewardsmith.program import RewardProgram, load_program, sparse_program

    if reward is None or reward == "builtin":
        if not task.has_builtin_reward:
            raise TrainingError(f"task {task.name!r} has no built-in reward; pass a reward program or use sparse")
        return None, "builtin"
    if reward == "sparse":
        return sparse_program(task), "sparse"
    if isinstance(reward, RewardProgram):
        return reward, reward.key
    program = load_program(reward, task)
    return program, program.key


def resolve_source(task: TaskSpec, reward: Any) -> tuple[Any, str, Any]:
    """Like :func:`resolve_reward`, also taking any :class:`~rewardsmith.sources.RewardSource`.

    A potential program (text or path defining ``compute_potential``) becomes the task's sparse
    reward plus potential-based shaping (:func:`rewardsmith.shaping.programs.shaped_sparse`).

    Returns ``(source | None, label, program | None)``: the source to apply (None: the env's own
    reward), how results name it, and the reward program (or potential program) behind it when
    there is one.
    """
    from rewardsmith.sources import as_source, source_label

    if not isinstance(reward, (str, Path)) and reward is not None and callable(getattr(reward, "compute", None)):
        source = as_source(reward)
        if source.task.name != task.name:
            raise TrainingError(f"reward source is for task {source.task.name!r}, training is on {task.name!r}")
        return source, source_label(source), getattr(source, "program", None)
    from rewardsmith.shaping.programs import is_potential_source, shaped_sparse

    if isinstance(reward, (str, Path)) and reward not in ("builtin", "sparse") and is_potential_source(reward):
        source = shaped_sparse(reward, task)  # a potential program: the sparse reward plus its shaping
        return source, source.key, source.program
    program, label = resolve_reward(task, reward)
    return (None if program is None else as_source(program)), label, program


def make_vec_env(task: TaskSpec, source: Any, n_envs: int, seed: int, normalize: bool = True,
                 gamma: float = 0.99, wrappers: list | None = None, norm_path: str | Path | None = None) -> Any:
    """The training VecEnv: TaskWrapper envs -> RewardVecEnv -> VecMonitor -> VecNormalize -> ``wrappers``.

    Args:
        source: a reward source or program (None: the env's own reward).
        wrappers: callables ``venv -> VecEnv`` applied in order on top of normalisation.
        norm_path: load the normalisation statistics from this ``VecNormalize.save`` file.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

    from rewardsmith.wrappers import RewardVecEnv, TaskWrapper

    def factory(rank: int):
        def make():
            env = TaskWrapper(task.make_env(), task)
            env.action_space.seed(seed + rank)
            return env
        return make

    venv: Any = DummyVecEnv([factory(i) for i in range(n_envs)])
    venv.seed(seed)
    if source is not None:
        venv = RewardVecEnv(venv, source)
    venv = VecMonitor(venv)
    if norm_path is not None:
        venv = VecNormalize.load(str(norm_path), venv)
    elif normalize:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=gamma)
    for wrap in wrappers or []:
        venv = wrap(venv)
    return venv


def train(task: str | TaskSpec, reward: Any = "builtin", steps: int | None = None, seed: int = 0,
          algo: str | None = None, n_envs: int = 8, device: str = "auto", out: str | Path | None = None,
          progress: bool = False, eval_episodes: int | None = None, algo_kwargs: dict[str, Any] | None = None,
          tensorboard: bool = True, save: bool = True, callbacks: list | None = None,
          wrappers: list | None = None, continue_from: str | Path | None = None,
          init_from: str | Path | None = None, keep_replay: bool = False, intrinsic: Any = None,
          intrinsic_coef: float | None = None) -> TrainResult:
    """Train an agent on ``task`` with ``reward`` and measure the task's true fitness.

    The one-call facade over :class:`~rewardsmith.trainer.Trainer`.

    Args:
        task: task name or spec.
        reward: ``"builtin"`` (the env's own reward), ``"sparse"``, a
            :class:`~rewardsmith.program.RewardProgram`, any :class:`~rewardsmith.sources.RewardSource`,
            program source, or a ``.py`` path.
        steps: environment steps (default: the task's ``default_steps``).
        seed: seeds the envs, the policy and the evaluation.
        algo: ``ppo`` or ``sac`` (default: the task's).
        n_envs: parallel envs (in-process).
        device: ``auto``, ``cpu`` or ``cuda``.
        out: output directory (default ``runs/train-<task>-<timestamp>``; None with ``save=False``).
        progress: show a progress bar.
        eval_episodes: evaluation episodes (default: the task's ``eval_episodes``).
        algo_kwargs: extra keyword arguments for the SB3 algorithm.
        tensorboard: write TensorBoard logs under ``out``.
        save: save the model, normalisation statistics, ``trainer.json`` (so that
            :meth:`Trainer.load <rewardsmith.trainer.Trainer.load>` continues it) and ``result.json`` under ``out``.
        callbacks: extra SB3 callbacks (e.g. a heartbeat), run after the built-in ones.
        wrappers: extra VecEnv wrappers, callables ``venv -> VecEnv`` applied on top of normalisation.
        continue_from: a :meth:`Trainer.save <rewardsmith.trainer.Trainer.save>` folder (usually ``out``
            itself) of an earlier, shorter training with the same task, reward, algorithm and seed:
            it continues from there to ``steps`` in all, so no step is trained twice (successive
            halving). A folder that does not match (or holds no checkpoint) trains from scratch.
        init_from: a checkpoint folder of another training (e.g. the previous round's best) whose
            policy and observation statistics start this one (warm start); its reward's statistics
            are not kept, and for SAC its replay buffer is relabelled with ``reward`` when it was saved.
        keep_replay: SAC: save the replay buffer and its reward states with the model (for warm starts).
        intrinsic, intrinsic_coef: an exploration bonus (a :func:`rewardsmith.intrinsic.make_bonus`
            name such as ``"rnd"``, or a bonus) added to the reward during training, and its coefficient.

    On the CPU it sets ``torch.set_num_threads(1)``: small MLPs train fastest single-threaded, and
    parallel candidates then do not fight over cores. The result's ``nonfinite`` counts only this
    training's replaced reward values, even when the program object is reused.
    """
    from rewardsmith.trainer import Trainer

    spec = get_task(task)
    steps = int(steps or spec.default_steps)
    if steps <= 0:
        raise TrainingError(f"steps must be positive, got {steps}")
    out_dir: Path | None = None
    trainer = None
    if continue_from is not None:
        trainer = Trainer.resume_compatible(continue_from, spec, reward, algo=algo, seed=seed, steps=steps,
                                            device=device, callbacks=callbacks, wrappers=wrappers,
                                            algo_kwargs=algo_kwargs, keep_replay=keep_replay, intrinsic=intrinsic)
    if trainer is None and init_from is not None:
        trainer = Trainer.warm_start(init_from, spec, reward, algo=algo, seed=seed, n_envs=n_envs, device=device,
                                     budget=steps, algo_kwargs=algo_kwargs, callbacks=callbacks, wrappers=wrappers,
                                     keep_replay=keep_replay, intrinsic=intrinsic, intrinsic_coef=intrinsic_coef)
    if trainer is None:
        trainer = Trainer(spec, reward, algo=algo, seed=seed, n_envs=n_envs, device=device, budget=steps,
                          algo_kwargs=algo_kwargs, callbacks=callbacks, wrappers=wrappers, keep_replay=keep_replay,
                          intrinsic=intrinsic, intrinsic_coef=intrinsic_coef)
    t0 = time.perf_counter()  # training and evaluation (not loading the program)
    try:
        if save or tensorboard:
            out_dir = Path(out) if out else default_out_dir(spec)
            out_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard and out_dir is not None:
            trainer.tensorboard_dir = trainer.model.tensorboard_log = str(out_dir / "tensorboard")
        remaining = steps - trainer.num_timesteps
        if remaining > 0:
            trainer.learn(remaining, progress=progress)
        recorder = _recorder(out_dir if save else None)
        episodes = _evaluate(trainer, eval_episodes or spec.eval_episodes, seed + 10_000, recorder)
        result = trainer.result(episodes, out_dir=out_dir, wall_s=time.perf_counter() - t0)
        if save and out_dir is not None:
            trainer.save(out_dir, replay_buffer=trainer.keep_replay)
            _save_episodes(recorder, out_dir / EPISODES_FILE)
            atomic_write_json(out_dir / "result.json", result.to_dict())
    finally:
        trainer.close()
    return result


#: the evaluation episodes' reward-state transitions, saved by :func:`train` beside ``result.json``
#: (an :class:`~rewardsmith.trajectories.EpisodeSet`; the pre-screen reads them).
EPISODES_FILE = "episodes.npz"


def _recorder(out_dir: Path | None) -> Any:
    """An episode recorder when the evaluation episodes are to be saved under ``out_dir``, else None."""
    if out_dir is None:
        return None
    from rewardsmith.trajectories import EpisodeRecorder

    return EpisodeRecorder()


def _evaluate(trainer: Any, episodes: int, seed: int, recorder: Any) -> list[float]:
    """:meth:`Trainer.evaluate <rewardsmith.trainer.Trainer.evaluate>`, recording the episodes into ``recorder``."""
    if recorder is None:
        return trainer.evaluate(episodes, seed)
    from stable_baselines3.common.vec_env import VecNormalize

    from rewardsmith.callbacks import find_wrapper

    norm = find_wrapper(trainer.venv, VecNormalize)
    if norm is not None:
        norm.training = False
    return evaluate(trainer.model, trainer.spec, trainer.venv, episodes, seed, record=recorder)


def _save_episodes(recorder: Any, path: Path) -> None:
    """Save the recorded evaluation episodes at ``path``; a failure only warns (never fails a training)."""
    if recorder is None:
        return
    import warnings

    try:
        found = recorder.episodes()
        if recorder.error is not None:
            raise RuntimeError(recorder.error)
        if found is not None:
            found.save(path)
    except Exception as exc:
        warnings.warn(f"evaluation episodes not saved to {path}: {type(exc).__name__}: {exc}", stacklevel=2)


def evaluate(model: Any, task: TaskSpec, train_venv: Any, episodes: int, seed: int,
             record: Any = None) -> list[float]:
    """Ground-truth fitness of ``model``'s deterministic policy over ``episodes`` episodes.

    The evaluation envs use the training run's observation normalisation (frozen) and the env's
    own dynamics; the reward is irrelevant to fitness, so none is replaced. ``record``: an
    :class:`~rewardsmith.trajectories.EpisodeRecorder` that keeps every evaluation episode's
    reward-state transitions with its fitness (recording never fails the evaluation).
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rewardsmith.callbacks import find_wrapper
    from rewardsmith.wrappers import TaskWrapper

    train_norm = find_wrapper(train_venv, VecNormalize)
    n = max(1, min(episodes, 4))
    venv: Any = DummyVecEnv([lambda: TaskWrapper(task.make_env(), task) for _ in range(n)])
    base = venv
    venv.seed(seed)
    norm = None
    if train_norm is not None:
        norm = VecNormalize(venv, norm_obs=True, norm_reward=False, training=False)
        norm.obs_rms = train_norm.obs_rms
        venv = norm
    obs = venv.reset()
    if record is not None:
        record.start(base.envs)
    found: list[float] = []
    per_env = [0] * n
    quota = [episodes // n + (1 if i < episodes % n else 0) for i in range(n)]
    while len(found) < episodes:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = venv.step(action)
        if record is not None:
            record.step(action, infos)
        for i, done in enumerate(dones):
            if done:
                kept = per_env[i] < quota[i]
                if kept:
                    per_env[i] += 1
                    found.append(float(infos[i]["episode_fitness"]))
                if record is not None:
                    record.end(i, found[-1] if kept else None)
    venv.close()
    return found


def rollout_gif(run_dir: str | Path, task: str | TaskSpec, path: str | Path, frames: int = 60, every: int = 2,
                size: int = 160, seed: int = 0) -> Path:
    """Render the deterministic policy saved in ``run_dir`` (by :func:`train`) to an animated GIF.

    Uses MuJoCo's offscreen renderer (``MUJOCO_GL=egl`` works headless); ``frames`` frames, one
    every ``every`` steps, ``size`` pixels square.
    """
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    import imageio.v2 as imageio
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    spec = get_task(task)
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "result.json").read_text())
    cls = PPO if info.get("algo", "ppo") == "ppo" else SAC
    model = cls.load(run_dir / "model.zip", device="cpu")
    env = spec.make_env(render_mode="rgb_array", width=size, height=size)
    venv: Any = DummyVecEnv([lambda: env])
    if (run_dir / "vecnormalize.pkl").is_file():
        venv = VecNormalize.load(str(run_dir / "vecnormalize.pkl"), venv)
        venv.training, venv.norm_reward = False, False
    venv.seed(seed)
    obs = venv.reset()
    images = []
    for step in range(frames * every):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, _, _ = venv.step(action)
        if step % every == 0:
            images.append(env.render())
    venv.close()
    path = Path(path)
    imageio.mimsave(path, images, duration=every * 1000 * spec.make_env().unwrapped.dt, loop=0)
    return path
