"""Rotation helpers shared by the codecs.

Quaternions follow the project convention (docs/contracts.md): ``w, x, y, z``. All functions accept a
single rotation or a batch (leading dimensions) and work in float64 internally, because the codecs
convert to float32 only at the very end; doing the Gram-Schmidt and the matrix->quaternion step in
float32 would cost about 1e-4 rad of accuracy for no speed gain at these sizes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "normalize_quat",
    "canonical_quat",
    "continuous_quats",
    "quat_to_matrix",
    "matrix_to_quat",
    "quat_to_rot6d",
    "rot6d_to_matrix",
    "rot6d_to_quat",
]


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


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """``w, x, y, z`` quaternions (``w >= 0``) from rotation matrices ``(..., 3, 3)``.

    Uses the branch on the largest diagonal term (Shepperd's method) so the result stays accurate
    near 180-degree rotations, where the naive ``w = sqrt(1 + trace) / 2`` formula loses precision.
    """
    m = np.asarray(m, dtype=np.float64)
    batch = m.shape[:-2]
    flat = m.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 4), dtype=np.float64)
    for i, r in enumerate(flat):
        trace = r[0, 0] + r[1, 1] + r[2, 2]
        if trace > 0.0:
            s = np.sqrt(trace + 1.0) * 2.0
            out[i] = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2.0
            out[i] = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif r[1, 1] > r[2, 2]:
            s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2.0
            out[i] = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2.0
            out[i] = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
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
