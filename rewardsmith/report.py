"""A one-page figure of a synthesis run: ``report.png`` in the run directory.

Four panels: the search (every candidate's fitness by round, best so far), the best candidate's
fitness and episode length over training, its reward components over training, and the final
comparison of the best reward with the human and sparse baselines (IQM, 95% bootstrap interval,
one dot per seed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rewardsmith.errors import RewardsmithError


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def plot_run(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Draw ``report.png`` (or ``path``) for the synthesis run in ``run_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    summary = _load(run / "summary.json")
    rounds = sorted(run.glob("rounds/r*/results.json"))
    if summary is None or not rounds:
        raise RewardsmithError(f"{run} has no finished synthesis run (summary.json and rounds/*/results.json)")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    task = summary["task"]
    fig.suptitle(f"rewardsmith synthesize: {task} ({summary['coder']} coder, "
                 f"{summary['steps_per_candidate']:,} steps per training)", fontsize=13)

    ax = axes[0, 0]
    best_so_far, xs = [], []
    for r, file in enumerate(rounds):
        cands = json.loads(file.read_text())
        fits = [c["fitness_mean"] for c in cands if c.get("fitness_mean") is not None]
        rejected = sum(1 for c in cands if c.get("fitness_mean") is None)
        ax.scatter([r + 1] * len(fits), fits, color="tab:blue", alpha=0.7, zorder=3)
        if rejected:
            ax.annotate(f"{rejected} rejected", (r + 1, min(fits) if fits else 0), fontsize=8, color="tab:red")
        if fits:
            best_so_far.append(max([*fits, *(best_so_far[-1:] or [])]))
            xs.append(r + 1)
    ax.plot(xs, best_so_far, color="tab:orange", label="best so far")
    ax.set(title="search: fitness of every candidate", xlabel="round", ylabel="fitness (1 seed)")
    ax.set_xticks(range(1, len(rounds) + 1))
    ax.legend()

    best = summary["best"]
    cdir = run / "rounds" / f"r{best['round']:02d}" / f"c{best['index']:02d}"
    result = _load(cdir / "result.json") or {}
    curve = [p for p in result.get("curve", []) if p.get("fitness_mean") is not None]
    ax = axes[0, 1]
    if curve:
        ax.plot([p["step"] for p in curve], [p["fitness_mean"] for p in curve], color="tab:blue", label="fitness")
        ax.set_ylabel("fitness (training episodes)")
        twin = ax.twinx()
        twin.plot([p["step"] for p in curve], [p["episode_length_mean"] for p in curve], color="tab:gray",
                  linestyle="--", label="episode length")
        twin.set_ylabel("episode length (steps)")
    ax.set(title=f"best candidate (round {best['round'] + 1}, #{best['index']}) during training",
           xlabel="environment steps")

    ax = axes[1, 0]
    for name in best.get("components") or []:
        pts = [p for p in result.get("curve", []) if name in p.get("components", {})]
        ax.plot([p["step"] for p in pts], [p["components"][name] for p in pts], label=name)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set(title="its reward components (mean per step)", xlabel="environment steps", ylabel="value")
    if best.get("components"):
        ax.legend(fontsize=8)

    ax = axes[1, 1]
    bars = [("best", {"iqm": best["fitness_iqm"], "ci_low": best["ci95"][0], "ci_high": best["ci95"][1],
                      "values": _seed_values(run, "final")})]
    for name in ("human", "sparse"):
        if summary["baselines"].get(name):
            bars.append((name, summary["baselines"][name]))
    for i, (_name, st) in enumerate(bars):
        ax.bar(i, st["iqm"], color=["tab:orange", "tab:green", "tab:gray"][i], alpha=0.8)
        ax.errorbar(i, st["iqm"], yerr=[[st["iqm"] - st["ci_low"]], [st["ci_high"] - st["iqm"]]], color="black",
                    capsize=6)
        ax.scatter([i] * len(st.get("values") or []), st.get("values") or [], color="black", s=12, zorder=3)
    ax.set_xticks(range(len(bars)), [name for name, _ in bars])
    hns = summary.get("hns")
    title = "final: IQM, 95% CI, seeds" + (f"  (HNS {hns:.2f})" if hns is not None else "")
    ax.set(title=title, ylabel="fitness (fresh seeds)")
    fig.tight_layout()
    out = Path(path) if path else run / "report.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _seed_values(run: Path, folder: str) -> list[float]:
    vals = []
    for file in sorted((run / folder).glob("seed*/result.json")):
        vals.append(json.loads(file.read_text())["fitness_mean"])
    return vals
