"""Differential IK on the gym-hil Panda: random reachable poses within 5 mm and 2 degrees."""

import numpy as np
import pytest

from robotflow.drivers.sim.scene import HOME_QPOS
from robotflow.drivers.sim.world import ArmController, SimWorld
from robotflow.geometry import rotation_angle


def random_targets(world: SimWorld, n: int, seed: int) -> list[np.ndarray]:
    """Reachable poses by construction: forward kinematics of random joint configurations around home,
    kept when the pinch point is over the table (x >= 0.25 m, 6 cm above it)."""
    rng = np.random.default_rng(seed)
    arm = ArmController(world)
    out = []
    while len(out) < n:
        q = np.clip(HOME_QPOS + rng.uniform(-0.6, 0.6, 7), arm.ik.lo, arm.ik.hi)
        pose = arm.ik.fk(q)
        if pose[0] >= 0.25 and pose[2] >= 0.06:
            out.append(pose)
    return out


@pytest.fixture(scope="module")
def world():
    return SimWorld("stack_cubes")


def test_ik_solver_reaches_random_poses(world):
    arm = ArmController(world)
    for target in random_targets(world, 20, seed=1):
        q, pos_err, rot_err = arm.ik.solve(target, HOME_QPOS)
        assert pos_err < 0.005 and np.degrees(rot_err) < 2.0, (target, pos_err, np.degrees(rot_err))
        assert np.all(q >= arm.ik.lo - 1e-9) and np.all(q <= arm.ik.hi + 1e-9)


def test_arm_tracks_random_poses_in_physics(world):
    """Closed loop with physics: IK at 100 Hz, position servos at 500 Hz, measured EE pose."""
    world.reset_robot()
    arm = ArmController(world)
    for target in random_targets(world, 6, seed=2):
        arm.set_ee_target(target)
        for _ in range(250):  # 2.5 s
            arm.update(0.01)
            world.step(5)
        ee = world.ee_pose()
        pos_err = np.linalg.norm(ee[:3] - target[:3])
        rot_err = np.degrees(rotation_angle(ee[3:], target[3:]))
        assert pos_err < 0.005 and rot_err < 2.0, (target, pos_err, rot_err)


def test_arm_holds_without_command_and_respects_limits(world):
    world.reset_robot()
    arm = ArmController(world)
    for _ in range(100):
        arm.update(0.01)
        world.step(5)
    assert np.max(np.abs(world.arm_qpos() - HOME_QPOS)) < 1e-3
    # An unreachable target: the solution stays inside the joint limits and the motion is speed-limited.
    arm.set_ee_target(np.array([2.0, 0.0, 0.3, 0.0, 0.7071, 0.7071, 0.0]))
    prev = arm.q_cmd.copy()
    for _ in range(50):
        arm.update(0.01)
        assert np.all(np.abs(arm.q_cmd - prev) <= arm.max_vel * 0.01 + 1e-12)
        prev = arm.q_cmd.copy()
        world.step(5)
    assert np.all(arm.q_goal >= arm.ik.lo - 1e-9) and np.all(arm.q_goal <= arm.ik.hi + 1e-9)
    world.reset_robot()


def test_joint_targets(world):
    world.reset_robot()
    arm = ArmController(world)
    goal = HOME_QPOS + np.array([0.3, -0.2, 0.1, 0.3, -0.2, 0.2, 0.5])
    arm.set_joint_target(goal)
    for _ in range(200):
        arm.update(0.01)
        world.step(5)
    assert np.max(np.abs(world.arm_qpos() - goal)) < 2e-3
    world.reset_robot()
