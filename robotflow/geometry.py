"""Rotations, poses and the Panda's forward kinematics: numpy only, the one home of robotflow's geometry.

Conventions (docs/contracts.md): quaternions are ``w, x, y, z``, kept with ``w >= 0`` at the source; an EE
pose is ``[x, y, z, qw, qx, qy, qz]`` in the robot base frame (m). Functions that take rotations in bulk
(the codecs, the wire protocol) accept one rotation or a batch (leading dimensions); the per-tick helpers
of the drivers (`quat_mul`, `quat_error`, `rotation_angle`, ...) take one quaternion each.

Everything works in float64: the codecs convert to float32 only at the very end, and doing the
Gram-Schmidt and the matrix->quaternion step in float32 would cost about 1e-4 rad of accuracy for no
speed gain at these sizes.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "normalize_quat",
    "canonical_quat",
    "continuous_quats",
    "quat_mul",
    "quat_conj",
    "quat_from_axis_angle",
    "quat_from_rotvec",
    "quat_to_rotvec",
    "yaw_quat",
    "quat_error",
    "rotation_angle",
    "quat_toward",
    "quat_z_axis",
    "quat_to_matrix",
    "matrix_to_quat",
    "quat_to_rot6d",
    "rot6d_to_matrix",
    "rot6d_to_quat",
    "pose_from_pos_mat",
    "pose_from_transform",
    "HAND_TCP",
    "panda_fk",
]

IDENTITY_QUAT = np.array([1.0, 0.0, 0.0, 0.0])


# ---- quaternions: normalisation and sign ----------------------------------------------------------


def normalize_quat(q: np.ndarray) -> np.ndarray:
    """Return unit quaternions; a zero quaternion (a network can emit one) becomes identity."""
    q = np.asarray(q, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    identity = np.zeros_like(q)
    identity[..., 0] = 1.0
    safe = np.where(norm > 1e-12, norm, 1.0)
    return np.where(norm > 1e-12, q / safe, identity)


def canonical_quat(q: np.ndarray) -> np.ndarray:
    """Normalise and pick the sign with ``w >= 0`` (the contract's convention at the source)."""
    q = normalize_quat(q)
    sign = np.where(q[..., :1] < 0.0, -1.0, 1.0)
    return q * sign


def continuous_quats(quats: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Flip signs along axis 0 so consecutive quaternions have a non-negative dot product.

    ``q`` and ``-q`` are the same rotation, but a policy regressing quaternion components sees a jump
    of length 2 when the source flips sign (which a ``w >= 0`` convention does every time the rotation
    crosses 180 degrees about some axis). Keeping the sign continuous along an episode removes those
    jumps from the training labels. ``previous`` seeds the chain (the last quaternion already emitted).
    """
    q = np.array(quats, dtype=np.float64, copy=True)
    if q.ndim == 1:
        q = q[None]
        squeeze = True
    else:
        squeeze = False
    prev = None if previous is None else np.asarray(previous, dtype=np.float64)
    for i in range(q.shape[0]):
        if prev is not None and float(np.dot(q[i], prev)) < 0.0:
            q[i] = -q[i]
        prev = q[i]
    return q[0] if squeeze else q


# ---- quaternions: algebra (one rotation each) -----------------------------------------------------


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b``: the rotation ``b`` followed by ``a``."""
    aw, ax, ay, az = np.asarray(a, dtype=np.float64)
    bw, bx, by, bz = np.asarray(b, dtype=np.float64)
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def quat_conj(q: np.ndarray) -> np.ndarray:
    """The conjugate (the inverse rotation of a unit quaternion)."""
    return np.array([q[0], -q[1], -q[2], -q[3]], dtype=np.float64)


def quat_from_axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by `angle` (rad) about the unit vector `axis`."""
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * np.asarray(axis, dtype=np.float64)])


def quat_from_rotvec(rotvec: np.ndarray) -> np.ndarray:
    """Quaternion of a rotation vector (axis * angle, rad); identity for a zero vector."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return IDENTITY_QUAT.copy()
    return quat_from_axis_angle(rotvec / angle, angle)


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, rad) of a unit quaternion, angle in (-pi, pi] (MuJoCo's mju_quat2Vel)."""
    q = np.asarray(q, dtype=np.float64)
    sin_half = float(np.sqrt(q[1] * q[1] + q[2] * q[2] + q[3] * q[3]))
    axis = q[1:] / sin_half if sin_half >= 1e-15 else np.array([1.0, 0.0, 0.0])
    angle = 2.0 * np.arctan2(sin_half, q[0])
    if angle > np.pi:
        angle -= 2.0 * np.pi
    return axis * angle


def yaw_quat(yaw: float) -> np.ndarray:
    """Rotation by `yaw` (rad) about the base z axis."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def quat_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector (rad, base frame) that takes `current` to `target`, the short way round."""
    dq = quat_mul(target, quat_conj(current))
    if dq[0] < 0:
        dq = -dq
    return quat_to_rotvec(dq)


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (rad, in [0, pi]) of the rotation between two orientations, the short way round.

    atan2 of the relative rotation, not arccos of a dot product: it keeps full precision for tiny angles.
    """
    dq = quat_mul(a, quat_conj(b))
    return 2.0 * float(np.arctan2(np.linalg.norm(dq[1:]), abs(dq[0])))


def quat_toward(start: np.ndarray, goal: np.ndarray, max_angle: float) -> np.ndarray:
    """`goal`, or the orientation `max_angle` along the shortest rotation from `start` to it (unit inputs)."""
    angle = rotation_angle(start, goal)
    if angle <= max_angle:
        return goal
    if np.dot(start, goal) < 0:
        goal = -goal
    s = max_angle / angle
    theta = angle / 2  # slerp between unit quaternions at half-angle theta
    q = (np.sin((1 - s) * theta) * start + np.sin(s * theta) * goal) / np.sin(theta)
    return q / np.linalg.norm(q)


def pose_toward(start: np.ndarray, goal: np.ndarray, max_m: float, max_angle: float) -> tuple[np.ndarray, bool]:
    """`goal` (an `[x, y, z, qw, qx, qy, qz]` pose) moved no further than `max_m` and `max_angle` (rad) from
    `start`, and whether that limited it."""
    pos, quat = goal[:3], goal[3:]
    d = pos - start[:3]
    dist = float(np.linalg.norm(d))
    limited = dist > max_m
    if limited:
        pos = start[:3] + d * (max_m / dist)
    sq = start[3:] / np.linalg.norm(start[3:])
    if rotation_angle(sq, quat) > max_angle:
        quat = quat_toward(sq, quat, max_angle)
        limited = True
    return np.concatenate([pos, quat]), limited


def quat_z_axis(q: np.ndarray) -> np.ndarray:
    """Where the z axis of the frame rotated by unit quaternion q points (third column of its matrix)."""
    w, x, y, z = q
    return np.array([2 * (x * z + y * w), 2 * (y * z - x * w), 1 - 2 * (x * x + y * y)])


# ---- rotation matrices and 6D rotations (batches) -------------------------------------------------


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` from ``w, x, y, z`` quaternions (normalised first)."""
    q = normalize_quat(q)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.empty(q.shape[:-1] + (3, 3), dtype=np.float64)
    m[..., 0, 0] = 1 - 2 * (y * y + z * z)
    m[..., 0, 1] = 2 * (x * y - z * w)
    m[..., 0, 2] = 2 * (x * z + y * w)
    m[..., 1, 0] = 2 * (x * y + z * w)
    m[..., 1, 1] = 1 - 2 * (x * x + z * z)
    m[..., 1, 2] = 2 * (y * z - x * w)
    m[..., 2, 0] = 2 * (x * z - y * w)
    m[..., 2, 1] = 2 * (y * z + x * w)
    m[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def _shepperd(r: list[list[float]]) -> list[float]:
    """Unnormalised quaternion of one rotation matrix (nested lists: plain floats are ~10x faster to index
    than numpy scalars, with the same IEEE results), from the branch on its largest diagonal term."""
    trace = r[0][0] + r[1][1] + r[2][2]
    if trace > 0.0:
        s = math.sqrt(trace + 1.0) * 2.0
        return [0.25 * s, (r[2][1] - r[1][2]) / s, (r[0][2] - r[2][0]) / s, (r[1][0] - r[0][1]) / s]
    if r[0][0] > r[1][1] and r[0][0] > r[2][2]:
        s = math.sqrt(1.0 + r[0][0] - r[1][1] - r[2][2]) * 2.0
        return [(r[2][1] - r[1][2]) / s, 0.25 * s, (r[0][1] + r[1][0]) / s, (r[0][2] + r[2][0]) / s]
    if r[1][1] > r[2][2]:
        s = math.sqrt(1.0 + r[1][1] - r[0][0] - r[2][2]) * 2.0
        return [(r[0][2] - r[2][0]) / s, (r[0][1] + r[1][0]) / s, 0.25 * s, (r[1][2] + r[2][1]) / s]
    s = math.sqrt(1.0 + r[2][2] - r[0][0] - r[1][1]) * 2.0
    return [(r[1][0] - r[0][1]) / s, (r[0][2] + r[2][0]) / s, (r[1][2] + r[2][1]) / s, 0.25 * s]


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """``w, x, y, z`` quaternions (``w >= 0``) from rotation matrices ``(..., 3, 3)``.

    Uses the branch on the largest diagonal term (Shepperd's method) so the result stays accurate
    near 180-degree rotations, where the naive ``w = sqrt(1 + trace) / 2`` formula loses precision.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.shape == (3, 3):  # one matrix, several times per sim tick: skip the batch machinery
        q = np.array(_shepperd(m.tolist()))
        q /= np.linalg.norm(q)
        return -q if q[0] < 0.0 else q
    batch = m.shape[:-2]
    out = np.array([_shepperd(r) for r in m.reshape(-1, 3, 3).tolist()], dtype=np.float64).reshape(-1, 4)
    return canonical_quat(out).reshape(batch + (4,))


def quat_to_rot6d(q: np.ndarray) -> np.ndarray:
    """6D rotation (Zhou et al. 2019): the first two columns of the rotation matrix, column-major.

    Layout: ``[r00, r10, r20, r01, r11, r21]``. Unlike a quaternion it has no sign ambiguity and is
    continuous over SO(3), which is why GR00T-style codecs regress it.
    """
    m = quat_to_matrix(q)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def rot6d_to_matrix(r6: np.ndarray) -> np.ndarray:
    """Rotation matrices from (possibly non-orthonormal, e.g. predicted) 6D vectors by Gram-Schmidt."""
    r6 = np.asarray(r6, dtype=np.float64)
    a1, a2 = r6[..., 0:3], r6[..., 3:6]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
    a2_orth = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = a2_orth / np.maximum(np.linalg.norm(a2_orth, axis=-1, keepdims=True), 1e-12)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def rot6d_to_quat(r6: np.ndarray) -> np.ndarray:
    """Unit ``w, x, y, z`` quaternions (``w >= 0``) from 6D rotation vectors."""
    return matrix_to_quat(rot6d_to_matrix(r6))


# ---- frames ---------------------------------------------------------------------------------------


def pose_from_pos_mat(pos: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Position (3,) and rotation matrix (3, 3), or row-major (9,) as MuJoCo keeps it, -> pose (7,)."""
    rot = np.asarray(mat, dtype=np.float64).reshape(3, 3)
    return np.concatenate([np.asarray(pos, dtype=np.float64), matrix_to_quat(rot)])


def pose_from_transform(t: np.ndarray) -> np.ndarray:
    """A 4x4 homogeneous transform (or its top 3x4) -> pose ``[x, y, z, qw, qx, qy, qz]``."""
    t = np.asarray(t, dtype=np.float64)
    return pose_from_pos_mat(t[:3, 3], t[:3, :3])


# ---- Panda forward kinematics (Franka's published Craig DH parameters; the FR3 shares them) ----------

_DH_A = np.array([0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088, 0.0])
_DH_D = np.array([0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0, 0.107])
_DH_ALPHA = np.array([0.0, -np.pi / 2, np.pi / 2, np.pi / 2, -np.pi / 2, np.pi / 2, np.pi / 2, 0.0])
_CA, _SA = np.cos(_DH_ALPHA), np.sin(_DH_ALPHA)
# Flange -> Franka Hand TCP (Desk's default end effector): 0.1034 m along z, rotated -45 deg about z.
HAND_TCP = np.array(
    [[np.cos(-np.pi / 4), -np.sin(-np.pi / 4), 0, 0], [np.sin(-np.pi / 4), np.cos(-np.pi / 4), 0, 0], [0, 0, 1, 0.1034]]
    + [[0, 0, 0, 1]]
)


def panda_fk(q: np.ndarray, flange_to_ee: np.ndarray = HAND_TCP) -> np.ndarray:
    """EE pose `[x, y, z, qw, qx, qy, qz]` of a Panda/FR3 at joints q, in the base frame."""
    theta = np.zeros(8)
    theta[:7] = q
    ct, st = np.cos(theta), np.sin(theta)
    # All eight link transforms at once (Craig's convention), then their product.
    links = np.zeros((8, 4, 4))
    links[:, 0, 0], links[:, 0, 1], links[:, 0, 3] = ct, -st, _DH_A
    links[:, 1, 0], links[:, 1, 1], links[:, 1, 2], links[:, 1, 3] = st * _CA, ct * _CA, -_SA, -_DH_D * _SA
    links[:, 2, 0], links[:, 2, 1], links[:, 2, 2], links[:, 2, 3] = st * _SA, ct * _SA, _CA, _DH_D * _CA
    links[:, 3, 3] = 1.0
    t = links[0]
    for i in range(1, 8):
        t = t @ links[i]
    return pose_from_transform(t @ flange_to_ee)
