"""robotflow.geometry: quaternion conventions, rotation conversions and the Panda's forward kinematics."""

import mujoco
import numpy as np
from episode_factory import ee_pose

from robotflow.geometry import (
    canonical_quat,
    continuous_quats,
    matrix_to_quat,
    panda_fk,
    pose_from_pos_mat,
    quat_conj,
    quat_error,
    quat_from_rotvec,
    quat_mul,
    quat_to_matrix,
    quat_to_rot6d,
    quat_to_rotvec,
    quat_toward,
    quat_z_axis,
    rot6d_to_quat,
    rotation_angle,
    yaw_quat,
)


def same_rotation(q1: np.ndarray, q2: np.ndarray, atol: float = 1e-5) -> bool:
    return abs(abs(float(np.dot(q1, q2))) - 1.0) < atol


def random_quats(n: int, seed: int = 0) -> np.ndarray:
    return canonical_quat(np.random.default_rng(seed).normal(size=(n, 4)))


def test_quaternion_matrix_and_rot6d_round_trip():
    rng = np.random.default_rng(0)
    q = canonical_quat(rng.normal(size=(50, 4)))
    assert np.allclose(matrix_to_quat(quat_to_matrix(q)), q, atol=1e-9)
    assert np.allclose(rot6d_to_quat(quat_to_rot6d(q)), q, atol=1e-9)
    # A predicted (noisy, non-orthonormal) 6D vector still decodes to a unit quaternion near the truth.
    noisy = quat_to_rot6d(q) + rng.normal(scale=0.01, size=(50, 6))
    qn = rot6d_to_quat(noisy)
    assert np.allclose(np.linalg.norm(qn, axis=1), 1.0)
    assert np.all(np.abs(np.sum(qn * q, axis=1)) > 0.99)


def test_quaternion_sign_continuity():
    t = np.linspace(0, 6, 200)  # the factory's rotation crosses pi, so the w>=0 source flips sign
    src = ee_pose(t)[:, 3:7]
    assert np.any(np.sum(src[1:] * src[:-1], axis=1) < 0), "fixture should contain a sign flip"
    cont = continuous_quats(src)
    assert np.all(np.sum(cont[1:] * cont[:-1], axis=1) > 0)
    assert all(same_rotation(a, b) for a, b in zip(src, cont))


def test_canonical_sign_and_zero_quaternion():
    assert np.allclose(canonical_quat([-2.0, 0.0, 0.0, 0.0]), [1, 0, 0, 0])
    assert np.allclose(canonical_quat([0.0, 0.0, 0.0, 0.0]), [1, 0, 0, 0])  # a network can emit zeros
    q = canonical_quat([-1.0, 1.0, 1.0, 1.0])
    assert q[0] > 0 and np.isclose(np.linalg.norm(q), 1.0)


def test_matches_mujoco_quaternion_functions():
    """The sim's IK used MuJoCo's quaternion routines; the numpy versions agree with them to rounding."""
    for a, b in zip(random_quats(50, 1), random_quats(50, 2)):
        want = np.empty(4)
        mujoco.mju_mulQuat(want, a, b)
        np.testing.assert_allclose(quat_mul(a, b), want, atol=1e-15)
        vel = np.empty(3)
        mujoco.mju_quat2Vel(vel, a, 1.0)
        np.testing.assert_allclose(quat_to_rotvec(a), vel, atol=1e-12)
        mat = quat_to_matrix(b)
        want_q = np.empty(4)
        mujoco.mju_mat2Quat(want_q, mat.reshape(9))
        np.testing.assert_allclose(matrix_to_quat(mat), canonical_quat(want_q), atol=1e-12)
    np.testing.assert_allclose(quat_to_rotvec([1.0, 0.0, 0.0, 0.0]), [0.0, 0.0, 0.0])


def test_rotation_vectors_angles_and_errors():
    for q in random_quats(30, 3):
        np.testing.assert_allclose(quat_from_rotvec(quat_to_rotvec(q)), q, atol=1e-12)
    a, b = yaw_quat(0.3), yaw_quat(-0.2)
    assert np.isclose(rotation_angle(a, b), 0.5)
    assert np.isclose(rotation_angle(a, -b), 0.5)  # q and -q are the same orientation
    np.testing.assert_allclose(quat_error(a, b), [0, 0, 0.5], atol=1e-12)
    # The error takes `current` onto `target`.
    np.testing.assert_allclose(quat_mul(quat_from_rotvec(quat_error(a, b)), b), a, atol=1e-12)
    assert rotation_angle(a, a) == 0.0
    assert 0 < rotation_angle(yaw_quat(1e-9), yaw_quat(0.0)) < 2e-9  # full precision for tiny angles
    np.testing.assert_allclose(quat_mul(a, quat_conj(a)), [1, 0, 0, 0], atol=1e-15)


def test_quat_toward_limits_the_angle():
    start, goal = yaw_quat(0.0), yaw_quat(1.0)
    assert quat_toward(start, goal, 1.5) is goal
    np.testing.assert_allclose(quat_toward(start, goal, 0.25), yaw_quat(0.25), atol=1e-12)
    np.testing.assert_allclose(quat_toward(start, -goal, 0.25), yaw_quat(0.25), atol=1e-12)  # the short way


def test_frames_and_panda_fk():
    pose = pose_from_pos_mat([0.1, 0.2, 0.3], np.eye(3).reshape(9))
    np.testing.assert_allclose(pose, [0.1, 0.2, 0.3, 1, 0, 0, 0])
    np.testing.assert_allclose(quat_z_axis(np.array([0.0, 1.0, 0.0, 0.0])), [0, 0, -1], atol=1e-15)
    zero = panda_fk(np.zeros(7))
    # All joints at zero: the arm stretched up, flange 0.333 + 0.316 + 0.384 - 0.107 - 0.1034 above the base.
    np.testing.assert_allclose(zero[:3], [0.088, 0.0, 0.333 + 0.316 + 0.384 - 0.107 - 0.1034], atol=1e-12)
