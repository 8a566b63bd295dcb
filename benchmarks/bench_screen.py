"""How well the pre-screen predicts trained fitness, and what it saves: ``bench_screen.py RUN_DIR [RUN_DIR ...]``.

Reads each run directory's ``rounds/*/results.json`` (the candidates, their pre-screen verdict
and trained fitness) and reports, per run and pooled:

* the Spearman rank correlation between the screen's score (the trajectory-preference rho) and
  the trained fitness, with a 95% bootstrap interval (candidates resampled within each run; the
  pooled figure ranks fitness and score within each run first, so tasks of different fitness
  scales pool);
* the candidates the screen rejects (or, in a ``--screen flag`` run, would reject), the training
  steps they cost or would have cost, and how many of them trained (flag mode) to a fitness above
  the best of the others (what rejecting them would have lost);
* for near-duplicates trained anyway (flag mode), the mean |fitness gap| to the candidate they
  duplicate, beside the spread (std) of the run's fitness: a small gap says the duplicate was not
  worth training;
* how the flagged candidates' fitness compares with the passed ones' (mean within-run percentile).

``--rescreen`` replays the current screen's rules on each run's recorded episodes (no training)
instead of reading the verdicts the run saved, so a change of the rules is measured on the same
runs; ``--json`` prints the figures as JSON instead of a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata, spearmanr


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_run(run: Path) -> dict[str, Any]:
    """The candidates of one run (with their screen verdicts) and its per-candidate budget."""
    manifest = _read(run / "manifest.json") or {}
    config = manifest.get("config", {})
    summary = _read(run / "summary.json") or {}
    cands = []
    for results in sorted((run / "rounds").glob("r*/results.json")):
        for c in _read(results) or []:
            res = _read(run / "rounds" / f"r{c['round']:02d}" / f"c{c['index']:02d}" / "result.json") or {}
            c["steps_trained"] = res.get("steps")
            cands.append(c)
    steps = summary.get("steps_per_candidate") or config.get("steps")
    if steps is None:
        from rewardsmith import get_task

        steps = get_task(config.get("task", "")).default_steps if config.get("task") else None
    return {"run": str(run), "task": config.get("task"), "mode": config.get("screen", "?"), "steps": steps,
            "candidates": cands}


def rescreen(run: dict[str, Any]) -> None:
    """Replace the saved verdicts by the current screen's, replayed round by round on the run's files.

    Each round is screened against the candidates of the rounds before it, on the episodes it
    had then (the random rollouts and the earlier rounds' ``episodes.npz``), as the loop did.
    In a ``--screen flag`` run every candidate trained, so each replayed verdict has its fitness.
    """
    from rewardsmith import get_task
    from rewardsmith.candidate import Candidate
    from rewardsmith.screen import screen_candidates, stored_episodes

    manifest = _read(Path(run["run"]) / "manifest.json") or {}
    task = get_task(run["task"])
    seed = int(manifest.get("config", {}).get("seed", 0))
    history: list[Candidate] = []
    for r in sorted({c["round"] for c in run["candidates"]}):
        raw = [c for c in run["candidates"] if c["round"] == r]
        cands = [Candidate.from_dict(c) for c in raw]
        for c in cands:  # back to what accept() left: screened ones were accepted
            if c.source and (c.status != "rejected" or c.stage == "screen"):
                c.status, c.screen = "accepted", None
        verdicts = {v.candidate: v.to_dict() for v in
                    screen_candidates(task, cands, history, stored_episodes(task, run["run"], history, seed))}
        for c, d in zip(cands, raw):
            d["screen"] = c.screen = verdicts.get(c.name)
            history.append(Candidate.from_dict({**d, "screen": c.screen}))
    run["mode"] += " (replayed)"


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rho = float(spearmanr(x, y)[0])
    return rho if math.isfinite(rho) else None


def _pairs(run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(score, fitness) of the run's trained candidates that have a screen score."""
    ok = [c for c in run["candidates"] if (c.get("screen") or {}).get("score") is not None
          and c.get("fitness_mean") is not None and math.isfinite(c["fitness_mean"])]
    return (np.array([c["screen"]["score"] for c in ok], dtype=float),
            np.array([c["fitness_mean"] for c in ok], dtype=float))


def _within_ranks(groups: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Pool groups after turning each side into within-group percentile ranks."""
    xs = [rankdata(x) / len(x) for x, _ in groups if len(x)]
    ys = [rankdata(y) / len(y) for _, y in groups if len(y)]
    return (np.concatenate(xs), np.concatenate(ys)) if xs else (np.array([]), np.array([]))


def bootstrap(groups: list[tuple[np.ndarray, np.ndarray]], reps: int = 2000, seed: int = 0
              ) -> tuple[float | None, float | None, float | None]:
    """Spearman rho of the pooled groups and its 95% percentile interval (resampled within groups)."""
    rho = _spearman(*_within_ranks(groups)) if len(groups) > 1 else _spearman(*groups[0]) if groups else None
    if rho is None:
        return None, None, None
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(reps):
        resampled = []
        for x, y in groups:
            idx = rng.integers(0, len(x), len(x))
            resampled.append((x[idx], y[idx]))
        r = _spearman(*_within_ranks(resampled)) if len(groups) > 1 else _spearman(*resampled[0])
        if r is not None:
            draws.append(r)
    if len(draws) < reps // 2:
        return rho, None, None
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return rho, float(lo), float(hi)


def run_figures(run: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run."""
    cands = run["candidates"]
    screened = [c for c in cands if c.get("screen")]
    rejects = [c for c in screened if c["screen"]["decision"] == "reject"]
    others = [c for c in cands if c not in rejects and c.get("fitness_mean") is not None]
    best_other = max((c["fitness_mean"] for c in others), default=-math.inf)
    trained_rejects = [c for c in rejects if c.get("fitness_mean") is not None]
    cost = sum(c.get("steps_trained") or c.get("budget") or run["steps"] or 0 for c in rejects)
    trained_steps = sum(c.get("steps_trained") or 0 for c in cands)
    fit = [c for c in screened if c.get("fitness_mean") is not None]
    pct = dict(zip([id(c) for c in fit], rankdata([c["fitness_mean"] for c in fit]) / max(len(fit), 1)))

    def mean_pct(decision: str) -> float | None:
        vals = [pct[id(c)] for c in fit if c["screen"]["decision"] == decision]
        return float(np.mean(vals)) if vals else None

    # a duplicate trained anyway (flag mode) should reach about its original's fitness
    by_name = {f"r{c['round']:02d}/c{c['index']:02d}": c for c in cands}
    gaps = [abs(c["fitness_mean"] - by_name[c["screen"]["duplicate_of"]]["fitness_mean"])
            for c in trained_rejects if c["screen"].get("duplicate_of") in by_name
            and by_name[c["screen"]["duplicate_of"]].get("fitness_mean") is not None]
    spread = float(np.std([c["fitness_mean"] for c in others])) if len(others) > 1 else None
    x, y = _pairs(run)
    rho, lo, hi = bootstrap([(x, y)]) if len(x) else (None, None, None)
    return {"run": run["run"], "task": run["task"], "mode": run["mode"], "candidates": len(cands),
            "screened": len(screened), "with_score": len(x), "rho": rho, "rho_lo": lo, "rho_hi": hi,
            "rejected": len(rejects), "duplicates": sum(bool(c["screen"].get("duplicate_of")) for c in rejects),
            "reject_steps": int(cost), "trained_steps": int(trained_steps),
            "rejects_trained": len(trained_rejects),
            "rejects_beat_best": sum(c["fitness_mean"] > best_other for c in trained_rejects),
            "dup_gap": float(np.mean(gaps)) if gaps else None, "fitness_std": spread, "dup_pairs": len(gaps),
            "flagged": sum(c["screen"]["decision"] == "flag" for c in screened),
            "pct_pass": mean_pct("pass"), "pct_flag": mean_pct("flag")}


def _f(v: Any, fmt: str = "{:+.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print the figures of the given run directories (markdown, or JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rescreen", action="store_true",
                    help="replay the current screen on each run's stored episodes instead of reading its verdicts")
    args = ap.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "manifest.json").is_file()]
    if missing:
        ap.error(f"not a run directory (no manifest.json): {', '.join(missing)}")
    runs = [load_run(r) for r in args.runs]
    if args.rescreen:
        for run in runs:
            rescreen(run)
    rows = [run_figures(r) for r in runs]
    groups = [g for g in (_pairs(r) for r in runs) if len(g[0])]
    rho, lo, hi = bootstrap(groups)
    pooled = {"runs": len(rows), "with_score": int(sum(len(g[0]) for g in groups)), "rho": rho, "rho_lo": lo,
              "rho_hi": hi, "rejected": sum(r["rejected"] for r in rows),
              "reject_steps": sum(r["reject_steps"] for r in rows), "trained_steps": sum(r["trained_steps"] for r in rows),
              "rejects_beat_best": sum(r["rejects_beat_best"] for r in rows)}
    out = {"runs": rows, "pooled": pooled}
    if args.json:
        print(json.dumps(out, indent=2))
        return out
    print("| run | task | screen | cands (scored) | rho score~fitness [95% CI] | rejected (dup) | steps they cost "
          "| rejects trained > best kept | dup fitness gap (pairs) / fitness std | flagged | fitness pct pass / flag |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['run']).name} | {r['task']} | {r['mode']} | {r['candidates']} ({r['with_score']}) "
              f"| {_f(r['rho'])} [{_f(r['rho_lo'])}, {_f(r['rho_hi'])}] | {r['rejected']} ({r['duplicates']}) "
              f"| {r['reject_steps']:,} of {r['trained_steps']:,} | {r['rejects_beat_best']} of "
              f"{r['rejects_trained']} | {_f(r['dup_gap'], '{:.3g}')} ({r['dup_pairs']}) / {_f(r['fitness_std'], '{:.3g}')} "
              f"| {r['flagged']} | {_f(r['pct_pass'], '{:.2f}')} / {_f(r['pct_flag'], '{:.2f}')} |")
    p = pooled
    print(f"| pooled ({p['runs']} runs) | | | ({p['with_score']}) | {_f(p['rho'])} [{_f(p['rho_lo'])}, "
          f"{_f(p['rho_hi'])}] | {p['rejected']} | {p['reject_steps']:,} of {p['trained_steps']:,} "
          f"| {p['rejects_beat_best']} | | | |")
    return out


if __name__ == "__main__":
    main()
