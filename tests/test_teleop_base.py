"""What the device nodes share: deadband, target integration, episode and button logic."""

import numpy as np

from robotflow.drivers.teleop_base import (
    WORKSPACE_HI,
    WORKSPACE_LO,
    ButtonEdges,
    EETarget,
    EpisodeButtons,
    deadband,
)
from robotflow.geometry import quat_from_rotvec, rotation_angle

HOME = np.array([0.55, 0.0, 0.48, 0.0, 0.70710678, 0.70710678, 0.0])


def test_deadband_is_continuous_and_keeps_full_scale():
    x = np.array([-1.0, -0.5, -0.1, -0.05, 0.0, 0.05, 0.1, 0.1001, 0.55, 1.0])
    y = deadband(x, 0.1)
    assert np.allclose(y[[2, 3, 4, 5, 6]], 0.0)
    assert np.isclose(y[0], -1.0) and np.isclose(y[-1], 1.0) and np.isclose(y[8], 0.5)
    assert 0 < y[7] < 1e-3  # no step at the edge of the band
    assert np.allclose(deadband(x, 0.0), x)


def test_target_integrates_velocities_and_stays_in_the_workspace():
    t = EETarget.from_pose(HOME)
    t.integrate([0.1, 0.0, -0.2], [0.0, 0.0, np.radians(90)], 0.5)
    assert np.allclose(t.pos, HOME[:3] + [0.05, 0.0, -0.1])
    assert np.isclose(np.degrees(rotation_angle(t.quat, HOME[3:])), 45.0)
    assert t.quat[0] >= 0 and np.isclose(np.linalg.norm(t.quat), 1.0)
    for _ in range(100):
        t.integrate([1.0, -1.0, -1.0], [0, 0, 0], 0.1)
    assert np.allclose(t.pos, [WORKSPACE_HI[0], WORKSPACE_LO[1], WORKSPACE_LO[2]])
    assert np.allclose(quat_from_rotvec([0, 0, 0]), [1, 0, 0, 0])


def test_episode_buttons_follow_the_keyboard_rules():
    ep = EpisodeButtons()
    assert ep.request("stop") is None and ep.request("discard") is None  # nothing is recording
    assert ep.request("toggle") == "start" and ep.request("start") is None
    assert ep.request("toggle") == "stop"
    assert ep.request("start") == "start" and ep.request("discard") == "discard"


def test_button_edges_and_hold_time():
    b = ButtonEdges()
    assert b.update({0: True, 1: False}, 1.0) == ([0], [])
    assert b.update({0: True, 1: True}, 1.5) == ([1], [])
    assert np.isclose(b.held_s(0, 2.0), 1.0)
    assert b.update({0: False, 1: True}, 2.5) == ([], [(0, 1.5)])
    b.clear()
    assert b.held_s(1, 3.0) == 0.0
