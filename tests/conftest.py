"""Shared fixtures: an isolated compile cache, and headless MuJoCo."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session compiles into its own cache, so tests never depend on a warm one."""
    os.environ["REWARDSMITH_CACHE"] = str(tmp_path_factory.mktemp("rs-cache"))
