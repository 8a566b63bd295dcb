"""Pull the reward program out of a coder's response (prose, code blocks, or bare code)."""

from __future__ import annotations

import re

__all__ = ["extract_code"]

# An opening fence of 3+ backticks or tildes, an optional info string, then the body up to a
# closing fence of the same character and at least the same length (or the end of the text: a
# truncated response leaves its last block open).
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n(?P<body>.*?)"
    r"(?:^[ \t]*(?P=fence)[`~]*[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_PYTHON_TAGS = {"", "python", "python3", "py", "py3", "numba", "python-repl"}
_DEFINES = re.compile(r"^(?:async\s+)?def\s+(\w+)\s*\(|^class\s+(\w+)\b", re.MULTILINE)
_COMPUTE_REWARD = re.compile(r"^def\s+compute_reward\s*\(", re.MULTILINE)
_CODE_START = re.compile(r"^(?:def\s+\w+\s*\(|import\s+\w|from\s+[\w.]+\s+import\s|@\w|class\s+\w)")
_CODE_LINE = re.compile(
    r"^(?:def|class|import|from|if|elif|else|for|while|try|except|finally|with|return|raise|"
    r"assert|pass|global|nonlocal|del)\b|^[@#)\]}]|"
    r"^[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*\s*(?:\[[^\]]*\])?\s*(?:[-+*/%|&^]|//|\*\*)?=|"
    r"^[A-Za-z_][\w.]*\("
)


def extract_code(text: str) -> str | None:
    """Return the Python reward program inside ``text``, or ``None`` when there is none.

    Handles ```` ```python ```` / bare ```` ``` ```` / ``~~~`` fences with prose around them and
    several blocks: the block defining ``compute_reward`` wins (the last one when several do, as
    models put the corrected version last), joined with the other blocks that define helper
    functions or classes. Without any fence, bare code starting at the first ``def`` / ``import``
    / ``from`` / ``class`` / decorator line is taken, leading and trailing prose stripped.

    Args:
        text: the raw response.

    Returns:
        the code (ending in one newline), or ``None`` if ``text`` holds no code.
    """
    blocks = _fenced_blocks(text)
    if blocks:
        return _choose(blocks)
    if _FENCE.search(text) is None:
        return _bare_code(text)
    return None


def _fenced_blocks(text: str) -> list[str]:
    """The non-empty Python-looking fenced blocks, in order (any tagged block if none is)."""
    python, other = [], []
    for match in _FENCE.finditer(text):
        body = match.group("body").strip("\n")
        if not body.strip():
            continue
        tag = match.group("info").strip().split()[0].lower() if match.group("info").strip() else ""
        (python if tag in _PYTHON_TAGS else other).append(_dedent(body))
    return python or [b for b in other if _DEFINES.search(b)]


def _choose(blocks: list[str]) -> str:
    """Pick the ``compute_reward`` block and join the helper-defining blocks to it."""
    primary = [i for i, b in enumerate(blocks) if _COMPUTE_REWARD.search(b)]
    if not primary:
        defining = [b for b in blocks if _DEFINES.search(b)]
        if defining:
            return _join(defining)
        return _finish(max(blocks, key=len))
    main = primary[-1]
    names = _defined_names(blocks[main])
    keep = []
    for i, block in enumerate(blocks):
        if i == main:
            keep.append(block)
        elif i not in primary and _DEFINES.search(block):
            new = _defined_names(block) - names
            if new:
                names |= new
                keep.append(block)
    return _join(keep)


def _defined_names(code: str) -> set[str]:
    return {a or b for a, b in _DEFINES.findall(code)}


def _join(blocks: list[str]) -> str:
    return _finish("\n\n\n".join(b.strip("\n") for b in blocks))


def _finish(code: str) -> str:
    return code.strip("\n") + "\n"


def _dedent(code: str) -> str:
    import textwrap

    return textwrap.dedent(code)


def _bare_code(text: str) -> str | None:
    """Code without fences: from the first code-looking line to the last, prose cut away."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    end = start + 1
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line.strip() or line[0] in " \t" or _CODE_LINE.match(line):
            end = i + 1
            continue
        break  # a top-level line that is not Python: the prose after the code
    return _finish("\n".join(lines[start:end]).rstrip())
