"""The batch kernels' source: one program over the rows of a states array, with the runtime guard.

Three functions are generated in the program's module (:mod:`rewardsmith.program.compiler`
compiles them):

- ``_rs_batch(S, total, comps, counters)``: every row, serially; adds the counts of non-finite
  totals and of rows that raised to ``counters``. A row that raises gets NaN, then the guard: a
  non-finite total becomes 0 and is counted, a non-finite component becomes 0.
- ``_rs_rows(S, total, comps, lo, hi)``: the same loop body over rows ``lo:hi``, returning the
  two counts.
- ``_rs_pbatch(S, total, comps, counters)``: ``_rs_rows`` under ``numba.prange`` over blocks of
  :data:`BLOCK` rows; each block's counts go to its own slot and are summed at the end (no
  shared counter). Both kernels give the same numbers, row for row (one loop body, written once).

Only ``_rs_batch`` is compiled up front (one function: checking a program pays for no more).

The rows of a program that may write into its inputs (see :mod:`rewardsmith.program.effects`)
are copied into a per-block scratch row first, so the caller's states are never written; the
others read the caller's rows directly. The entry points check every shape once, so the row
loops themselves run without per-index bounds checks (the program keeps its own).
"""

from __future__ import annotations

BLOCK = 8192  # rows per parallel block


def _shape_check(size: int, n_components: int) -> str:
    return (
        "    n = S.shape[0]\n"
        f"    if S.shape[1] != {size} or total.shape[0] != n or comps.shape[0] != n "
        f"or comps.shape[1] != {n_components} or counters.shape[0] < 2:\n"
        "        raise ValueError('batch: states, total, components or counters have the wrong shape')\n"
    )


def kernel_source(entry: str, args: list[str], n_components: int, size: int, copy_rows: bool,
                  first_line: int) -> str:
    """Source of the three kernels, padded to start at ``first_line`` of the program's file.

    Args:
        entry: the reward function's name.
        args: one argument expression per parameter, over the row ``R`` (a vector: ``R[a:b]``)
            or the states ``S`` at row ``i`` (a scalar: ``S[i, a]``).
        n_components: the number of components the program returns.
        size: the state size (columns of ``S``).
        copy_rows: copy each row into scratch before the call (a program that may write into it).
        first_line: the line the kernels start at (after the program's own lines).
    """
    guard = "".join(
        f"        v = c[{j}]\n        comps[i, {j}] = v if np.isfinite(v) else 0.0\n" for j in range(n_components))
    nan = "(" + "np.nan, " * n_components + ")" if n_components else "()"
    rows = (
        "    nbad = 0\n"
        "    nerr = 0\n"
        f"{'    R = np.empty(S.shape[1])' if copy_rows else ''}\n"
        "    for i in range(lo, hi):\n"
        f"{'        R[:] = S[i]' if copy_rows else '        R = S[i]'}\n"
        "        try:\n"
        f"            t, c = {entry}({', '.join(args)})\n"
        "        except Exception:\n"
        f"            t, c = np.nan, {nan}\n"
        "            nerr += 1\n"
        "        if not np.isfinite(t):\n"
        "            t = 0.0\n"
        "            nbad += 1\n"
        "        total[i] = t\n"
        f"{guard}"
    )
    return "\n" * (first_line - 1) + (
        "def _rs_batch(S, total, comps, counters):\n"
        f"{_shape_check(size, n_components)}"
        "    lo, hi = 0, n\n"
        f"{rows}"
        "    counters[0] += nbad\n"
        "    counters[1] += nerr\n"
        "\n\n"
        "def _rs_rows(S, total, comps, lo, hi):\n"
        f"{rows}"
        "    return nbad, nerr\n"
        "\n\n"
        "def _rs_pbatch(S, total, comps, counters):\n"
        f"{_shape_check(size, n_components)}"
        f"    blocks = (n + {BLOCK - 1}) // {BLOCK}\n"
        "    bad = np.zeros(blocks, dtype=np.int64)\n"
        "    err = np.zeros(blocks, dtype=np.int64)\n"
        "    for b in numba.prange(blocks):\n"
        f"        nb, ne = _rs_rows(S, total, comps, b * {BLOCK}, min(n, (b + 1) * {BLOCK}))\n"
        "        bad[b] = nb\n"
        "        err[b] = ne\n"
        "    counters[0] += bad.sum()\n"
        "    counters[1] += err.sum()\n"
    )


__all__ = ["BLOCK", "kernel_source"]
