"""Whole action chunks through the wire, in one vectorised pass each way (no server): the codec's
`decode_chunk`, `actions_to_wire` on the server and `actions_from_wire` on the client."""

from __future__ import annotations

import numpy as np
import pytest

from robotflow.codecs import get_codec
from robotflow.geometry import quat_to_matrix
from robotflow.wire.protocol import (
    EE_TARGET,
    ProtocolError,
    actions_from_wire,
    actions_to_wire,
    pack,
    pose_to_wire,
    unpack,
)


def random_chunk(action_dim: int, n: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chunk = rng.standard_normal((n, action_dim))
    chunk[:, -1] = rng.uniform(-0.5, 1.5, n)  # widths outside 0..1 get clipped
    chunk[3] = 0.0  # a zero quaternion (a network can emit one) decodes to identity
    return chunk.astype(np.float32)


@pytest.mark.parametrize("name", ["ee", "ee_rot6d_joints"])
def test_decode_chunk_is_decode_of_each_row(name):
    codec = get_codec(name)
    chunk = random_chunk(codec.action_dim)
    poses, widths = codec.decode_chunk(chunk)
    assert poses.shape == (100, 7) and widths.shape == (100,)
    for i, action in enumerate(chunk):
        one = codec.decode(action)
        np.testing.assert_array_equal(poses[i], one["ee_pose"])
        assert widths[i] == one["width"]
    assert widths.min() == 0.0 and widths.max() == 1.0
    assert (poses[:, 3] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(poses[:, 3:7], axis=1), 1.0)
    if codec.layout.rotation == "quat":
        np.testing.assert_array_equal(poses[3, 3:7], [1.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"decodes \(N, "):
        codec.decode_chunk(chunk[:, :-1])


@pytest.mark.parametrize("stamped", [True, False])
def test_a_chunk_survives_the_wire(stamped):
    """Server rows -> msgpack -> client chunk: the same poses (through rotation matrices) and grips, the
    marker last, rows stamped i / fps (or spaced at fps when unstamped)."""
    codec = get_codec("ee")
    poses, widths = codec.decode_chunk(random_chunk(codec.action_dim))
    rows = actions_to_wire(poses, widths, 15.0, valid_steps=40, stamped=stamped)
    assert len(rows) == 101 and rows[-1] == {"timestamp": 40 / 15}
    assert ("timestamp" in rows[0]) is stamped
    np.testing.assert_allclose(rows[7]["robot_command"]["pose"][3:].reshape(3, 3), quat_to_matrix(poses[7, 3:7]))
    assert rows[7]["target_grip"] == 1.0 - widths[7]  # Positronic's grip: 0 open, 1 closed
    chunk = actions_from_wire(unpack(pack({"result": rows}))["result"], fps=15.0)
    assert len(chunk) == 100 and chunk.valid_until == pytest.approx(40 / 15)
    assert (chunk.kinds == EE_TARGET).all()
    np.testing.assert_allclose(chunk.targets, poses, atol=1e-12)
    np.testing.assert_allclose(chunk.grips, widths, atol=1e-15)
    np.testing.assert_allclose(chunk.stamps, np.arange(100) / 15.0)
    assert actions_to_wire(np.zeros((0, 7)), np.zeros(0), 15.0) == []


def row(pose=None, grip=0.5, **extra):
    pose = pose_to_wire(np.array([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0])) if pose is None else pose
    return {"robot_command": {"type": "cartesian_pos", "pose": pose}, "target_grip": grip, **extra}


def test_rows_in_mixed_forms_are_read_row_by_row():
    """A grip as a float, a numpy scalar or a 1-element array; a pose as a list or a 3x4 array: all read."""
    pose = pose_to_wire(np.array([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0]))
    rows = [row(grip=0.25), row(grip=np.float32(0.5)), row(grip=np.array([0.75])), row(pose=pose.tolist())]
    rows.append(row(pose=pose.reshape(3, 4)))
    chunk = actions_from_wire(rows, fps=15.0)
    np.testing.assert_allclose(chunk.grips, [0.75, 0.5, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(chunk.targets, np.tile([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0], (5, 1)), atol=1e-12)


@pytest.mark.parametrize(
    "bad, text",
    [
        (row(grip=float("nan")), "action 5: observation 'target_grip' has non-finite values"),
        (row(pose=np.full(12, np.inf)), "action 5: observation 'robot_command.pose' has non-finite values"),
        (row(pose=np.zeros(9)), "action 5: .*must have 12 values, got 9"),
        (row(pose=np.arange(12.0)), "action 5: robot_command.pose does not hold a rotation matrix"),
        (row(pose=np.r_[0.4, 0.0, 0.3, -np.eye(3).ravel()]), "action 5: .*does not hold a rotation matrix"),
        (row(grip="open"), "action 5: observation 'target_grip' must be numeric"),
        (row(timestamp=[1.0, 2.0]), "action 5: observation 'timestamp' must have 1 values, got 2"),
    ],
)
def test_a_bad_row_is_refused_naming_it(bad, text):
    """Nothing non-finite or non-rotational reaches a target: the whole answer is refused, naming the row."""
    with pytest.raises(ProtocolError, match=text):
        actions_from_wire([row() for _ in range(5)] + [bad] + [row()], fps=15.0)
