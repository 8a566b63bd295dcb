"""imitation's reward net and trainer on the data of :mod:`bench_pref_accuracy` (issue 9).

Runs INSIDE imitation's own virtualenv (imitation 1.0.1 pins gymnasium 0.29 and SB3 2.2)::

    python -m venv /tmp/imitation-venv
    /tmp/imitation-venv/bin/pip install torch==2.13.0 imitation
    /tmp/imitation-venv/bin/python benchmarks/bench_pref_imitation.py [--epochs 1 20] [--ensemble-epochs 1]

It reads the same ``.npz`` (``--data``; written by ``bench_pref_accuracy.py``), the same pairs,
labels, features and metric code (this module imports only the numpy/scipy helpers of
``bench_pref_accuracy``; nothing of rewardsmith). Each segment becomes an imitation fragment, a
``TrajectoryWithRew`` (``obs`` L+1 observations, ``acts`` L actions, ``rews`` the env's rewards,
``terminal=False``), and each labelled pair goes into a ``PreferenceDataset``. The reward net is
``BasicRewardNet`` (state and action inputs, as ours; MLP 32x32) with ``RunningNorm`` input
normalisation, the default of imitation's ``train_preference_comparisons`` script; it is trained
by ``BasicRewardTrainer`` with ``CrossEntropyRewardLoss`` through a ``PreferenceModel`` (no noise,
no discount, imitation's defaults), AdamW lr 1e-3, batch 32 (the trainer's defaults), for
``--epochs`` epochs: the trainer's default is 1; ``PreferenceComparisons`` trains its first round of
comparisons for ``initial_epoch_multiplier = 200`` times that. ``--ensemble-epochs`` also trains
imitation's ``reward_ensemble`` configuration: a ``RewardEnsemble`` of 5 ``BasicRewardNet`` s (no
input normalisation, as that named config sets) with ``EnsembleTrainer`` (bagging).

Predicted returns are the sums of the (base) net's rewards in eval mode (the ensemble: the members'
mean). Rows go to ``--out`` (default ``benchmarks/results/pref_accuracy_imitation.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pref_accuracy import (  # numpy/scipy helpers only
    RESULTS,
    SEG_LEN,
    Args,
    load_or_generate,
    machine,
    metrics,
    oracle,
    segment_arrays,
)


def fragments(seg: dict[str, np.ndarray], side: int) -> list[Any]:
    from imitation.data.types import TrajectoryWithRew

    return [TrajectoryWithRew(obs=seg["obs"][i, side], acts=seg["act"][i, side], infos=None, terminal=False,
                              rews=seg["rew"][i, side].astype(np.float32)) for i in range(len(seg["obs"]))]


def build(ensemble: bool, seed: int) -> tuple[Any, Any]:
    """The reward net and its PreferenceModel."""
    import gymnasium as gym
    import torch as th
    from imitation.algorithms.preference_comparisons import PreferenceModel
    from imitation.rewards.reward_nets import BasicRewardNet, RewardEnsemble
    from imitation.util.networks import RunningNorm

    th.manual_seed(seed)
    obs_space = gym.spaces.Box(np.array([-1, -1, -8], np.float32), np.array([1, 1, 8], np.float32))
    act_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    if ensemble:
        net = RewardEnsemble(obs_space, act_space, [BasicRewardNet(obs_space, act_space) for _ in range(5)])
    else:
        net = BasicRewardNet(obs_space, act_space, normalize_input_layer=RunningNorm)
    return net, PreferenceModel(net)


def predict_returns(net: Any, seg: dict[str, np.ndarray], ensemble: bool) -> np.ndarray:
    """``(N, 2)`` predicted segment returns (eval mode, no gradient)."""
    import torch as th

    n = seg["obs"].shape[0]
    obs = seg["obs"][:, :, :-1].reshape(-1, 3)
    nxt = seg["obs"][:, :, 1:].reshape(-1, 3)
    act = seg["act"].reshape(-1, 1)
    done = np.zeros(len(obs), dtype=bool)
    members = list(net.members) if ensemble else [net]
    out = np.zeros(len(obs))
    with th.no_grad():
        for m in members:
            m.eval()
            out += m(*m.preprocess(obs, act, nxt, done)).double().numpy()
    return (out / len(members)).reshape(n, 2, SEG_LEN).sum(axis=-1)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import imitation
    import torch as th
    from imitation.algorithms.preference_comparisons import (
        BasicRewardTrainer,
        CrossEntropyRewardLoss,
        EnsembleTrainer,
        PreferenceDataset,
    )
    from imitation.util import logger as imit_logger

    th.set_num_threads(1)
    data = load_or_generate(Args(data=args.data))
    temperature = float(data["temperature"])
    test = segment_arrays(data, data["test_pairs"])
    true_test, _, soft = oracle(test, temperature)
    log = imit_logger.configure(folder=None, format_strs=[])
    configs = [(False, e) for e in args.epochs] + [(True, e) for e in args.ensemble_epochs]
    rows = []
    for ensemble, epochs in configs:
        for seed in range(args.seeds):
            for n in args.sizes:
                seg = segment_arrays(data, data["train_pairs"][seed, :n])
                _, hard, _ = oracle(seg, temperature)
                dataset = PreferenceDataset()
                dataset.push(list(zip(fragments(seg, 0), fragments(seg, 1))), hard.astype(np.float32))
                net, pref_model = build(ensemble, seed)
                cls = EnsembleTrainer if ensemble else BasicRewardTrainer
                trainer = cls(pref_model, CrossEntropyRewardLoss(), rng=np.random.default_rng(seed),
                              epochs=epochs, custom_logger=log)  # batch 32, lr 1e-3: its defaults
                t0 = time.perf_counter()
                trainer.train(dataset)
                fit_s = time.perf_counter() - t0
                pred = predict_returns(net, test, ensemble)
                label = f"imitation {'RewardEnsemble x5' if ensemble else 'BasicRewardNet'}, {epochs} epoch" \
                        + ("s" if epochs > 1 else "")
                row = {"library": "imitation", "label": label, "version": imitation.__version__,
                       "torch": th.__version__, "pairs": n, "seed": seed, **metrics(pred, true_test, soft),
                       "fit_s": fit_s, "epochs": epochs, "ensemble": ensemble, **machine()}
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("label", "pairs", "seed", "accuracy", "bce", "spearman",
                                                      "fit_s")}), flush=True)
    return rows


def main() -> None:
    d = Args()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=d.data)
    p.add_argument("--sizes", type=int, nargs="+", default=list(d.sizes))
    p.add_argument("--seeds", type=int, default=d.seeds)
    p.add_argument("--epochs", type=int, nargs="+", default=[1], help="epochs per training (trainer default 1)")
    p.add_argument("--ensemble-epochs", type=int, nargs="*", default=[],
                   help="also imitation's reward_ensemble configuration, for these epochs")
    p.add_argument("--out", default=str(RESULTS / "pref_accuracy_imitation.jsonl"))
    args = p.parse_args()
    rows = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
