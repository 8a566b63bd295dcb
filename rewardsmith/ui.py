"""Terminal UI hooks for the loop (rich progress bars and round tables on stderr); see LoopHooks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rewardsmith.candidate import Candidate
from rewardsmith.executor import JobOutcome


@contextlib.contextmanager
def rich_progress(label: str, total: int) -> Iterator[Callable[[JobOutcome], None]]:
    """A transient rich bar over ``total`` jobs showing the best fitness so far."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    best: list[float] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[best]}"), transient=True, console=Console(stderr=True)) as bar:
        task_id = bar.add_task(label, total=total, best="")

        def advance(outcome: JobOutcome) -> None:
            if outcome.result is not None:
                best.append(outcome.result["fitness_mean"])
            bar.update(task_id, advance=1, best=f"best fitness {max(best):.4g}" if best else "")

        yield advance


def round_table(round_idx: int, cands: list[Candidate], best: Candidate | None, task_name: str = ""):
    """A rich table of one round: candidate, status, fitness, pre-screen verdict, components or error."""
    from rich.table import Table

    table = Table(title=f"round {round_idx + 1}" + (f": {task_name}" if task_name else ""))
    for col in ("#", "status", "fitness", "screen", "components / error"):
        table.add_column(col)
    for c in cands:
        status = "best so far" if c is best else c.status
        fit = f"{c.fitness_mean:.4g} ± {c.fitness_std or 0:.2g}" if c.trained else "-"
        table.add_row(str(c.index), status, fit, screen_cell(c),
                      ", ".join(c.components) if c.trained else str(c.error or "")[:90])
    return table


def screen_cell(c: Candidate) -> str:
    """The round table's screen column: the verdict, its score, and whose duplicate it is ("-": not screened)."""
    v = c.screen
    if not isinstance(v, dict):
        return "-"
    cell = str(v.get("decision", "?"))
    if v.get("score") is not None:
        cell += f" {v['score']:+.2f}"
    if v.get("duplicate_of"):
        cell += f" (dup of {v['duplicate_of']})"
    return cell


def round_table_printer(round_idx: int, cands: list[Candidate], best: Candidate | None) -> None:
    """Print :func:`round_table` on stderr."""
    from rich.console import Console

    Console(stderr=True).print(round_table(round_idx, cands, best))
