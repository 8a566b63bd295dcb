"""A :class:`Trainer`: the VecEnv stack and SB3 model of one training, which can learn in parts.

The stack is ``TaskWrapper`` envs -> :class:`~rewardsmith.wrappers.RewardVecEnv` (the reward
source, unless the env's own reward is used) -> ``VecMonitor`` -> ``VecNormalize`` -> any extra
VecEnv wrappers given. :meth:`Trainer.learn` can be called more than once and continues (SB3's
``reset_num_timesteps=False``: no step is retrained, the env is not reset between calls);
:meth:`Trainer.save` writes a checkpoint that :meth:`Trainer.load` continues from with the same
``num_timesteps``, normalisation statistics, curve and non-finite count.

:func:`rewardsmith.train.train` is the one-call facade over it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.errors import TrainingError
from rewardsmith.fsutil import atomic_write_json, atomic_write_text, read_json
from rewardsmith.tasks import TaskSpec, get_task

CHECKPOINT_FILE = "trainer.json"
INTRINSIC_FILE = "intrinsic.pt"


@dataclass
class Checkpoint:
    """What :meth:`Trainer.save` writes to ``trainer.json`` beside ``model.zip`` and ``vecnormalize.pkl``.

    Attributes:
        task, task_version: the task (and its version) trained on.
        reward: ``"builtin"``, ``"sparse"``, or the reward's label (its content key); a program's
            source is saved beside it as ``reward.py``.
        algo, seed, n_envs, gamma, normalize: the settings the stack was built with.
        num_timesteps: env steps trained so far.
        nonfinite: reward values the runtime guard replaced so far in this training.
        train_s: seconds spent in ``learn`` so far.
        curve: the :class:`~rewardsmith.callbacks.FitnessLogger` curve so far.
        evals: the periodic evaluations so far.
        eval_every, eval_episodes: the periodic evaluation's settings (None: off).
        warm_from: the checkpoint whose policy started this training (warm start), or None.
        intrinsic, intrinsic_coef: the exploration bonus trained with (its name) and its coefficient, or None.
    """

    task: str
    task_version: int
    reward: str
    algo: str
    seed: int
    n_envs: int
    gamma: float
    normalize: bool
    num_timesteps: int
    nonfinite: int = 0
    train_s: float = 0.0
    curve: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    eval_every: int | None = None
    eval_episodes: int | None = None
    warm_from: str | None = None
    intrinsic: str | None = None
    intrinsic_coef: float | None = None

    @classmethod
    def read(cls, directory: str | Path) -> Checkpoint:
        """The checkpoint in ``directory``; TrainingError when it is missing or unreadable."""
        data = read_json(Path(directory) / CHECKPOINT_FILE)
        if not isinstance(data, dict):
            raise TrainingError(f"no readable {CHECKPOINT_FILE} in {directory}: not a Trainer checkpoint")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Trainer:
    """One training: builds the VecEnv stack and the SB3 model, learns in parts, evaluates, saves.

    Args:
        task: task name or spec.
        reward: ``"builtin"``, ``"sparse"``, a :class:`~rewardsmith.program.RewardProgram`, any
            :class:`~rewardsmith.sources.RewardSource`, program source text, or a ``.py`` path.
        algo: ``ppo`` or ``sac`` (default: the task's).
        seed: seeds the envs, the policy and the evaluation.
        n_envs: parallel envs (in-process).
        device: ``auto``, ``cpu`` or ``cuda``.
        budget: the steps planned in all (sizes PPO's rollout so it never exceeds a small budget;
            default: the task's ``default_steps``).
        algo_kwargs: extra keyword arguments for the SB3 algorithm.
        tensorboard_dir: where TensorBoard logs go (None: none).
        callbacks: extra SB3 callbacks, run in every :meth:`learn` after the built-in ones.
        wrappers: extra VecEnv wrappers, callables ``venv -> VecEnv`` applied in order on top.
        eval_every, eval_episodes: evaluate the deterministic policy every ``eval_every`` steps over
            ``eval_episodes`` episodes during training (:class:`~rewardsmith.callbacks.PeriodicEval`),
            into the curve; None: no periodic evaluation.
        normalize: normalise observations and rewards (``VecNormalize``).
        keep_replay: SAC only: :meth:`save` also writes the replay buffer and the reward states of
            its transitions (:mod:`rewardsmith.replay`), so a warm start can relabel it.
        intrinsic: an exploration bonus added to the reward during training: a name of
            :func:`rewardsmith.intrinsic.make_bonus` (``"rnd"``, ...) or a
            :class:`~rewardsmith.intrinsic.Bonus`; None: none. It is applied by an
            :class:`~rewardsmith.intrinsic.IntrinsicCallback` (before returns and advantages are computed).
        intrinsic_coef: the bonus coefficient (default: the callback's).

    A reward source with a ``set_gamma`` method (potential-based shaping) is given the algorithm's
    discount, so that its shaping term is ``gamma * Phi(s') - Phi(s)`` with the gamma trained with.

    Attributes:
        spec, source (None for the env's own reward), label, venv (the top of the stack), model,
        fitness (the :class:`~rewardsmith.callbacks.FitnessLogger`), periodic (or None), device.
    """

    def __init__(self, task: str | TaskSpec, reward: Any = "builtin", *, algo: str | None = None, seed: int = 0,
                 n_envs: int = 8, device: str = "auto", budget: int | None = None,
                 algo_kwargs: dict[str, Any] | None = None, tensorboard_dir: str | Path | None = None,
                 callbacks: list | None = None, wrappers: list[Callable[[Any], Any]] | None = None,
                 eval_every: int | None = None, eval_episodes: int | None = None, normalize: bool = True,
                 keep_replay: bool = False, intrinsic: Any = None, intrinsic_coef: float | None = None,
                 _checkpoint: Path | None = None) -> None:
        import torch

        from rewardsmith.callbacks import FitnessLogger, PeriodicEval
        from rewardsmith.train import ALGOS, make_vec_env, resolve_device, resolve_source

        self.spec = get_task(task)
        self.algo = (algo or self.spec.default_algo).lower()
        if self.algo not in ALGOS:
            raise TrainingError(f"unknown algorithm {self.algo!r}: use {' or '.join(ALGOS)}")
        if n_envs < 1:
            raise TrainingError(f"n_envs must be at least 1, got {n_envs}")
        self.seed, self.n_envs, self.normalize = int(seed), int(n_envs), bool(normalize)
        merged = {**self.spec.algo_kwargs.get(self.algo, {}), **(algo_kwargs or {})}
        self.device = resolve_device(device, self.algo, int(merged.get("batch_size", 256)))
        self.keep_replay = bool(keep_replay) and self.algo == "sac"
        self.source, self.label, self.program = resolve_source(self.spec, reward)
        if self.device == "cpu":
            torch.set_num_threads(1)
        self.budget = int(budget or self.spec.default_steps)
        self.gamma = float({**self.spec.algo_kwargs.get(self.algo, {}), **(algo_kwargs or {})}.get("gamma", 0.99))
        if callable(getattr(self.source, "set_gamma", None)):
            self.source.set_gamma(self.gamma)
        self.intrinsic, self.intrinsic_coef = _intrinsic_callback(intrinsic, intrinsic_coef, self.spec)
        if self.intrinsic is not None and _checkpoint is not None and (_checkpoint / INTRINSIC_FILE).is_file():
            # the bonus continues where it was (its predictor trained, its counts kept), not from scratch
            self.intrinsic.load_state_dict(torch.load(_checkpoint / INTRINSIC_FILE, weights_only=False))
        self.callbacks = [*([self.intrinsic] if self.intrinsic is not None else []), *(callbacks or [])]
        self.tensorboard_dir = str(tensorboard_dir) if tensorboard_dir else None
        norm_path = None if _checkpoint is None else _checkpoint / "vecnormalize.pkl"
        self.venv = make_vec_env(self.spec, self.source, self.n_envs, self.seed, normalize=self.normalize,
                                 gamma=self.gamma, wrappers=wrappers,
                                 norm_path=norm_path if norm_path is not None and norm_path.is_file() else None)
        self.fitness = FitnessLogger(self.spec, self.program, interval=max(256, self.budget // 20))
        self.periodic = None
        if eval_every:
            self.periodic = PeriodicEval(self.spec, eval_every, eval_episodes or self.spec.eval_episodes,
                                         seed=self.seed + 10_000, fitness_logger=self.fitness)
        self._nonfinite_before = 0  # from the checkpoint's earlier parts
        self.train_s = 0.0
        self.warm_from: str | None = None  # the checkpoint a warm start began from
        self.replay_relabelled = 0  # transitions of a warm start's replay buffer relabelled
        self.continued_from = 0  # steps already trained when this object loaded its checkpoint
        self.replay_states = None
        if self.keep_replay:
            from rewardsmith.callbacks import find_wrapper
            from rewardsmith.replay import ReplayStates
            from rewardsmith.wrappers import RewardVecEnv

            reward_env = find_wrapper(self.venv, RewardVecEnv)
            if reward_env is not None:
                self.replay_states = ReplayStates(reward_env)
                if _checkpoint is not None:
                    self.replay_states.load(_checkpoint)
        if _checkpoint is None:
            self.model = _build_model(self.algo, self.spec, self.venv, self.seed, self.device, self.n_envs,
                                      self.tensorboard_dir, algo_kwargs, self.budget)
        else:
            self.model = _load_model(self.algo, _checkpoint, self.venv, self.device, self.tensorboard_dir,
                                     algo_kwargs)

    # -- training --------------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        """Env steps trained so far (across every :meth:`learn`, and before a :meth:`load`)."""
        return int(self.model.num_timesteps)

    @property
    def nonfinite(self) -> int:
        """Reward values the runtime guard replaced in this training so far (not in other uses of the program)."""
        from rewardsmith.callbacks import find_wrapper
        from rewardsmith.wrappers import RewardVecEnv

        reward_env = find_wrapper(self.venv, RewardVecEnv)
        return self._nonfinite_before + (reward_env.nonfinite if reward_env is not None else 0)

    def learn(self, steps: int, callbacks: list | None = None, progress: bool = False) -> Trainer:
        """Train ``steps`` more env steps (PPO rounds up to whole rollouts); continues, never restarts.

        ``callbacks`` are extra SB3 callbacks for this call only (after the constructor's).
        """
        from stable_baselines3.common.callbacks import CallbackList

        steps = int(steps)
        if steps <= 0:
            raise TrainingError(f"steps must be positive, got {steps}")
        norm = _find_normalize(self.venv)
        if norm is not None:
            norm.training = True
        chain = [self.fitness, *([self.periodic] if self.periodic else []),
                 *([self.replay_states] if self.replay_states else []), *self.callbacks, *(callbacks or [])]
        t0 = time.perf_counter()
        self.model.learn(total_timesteps=steps, callback=CallbackList(chain), progress_bar=progress,
                         reset_num_timesteps=False, tb_log_name=f"{self.algo}-{self.label[:12]}")
        self.train_s += time.perf_counter() - t0
        return self

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> list[float]:
        """True fitness of the deterministic policy over ``episodes`` episodes (default: the task's).

        Uses the training's observation normalisation, frozen; seeds default to ``seed + 10_000``.
        """
        from rewardsmith.train import evaluate

        norm = _find_normalize(self.venv)
        if norm is not None:
            norm.training = False
        return evaluate(self.model, self.spec, self.venv, episodes or self.spec.eval_episodes,
                        self.seed + 10_000 if seed is None else seed)

    def result(self, episodes: list[float] | None = None, out_dir: str | Path | None = None,
               wall_s: float | None = None) -> Any:
        """A :class:`~rewardsmith.train.TrainResult` (evaluating now unless ``episodes`` are given)."""
        from rewardsmith.train import TrainResult

        episodes = self.evaluate() if episodes is None else episodes
        threshold = self.spec.fitness.threshold
        return TrainResult(
            task=self.spec.name, reward=self.label, algo=self.algo, seed=self.seed, steps=self.num_timesteps,
            wall_s=round(self.train_s if wall_s is None else wall_s, 2),
            fitness_mean=float(np.mean(episodes)), fitness_std=float(np.std(episodes)),
            success_rate=None if threshold is None else float(np.mean([e >= threshold for e in episodes])),
            episodes=[float(e) for e in episodes], curve=list(self.fitness.curve), nonfinite=self.nonfinite,
            device=self.device, out_dir=str(out_dir) if out_dir else None,
            task_version=int(getattr(self.spec, "version", 1)), warm_from=self.warm_from,
            continued_from=self.continued_from, replay_relabelled=self.replay_relabelled)

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The metadata :meth:`save` writes."""
        return Checkpoint(
            task=self.spec.name, task_version=int(getattr(self.spec, "version", 1)), reward=self.label,
            algo=self.algo, seed=self.seed, n_envs=self.n_envs, gamma=self.gamma, normalize=self.normalize,
            num_timesteps=self.num_timesteps, nonfinite=self.nonfinite, train_s=round(self.train_s, 3),
            curve=list(self.fitness.curve), evals=list(self.periodic.evals) if self.periodic else [],
            eval_every=self.periodic.every if self.periodic else None,
            eval_episodes=self.periodic.episodes if self.periodic else None, warm_from=self.warm_from,
            intrinsic=None if self.intrinsic is None else _bonus_name(self.intrinsic),
            intrinsic_coef=self.intrinsic_coef)

    def save(self, directory: str | Path, replay_buffer: bool = False) -> Path:
        """Write ``model.zip``, ``vecnormalize.pkl``, ``reward.py`` (for a program), ``intrinsic.pt``
        (an exploration bonus's models and statistics) and ``trainer.json``.

        Each file is written atomically; :meth:`load` continues from them. ``replay_buffer=True``
        also saves an off-policy algorithm's replay buffer (``replay_buffer.pkl``, large); without
        it a loaded SAC continues with an empty buffer.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".model.{os.getpid()}.tmp.zip"
        self.model.save(tmp)
        os.replace(tmp, directory / "model.zip")
        norm = _find_normalize(self.venv)
        if norm is not None:
            tmp = directory / f".vecnormalize.{os.getpid()}.tmp"
            norm.save(str(tmp))
            os.replace(tmp, directory / "vecnormalize.pkl")
        if self.program is not None:
            atomic_write_text(directory / "reward.py", self.program.source)
        if self.intrinsic is not None:
            import torch

            tmp = directory / f".intrinsic.{os.getpid()}.tmp"
            torch.save(self.intrinsic.state_dict(), tmp)
            os.replace(tmp, directory / INTRINSIC_FILE)
        if replay_buffer and hasattr(self.model, "save_replay_buffer"):
            tmp = directory / f".replay_buffer.{os.getpid()}.tmp.pkl"
            self.model.save_replay_buffer(tmp)
            os.replace(tmp, directory / "replay_buffer.pkl")
            if self.replay_states is not None:
                buffer = self.model.replay_buffer
                self.replay_states.save(directory, buffer.buffer_size if buffer.full else buffer.pos)
        atomic_write_json(directory / CHECKPOINT_FILE, asdict(self.checkpoint()))
        return directory

    @classmethod
    def load(cls, directory: str | Path, reward: Any = None, *, device: str = "auto",
             tensorboard_dir: str | Path | None = None, callbacks: list | None = None,
             wrappers: list[Callable[[Any], Any]] | None = None, algo_kwargs: dict[str, Any] | None = None,
             n_envs: int | None = None, keep_replay: bool = False, task: TaskSpec | None = None) -> Trainer:
        """Continue the training saved in ``directory`` by :meth:`save`.

        Args:
            directory: the checkpoint folder.
            reward: the reward, when it cannot be rebuilt from the checkpoint (a source that is not a
                program); default: ``reward.py`` if saved, else ``builtin``/``sparse`` as recorded.
            device, tensorboard_dir, callbacks, wrappers: as for the constructor.
            algo_kwargs: overrides of saved model attributes (e.g. a new learning rate).
            n_envs: a different number of envs (default: as saved).
            keep_replay: as for the constructor (SAC: the loaded buffer's reward states carry on).
            task: the task spec, when the checkpoint's task is not in this process's registry (a
                custom task travelling to a worker inside its job); it must have the saved name.
        """
        directory = Path(directory)
        meta = Checkpoint.read(directory)
        if not (directory / "model.zip").is_file():
            raise TrainingError(f"no model.zip in {directory}")
        if task is not None and task.name == meta.task:
            spec = task
        else:
            spec = get_task(f"{meta.task}@{meta.task_version}" if getattr(meta, "task_version", None) else meta.task)
        if int(getattr(spec, "version", 1)) != meta.task_version:
            warnings.warn(f"checkpoint was trained on {meta.task} version {meta.task_version}, "
                          f"continuing on version {getattr(spec, 'version', 1)}", stacklevel=2)
        if reward is None:
            reward = directory / "reward.py" if (directory / "reward.py").is_file() else meta.reward
            if reward not in ("builtin", "sparse") and not isinstance(reward, Path):
                raise TrainingError(f"the checkpoint's reward {meta.reward!r} cannot be rebuilt: pass reward=")
        # the saved discount, so that a shaping source (set_gamma) gets the gamma the model trains with
        algo_kwargs = {"gamma": float(meta.gamma), **(algo_kwargs or {})}
        trainer = cls(spec, reward, algo=meta.algo, seed=meta.seed, n_envs=n_envs or meta.n_envs, device=device,
                      algo_kwargs=algo_kwargs, tensorboard_dir=tensorboard_dir, callbacks=callbacks,
                      wrappers=wrappers, eval_every=meta.eval_every, eval_episodes=meta.eval_episodes,
                      normalize=meta.normalize, keep_replay=keep_replay, intrinsic=meta.intrinsic,
                      intrinsic_coef=meta.intrinsic_coef, _checkpoint=directory)
        trainer.fitness.curve = list(meta.curve)
        if trainer.periodic is not None:
            trainer.periodic.evals = list(meta.evals)
        trainer._nonfinite_before = int(meta.nonfinite)
        trainer.train_s = float(meta.train_s)
        trainer.continued_from = int(meta.num_timesteps)
        trainer.warm_from = meta.warm_from
        return trainer

    @classmethod
    def resume_compatible(cls, directory: str | Path, task: TaskSpec, reward: Any, *, algo: str | None, seed: int,
                          steps: int, intrinsic: Any = None, **kw: Any) -> Trainer | None:
        """Continue the checkpoint in ``directory`` when it is an earlier part of this very training
        (same task, algorithm, seed, reward and exploration bonus); else None. A checkpoint that already has ``steps``
        steps (its ``result.json`` was lost) is loaded too: it is evaluated, not trained again."""
        directory = Path(directory)
        try:
            meta = Checkpoint.read(directory)
        except TrainingError:
            return None
        if (meta.task != task.name or meta.seed != int(seed)
                or meta.algo != (algo or task.default_algo).lower() or not (directory / "model.zip").is_file()):
            return None
        if not _same_reward(directory, meta, reward):
            return None
        bonus = intrinsic if intrinsic is None or isinstance(intrinsic, str) else getattr(intrinsic, "name", None)
        if meta.intrinsic != bonus:
            return None
        return cls.load(directory, reward, task=task, **kw)

    @classmethod
    def warm_start(cls, directory: str | Path, task: TaskSpec, reward: Any, **kw: Any) -> Trainer:
        """A new training with ``reward`` whose policy (and observation normalisation) start from the
        checkpoint in ``directory`` (policy reuse across candidates, ROSKA style).

        The reward normalisation starts afresh (the reward is a new one); the step count starts at 0.
        For SAC, a replay buffer saved with the checkpoint is loaded and relabelled with ``reward``
        when the states it was collected in were saved too (:data:`REPLAY_STATES_FILE`).
        """
        import pickle

        directory = Path(directory)
        meta = Checkpoint.read(directory)
        trainer = cls(task, reward, **kw)
        if meta.task != trainer.spec.name or meta.algo != trainer.algo:
            trainer.close()
            raise TrainingError(f"cannot warm-start a {trainer.algo} training on {trainer.spec.name!r} from a "
                                f"{meta.algo} checkpoint of {meta.task!r} ({directory})")
        try:
            trainer.model.set_parameters(str(directory / "model.zip"), exact_match=True, device=trainer.device)
        except Exception as exc:
            trainer.close()
            raise TrainingError(f"cannot warm-start from {directory}: {type(exc).__name__}: {exc}") from None
        trainer.replay_relabelled = _warm_replay(trainer, directory)
        norm, saved = _find_normalize(trainer.venv), directory / "vecnormalize.pkl"
        if norm is not None and saved.is_file():
            with open(saved, "rb") as fh:
                norm.obs_rms = pickle.load(fh).obs_rms
        trainer.warm_from = str(directory)
        return trainer

    def close(self) -> None:
        """Close the envs (and the exploration bonus's resources, e.g. ONI's labelling thread)."""
        self.venv.close()
        close = getattr(getattr(self.intrinsic, "bonus", None), "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _intrinsic_callback(intrinsic: Any, coef: float | None, task: TaskSpec) -> tuple[Any, float | None]:
    """The :class:`~rewardsmith.intrinsic.IntrinsicCallback` for ``intrinsic`` (a name or a bonus), or None."""
    if intrinsic is None:
        return None, None
    from rewardsmith.intrinsic import IntrinsicCallback, make_bonus

    bonus = make_bonus(intrinsic, task=task) if isinstance(intrinsic, str) else intrinsic
    callback = IntrinsicCallback(bonus) if coef is None else IntrinsicCallback(bonus, coef=float(coef))
    return callback, coef


def _bonus_name(callback: Any) -> str:
    return str(getattr(callback.bonus, "name", type(callback.bonus).__name__))


def _warm_replay(trainer: Trainer, directory: Path) -> int:
    """Load a SAC checkpoint's replay buffer into ``trainer`` relabelled with its reward; the count.

    Only a buffer saved with its reward states is loaded (an unrelabelled one would train the new
    reward on the old one's values); 0 when there is none or the trainer is not SAC with a program.
    """
    from rewardsmith.replay import STATES_FILE, relabel_replay

    buffer_file = directory / "replay_buffer.pkl"
    if trainer.algo != "sac" or trainer.source is None or not buffer_file.is_file():
        return 0
    if not (directory / STATES_FILE).is_file():
        return 0
    trainer.model.load_replay_buffer(buffer_file)
    try:
        n = relabel_replay(trainer.model, trainer.source, directory)
    except TrainingError:
        trainer.model.replay_buffer.reset()
        return 0
    if trainer.replay_states is not None:
        trainer.replay_states.load(directory)
    return n


def _same_reward(directory: Path, meta: Checkpoint, reward: Any) -> bool:
    """Whether ``reward`` is the reward the checkpoint in ``directory`` was trained with."""
    from rewardsmith.program import RewardProgram

    if reward is None or reward in ("builtin", "sparse"):
        return meta.reward == (reward or "builtin")
    try:
        saved = (directory / "reward.py").read_text()
    except OSError:
        return False
    if isinstance(reward, RewardProgram):
        return saved == reward.source
    if isinstance(getattr(getattr(reward, "program", None), "source", None), str):
        return saved == reward.program.source  # a source with a program behind it (e.g. a potential)
    if isinstance(reward, Path) or (isinstance(reward, str) and reward.endswith(".py") and "\n" not in reward):
        try:
            return Path(reward).read_text() == saved
        except OSError:
            return False
    return isinstance(reward, str) and reward == saved


def _find_normalize(venv: Any) -> Any:
    from stable_baselines3.common.vec_env import VecNormalize

    from rewardsmith.callbacks import find_wrapper

    return find_wrapper(venv, VecNormalize)


def _batch_size(rollout: int, most: int = 256) -> int:
    """PPO's minibatch: ``most`` or, when that does not divide the rollout (small budgets, halving's
    short rungs), the largest divisor of the rollout between ``most // 8`` and ``most`` (else ``most``)."""
    if rollout <= most:
        return rollout
    for size in range(most, most // 8 - 1, -1):
        if rollout % size == 0:
            return size
    return most


def _build_model(algo: str, task: TaskSpec, venv: Any, seed: int, device: str, n_envs: int,
                 tb_dir: str | None, algo_kwargs: dict[str, Any] | None, steps: int) -> Any:
    from stable_baselines3 import PPO, SAC

    kwargs: dict[str, Any] = dict(task.algo_kwargs.get(algo, {}))
    if algo == "ppo":
        n_steps = max(min(2048, steps) // n_envs, 16)  # a rollout never exceeds the budget
        kwargs = {"n_steps": n_steps, "batch_size": _batch_size(n_steps * n_envs), **kwargs}
    kwargs.update(algo_kwargs or {})
    cls = PPO if algo == "ppo" else SAC
    try:
        return cls("MlpPolicy", venv, seed=seed, device=device, verbose=0, tensorboard_log=tb_dir, **kwargs)
    except TypeError as exc:
        raise TrainingError(f"bad {algo} settings: {exc}") from None


def _load_model(algo: str, directory: Path, venv: Any, device: str, tb_dir: str | None,
                overrides: dict[str, Any] | None) -> Any:
    from stable_baselines3 import PPO, SAC

    cls = PPO if algo == "ppo" else SAC
    model = cls.load(directory / "model.zip", env=venv, device=device,
                     custom_objects={"tensorboard_log": tb_dir, **(overrides or {})})
    if algo == "sac" and (directory / "replay_buffer.pkl").is_file():
        model.load_replay_buffer(directory / "replay_buffer.pkl")
    return model


__all__ = ["CHECKPOINT_FILE", "Checkpoint", "Trainer"]
