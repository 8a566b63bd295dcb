"""The 4-component Hopper program the wrapper and check benchmarks measure."""


def compute_reward(x_velocity, torso_height, torso_angle, action):
    forward = 1.0 * x_velocity
    healthy = 1.0 if torso_height > 0.8 and abs(torso_angle) < 0.2 else 0.0
    ctrl = 0.001 * np.sum(action * action)
    upright = -0.1 * torso_angle * torso_angle
    return forward + healthy - ctrl + upright, {"forward": forward, "healthy": healthy, "ctrl": -ctrl, "upright": upright}
