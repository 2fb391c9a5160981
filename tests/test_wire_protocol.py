"""The wire format without a server: whole action chunks in one vectorised pass each way (the codec's
`decode_chunk`, `actions_to_wire` on the server, `actions_from_wire` on the client), and hostile JPEG
frames refused before they are decoded."""

from __future__ import annotations

import resource
import time

import cv2
import numpy as np
import pytest

from robotflow.codecs import get_codec
from robotflow.geometry import quat_to_matrix
from robotflow.wire.protocol import (
    EE_TARGET,
    ProtocolError,
    actions_from_wire,
    actions_to_wire,
    encode_jpeg,
    jpeg_size,
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


# ---- JPEG frames ------------------------------------------------------------------------------------


def jpeg_value(frames: list[bytes]) -> dict:
    return {b"__jpeg__": True, b"frames": frames, b"ndim": 3 if len(frames) == 1 else 4}


def frame(h: int = 48, w: int = 64) -> bytes:
    return encode_jpeg(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))[b"frames"][0]


def declaring(h: int, w: int) -> bytes:
    """A small JPEG whose frame header claims (h, w): what a decompression bomb looks like."""
    buf = bytearray(frame(8, 8))
    i = buf.find(b"\xff\xc0")
    buf[i + 5 : i + 7], buf[i + 7 : i + 9] = h.to_bytes(2, "big"), w.to_bytes(2, "big")
    return bytes(buf)


def test_jpeg_size_reads_the_frame_header():
    assert jpeg_size(frame(48, 64)) == (48, 64)
    assert jpeg_size(declaring(20000, 30000)) == (20000, 30000)
    _, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert jpeg_size(png.tobytes()) is None and jpeg_size(b"\xff\xd8\xff\xda\x00\x02") is None
    assert jpeg_size(b"") is None and jpeg_size(frame()[:20]) is None


def test_a_jpeg_declaring_a_huge_image_is_refused_before_decoding():
    """631 bytes declaring 20000x20000 used to cost 10 s and 2.3 GB of decoding before the size check."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with pytest.raises(ProtocolError, match="does not declare an image of at most 4096x4096"):
        unpack(pack({"image.wrist": jpeg_value([declaring(20000, 20000)])}))
    assert time.perf_counter() - t < 2.0
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024 < 300  # MB; decoding is 1,200
    _, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ProtocolError, match="does not declare"):  # cv2 would decode a PNG bomb as well
        unpack(pack({"image.wrist": jpeg_value([png.tobytes()])}))


def test_the_jpeg_frames_of_a_message_share_one_budget():
    """Three 48x64 frames decode within three frames' worth of bytes, not within two, whether in one value
    or spread over several keys of the message."""
    one = 48 * 64 * 3
    back = unpack(pack({"v": jpeg_value([frame()] * 3)}), max_jpeg_bytes=3 * one)
    assert back["v"].shape == (3, 48, 64, 3)
    with pytest.raises(ProtocolError, match="decode to more than the server accepts"):
        unpack(pack({"v": jpeg_value([frame()] * 3)}), max_jpeg_bytes=2 * one)
    with pytest.raises(ProtocolError, match="decode to more than the server accepts"):
        unpack(pack({k: jpeg_value([frame()]) for k in ("a", "b", "c")}), max_jpeg_bytes=2 * one)
    assert unpack(pack({k: jpeg_value([frame()]) for k in ("a", "b")}), max_jpeg_bytes=2 * one)["b"].shape == (
        48,
        64,
        3,
    )


# ---- numpy values -----------------------------------------------------------------------------------


@pytest.mark.parametrize("binary_keys", [True, False])
def test_arrays_whose_bytes_do_not_fit_are_refused(binary_keys):
    """Positronic's binary-keyed maps (the short path) and text-keyed ones alike: the data must be exactly
    shape x itemsize bytes of a numeric dtype; a view of the message comes back otherwise."""
    import msgpack

    def value(data: bytes, dtype: str, shape: list) -> bytes:
        keys = ("__ndarray__", "data", "dtype", "shape")
        keys = tuple(k.encode() for k in keys) if binary_keys else keys
        return msgpack.packb({"a": dict(zip(keys, (True, data, dtype, shape), strict=True))})

    np.testing.assert_array_equal(
        unpack(value(np.arange(6.0).tobytes(), "<f8", [2, 3]))["a"], np.arange(6.0).reshape(2, 3)
    )
    for data, dtype, shape, text in [
        (b"\0" * 40, "<f8", [2, 3], "does not match its 40 data bytes"),
        (b"\0" * 48, "<f8", [-2, -3], "does not match"),
        (b"\0" * 16, "|O", [2], "unsupported dtype"),
        (b"\0" * 16, "<c16", [1], "unsupported dtype"),
    ]:
        with pytest.raises(ProtocolError, match=text):
            unpack(value(data, dtype, shape))
