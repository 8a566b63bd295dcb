"""A hand-written reward for halfcheetah-backward: run towards negative x, keep the torso level."""


def compute_reward(x_velocity, torso_angle, action):
    backward = -x_velocity
    level = -0.1 * torso_angle * torso_angle
    ctrl = -0.1 * np.sum(action * action)
    return backward + level + ctrl, {"backward": backward, "level": level, "ctrl": ctrl}
