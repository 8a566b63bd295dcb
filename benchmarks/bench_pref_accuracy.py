"""Held-out preference accuracy of reward models learned from preferences on Pendulum-v1 (issue 9).

``python benchmarks/bench_pref_accuracy.py [--data /tmp/rewardsmith-pref/pendulum.npz]
[--sizes 250 500 1000 2000] [--seeds 3] [--out benchmarks/results/pref_accuracy.jsonl]``

1. **Data** (written once to ``--data``, reused when it exists; deterministic from ``--data-seed``):
   500 Pendulum-v1 episodes of 200 steps from several behaviour policies (uniform random torque,
   constant torque, PD controllers of three gains with noise, and an energy-shaping swing-up with a
   PD catch at four noise levels). Episodes are split 80/20 into training and held-out episodes.
   A segment is 50 consecutive steps of one episode; its features per step are the observation
   the action was taken in and the action, ``[cos th, sin th, thdot, torque]`` (identical for both
   libraries); its true return is the sum of the env's own rewards over those steps. Training
   pairs (2000 per seed; the first 250/500/1000 of them are the smaller sets, so the sets are
   nested) join two random segments of training episodes; the 5000 held-out pairs join two random
   segments of held-out episodes. Labels are the oracle's: 1 when the left segment's true return
   is larger, else 0. The soft oracle is ``p = sigmoid((R_left - R_right) / T)`` with
   ``T = --temperature`` (default 10 reward units: a return gap of 10 is preferred 73% of the time).
2. **Ours**: ``RewardModel(4, seed=seed).fit(batch)`` with every default a user gets (an ensemble
   of 3 bagged MLPs 64x64, Adam lr 1e-3, batch 64, up to 100 epochs, 20% of the pairs held out for
   early stopping with patience 10).
3. **Metrics** on the 5000 held-out pairs: accuracy (the predicted-return difference has the
   oracle's sign), BCE of the predicted probability against the soft oracle (the soft oracle's
   own entropy is the floor, reported as ``bce_floor``), Spearman's rho between predicted and true
   returns of the 10000 held-out segments, and the fit's wall time (torch on one thread).

Rows (one per size x seed) go to ``--out``. ``--report`` prints the markdown table of
``benchmarks/results/pref_accuracy.jsonl`` and ``pref_accuracy_imitation.jsonl``: means with a 95%
percentile bootstrap over seeds (10000 resamples of the 3 seeds with replacement).
:mod:`bench_pref_imitation` runs imitation on the same file, in its own virtualenv; it imports
only the numpy/scipy helpers of this module (nothing of rewardsmith is imported at module level).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

RESULTS = Path(__file__).resolve().parent / "results"
STEPS, SEG_LEN = 200, 50
G15 = 15.0  # 3 g / (2 l) of Pendulum-v1: thdd = 15 sin th + 3 u


@dataclass
class Args:
    """Benchmark settings (the CLI's defaults)."""

    data: str = "/tmp/rewardsmith-pref/pendulum.npz"
    data_seed: int = 0
    episodes: int = 500
    heldout_fraction: float = 0.2
    train_pairs: int = 2000
    test_pairs: int = 5000
    temperature: float = 10.0
    sizes: tuple[int, ...] = (250, 500, 1000, 2000)
    seeds: int = 3
    out: str = str(RESULTS / "pref_accuracy.jsonl")
    stop_on: str = "accuracy"
    report: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- behaviour policies
def _angle(obs: np.ndarray) -> float:
    return math.atan2(float(obs[1]), float(obs[0]))


def _policy(kind: str, rng: np.random.Generator):
    """A behaviour policy ``obs -> torque`` and its name; parameters drawn from ``rng``."""
    if kind == "random":
        return "random", lambda obs: rng.uniform(-2, 2)
    if kind == "constant":
        c = float(rng.uniform(-2, 2))
        return f"constant({c:+.1f})", lambda obs: c
    if kind == "pd":
        kp, kd = [(2.0, 0.5), (6.0, 1.0), (12.0, 2.0)][int(rng.integers(3))]
        sigma = float(rng.choice([0.0, 0.5, 1.0]))
        return f"pd(kp={kp:g},kd={kd:g},noise={sigma:g})", \
            lambda obs: -kp * _angle(obs) - kd * float(obs[2]) + sigma * rng.normal()
    if kind == "energy":
        sigma = float(rng.choice([0.0, 0.3, 1.0, 2.0]))

        def swing_up(obs: np.ndarray) -> float:
            th, thdot = _angle(obs), float(obs[2])
            if abs(th) < 0.5:  # catch and balance
                u = -12.0 * th - 2.0 * thdot
            else:  # pump energy towards the upright's, 15: dE/dt = 3 u thdot
                energy = 0.5 * thdot ** 2 + G15 * math.cos(th)
                u = 0.5 * (G15 - energy) * (thdot if abs(thdot) > 1e-3 else 1.0)
            return u + sigma * rng.normal()

        return f"energy(noise={sigma:g})", swing_up
    raise ValueError(kind)


POLICY_MIX = (("random", 0.2), ("constant", 0.15), ("pd", 0.25), ("energy", 0.4))


def generate(args: Args) -> dict[str, np.ndarray]:
    """Roll out the episodes and draw the pairs (see the module docstring)."""
    import gymnasium as gym

    rng = np.random.default_rng(args.data_seed)
    env = gym.make("Pendulum-v1")
    kinds = rng.choice([k for k, _ in POLICY_MIX], size=args.episodes, p=[p for _, p in POLICY_MIX])
    obs_all = np.zeros((args.episodes, STEPS + 1, 3), np.float32)
    act_all = np.zeros((args.episodes, STEPS, 1), np.float32)
    rew_all = np.zeros((args.episodes, STEPS), np.float64)
    names = []
    for e, kind in enumerate(kinds):
        name, policy = _policy(str(kind), rng)
        names.append(name)
        obs, _ = env.reset(seed=int(rng.integers(2 ** 31)))
        obs_all[e, 0] = obs
        for t in range(STEPS):
            a = np.array([np.clip(policy(obs), -2.0, 2.0)], np.float32)
            obs, r, term, trunc, _ = env.step(a)
            obs_all[e, t + 1], act_all[e, t], rew_all[e, t] = obs, a, r
        assert trunc and not term
    env.close()
    perm = rng.permutation(args.episodes)
    n_test = round(args.episodes * args.heldout_fraction)
    test_eps, train_eps = np.sort(perm[:n_test]), np.sort(perm[n_test:])

    def pairs(eps: np.ndarray, n: int) -> np.ndarray:  # (n, 2 sides, [episode, start])
        ep = rng.choice(eps, size=(n, 2))
        start = rng.integers(0, STEPS - SEG_LEN + 1, size=(n, 2))
        return np.stack([ep, start], axis=-1).astype(np.int32)

    train = np.stack([pairs(train_eps, args.train_pairs) for _ in range(args.seeds)])
    return {"obs": obs_all, "act": act_all, "rew": rew_all, "policy": np.array(names), "kind": kinds.astype(str),
            "train_episodes": train_eps, "test_episodes": test_eps, "train_pairs": train,
            "test_pairs": pairs(test_eps, args.test_pairs), "temperature": np.float64(args.temperature),
            "segment_length": np.int32(SEG_LEN), "data_seed": np.int64(args.data_seed)}


def load_or_generate(args: Args) -> dict[str, np.ndarray]:
    """The dataset at ``args.data``, generated first when missing."""
    path = Path(args.data)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **generate(args))
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# ----------------------------------------------------------------------------- shared helpers
def segment_arrays(data: dict[str, np.ndarray], pairs: np.ndarray) -> dict[str, np.ndarray]:
    """Per side of ``pairs`` ``(N, 2, 2)``: ``obs (N, 2, L+1, 3)``, ``act (N, 2, L, 1)``, ``rew (N, 2, L)``."""
    ep, start = pairs[..., 0], pairs[..., 1]
    t = start[..., None] + np.arange(SEG_LEN + 1)
    obs = data["obs"][ep[..., None], t]
    act = data["act"][ep[..., None], t[..., :-1]]
    rew = data["rew"][ep[..., None], t[..., :-1]]
    return {"obs": obs, "act": act, "rew": rew}


def features(seg: dict[str, np.ndarray]) -> np.ndarray:
    """``(N, 2, L, 4)``: the observation each action was taken in, and the action."""
    return np.concatenate([seg["obs"][..., :-1, :], seg["act"]], axis=-1).astype(np.float64)


def oracle(seg: dict[str, np.ndarray], temperature: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True returns ``(N, 2)``, hard labels ``(N,)`` (1 = left better) and soft-oracle probabilities."""
    ret = seg["rew"].sum(axis=-1)
    diff = ret[:, 0] - ret[:, 1]
    return ret, (diff > 0).astype(np.float64), 1.0 / (1.0 + np.exp(-diff / temperature))


def metrics(pred_returns: np.ndarray, true_returns: np.ndarray, soft: np.ndarray) -> dict[str, float]:
    """Accuracy, BCE against the soft oracle, Spearman rho; returns are ``(N, 2)`` for N pairs."""
    logit = pred_returns[:, 0] - pred_returns[:, 1]
    true_diff = true_returns[:, 0] - true_returns[:, 1]
    strict = true_diff != 0
    acc = float(np.mean((logit[strict] > 0) == (true_diff[strict] > 0)))
    # BCE from logits, stably: softplus(-z) for the left, softplus(z) for the right
    bce = float(np.mean(soft * np.logaddexp(0, -logit) + (1 - soft) * np.logaddexp(0, logit)))
    floor = float(np.mean(-(soft * np.log(np.clip(soft, 1e-300, 1)) + (1 - soft) * np.log(np.clip(1 - soft, 1e-300, 1)))))
    rho = float(spearmanr(pred_returns.reshape(-1), true_returns.reshape(-1)).statistic)
    return {"accuracy": acc, "bce": bce, "bce_floor": floor, "spearman": rho}


def bootstrap_ci(values: list[float], reps: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile bootstrap interval over seeds (resampled with replacement)."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def machine() -> dict[str, Any]:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


# ----------------------------------------------------------------------------- ours
def run_ours(args: Args, data: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    import torch

    import rewardsmith
    from rewardsmith.preference import PreferenceBatch, RewardModel

    torch.set_num_threads(1)
    test = segment_arrays(data, data["test_pairs"])
    test_x = features(test)
    true_test, _, soft = oracle(test, float(data["temperature"]))
    rows = []
    for seed in range(args.seeds):
        for n in args.sizes:
            seg = segment_arrays(data, data["train_pairs"][seed, :n])
            x = features(seg)
            _, hard, _ = oracle(seg, float(data["temperature"]))
            batch = PreferenceBatch(x[:, 0], x[:, 1], hard)
            model = RewardModel(x.shape[-1], seed=seed)
            t0 = time.perf_counter()
            hist = model.fit(batch, stop_on=args.stop_on)
            fit_s = time.perf_counter() - t0
            pred = model.predict_returns(test_x.reshape(-1, SEG_LEN, x.shape[-1])).reshape(-1, 2)
            row = {"library": "rewardsmith" if args.stop_on == "accuracy" else f"rewardsmith stop_on={args.stop_on}",
                   "version": rewardsmith.__version__, "torch": torch.__version__,
                   "pairs": n, "seed": seed, **metrics(pred, true_test, soft), "fit_s": fit_s,
                   "epochs": len(hist["epoch"]), "best_epoch": hist["best_epoch"],
                   "config": "RewardModel(4, seed=seed).fit(batch): k=3, (64, 64), lr 1e-3, batch 64, "
                             "<=100 epochs, val 0.2, patience 10", **machine()}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("pairs", "seed", "accuracy", "bce", "spearman", "fit_s",
                                                  "epochs")}), flush=True)
    return rows


# ----------------------------------------------------------------------------- report
def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(paths: list[Path]) -> str:
    rows = [r for p in paths for r in _read(p)]
    libs = list(dict.fromkeys(r["label"] if "label" in r else r["library"] for r in rows))
    lines = ["| pairs | library | accuracy | BCE vs soft oracle | Spearman | fit s |",
             "|---:|---|---|---|---|---:|"]
    for n in sorted({r["pairs"] for r in rows}):
        for lib in libs:
            sel = [r for r in rows if r["pairs"] == n and r.get("label", r["library"]) == lib]
            if not sel:
                continue
            cells = []
            for key, fmt in (("accuracy", "{:.3f}"), ("bce", "{:.3f}"), ("spearman", "{:.3f}")):
                m, lo, hi = bootstrap_ci([r[key] for r in sel])
                cells.append(f"{fmt.format(m)} [{fmt.format(lo)}, {fmt.format(hi)}]")
            m, lo, hi = bootstrap_ci([r["fit_s"] for r in sel])
            cells.append(f"{m:.1f} [{lo:.1f}, {hi:.1f}]")
            lines.append(f"| {n} | {lib} ({len(sel)} seeds) | " + " | ".join(cells) + " |")
    floor = {round(r["bce_floor"], 4) for r in rows}
    lines.append("")
    lines.append(f"BCE floor (the soft oracle's own entropy on the held-out pairs): {', '.join(map(str, floor))}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Args()
    p.add_argument("--data", default=d.data)
    p.add_argument("--data-seed", type=int, default=d.data_seed)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--sizes", type=int, nargs="+", default=list(d.sizes))
    p.add_argument("--seeds", type=int, default=d.seeds)
    p.add_argument("--out", default=d.out)
    p.add_argument("--stop-on", default="accuracy", choices=["accuracy", "loss"],
                   help="our early stopping's criterion (the default is the library's)")
    p.add_argument("--report", action="store_true", help="only print the table of the rows written")
    a = p.parse_args()
    args = Args(data=a.data, data_seed=a.data_seed, temperature=a.temperature, sizes=tuple(a.sizes),
                seeds=a.seeds, out=a.out, report=a.report, stop_on=a.stop_on)
    if not args.report:
        t0 = time.perf_counter()
        data = load_or_generate(args)
        print(f"data: {len(data['obs'])} episodes, {data['train_pairs'].shape[1]} train pairs x "
              f"{data['train_pairs'].shape[0]} seeds, {len(data['test_pairs'])} held-out pairs "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
        rows = run_ours(args, data)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    extra = [RESULTS / "pref_accuracy_loss.jsonl"] if (RESULTS / "pref_accuracy_loss.jsonl").is_file() else []
    print(report([RESULTS / "pref_accuracy.jsonl", *extra, RESULTS / "pref_accuracy_imitation.jsonl"]))


if __name__ == "__main__":
    main()
