"""Reflection: turn a training run's statistics into facts and plain-words failure modes.

:func:`reflect` reads what :class:`~rewardsmith.callbacks.FitnessLogger` recorded (component
values, fitness, episode lengths, termination causes, action saturation) and returns a
structured dict; ``prompts/reflection.j2`` renders it for the coder. The offline coder reads the
same dict, so both coders learn from the same evidence.

Each component's ``share`` of |total| is its mean |value| per step over the sum of every
component's mean |value| (exact when the components add up to the total and do not cancel).
The total itself is compared with the components' sum when the curve logs it (``reward_mean``
per point): a reward with a term that is no component is flagged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_CHECKPOINTS = 10
#: a gap between the mean reward and the summed component means above this fraction of the
#: reward's scale is reported: part of the reward is in no component
GAP_RTOL = 0.05


def _subsample(values: list[Any], k: int = N_CHECKPOINTS) -> list[Any]:
    if len(values) <= k:
        return list(values)
    idx = np.linspace(0, len(values) - 1, k).round().astype(int)
    return [values[i] for i in idx]


def _corr(a: list[float], b: list[float]) -> float | None:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 3 or np.std(x) < 1e-12 or np.std(y) < 1e-12:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def max_episode_steps(task: Any) -> int | None:
    """The env's time limit, when gymnasium knows it."""
    try:
        import gymnasium as gym

        return gym.spec(task.env_id).max_episode_steps
    except Exception:
        return None


def reflect(task: Any, result: Any, components: list[str] | None = None) -> dict[str, Any]:
    """Statistics and failure modes of one training run.

    Args:
        task: the TaskSpec.
        result: a :class:`~rewardsmith.train.TrainResult` (or its dict).
        components: the program's component names (None for the built-in reward).
    """
    r = result if isinstance(result, dict) else result.to_dict()
    curve = [p for p in r.get("curve", []) if p]
    with_fit = [p for p in curve if p.get("fitness_mean") is not None]
    fitness_curve = [(p["step"], p["fitness_mean"]) for p in with_fit]
    length_curve = [(p["step"], p["episode_length_mean"]) for p in with_fit]
    ends: dict[str, int] = {}
    for p in curve:
        for k, v in p.get("terminations", {}).items():
            ends[k] = ends.get(k, 0) + v
    sats = [p["action_saturation"] for p in curve if p.get("action_saturation") is not None]
    out: dict[str, Any] = {
        "fitness": {"final_mean": r.get("fitness_mean"), "final_std": r.get("fitness_std"),
                    "success_rate": r.get("success_rate"), "curve": _subsample(fitness_curve)},
        "episode_length": {"curve": _subsample(length_curve), "limit": max_episode_steps(task)},
        "terminations": ends,
        "action_saturation": float(np.mean(sats[len(sats) // 2:])) if sats else None,
        "nonfinite": int(r.get("nonfinite", 0)),
        "components": {},
    }
    names = components or []
    for name in names:
        pts = [p for p in curve if name in p.get("components", {})]
        values = [p["components"][name] for p in pts]
        if not values:
            continue
        abs_values = [p.get("components_abs", {}).get(name, abs(v)) for p, v in zip(pts, values)]
        fit_at = [p.get("fitness_mean") for p in pts]
        paired = [(v, f) for v, f in zip(values, fit_at) if f is not None]
        out["components"][name] = {
            "values": [round(v, 4) for v in _subsample(values)],
            "mean": float(np.mean(values)),
            "mean_abs": float(np.mean(abs_values)),
            "max": float(max(p.get("components_max", {}).get(name, v) for p, v in zip(pts, values))),
            "min": float(min(p.get("components_min", {}).get(name, v) for p, v in zip(pts, values))),
            "corr_with_fitness": _corr([a for a, _ in paired], [b for _, b in paired]),
        }
    total_abs = sum(c["mean_abs"] for c in out["components"].values())
    for c in out["components"].values():
        c["share"] = c["mean_abs"] / total_abs if total_abs > 0 else 0.0
    out["additivity"] = additivity(curve, list(out["components"]))
    out["failure_modes"] = failure_modes(out, task)
    return out


def additivity(curve: list[dict[str, Any]], names: list[str]) -> dict[str, Any] | None:
    """Whether the components add up to the reward the agent was trained on.

    Compares, over the curve points that log every component and the training reward
    (``reward_mean``, the program's total per step), the sum of the component means with the mean
    reward. Returns None without components; ``reward_mean``, ``gap`` and ``adds_up`` are None when
    the training reward was not logged. The gap counts when it exceeds :data:`GAP_RTOL` of the
    reward's scale (the larger of the summed |component| means and |reward|).
    """
    if not names:
        return None
    pts = [p for p in curve if all(n in p.get("components", {}) for n in names)]
    rewarded = [p for p in pts if p.get("reward_mean") is not None]
    pts = rewarded or pts  # with a logged reward, every figure comes from the same points
    if not pts:
        return None
    sum_of_means = float(np.mean([sum(p["components"][n] for n in names) for p in pts]))
    sum_abs = float(np.mean([sum(p.get("components_abs", {}).get(n, abs(p["components"][n])) for n in names)
                             for p in pts]))
    out: dict[str, Any] = {"sum_of_means": sum_of_means, "sum_of_abs_means": sum_abs, "reward_mean": None,
                           "gap": None, "adds_up": None}
    if rewarded:
        reward = float(np.mean([p["reward_mean"] for p in rewarded]))
        gap = reward - sum_of_means
        scale = max(sum_abs, abs(reward), 1e-12)
        out.update(reward_mean=reward, gap=gap, adds_up=bool(abs(gap) <= GAP_RTOL * scale))
    return out


def failure_modes(stats: dict[str, Any], task: Any) -> list[str]:
    """Likely failure modes, each in one sentence of plain words.

    A term dominates when it holds over 80% of |total| (``share``: its mean |value| over the sum of
    every component's) without tracking fitness; the components fail to add up when the training
    reward differs from their sum; a bonus (positive mean) anti-correlates when it rises as fitness
    falls (a cost that grows with progress is the expected trade-off, not a failure).
    """
    modes: list[str] = []
    comps = stats["components"]
    add = stats.get("additivity") or {}
    if add.get("adds_up") is False:
        modes.append(f"the components do not add up to the reward: their means sum to {add['sum_of_means']:.3g} "
                     f"per step but the training reward averages {add['reward_mean']:.3g} (gap {add['gap']:.3g}): "
                     "part of the reward is in no component, so the shares and correlations above miss it; "
                     "return every term as a component.")
    if len(comps) > 1:
        for name, c in comps.items():
            corr = c["corr_with_fitness"]
            if c["share"] > 0.8 and (corr is None or corr < 0.5):
                modes.append(f"'{name}' dominates the reward ({c['share']:.0%} of |total|): the other terms barely "
                             "matter; scale it down or the others up.")
    ends = stats["terminations"]
    for name, c in comps.items():
        if c["max"] - c["min"] < 1e-9:
            if ends.get("terminated") and c["max"] > 0:
                modes.append(f"'{name}' is constant ({c['max']:.3g} on every step): it acts only as a survival "
                             "bonus through episode length; it does not say how to do the task.")
            else:
                modes.append(f"'{name}' is constant ({c['max']:.3g} on every step): it gives no learning signal.")
        elif c["corr_with_fitness"] is not None and c["corr_with_fitness"] < -0.5 and c["mean"] > 0:
            modes.append(f"'{name}' anti-correlates with the task fitness (corr {c['corr_with_fitness']:.2f}): the "
                         "agent earns it by doing something against the task.")
        if max(abs(c["max"]), abs(c["min"])) > 1e3:
            modes.append(f"'{name}' reaches {max(abs(c['max']), abs(c['min'])):.3g}: values this large swamp the "
                         "other terms; bound it (np.clip or np.tanh).")
    n_end = sum(ends.values())
    lengths = [v for _, v in stats["episode_length"]["curve"]]
    limit = stats["episode_length"]["limit"]
    if n_end and lengths and limit and ends.get("terminated", 0) / n_end > 0.5 and lengths[-1] < 0.5 * limit:
        modes.append(f"episodes end early (mean length {lengths[-1]:.0f} of {limit} steps, "
                     f"{ends['terminated'] / n_end:.0%} terminated): the agent fails the env's health or balance "
                     "condition; reward staying in it, or penalise leaving it.")
    if stats["nonfinite"]:
        modes.append(f"{stats['nonfinite']} reward values were NaN/inf or raised and were replaced by 0: guard "
                     "divisions, logs and exps.")
    sat = stats["action_saturation"]
    if sat is not None and sat > 0.5:
        modes.append(f"actions sit at their limits {sat:.0%} of the time: bang-bang control; add or raise an "
                     "action cost.")
    fit = [v for _, v in stats["fitness"]["curve"]]
    if len(fit) >= 3 and fit[-1] <= fit[0]:
        modes.append(f"the task fitness did not improve during training ({fit[0]:.3g} -> {fit[-1]:.3g}).")
    return modes
