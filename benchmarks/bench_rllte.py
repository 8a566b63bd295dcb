"""rllte's RND (PyPI ``rllte-core`` 1.0.1) through rllte's documented SB3 callback, on sparse MountainCar.

The other side of ``benchmarks/bench_intrinsic.py``'s ``mountain-car`` / ``rnd`` rows: the same env,
PPO settings, seeds, budget and metrics, with the exploration bonus from rllte instead of
rewardsmith. It runs in a separate virtualenv that has rllte but not rewardsmith, so it imports
nothing from rewardsmith and rebuilds its training stack by hand::

    flock /tmp/rewardsmith-bench.lock /tmp/rllte-venv/bin/python benchmarks/bench_rllte.py \\
        --seeds 5 --steps 100000 --jobs 2 --out benchmarks/results/intrinsic_rllte.jsonl

One JSON row per (variant, seed) is appended to ``--out`` (rows already there are skipped, so a
killed sweep resumes); ``python benchmarks/bench_intrinsic.py --report`` joins them into its table.

What is matched to rewardsmith's ``Trainer("mountain-car", "sparse", seed=s, budget=100000, ...)``:

* env: gymnasium ``MountainCar-v0`` (its 200-step TimeLimit; termination and truncation unchanged)
  with the reward replaced by the sparse indicator ``1.0 if position >= 0.5 else 0.0`` of the
  post-step state (a small gymnasium wrapper instead of rewardsmith's RewardVecEnv);
* stack: 8 ``DummyVecEnv`` envs (action spaces seeded ``seed + rank``, ``venv.seed(seed)``) ->
  ``VecMonitor`` -> ``VecNormalize(norm_obs=True, norm_reward=True, gamma=0.99)``;
* PPO: SB3 defaults except ``n_steps=256`` (2048 / 8), ``batch_size=256``, ``seed=seed``, CPU, one
  torch thread; 100000 steps round up to 49 rollouts = 100352 steps, as on rewardsmith's side;
* metrics, as ``bench_intrinsic.run_one``: first training episode that reached the flag (its env
  step), successes, episodes, late success (training episodes ending after 80% of the steps),
  eval success (10 deterministic episodes on 4 envs seeded ``seed + 1000``, frozen observation
  normalisation), coverage of the 20 x 20 position x velocity grid over [-1.2, 0.6] x [-0.07, 0.07]
  (post-step states, terminal states included), wall time (building everything + training) and
  us/step.

Variants: ``rllte-rnd`` is ``rllte.xplore.reward.RND`` with its defaults (beta=1.0, kappa=0, so the
weight stays 1.0; rwd_norm_type="rms", obs_norm_type="rms"; latent 128, lr 1e-3, batch 256,
update_proportion 1.0); ``rllte-rnd-b0.01`` is the same with beta=0.01, closer to rewardsmith's
``intrinsic_coef=0.01``.

The integration reproduces rllte's own SB3 example (RLE-Foundation/RLeXplore, notebook
``2 rlexplore_with_sb3.ipynb``, class ``RLeXploreWithOnPolicyRL``), re-written here:

* every env step (``_on_step``) it calls ``irs.watch(...)`` with the step's tensors; RND's ``watch``
  does nothing;
* at the rollout's end (``_on_rollout_end``, which SB3 calls AFTER
  ``rollout_buffer.compute_returns_and_advantage``, i.e. after GAE) it takes the buffer's
  observations ``(n_steps, n_envs, obs_dim)`` (already VecNormalize-normalised), builds the "next
  observations" by shifting them one step (``next[t] = obs[t + 1]``, the last row being the
  rollout's final ``new_obs``), calls ``irs.compute(samples, sync=True)`` - which updates RND's own
  observation running mean/std with the observations, computes the bonus as the predictor/target
  MSE on the (re-normalised, clipped to +-5) next observations, trains the predictor one epoch on
  the observations (minibatches of 256), and returns ``bonus / running_std(bonus) * beta`` - and
  then ADDS that bonus to ``rollout_buffer.advantages`` and to ``rollout_buffer.returns`` in place.

Its known flaws, kept here on purpose because they are what the documented integration does:

* the bonus is added after GAE, so it never propagates through the returns: each step's advantage
  (and value target) gets only that step's own bonus, undiscounted, with no credit flowing back
  to the actions that led to novel states. rewardsmith's IntrinsicCallback instead adds the bonus
  to ``rollout_buffer.rewards`` and recomputes returns and advantages. The bonus also bypasses
  VecNormalize's reward scaling, and PPO then normalises the summed advantages per minibatch;
* at episode boundaries the shifted "next observation" is the NEXT episode's reset observation
  (SB3 auto-resets; the true terminal observation is only in ``info["terminal_observation"]``,
  which the example ignores), so the bonus of a transition that ended an episode is the novelty
  of a start state. The done flags it passes (``episode_starts``) are unused by RND;
* ``RND(envs)`` calls ``init_normalization``, which steps ``envs`` 2560 times with random actions
  to initialise its observation statistics. The example passes the training envs; here a separate
  stack built the same way (seed ``seed + 500``) is passed instead, so that the training envs, their
  VecNormalize statistics and the step budget are exactly those of the rewardsmith runs (the
  20480 warm-up env steps are not counted in ``steps`` but are in ``wall_s``).

Torch is seeded with ``seed`` before RND's networks are built (PPO reseeds it afterwards), so a
run is reproducible.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

TASK = "mountain-car@1"  # the task ref rewardsmith's rows carry
VARIANTS = {"rllte-rnd": 1.0, "rllte-rnd-b0.01": 0.01}  # bonus name -> rllte's beta
N_ENVS, N_STEPS, BATCH, GAMMA = 8, 256, 256, 0.99
GRID, LOW, HIGH = 20, np.array([-1.2, -0.07]), np.array([0.6, 0.07])
GOAL = 0.5


def _sparse_env() -> Any:
    import gymnasium as gym

    class SparseReward(gym.Wrapper):
        """MountainCar with reward 1.0 when the post-step position is >= 0.5, else 0.0.

        ``info["state"]``: the raw post-step observation; ``info["episode_success"]`` at an episode's
        last step: whether the flag was reached during it.
        """

        def reset(self, **kwargs: Any) -> tuple[Any, dict]:
            self.reached = False
            return self.env.reset(**kwargs)

        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
            obs, _, terminated, truncated, info = self.env.step(action)
            hit = bool(obs[0] >= GOAL)
            self.reached = self.reached or hit
            info["state"] = np.array(obs, dtype=np.float64)
            if terminated or truncated:
                info["episode_success"] = self.reached
            return obs, 1.0 if hit else 0.0, terminated, truncated, info

    return SparseReward(gym.make("MountainCar-v0"))


def make_venv(seed: int, n_envs: int = N_ENVS) -> Any:
    """8 sparse MountainCars -> VecMonitor -> VecNormalize, seeded as rewardsmith's make_vec_env."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

    def factory(rank: int):
        def make():
            env = _sparse_env()
            env.action_space.seed(seed + rank)
            return env
        return make

    venv: Any = DummyVecEnv([factory(i) for i in range(n_envs)])
    venv.seed(seed)
    venv = VecMonitor(venv)
    return VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=GAMMA)


def _callbacks(irs: Any) -> tuple[Any, Any]:
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    class RLLTEOnPolicy(BaseCallback):
        """rllte's documented on-policy integration (see the module docstring): bonus added to the
        buffer's advantages and returns after SB3 computed GAE."""

        def __init__(self) -> None:
            super().__init__()
            self.irs = irs
            self.bonus_means: list[float] = []

        def _on_step(self) -> bool:
            obs = th.as_tensor(self.locals["obs_tensor"])
            dones = th.as_tensor(self.locals["dones"])
            self.irs.watch(obs, th.as_tensor(self.locals["actions"]), th.as_tensor(self.locals["rewards"]),
                           dones, dones, th.as_tensor(self.locals["new_obs"]))
            return True

        def _on_rollout_end(self) -> None:
            buf = self.model.rollout_buffer
            obs = th.as_tensor(buf.observations)
            nxt = obs.clone()
            nxt[:-1] = obs[1:]  # at an episode boundary: the next episode's reset observation
            nxt[-1] = th.as_tensor(self.locals["new_obs"])
            starts = th.as_tensor(buf.episode_starts)
            bonus = self.irs.compute(samples={"observations": obs, "actions": th.as_tensor(buf.actions),
                                              "rewards": th.as_tensor(buf.rewards), "terminateds": starts,
                                              "truncateds": starts, "next_observations": nxt}, sync=True)
            bonus = bonus.cpu().numpy().astype(buf.advantages.dtype)
            buf.advantages += bonus  # after GAE: no propagation through the returns
            buf.returns += bonus
            self.bonus_means.append(float(bonus.mean()))

    class Tracker(BaseCallback):
        """Training-episode successes (with the step) and the grid cells visited (post-step states)."""

        def __init__(self) -> None:
            super().__init__()
            self.visited = np.zeros((GRID, GRID), dtype=bool)
            self.episodes: list[tuple[int, bool]] = []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                cell = np.clip(((info["state"] - LOW) / (HIGH - LOW) * GRID).astype(int), 0, GRID - 1)
                self.visited[cell[0], cell[1]] = True
                if "episode_success" in info:
                    self.episodes.append((int(self.num_timesteps), bool(info["episode_success"])))
            return True

    return RLLTEOnPolicy(), Tracker()


def evaluate(model: Any, train_venv: Any, episodes: int, seed: int) -> list[bool]:
    """Successes of the deterministic policy, as rewardsmith.train.evaluate counts them."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    n = max(1, min(episodes, 4))
    base = DummyVecEnv([_sparse_env for _ in range(n)])
    base.seed(seed)
    venv = VecNormalize(base, norm_obs=True, norm_reward=False, training=False)
    venv.obs_rms = train_venv.obs_rms
    obs = venv.reset()
    found: list[bool] = []
    per_env = [0] * n
    quota = [episodes // n + (1 if i < episodes % n else 0) for i in range(n)]
    while len(found) < episodes:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = venv.step(action)
        for i, done in enumerate(dones):
            if done and per_env[i] < quota[i]:
                per_env[i] += 1
                found.append(bool(infos[i]["episode_success"]))
    venv.close()
    return found


def run_one(bonus: str, seed: int, steps: int) -> dict[str, Any]:
    """Train one run and measure it (one process, one thread)."""
    import torch as th
    from rllte.xplore.reward import RND
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CallbackList

    th.set_num_threads(1)
    beta = VARIANTS[bonus]
    t0 = time.perf_counter()
    venv = make_venv(seed)
    warmup = make_venv(seed + 500)  # for RND's init_normalization (2560 random steps per env)
    th.manual_seed(seed)
    irs = RND(warmup, device="cpu", beta=beta)
    warmup.close()
    rllte_cb, tracker = _callbacks(irs)
    model = PPO("MlpPolicy", venv, n_steps=N_STEPS, batch_size=BATCH, seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=steps, callback=CallbackList([rllte_cb, tracker]))
    wall = time.perf_counter() - t0
    n = int(model.num_timesteps)
    venv.training = False
    evals = evaluate(model, venv, 10, seed + 1000)
    venv.close()
    firsts = [s for s, ok in tracker.episodes if ok]
    late = [ok for s, ok in tracker.episodes if s > 0.8 * n]
    return {"task": TASK, "bonus": bonus, "seed": seed, "steps": n, "coef": beta,
            "first_success": firsts[0] if firsts else None, "successes": len(firsts),
            "episodes": len(tracker.episodes), "late_success": float(np.mean(late)) if late else 0.0,
            "eval_success": float(np.mean(evals)), "coverage": float(tracker.visited.mean()),
            "wall_s": wall, "us_per_step": 1e6 * wall / n,
            "bonus_mean": float(np.mean(rllte_cb.bonus_means)) if rllte_cb.bonus_means else None,
            "impl": "rllte-core 1.0.1 RND, RLeXploreWithOnPolicyRL-style callback"}


def _done(out: Path) -> set[tuple]:
    if not out.is_file():
        return set()
    keys = set()
    for line in out.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        keys.add((r["bonus"], r["seed"]))
    return keys


def sweep(variants: list[str], seeds: int, steps: int, jobs: int, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(out)
    todo = [(b, s) for s in range(seeds) for b in variants if (b, s) not in done]
    print(f"{len(todo)} runs to go ({len(done)} already in {out})", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_one, b, s, steps): (b, s) for b, s in todo}
        for k, fut in enumerate(futures, 1):
            b, s = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # one failed run is reported, the sweep goes on
                print(f"[{k}/{len(todo)}] {b} seed {s}: FAILED: {exc!r}", file=sys.stderr)
                continue
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[{k}/{len(todo)}] {b} seed {s}: first success {row['first_success']}, "
                  f"late {row['late_success']:.2f}, eval {row['eval_success']:.2f}, coverage "
                  f"{row['coverage']:.2f}, {row['us_per_step']:.0f} us/step", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/intrinsic_rllte.jsonl"))
    args = ap.parse_args(argv)
    sweep(args.variants, args.seeds, args.steps, args.jobs, args.out)


if __name__ == "__main__":
    main()
