"""MuJoCo XML models of rewardsmith's envs (package data)."""
