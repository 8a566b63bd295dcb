"""The offline coder: a search over a library of reward-term templates, no LLM needed.

Round 0 matches generic term templates (forward progress, distance between positions,
uprightness, height, alive bonus, action and velocity costs, staying centred) to the task's
variables by their names, units, meanings and the task description, and samples K programs with
different term subsets and weights. Later rounds start from the best programs so far and apply
the reflection the LLM would read: a dominating term is scaled down, an anti-correlated one cut,
a constant one dropped, early termination raises the alive bonus and uprightness, saturated
actions raise the action cost; then weights are perturbed (an evolution strategy) so the K
samples explore around the parent. With preference selection (``context.preference``, ICPL: no
fitness, no reflection) the parent is the teacher's preferred program and the rejected one is the
direction to move away from: a weight both share is pushed further from the rejected program's, a
term only the preferred has is raised, terms only the rejected has are kept out of the search.
Programs are written through ``prompts/offline_program.j2``
with their term configuration in a comment, so a resumed run can continue the search.

With ``context.shaping == "potential"`` it writes shaping potentials (``compute_potential``,
through ``prompts/offline_potential.j2``) from the library's state terms only (distances,
closeness, heights, uprightness: no action, velocity or alive terms), searched the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rewardsmith.coders.base import CoderContext, CoderError, Completion, Usage

CONFIG_TAG = "# rewardsmith-offline-terms: "
#: term kinds that are functions of the state alone, usable in a shaping potential.
POTENTIAL_KINDS = ("distance", "near_bonus", "linear", "square_cost")


@dataclass
class Term:
    """One reward term: ``kind`` picks the code template, ``args`` the variables it reads."""

    kind: str
    name: str
    weight: float
    args: list[str]
    core: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _scalar(v: Any) -> bool:
    return v.shape == ()


def _words(v: Any) -> str:
    return f"{v.name} {v.description} {v.unit}".lower()


def match_terms(task: Any) -> list[Term]:
    """Every library term that applies to ``task``'s variables, with default weights."""
    desc = task.description.lower()
    terms: list[Term] = []
    variables = list(task.variables)
    backward = bool(re.search(r"\bbackward|negative x|towards negative", desc))
    terminates = "episode ends when" in desc or "ends when" in desc
    for v in variables:
        w = _words(v)
        if _scalar(v) and "m/s" in v.unit and re.search(r"(^|_)x_|forward|along x", w) and "angular" not in w:
            sign = -1.0 if backward else 1.0
            terms.append(Term("progress", "backward_progress" if backward else "forward_progress", 1.0,
                              [v.name], core=True, extra={"sign": sign}))
        elif _scalar(v) and "m/s" in v.unit and re.search(r"sideways|(^|_)y_", w):
            terms.append(Term("abs_cost", "sideways_penalty", 0.1, [v.name]))
        elif _scalar(v) and "m/s" in v.unit and re.search(r"vertical|(^|_)z_", w):
            terms.append(Term("square_cost", "bounce_penalty", 0.05, [v.name]))
    positions = [v for v in variables if not _scalar(v) and v.unit == "m"]
    targets = [v for v in positions if re.search(r"target|goal|object", v.name)]
    effectors = [v for v in positions if re.search(r"tip|finger|hand|end|effector|object|agent|point|^position",
                                                   v.name)]
    has_object = any("object" in v.name for v in positions)
    for a in effectors:
        for b in targets:
            if a.name == b.name or a.shape != b.shape:
                continue
            if ("object" in a.name and "object" in b.name) or (has_object and "object" not in a.name
                                                               and "object" not in b.name):
                continue
            pair = f"{a.name.replace('_position', '')}_to_{b.name.replace('_position', '')}"
            primary = "goal" in b.name or ("target" in b.name and "object" not in a.name)
            terms.append(Term("distance", f"{pair}_distance", 1.0 if primary else 0.5, [a.name, b.name],
                              core=True))
            terms.append(Term("near_bonus", f"{pair}_near", 0.5 if primary else 0.25, [a.name, b.name],
                              extra={"scale": 0.05}))
    for v in variables:
        w = _words(v)
        if _scalar(v) and v.unit == "rad" and "angle" in v.name and re.search(r"vertical|upright|pitch|relative", w):
            balance = "balance" in desc or "upright" in desc
            terms.append(Term("square_cost", f"{v.name}_upright", 1.0 if balance else 0.5, [v.name], core=balance))
        elif _scalar(v) and v.unit in ("m", "") and "height" in v.name:
            terms.append(Term("linear", f"{v.name}_bonus", 0.5, [v.name], core="tip" in v.name))
        elif _scalar(v) and v.unit == "m" and "position" in v.name and re.search(r"rail|cart|centre|center", w):
            terms.append(Term("square_cost", f"{v.name.replace('_position', '')}_centred", 0.05, [v.name]))
        elif _scalar(v) and "rad/s" in v.unit and "angular" in v.name:
            terms.append(Term("square_cost", f"{v.name}_damping", 0.01, [v.name]))
        elif not _scalar(v) and "rad/s" in v.unit and "velocities" in v.name:
            terms.append(Term("sum_square_cost", f"{v.name}_cost", 0.001, [v.name]))
        elif v.name == "action" and v.unit:  # a force or torque (a discrete action's index has no cost)
            terms.append(Term("sum_square_cost", "action_cost", 0.05, [v.name], core=True))
    if terminates:
        terms.append(Term("alive", "alive_bonus", 1.0, [_alive_arg(task)], core=True))
    if not any(t.core and t.kind != "sum_square_cost" for t in terms):
        for t in terms:  # no progress, distance or balance term: a height to raise is the task's core
            if t.kind == "linear" and t.name.endswith("height_bonus"):
                t.core = True
    if not any(t.core and t.kind != "sum_square_cost" for t in terms):
        raise CoderError(f"the offline coder found no task term for {task.name!r}: its variables have no forward "
                         "velocity, positions to bring together, angle to keep upright or height; use an LLM coder")
    return terms


def _alive_arg(task: Any) -> str:
    # the alive bonus must read some variable to be a valid program; any scalar will do
    for v in task.variables:
        if v.shape == ():
            return v.name
    return task.variables[0].name


def term_code(t: Term) -> tuple[str, str]:
    """(statement computing the component, the component's variable name)."""
    w = f"{t.weight:.4g}"
    a = t.args
    if t.kind == "progress":
        return f"{t.name} = {w} * ({t.extra['sign']:+.0f}.0 * {a[0]})", t.name
    if t.kind == "distance":
        return f"{t.name} = -{w} * np.sqrt(np.sum(({a[0]} - {a[1]}) ** 2))", t.name
    if t.kind == "near_bonus":
        return (f"{t.name} = {w} * np.exp(-np.sqrt(np.sum(({a[0]} - {a[1]}) ** 2)) / {t.extra['scale']:.3g})",
                t.name)
    if t.kind == "square_cost":
        return f"{t.name} = -{w} * {a[0]} * {a[0]}", t.name
    if t.kind == "abs_cost":
        return f"{t.name} = -{w} * abs({a[0]})", t.name
    if t.kind == "sum_square_cost":
        return f"{t.name} = -{w} * np.sum({a[0]} * {a[0]})", t.name
    if t.kind == "linear":
        return f"{t.name} = {w} * {a[0]}", t.name
    if t.kind == "alive":
        return f"{t.name} = {w}", t.name
    raise CoderError(f"unknown term kind {t.kind!r}")


class OfflineCoder:
    """Writes reward programs without an LLM (see the module docstring).

    Args:
        seed: base seed of the search.
        sigma: log-normal spread of weight perturbations.
        p_toggle: probability to add or drop one optional term in a sample.
    """

    name = "offline"

    def __init__(self, seed: int = 0, sigma: float = 0.5, p_toggle: float = 0.35) -> None:
        self.seed = seed
        self.sigma = sigma
        self.p_toggle = p_toggle
        self.usage = Usage()

    # -- protocol -----------------------------------------------------------------------
    def complete(self, messages: list[dict[str, str]], n: int = 1,
                 context: CoderContext | None = None) -> list[Completion]:
        """Return ``n`` programs; needs ``context`` (the task and the history)."""
        if context is None or context.task is None:
            raise CoderError("the offline coder needs the task context (it does not read prose)")
        self.usage.requests += 1
        task = context.task
        library = match_terms(task)
        if context.shaping == "potential":
            library = [t for t in library if t.kind in POTENTIAL_KINDS and "action" not in t.args
                       and not any(task.variable(a).unit.endswith("/s") for a in t.args)]
            if not library:
                raise CoderError(f"the offline coder found no state term for a potential of {task.name!r} "
                                 "(distances, heights, angles); use an LLM coder")
            if not any(t.core for t in library):
                library[0].core = True
        rng = np.random.default_rng([self.seed, context.seed, context.round, len(context.history)])
        if context.repair_of:
            terms = parse_terms(context.repair_of) or self._initial(library, rng)
            return [self._render(task, terms, "a clean rewrite of the program that failed", context)] * n
        pref = context.preference
        if pref and pref.get("preferred") and parse_terms(pref["preferred"]):
            # the first sample only moves away from the rejected program; with nothing rejected, all explore
            directed = bool(pref.get("rejected")) and bool(pref.get("informative", True))
            return [self._render(task, *self._improve_by_preference(pref, library, rng, directed and k == 0,
                                                                    context), context)
                    for k in range(n)]
        parents = self._parents(context.history)
        out = []
        for k in range(n):
            if not parents:
                terms = self._initial(library, rng) if k else [t for t in library if t.core]
                why = "a first guess from the term library" if k else "the core terms at default weights"
            else:
                parent = parents[k % len(parents)]
                terms, why = self._improve(parent, library, rng, directed_only=(k == 0), context=context)
            out.append(self._render(task, terms, why, context))
        return out

    # -- search -------------------------------------------------------------------------
    def _initial(self, library: list[Term], rng: np.random.Generator) -> list[Term]:
        terms = []
        for t in library:
            if t.core or rng.random() < 0.5:
                terms.append(Term(**{**asdict(t), "weight": t.weight * float(np.exp(rng.uniform(-1.1, 1.1)))}))
        return terms

    @staticmethod
    def _parents(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        scored = [h for h in history if h.get("ok") and h.get("fitness") is not None and parse_terms(h["source"])]
        scored.sort(key=lambda h: h["fitness"], reverse=True)
        return scored[:2]

    def _improve(self, parent: dict[str, Any], library: list[Term], rng: np.random.Generator,
                 directed_only: bool, context: CoderContext) -> tuple[list[Term], str]:
        terms = {t.name: t for t in parse_terms(parent["source"])}
        stats = parent.get("reflection") or {}
        comps = stats.get("components", {})
        reasons = []
        for name, c in comps.items():
            t = terms.get(name)
            if t is None:
                continue
            if len(comps) > 1 and c.get("share", 0) > 0.8:
                t.weight *= 0.5
                reasons.append(f"halved {name} (it dominated)")
            corr = c.get("corr_with_fitness")
            if corr is not None and corr < -0.5 and t.kind != "progress":
                if t.core:
                    t.weight *= 0.3
                    reasons.append(f"cut {name} (it anti-correlated with fitness)")
                else:
                    del terms[name]
                    reasons.append(f"dropped {name} (it anti-correlated with fitness)")
            elif c.get("max", 0) - c.get("min", 0) < 1e-9 and not t.core and t.kind != "alive":
                del terms[name]
                reasons.append(f"dropped {name} (it was constant)")
        modes = " ".join(stats.get("failure_modes", []))
        if "episodes end early" in modes:
            for t in library:
                if t.kind == "alive" or t.name.endswith("_upright"):
                    if t.name in terms:
                        terms[t.name].weight *= 2.0
                    else:
                        terms[t.name] = Term(**asdict(t))
            reasons.append("raised the alive bonus and uprightness (episodes ended early)")
        if "actions sit at their limits" in modes:
            for t in terms.values():
                if t.name == "action_cost":
                    t.weight *= 3.0
            reasons.append("tripled the action cost (saturated actions)")
        reasons += _apply_feedback(terms, context.human_feedback)
        if not directed_only:
            reasons += self._explore(terms, library, rng, self.sigma * (2.0 if "did not improve" in modes else 1.0))
        parent_fit = parent.get("fitness")
        fit = "" if parent_fit is None else f" (fitness {parent_fit:.4g})"
        why = f"improved the best program so far{fit}: " + ("; ".join(reasons) or "kept it")
        return [t for t in terms.values() if t.weight > 0], why

    def _explore(self, terms: dict[str, Term], library: list[Term], rng: np.random.Generator, spread: float,
                 avoid: frozenset[str] = frozenset()) -> list[str]:
        """Perturb the weights log-normally and maybe toggle one optional term (never one in ``avoid``)."""
        reasons = []
        for t in terms.values():
            t.weight *= float(np.exp(rng.normal(0.0, spread)))
        optional = [t for t in library if not t.core and t.name not in avoid]
        if optional and rng.random() < self.p_toggle:
            pick = optional[int(rng.integers(len(optional)))]
            if pick.name in terms:
                del terms[pick.name]
                reasons.append(f"tried without {pick.name}")
            else:
                terms[pick.name] = Term(**asdict(pick))
                reasons.append(f"tried adding {pick.name}")
        reasons.append(f"perturbed the weights (sigma {spread:g})")
        return reasons

    def _improve_by_preference(self, pref: dict[str, Any], library: list[Term], rng: np.random.Generator,
                               directed_only: bool, context: CoderContext) -> tuple[list[Term], str]:
        """The teacher's preferred program, moved away from the rejected one (see the module docstring)."""
        terms = {t.name: t for t in parse_terms(pref["preferred"])}
        rejected = {t.name: t for t in parse_terms(pref.get("rejected") or "")}
        reasons: list[str] = []
        avoid: frozenset[str] = frozenset()
        if rejected and pref.get("informative", True):
            for name, t in terms.items():
                r = rejected.get(name)
                if r is None:
                    t.weight *= 1.25
                    reasons.append(f"raised {name} (the rejected program lacks it)")
                elif r.weight > 0 and abs(t.weight / r.weight - 1.0) > 1e-3:
                    old = t.weight
                    t.weight *= float(np.clip(t.weight / r.weight, 0.25, 4.0)) ** 0.5
                    reasons.append(f"moved {name} away from the rejected program's weight "
                                   f"({r.weight:.3g}): {old:.3g} -> {t.weight:.3g}")
            avoid = frozenset(set(rejected) - set(terms))
            if avoid:
                reasons.append(f"kept out {', '.join(sorted(avoid))} (only the rejected program has them)")
        reasons += _apply_feedback(terms, context.human_feedback)
        if not directed_only:
            reasons += self._explore(terms, library, rng, self.sigma, avoid)
        why = "improved the teacher's preferred program: " + ("; ".join(reasons) or "kept it")
        return [t for t in terms.values() if t.weight > 0], why

    # -- writing ------------------------------------------------------------------------
    def _render(self, task: Any, terms: list[Term], why: str, context: CoderContext) -> Completion:
        from rewardsmith.prompting import render_prompt

        lines = [term_code(t) for t in terms]
        params = [v.name for v in task.variables if any(v.name in t.args for t in terms)]
        config = json.dumps([asdict(t) for t in terms], separators=(",", ":"))
        template = "offline_potential.j2" if context.shaping == "potential" else "offline_program.j2"
        code = render_prompt(template, task=task, params=params, lines=lines,
                             components=[name for _, name in lines], config_line=CONFIG_TAG + config)
        text = (f"Offline coder, round {context.round}: {why}.\n\n"
                f"Terms: {', '.join(f'{t.name} (w={t.weight:.3g})' for t in terms)}.\n\n```python\n{code}```\n")
        return Completion(text=text, model="offline")


def parse_terms(source: str) -> list[Term]:
    """The term configuration embedded in an offline program (empty for other programs)."""
    for line in source.splitlines():
        if line.strip().startswith(CONFIG_TAG):
            try:
                return [Term(**d) for d in json.loads(line.strip()[len(CONFIG_TAG):])]
            except (ValueError, TypeError):
                return []
    return []


def _apply_feedback(terms: dict[str, Term], feedback: str | None) -> list[str]:
    """Scale terms the human names: 'more/increase/higher X' doubles, 'less/reduce/lower X' halves."""
    if not feedback:
        return []
    text = feedback.lower()
    reasons = []
    for name, t in terms.items():
        label = name.replace("_", " ")
        for word in {name.lower(), label, name.split("_")[0]}:
            if re.search(rf"(more|increase|higher|stronger|raise)\s+(the\s+)?{re.escape(word)}", text):
                t.weight *= 2.0
                reasons.append(f"doubled {name} (human feedback)")
                break
            if re.search(rf"(less|reduce|lower|weaker|decrease)\s+(the\s+)?{re.escape(word)}", text):
                t.weight *= 0.5
                reasons.append(f"halved {name} (human feedback)")
                break
    return reasons


__all__ = ["OfflineCoder", "Term", "match_terms", "parse_terms"]
