"""jinja2 templates of the LLM prompts (installed as ``rewardsmith.prompts``; see :mod:`rewardsmith.prompting`)."""
