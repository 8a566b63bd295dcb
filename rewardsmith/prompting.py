"""Rendering the LLM prompts from the jinja2 templates in ``prompts/`` (package ``rewardsmith.prompts``).

Templates: ``system.j2`` (the reward coder's role and the reward-program rules; no context) and
``task.j2`` (a task's description, variables table, signature and tips; context ``task``). A
missing context variable is an error, never an empty string.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jinja2

from rewardsmith.errors import RewardsmithError


@functools.lru_cache(maxsize=8)
def _environment(prompts_dir: str | None = None) -> jinja2.Environment:
    loader: jinja2.BaseLoader = jinja2.PackageLoader("rewardsmith.prompts", ".")
    if prompts_dir:  # the user's templates win, by name; the shipped ones fill the rest
        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(prompts_dir), loader])
    return jinja2.Environment(  # plain-text prompts: no HTML autoescape
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def template_names() -> list[str]:
    """Names of the shipped templates, without the ``.j2`` suffix."""
    return sorted(n[:-3] for n in _environment().list_templates(extensions=["j2"]))


def render_prompt(name: str, prompts_dir: str | None = None, **context: Any) -> str:
    """Render the template ``prompts/<name>.j2`` with ``context``.

    Args:
        name: template name, e.g. ``"system"`` or ``"task"`` (a ``.j2`` suffix is optional).
        prompts_dir: a folder whose ``<name>.j2`` files override the shipped templates.
        **context: the template's variables, e.g. ``task=get_task("hopper-forward")``.

    Raises:
        RewardsmithError: unknown template or a missing context variable.
    """
    file = name if name.endswith(".j2") else f"{name}.j2"
    try:
        if prompts_dir is not None and not os.path.isdir(prompts_dir):
            raise RewardsmithError(f"--prompts: no such folder {prompts_dir}")
        return _environment(str(prompts_dir) if prompts_dir else None).get_template(file).render(**context)
    except jinja2.TemplateNotFound:
        raise RewardsmithError(f"no prompt template {name!r}; known: {', '.join(template_names())}") from None
    except jinja2.UndefinedError as exc:
        raise RewardsmithError(f"prompt template {name!r}: {exc.message} (pass it as a keyword)") from None


__all__ = ["render_prompt", "template_names"]
