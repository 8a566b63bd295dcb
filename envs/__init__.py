"""rewardsmith's own gymnasium MuJoCo envs (installed as ``rewardsmith.envs``; registered by string entry point)."""
