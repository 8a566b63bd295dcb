"""In-context preference learning (ICPL): the loop selecting by a teacher's preferences, not fitness.

With ``select="preference"`` each round of :class:`rewardsmith.loop.Synthesizer` ends with this
stage instead of fitness selection:

1. **segments** -- one :class:`~rewardsmith.preference.segments.Segment` per trained candidate:
   the median-fitness episode of its evaluation episodes (``rounds/rNN/cMM/episodes.npz``, its
   reward states and actions). The scripted teacher (an oracle over true fitness) gets the mean
   fitness of the candidate's stored evaluation episodes as ``returns`` (it judges the policy, not
   one lucky or unlucky episode; with an odd number of episodes the shown one is the median); a
   human or LLM teacher gets no fitness at all. A human teacher watches
   GIFs, which need simulator snapshots that the evaluation does not record, so for
   ``teacher="human"`` each candidate's saved policy is rolled out again (deterministic, seed 0)
   with :func:`~rewardsmith.preference.render.snapshot` taken before every step.
2. **ranking** -- every pair compared once (round robin, one ``compare`` call per pair, so a
   human's answers are saved as they come), each candidate ranked by wins (a tie gives each half a
   win; a skipped pair, NaN, gives none), the earlier candidate first on equal wins. Every label
   goes into ``rounds/rNN/ranking.json`` after each answer: a resumed run asks no pair twice.
3. **selection** -- the round's top-ranked candidate is compared once more with the previous
   choice and replaces it unless the teacher prefers the previous one (a tie keeps the newer one,
   a skip keeps the previous one). A round whose comparisons were all skipped carries no preference:
   the previous choice stays, or (first round) the round's first trained candidate is chosen, and
   the run says so.
4. **feedback** -- ``prompts/icpl.j2`` shows the coder the ranking, the code of the preferred and the
   rejected (lowest-ranked) candidates and their reward traces (each component's mean, min and max
   per step over the ranked episode, relabelled with the candidate's own program). The true fitness
   is never shown: a human teacher gives none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardsmith.candidate import Candidate
from rewardsmith.fsutil import atomic_write_json, read_json
from rewardsmith.preference.segments import Segment
from rewardsmith.tasks import TaskSpec
from rewardsmith.trajectories import EpisodeSet

RANKING_FILE = "ranking.json"
#: at most this many candidates are ranked per round (28 comparisons)
MAX_RANKED = 8


@dataclass
class Ranking:
    """One round's comparisons and the choice made from them.

    Attributes:
        round: the round (0-based).
        names: the ranked candidates (``rNN/cMM``), in candidate order.
        labels: one ``{"left", "right", "label"}`` per pair asked (label 1 left preferred, 0 right,
            0.5 equal, None skipped).
        versus: the comparison of the top-ranked candidate (left) with the previous choice (right),
            or None when there was no previous choice (or the previous choice topped this ranking).
        chosen: the candidate chosen after this round (``rNN/cMM``), or None.
        note: why the choice is what it is, when that is not simply "the teacher's top".
        source: where the segments came from: ``episodes`` (evaluation episodes) or ``rollouts``
            (re-run with snapshots for a human teacher).
    """

    round: int
    names: list[str]
    labels: list[dict[str, Any]] = field(default_factory=list)
    versus: dict[str, Any] | None = None
    chosen: str | None = None
    note: str | None = None
    source: str = "episodes"

    def label(self, left: str, right: str) -> float | str | None:
        """The label of a pair already asked (None when skipped), or ``"missing"``."""
        for row in self.labels:
            if (row["left"], row["right"]) == (left, right):
                return row["label"]
        return "missing"

    def wins(self) -> dict[str, float]:
        """Each candidate's wins (a tie is half a win each, a skip nothing)."""
        wins = dict.fromkeys(self.names, 0.0)
        for row in self.labels:
            lab = row["label"]
            if lab is None:
                continue
            wins[row["left"]] += float(lab)
            wins[row["right"]] += 1.0 - float(lab)
        return wins

    def order(self) -> list[str]:
        """The candidates best first (by wins; the earlier candidate on equal wins)."""
        wins = self.wins()
        return sorted(self.names, key=lambda n: (-wins[n], self.names.index(n)))

    @property
    def answered(self) -> int:
        """Pairs the teacher did not skip."""
        return sum(row["label"] is not None for row in self.labels)

    @property
    def informative(self) -> bool:
        """Whether the ranking says anything: a single candidate, or at least one answered pair."""
        return len(self.names) == 1 or self.answered > 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (with the order and wins, for readers of the file)."""
        return {**asdict(self), "order": self.order(), "wins": self.wins()}

    def summary_row(self, history: Sequence[Candidate]) -> dict[str, Any]:
        """The round's line in ``summary.json``: the ranking beside each candidate's fitness (never used to choose)."""
        fitness = {c.name: c.fitness_mean for c in history if c.trained}
        return {"round": self.round, "order": self.order(), "wins": self.wins(), "answered": self.answered,
                "pairs": len(self.labels), "chosen": self.chosen, "note": self.note,
                "fitness": {n: fitness.get(n) for n in self.order()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ranking:
        """From :meth:`to_dict` output."""
        return cls(round=int(data["round"]), names=list(data["names"]), labels=list(data.get("labels", [])),
                   versus=data.get("versus"), chosen=data.get("chosen"), note=data.get("note"),
                   source=str(data.get("source", "episodes")))


def _label(value: Any) -> float | None:
    value = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
    return None if math.isnan(value) else min(1.0, max(0.0, value))


# -- segments ---------------------------------------------------------------------------------
def _cdir(run_path: Path, c: Candidate) -> Path:
    return run_path / "rounds" / f"r{c.round:02d}" / f"c{c.index:02d}"


def stored_episodes(task: TaskSpec, run_path: Path, c: Candidate) -> EpisodeSet | None:
    """The candidate's saved evaluation episodes, or None."""
    from rewardsmith.train import EPISODES_FILE

    found = EpisodeSet.load(_cdir(run_path, c) / EPISODES_FILE, task.state_size)
    return found if found is not None and found.n_episodes else None


def ranked_episode(task: TaskSpec, run_path: Path, c: Candidate) -> EpisodeSet | None:
    """The candidate's median-fitness evaluation episode (the lower middle one of an even number;
    one episode), or None when none was saved."""
    found = stored_episodes(task, run_path, c)
    if found is None:
        return None
    order = np.argsort(found.fitness, kind="stable")
    return found.take([int(order[(len(order) - 1) // 2])])


def rollout_segment(cdir: Path, task: TaskSpec, seed: int = 0, max_steps: int = 1000) -> Segment:
    """Re-run the deterministic policy saved in ``cdir`` for one episode, with a simulator snapshot
    before every step (what a human teacher's GIFs are rendered from)."""
    import json

    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rewardsmith.preference.render import snapshot
    from rewardsmith.wrappers import TaskWrapper

    info = json.loads((cdir / "result.json").read_text())
    model = (PPO if info.get("algo", "ppo") == "ppo" else SAC).load(cdir / "model.zip", device="cpu")
    env = TaskWrapper(task.make_env(), task)
    venv: Any = DummyVecEnv([lambda: env])
    if (cdir / "vecnormalize.pkl").is_file():
        venv = VecNormalize.load(str(cdir / "vecnormalize.pkl"), venv)
        venv.training, venv.norm_reward = False, False
    venv.seed(seed)
    obs = venv.reset()
    states, actions, snaps = [], [], []
    try:
        for _ in range(max_steps):
            snaps.append(snapshot(env))
            action, _ = model.predict(obs, deterministic=True)
            obs, _, dones, _ = venv.step(action)
            states.append(np.array(env.step_state, dtype=np.float64))
            actions.append(np.asarray(action, dtype=np.float64).reshape(-1))
            if dones[0]:
                break
    finally:
        venv.close()
    return Segment(np.stack(states), actions=np.stack(actions), snapshots=np.stack(snaps), origin=cdir.name)


def candidate_segment(task: TaskSpec, run_path: Path, c: Candidate, oracle: bool = True,
                      rollout: bool = False) -> Segment | None:
    """The segment the teacher sees of candidate ``c`` (see the module docstring), or None.

    Args:
        oracle: give the segment the mean true fitness of the candidate's evaluation episodes as
            ``returns`` and ``fitness`` (scripted teachers only).
        rollout: re-run the saved policy with snapshots (human teachers) instead of reading the
            stored evaluation episode.
    """
    found = stored_episodes(task, run_path, c)
    fit = float(np.mean(found.fitness)) if found is not None else c.fitness_mean
    if rollout:
        seg = rollout_segment(_cdir(run_path, c), task)
        seg.origin = c.name
    else:
        ep = ranked_episode(task, run_path, c)
        if ep is None:
            return None
        seg = Segment(ep.transitions.state, actions=ep.transitions.action, origin=c.name)
    if oracle and fit is not None:
        seg.returns, seg.fitness = float(fit), float(fit)
    return seg


def reward_trace(task: TaskSpec, c: Candidate, run_path: Path) -> dict[str, Any] | None:
    """What the candidate's own reward said over its ranked episode: steps, how the episode ended,
    each component's mean / min / max per step and the total per step (None when unavailable)."""
    ep = ranked_episode(task, run_path, c)
    if ep is None or not c.source:
        return None
    t = ep.transitions
    out: dict[str, Any] = {"steps": int(t.n), "end": "terminated" if bool(t.terminated[-1]) else "time limit",
                           "components": {}, "total_mean": None}
    try:
        from rewardsmith.screen import _program, relabel_program

        program = _program(c.source, task)
        total, comps, _ = relabel_program(program, ep)
    except Exception:  # a potential program, or one that fails on these states: the training's stats
        for name, s in ((c.stats or {}).get("components") or {}).items():
            out["components"][name] = {"mean": s["mean"], "min": s["min"], "max": s["max"]}
        out["basis"] = "training"
        return out
    comps = np.asarray(comps).reshape(t.n, -1)
    for k, name in enumerate(program.components):
        col = comps[:, k]
        out["components"][name] = {"mean": float(col.mean()), "min": float(col.min()), "max": float(col.max())}
    out["total_mean"] = float(np.mean(total))
    out["basis"] = "episode"
    return out


# -- ranking and selection ----------------------------------------------------------------------
def rank(teacher: Any, segments: dict[str, Segment], ranking: Ranking,
         save: Callable[[Ranking], None] = lambda _r: None) -> Ranking:
    """Ask ``teacher`` every pair of ``segments`` not yet in ``ranking`` (round robin), saving after each."""
    names = ranking.names
    for i, left in enumerate(names):
        for right in names[i + 1:]:
            if ranking.label(left, right) != "missing":
                continue
            lab = _label(teacher.compare([segments[left]], [segments[right]]))
            ranking.labels.append({"left": left, "right": right, "label": lab})
            save(ranking)
    return ranking


def select_by_preference(ranking: Ranking, teacher: Any, segments: dict[str, Segment],
                         previous: Candidate | None, previous_segment: Segment | None,
                         by_name: dict[str, Candidate], log: Callable[[str], None] = print,
                         save: Callable[[Ranking], None] = lambda _r: None) -> Candidate | None:
    """The choice after a ranked round (see the module docstring); sets ``ranking.chosen`` / ``note``."""
    if not ranking.names:
        return previous
    if not ranking.informative:
        keep = previous or by_name[ranking.names[0]]
        why = "the previous choice" if previous is not None else "the round's first trained candidate"
        ranking.note = (f"the teacher skipped every comparison of round {ranking.round + 1}: no preference; "
                        f"keeping {keep.name} ({why})")
        log(f"  {ranking.note}")
        ranking.chosen = keep.name
        save(ranking)
        return keep
    top = by_name[ranking.order()[0]]
    if previous is None or previous.name == top.name or previous_segment is None:
        ranking.chosen = top.name
        save(ranking)
        return top
    if ranking.versus is None:
        lab = _label(teacher.compare([segments[top.name]], [previous_segment]))
        ranking.versus = {"left": top.name, "right": previous.name, "label": lab}
        save(ranking)
    lab = ranking.versus["label"]
    if lab is None:
        ranking.note = f"the teacher skipped {top.name} against {previous.name}: keeping {previous.name}"
        keep = previous
    elif lab >= 0.5:
        keep = top
    else:
        ranking.note = f"the teacher preferred the earlier choice {previous.name} to this round's top {top.name}"
        keep = previous
    ranking.chosen = keep.name
    save(ranking)
    return keep


class PreferenceSelector:
    """The preference-selection stage of the loop: segments, ranking, choice and the coder's feedback.

    Args:
        task: the task.
        run_path: the run directory (rankings go to ``rounds/rNN/ranking.json``).
        teacher: a :class:`~rewardsmith.preference.teaching.SegmentTeacher`.
        oracle: whether segments carry their true fitness (the scripted teacher needs it).
        rollouts: whether segments are re-run with snapshots (a human teacher's GIFs).
        log: progress lines.
    """

    def __init__(self, task: TaskSpec, run_path: Path, teacher: Any, oracle: bool = True, rollouts: bool = False,
                 log: Callable[[str], None] = print) -> None:
        self.task, self.run_path, self.teacher = task, Path(run_path), teacher
        self.oracle, self.rollouts, self.log = oracle, rollouts, log
        self._segments: dict[str, Segment] = {}

    def _path(self, round_idx: int) -> Path:
        return self.run_path / "rounds" / f"r{round_idx:02d}" / RANKING_FILE

    def _save(self, ranking: Ranking) -> None:
        atomic_write_json(self._path(ranking.round), ranking.to_dict())

    def segment(self, c: Candidate) -> Segment | None:
        """The (memoised) segment of ``c``."""
        if c.name not in self._segments:
            try:
                seg = candidate_segment(self.task, self.run_path, c, oracle=self.oracle, rollout=self.rollouts)
            except Exception as exc:  # no model or episodes saved: the candidate is not ranked
                self.log(f"  {c.name}: no segment for the teacher ({type(exc).__name__}: {exc})")
                seg = None
            if seg is None:
                return None
            self._segments[c.name] = seg
        return self._segments[c.name]

    def select(self, round_idx: int, cands: Sequence[Candidate], previous: Candidate | None) -> tuple[
            Ranking | None, Candidate | None]:
        """Rank the round's trained candidates and choose (restoring saved labels); ``(ranking, choice)``."""
        trained = [c for c in cands if c.trained][:MAX_RANKED]
        segs = {c.name: s for c in trained if (s := self.segment(c)) is not None}
        if not segs:
            return None, previous
        saved = read_json(self._path(round_idx))
        ranking = Ranking.from_dict(saved) if isinstance(saved, dict) and saved.get("names") == list(segs) \
            else Ranking(round=round_idx, names=list(segs), source="rollouts" if self.rollouts else "episodes")
        asked = len(ranking.labels)
        rank(self.teacher, segs, ranking, self._save)
        by_name = {c.name: c for c in trained}
        if previous is not None:
            by_name.setdefault(previous.name, previous)
        prev_seg = self.segment(previous) if previous is not None else None
        choice = select_by_preference(ranking, self.teacher, segs, previous, prev_seg, by_name, self.log,
                                      self._save)
        self._save(ranking)
        resumed = f" ({asked} answers restored)" if asked else ""
        self.log(f"round {round_idx + 1}: the teacher ranked {' > '.join(ranking.order())}{resumed}; "
                 f"chosen {ranking.chosen}")
        return ranking, choice

    def feedback(self, ranking: Ranking, history: Sequence[Candidate], chosen: Candidate | None) -> dict[str, Any]:
        """The context of ``prompts/icpl.j2`` (no fitness in it)."""
        by_name = {c.name: c for c in history}
        order = ranking.order()
        wins = ranking.wins()
        preferred = chosen if chosen is not None else by_name[order[0]]
        rejected = by_name[order[-1]] if len(order) > 1 and order[-1] != preferred.name else None

        def entry(c: Candidate | None) -> dict[str, Any] | None:
            if c is None:
                return None
            return {"name": c.name, "source": c.source, "components": c.components,
                    "trace": reward_trace(self.task, c, self.run_path)}

        rows = [{"rank": i + 1, "name": n, "wins": wins[n], "components": by_name[n].components}
                for i, n in enumerate(order)]
        return {"round": ranking.round, "ranking": rows, "n_pairs": len(ranking.labels),
                "n_answered": ranking.answered, "preferred": entry(preferred), "rejected": entry(rejected),
                "top": order[0], "note": ranking.note, "informative": ranking.informative}


def preference_summary(chosen: Candidate, history: Sequence[Candidate], rounds: list[dict[str, Any]],
                       teacher: str, budget: int | None = None) -> dict[str, Any]:
    """``summary.json``'s ``preference``: the teacher's choice beside the fitness (recorded for honesty)."""
    from rewardsmith.stages import select_by_fitness

    by_fit = select_by_fitness(history, budget=budget)
    return {"teacher": teacher, "chosen": chosen.name, "chosen_search_fitness": chosen.fitness_mean,
            "fitness_best": None if by_fit is None else by_fit.name,
            "fitness_best_search_fitness": None if by_fit is None else by_fit.fitness_mean,
            "agrees_with_fitness": by_fit is not None and by_fit.name == chosen.name, "rounds": rounds}


def coder_preference(feedback: dict[str, Any] | None) -> dict[str, Any] | None:
    """The structured preference the offline coder reads (``CoderContext.preference``)."""
    if not feedback or not feedback.get("preferred"):
        return None
    pref, rej = feedback["preferred"], feedback.get("rejected")
    return {"preferred": pref["source"], "rejected": rej["source"] if rej else None,
            "order": [r["name"] for r in feedback["ranking"]], "informative": feedback["informative"],
            "preferred_trace": pref.get("trace"), "rejected_trace": rej.get("trace") if rej else None}


def make_loop_teacher(name: str, task: TaskSpec, seed: int, coder: Any = None, run_path: Path | None = None) -> Any:
    """The teacher ``--teacher`` names.

    ``scripted``: the oracle over true fitness; ``human``: GIFs and terminal answers, saved as they
    come to ``<run>/preference_answers.jsonl`` (GIFs beside it); ``llm``: through the loop's coder
    (the OpenAI-compatible endpoint from the environment when the loop's coder is the offline one).
    """
    from rewardsmith.preference.teaching import make_teacher

    if name == "scripted":
        return make_teacher("scripted", task, seed=seed)
    if name == "human":
        return make_teacher("human", task, **({} if run_path is None else
                                              {"answers": str(Path(run_path) / "preference_answers.jsonl")}))
    return make_teacher(name, task, coder=None if getattr(coder, "name", "offline") == "offline" else coder)


__all__ = ["RANKING_FILE", "PreferenceSelector", "Ranking", "candidate_segment", "coder_preference",
           "make_loop_teacher", "preference_summary", "rank", "reward_trace", "rollout_segment", "select_by_preference"]
