"""One helper each for the files rewardsmith writes: atomic writes, tolerant reads, the cache root.

Every file of a run directory, the compile cache and the response cache is written through
:func:`atomic_write_text` / :func:`atomic_write_json` (a temporary file in the same folder, then
``os.replace``), so a process killed mid-write leaves the old file or none, never half a file.
:func:`read_json` treats a missing *or unreadable* file alike (returns None), so a file that was
truncated anyway (a full disk, a copy cut short) counts as missing and its work is redone.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """``$REWARDSMITH_CACHE``, or ``~/.cache/rewardsmith``: compiled programs and LLM responses live below."""
    return Path(os.environ.get("REWARDSMITH_CACHE") or Path.home() / ".cache" / "rewardsmith")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (creating parent folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike[str], data: Any, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (``default=str`` for odd values) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, default=str, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON in ``path``; None when it is missing, unreadable or not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


__all__ = ["atomic_write_json", "atomic_write_text", "cache_root", "read_json"]
