"""The run figure on synthetic run directories, written by hand the way the loop writes them."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from rewardsmith.errors import RewardsmithError
from rewardsmith.report import draw_run, plot_run

PNG = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _curve(n: int = 5) -> list[dict]:
    return [{"step": 2048 * (k + 1), "fitness_mean": 0.1 * k, "episode_length_mean": 100.0 + k,
             "components": {"forward": 0.2 * k, "alive": 1.0}, "components_abs": {"forward": 0.2 * k, "alive": 1.0},
             "terminations": {"terminated": 3}} for k in range(n)]


def _candidate(round_idx: int, index: int, fitness: float | None, status: str, error: str | None = None) -> dict:
    return {"round": round_idx, "index": index, "source": "def reward(s): ...", "status": status, "error": error,
            "stage": None if error is None else "validate", "components": ["forward", "alive"], "notes": [],
            "attempts": [], "seed": 1000 * (round_idx + 1) + index, "fitness_mean": fitness,
            "fitness_std": None if fitness is None else 0.1, "success_rate": None, "wall_s": 12.0, "stats": None,
            "gif": None}


def _run_dir(tmp_path: Path, summary: dict | None) -> Path:
    run = tmp_path / "run"
    _write(run / "manifest.json", {"config": {"task": "hopper-forward", "coder": "offline", "steps": 30000,
                                              "iterations": 2, "samples": 2}, "versions": {}})
    _write(run / "rounds/r00/results.json", [_candidate(0, 0, 1.5, "trained"),
                                            _candidate(0, 1, None, "rejected", "validate: no reward()")])
    _write(run / "rounds/r01/results.json", [_candidate(1, 0, 2.5, "trained"), _candidate(1, 1, None, "timeout")])
    _write(run / "rounds/r01/c00/result.json", {"fitness_mean": 2.5, "curve": _curve()})
    if summary is not None:
        _write(run / "summary.json", summary)
    return run


def _failed_summary(baselines: object) -> dict:
    """What the loop writes when every final re-training of the best program failed."""
    return {"task": "hopper-forward", "task_version": 1, "seeds": [0, 1, 2],
            "best": {"fitness_mean": None, "fitness_std": None, "fitness_iqm": None, "ci95": None, "n": 0,
                     "search_fitness": 2.5, "round": 1, "index": 0, "source": "run/best_reward.py",
                     "components": ["forward", "alive"]},
            "baselines": baselines, "hns": None, "hns_basis": "IQM over seeds of each method",
            "hns_note": "undefined: every re-training of the best program failed",
            "final_failures": {"best": ["final/seed0: out of time: killed after 61 s"]},
            "candidates": [], "coder": "offline", "steps_per_candidate": 30000,
            "tokens": {"prompt": 0, "completion": 0}, "requests": 0, "wall_s": 80.0}


def _texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def _labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


@pytest.mark.parametrize("baselines", [None, {"human": None, "sparse": None}])
def test_report_when_every_final_retraining_failed(tmp_path: Path, baselines: object) -> None:
    run = _run_dir(tmp_path, _failed_summary(baselines))
    out = plot_run(run)
    assert out == run / "report.png" and out.read_bytes()[:8] == PNG
    fig = draw_run(run)
    try:
        search, training, comps, final = fig.axes[:4]
        assert len(search.collections[0].get_offsets()) + len(search.collections[1].get_offsets()) == 2
        assert "1 not trained" in _texts(search)
        assert len(training.lines) == 1 and "round 2, #0" in training.get_title()
        assert sorted(line.get_label() for line in comps.lines if not line.get_label().startswith("_")) == [
            "alive", "forward"]
        assert not final.patches  # no bars: there is no re-trained figure to draw
        assert "every final re-training of the best program failed" in _texts(final)
        assert "out of time" in _texts(final)
        expected = ["best\n(no result)"] + ([] if baselines is None else ["human\n(no result)", "sparse\n(no result)"])
        assert _labels(final) == expected
        assert "HNS" not in final.get_title()
    finally:
        plt.close(fig)


def test_report_draws_the_baselines_that_finished(tmp_path: Path) -> None:
    summary = _failed_summary({"human": {"n": 2, "mean": 2.0, "std": 0.5, "iqm": 2.0, "ci_low": 1.5,
                                         "ci_high": 2.5, "values": [1.5, 2.5]}, "sparse": None})
    run = _run_dir(tmp_path, summary)
    for k, v in enumerate([1.5, 2.5]):
        _write(run / f"baselines/human/seed{k}/result.json", {"fitness_mean": v})
    (run / "baselines/human/seed2").mkdir(parents=True)
    (run / "baselines/human/seed2/result.json").write_text('{"fitness_mean": 3.')  # cut off
    fig = draw_run(run)
    try:
        final = fig.axes[3]
        assert len(final.patches) == 1 and final.patches[0].get_height() == pytest.approx(2.0)
        assert _labels(final) == ["best\n(no result)", "human", "sparse\n(no result)"]
        dots = [list(c.get_offsets()[:, 1]) for c in final.collections if len(c.get_offsets())]
        assert [1.5, 2.5] in dots
    finally:
        plt.close(fig)


def test_report_of_a_finished_run(tmp_path: Path) -> None:
    summary = _failed_summary({"human": {"iqm": 2.0, "ci_low": 1.5, "ci_high": 2.5},
                               "sparse": {"iqm": 1.0, "ci_low": 0.5, "ci_high": 1.5}})
    summary["best"].update(fitness_mean=3.0, fitness_std=0.2, fitness_iqm=3.0, ci95=[2.8, 3.2], n=3)
    summary.update(hns=2.0, final_failures={})
    run = _run_dir(tmp_path, summary)
    for k, v in enumerate([2.8, 3.0, 3.2]):
        _write(run / f"final/seed{k}/result.json", {"fitness_mean": v})
    out = plot_run(run, tmp_path / "figure.png")
    assert out.read_bytes()[:8] == PNG
    fig = draw_run(run)
    try:
        final = fig.axes[3]
        assert [p.get_height() for p in final.patches] == pytest.approx([3.0, 2.0, 1.0])
        assert _labels(final) == ["best", "human", "sparse"]
        assert "HNS 2.00" in final.get_title() and not final.texts
        assert "offline coder, 30,000 steps per training" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_report_of_a_run_still_searching(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, None)
    (run / "rounds/r01/results.json").write_text('[{"round": 1, "ind')  # cut off mid-write
    fig = draw_run(run)
    try:
        search, training, _comps, final = fig.axes[:4]
        assert list(search.get_xticks()) == [1, 2]
        assert "round 1, #0" in training.get_title()  # the best trained candidate so far
        assert "no training curve" in _texts(training)  # r00/c00 has no result.json
        assert "no summary.json yet" in _texts(final)
        assert "hopper-forward" in fig._suptitle.get_text()
    finally:
        plt.close(fig)
    assert plot_run(run).read_bytes()[:8] == PNG


def test_report_of_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RewardsmithError, match="no synthesis run to draw"):
        plot_run(tmp_path)
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(RewardsmithError, match="no synthesis run to draw"):
        plot_run(tmp_path)


def test_halving_runs_draw_stopped_candidates_and_every_finalist(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, None)
    stopped = {**_candidate(1, 1, 0.7, "trained"), "budget": 7500}
    _write(run / "rounds/r01/results.json", [{**_candidate(1, 0, 2.5, "trained"), "budget": 30000}, stopped])
    retrained = {"n": 2, "mean": 2.0, "std": 0.1, "iqm": 2.0, "ci_low": 1.9, "ci_high": 2.1, "values": [1.9, 2.1]}
    summary = {"task": "hopper-forward", "steps_per_candidate": 30000, "seeds": [0, 100],
               "best": {"fitness_iqm": 2.0, "ci95": [1.9, 2.1], "search_fitness": 2.5, "round": 1, "index": 0,
                        "components": ["forward", "alive"]},
               "finalists": [{"name": "r01/c00", "round": 1, "index": 0, "search_fitness": 2.5,
                              "retrained": retrained, "chosen": True},
                             {"name": "r00/c00", "round": 0, "index": 0, "search_fitness": 1.5,
                              "retrained": {**retrained, "iqm": 1.2}, "chosen": False}]}
    _write(run / "summary.json", summary)
    for name in ("r01c00", "r00c00"):
        for s in (0, 100):
            _write(run / f"final/{name}/seed{s}/result.json", {"fitness_mean": 2.0})
    fig = draw_run(run)
    try:
        search, final = fig.axes[0], fig.axes[3]  # (the twin axis of the curve panel comes last)
        legend = [t.get_text() for t in search.get_legend().get_texts()]
        assert "stopped early (successive halving)" in legend
        labels = [t.get_text() for t in final.get_xticklabels()]
        assert labels[:2] == ["r01/c00 (chosen)", "r00/c00"]
        assert [t.get_text() for t in final.get_legend().get_texts()] == ["search fitness (1 seed)"]
    finally:
        plt.close(fig)
