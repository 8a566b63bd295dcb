"""A one-page figure of a synthesis run: ``report.png`` in the run directory.

Four panels: the search (every candidate's fitness by round, best so far), the best candidate's
fitness and episode length over training, its reward components over training, and the final
comparison of the best reward with the human and sparse baselines (IQM, 95% bootstrap interval,
one dot per seed).

The figure draws whatever the run directory holds: a run still searching (no ``summary.json``),
one whose every final re-training failed (``None`` figures in the summary), missing or cut-off
files. A panel without data says so instead of failing.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from rewardsmith.errors import RewardsmithError
from rewardsmith.fsutil import read_json

COLORS = {"best": "tab:orange", "finalist": "tab:olive", "human": "tab:green", "sparse": "tab:gray"}


def _num(value: Any) -> float | None:
    """``value`` as a finite float, else None (missing, null, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rounds(run: Path) -> list[tuple[int, list[dict[str, Any]]]]:
    """``[(round, candidates)]`` from ``rounds/rNN/results.json`` (an unreadable file: no candidates)."""
    out = []
    for file in sorted(run.glob("rounds/r*/results.json")):
        m = re.fullmatch(r"r(\d+)", file.parent.name)
        if m is None:
            continue
        data = read_json(file)
        cands = [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []
        out.append((int(m.group(1)), cands))
    return out


def _no_data(ax: Any, text: str, y: float = 0.5) -> None:
    ax.text(0.5, y, text, transform=ax.transAxes, ha="center", va="center" if y == 0.5 else "top", fontsize=10,
            color="tab:red", wrap=True)


def _best(summary: dict[str, Any], rounds: list[tuple[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    """The summary's best, or (no summary yet) the best trained candidate of the search."""
    best = _dict(summary.get("best"))
    if best:
        return best
    trained = [c for _, cands in rounds for c in cands if _num(c.get("fitness_mean")) is not None]
    if not trained:
        return {}
    top = max(trained, key=lambda c: c["fitness_mean"])
    return {"round": top.get("round"), "index": top.get("index"), "components": top.get("components")}


def _title(summary: dict[str, Any], config: dict[str, Any], run: Path) -> str:
    task = summary.get("task") or config.get("task") or run.name
    coder = summary.get("coder") or config.get("coder")
    steps = _num(summary.get("steps_per_candidate")) or _num(config.get("steps"))
    parts = [f"{coder} coder" if coder else None, f"{int(steps):,} steps per training" if steps else None]
    detail = ", ".join(p for p in parts if p)
    return f"rewardsmith synthesize: {task}" + (f" ({detail})" if detail else "")


def _search_panel(ax: Any, rounds: list[tuple[int, list[dict[str, Any]]]], steps: float | None = None) -> None:
    best_so_far: list[float] = []
    xs: list[int] = []
    stopped_label = "stopped early (successive halving)"
    for r, cands in rounds:
        def short(c: dict[str, Any]) -> bool:
            budget = _num(c.get("budget"))
            return steps is not None and budget is not None and budget < steps

        full = [c for c in cands if _num(c.get("fitness_mean")) is not None and not short(c)]
        part = [c for c in cands if _num(c.get("fitness_mean")) is not None and short(c)]
        if part:
            ax.scatter([r + 1] * len(part), [c["fitness_mean"] for c in part], facecolors="none",
                       edgecolors="tab:blue", alpha=0.7, zorder=3, label=stopped_label)
            stopped_label = None
        fits = [c["fitness_mean"] for c in full]
        untrained = len(cands) - len(fits) - len(part)
        ax.scatter([r + 1] * len(fits), fits, color="tab:blue", alpha=0.7, zorder=3)
        if untrained:
            ax.annotate(f"{untrained} not trained", (r + 1, min(fits) if fits else 0.0), fontsize=8, color="tab:red")
        if fits:
            best_so_far.append(max([*fits, *best_so_far[-1:]]))
            xs.append(r + 1)
    if best_so_far:
        ax.plot(xs, best_so_far, color="tab:orange", label="best so far")
        ax.legend()
    else:
        _no_data(ax, "no candidate was trained")
    ax.set(title="search: fitness of every candidate", xlabel="round", ylabel="fitness (1 seed)")
    if rounds:
        ax.set_xticks([r + 1 for r, _ in rounds])


def _training_panels(ax: Any, ax_comp: Any, run: Path, best: dict[str, Any]) -> None:
    r, i = best.get("round"), best.get("index")
    located = isinstance(r, int) and isinstance(i, int)
    result = _dict(read_json(run / "rounds" / f"r{r:02d}" / f"c{i:02d}" / "result.json")) if located else {}
    curve = [p for p in result.get("curve") or [] if isinstance(p, dict) and _num(p.get("step")) is not None]
    fit = [(p["step"], p["fitness_mean"]) for p in curve if _num(p.get("fitness_mean")) is not None]
    length = [(p["step"], p["episode_length_mean"]) for p in curve if _num(p.get("episode_length_mean")) is not None]
    if fit:
        ax.plot(*zip(*fit), color="tab:blue", label="fitness")
        ax.set_ylabel("fitness (training episodes)")
    if length:
        twin = ax.twinx()
        twin.plot(*zip(*length), color="tab:gray", linestyle="--", label="episode length")
        twin.set_ylabel("episode length (steps)")
    if not fit and not length:
        _no_data(ax, "no training curve recorded")
    where = f"round {r + 1}, #{i}" if located else "unknown"
    ax.set(title=f"best candidate ({where}) during training", xlabel="environment steps")

    names = [n for n in best.get("components") or [] if isinstance(n, str)]
    drawn = 0
    for name in names:
        pts = [(p["step"], _num(_dict(p.get("components")).get(name))) for p in curve]
        pts = [(s, v) for s, v in pts if v is not None]
        if pts:
            ax_comp.plot(*zip(*pts), label=name)
            drawn += 1
    ax_comp.axhline(0, color="black", linewidth=0.5)
    ax_comp.set(title="its reward components (mean per step)", xlabel="environment steps", ylabel="value")
    if drawn:
        ax_comp.legend(fontsize=8)
    else:
        _no_data(ax_comp, "no component values recorded")


def _seed_values(run: Path, folder: str) -> list[float]:
    """The final evaluation fitness of every readable ``<folder>/seed*/result.json``."""
    vals = []
    for file in sorted((run / folder).glob("seed*/result.json")):
        v = _num(_dict(read_json(file)).get("fitness_mean"))
        if v is not None:
            vals.append(v)
    return vals


def _final_panel(ax: Any, run: Path, summary: dict[str, Any], best: dict[str, Any]) -> None:
    ci = best.get("ci95") if isinstance(best.get("ci95"), list) and len(best["ci95"]) == 2 else [None, None]
    methods: list[tuple[str, dict[str, Any]]] = [
        ("best", {"iqm": best.get("fitness_iqm"), "ci_low": ci[0], "ci_high": ci[1],
                  "values": _seed_values(run, "final"), "search": best.get("search_fitness")})]
    finalists = [f for f in summary.get("finalists") or [] if isinstance(f, dict) and isinstance(f.get("name"), str)]
    if len(finalists) > 1:  # one bar per finalist, the chosen one marked
        methods = [("best" if f.get("chosen") else "finalist",
                    {**_dict(f.get("retrained")), "search": f.get("search_fitness"),
                     "label": f["name"] + (" (chosen)" if f.get("chosen") else ""),
                     "values": _seed_values(run, "final/" + f["name"].replace("/", ""))}) for f in finalists]
    baselines = summary.get("baselines")
    for name in ("human", "sparse"):
        if isinstance(baselines, dict) and name in baselines:
            methods.append((name, {**_dict(baselines[name]), "values": _seed_values(run, f"baselines/{name}")}))
    labels, missing = [], []
    for x, (name, st) in enumerate(methods):
        centre, lo, hi = _num(st.get("iqm")), _num(st.get("ci_low")), _num(st.get("ci_high"))
        values = [v for v in (_num(v) for v in st.get("values") or []) if v is not None]
        if centre is not None:
            ax.bar(x, centre, color=COLORS[name], alpha=0.8)
            if lo is not None and hi is not None:
                ax.errorbar(x, centre, yerr=[[max(centre - lo, 0.0)], [max(hi - centre, 0.0)]], color="black",
                            capsize=6)
        if values:
            ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)
        search = _num(st.get("search"))
        if search is not None:
            ax.scatter([x], [search], marker="x", color="tab:red", s=40, zorder=4,
                       label=None if any(t.get_label() == "search fitness (1 seed)" for t in ax.collections)
                       else "search fitness (1 seed)")
        label = st.get("label") or name
        if centre is None and not values:
            missing.append(name)
            labels.append(f"{label}\n(no result)")
        else:
            labels.append(label)
    ax.set_xticks(range(len(methods)), labels)
    ax.set_xlim(-0.6, len(methods) - 0.4)
    notes = []
    if "best" in missing:
        notes.append("every final re-training of the best program failed")
        failures = _dict(summary.get("final_failures")).get("best") or []
        if failures:
            notes.append(str(failures[0])[:80])
    if not summary:
        notes.append("no summary.json yet: the final re-training has not finished")
    if notes:
        _no_data(ax, "\n".join(notes), y=0.95)
    if any(_num(st.get("search")) is not None for _, st in methods):
        ax.legend(fontsize=8, loc="lower right")
    hns = _num(summary.get("hns"))
    title = "final: IQM, 95% CI, seeds" + (f"  (HNS {hns:.2f})" if hns is not None else "")
    ax.set(title=title, ylabel="fitness (fresh seeds)")


def draw_run(run_dir: str | Path) -> Any:
    """The report's matplotlib figure for the synthesis run in ``run_dir`` (the caller closes it).

    Raises:
        RewardsmithError: the folder holds neither a ``summary.json`` nor any round results.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    summary = _dict(read_json(run / "summary.json"))
    rounds = _rounds(run)
    if not summary and not rounds:
        raise RewardsmithError(f"{run} has no synthesis run to draw (no readable summary.json or rounds/*/results.json)")
    config = _dict(_dict(read_json(run / "manifest.json")).get("config"))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    fig.suptitle(_title(summary, config, run), fontsize=13)
    best = _best(summary, rounds)
    _search_panel(axes[0, 0], rounds, _num(summary.get("steps_per_candidate")) or _num(config.get("steps")))
    _training_panels(axes[0, 1], axes[1, 0], run, best)
    _final_panel(axes[1, 1], run, summary, best)
    fig.tight_layout()
    return fig


def plot_run(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Draw ``report.png`` (or ``path``) for the synthesis run in ``run_dir``; returns its path.

    Never fails on missing figures (``None`` fitness values, failed final re-trainings, absent
    baselines); only a folder with nothing to draw raises :class:`RewardsmithError`.
    """
    fig = draw_run(run_dir)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    out = Path(path) if path else Path(run_dir) / "report.png"
    try:
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out


__all__ = ["draw_run", "plot_run"]
