"""Codec unit tests: encode/decode round trips, quaternion handling, specs, resampling (no LeRobot I/O)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from episode_factory import EpisodeSpec, ee_pose, grip, joints, write_episode

from robotflow.codecs import (
    LAYOUTS,
    CodecError,
    available_codecs,
    codec_from_spec,
    get_codec,
    spec_differences,
)
from robotflow.codecs.codec import QUAT_CHAIN_REFERENCE
from robotflow.codecs.resample import make_grid, zoh_indices
from robotflow.recording.reader import EpisodeError, EpisodeFile

# The privileged *_objects codecs need an object list and a task/objects message: tests/test_codecs_objects.py.
ALL = sorted(n for n in LAYOUTS if not LAYOUTS[n].objects)


def same_rotation(q1: np.ndarray, q2: np.ndarray, atol: float = 1e-5) -> bool:
    return abs(abs(float(np.dot(q1, q2))) - 1.0) < atol


def live_messages(t: float, image_hw=(120, 160)) -> dict:
    """Latest messages as plain dicts (the encoder also accepts runtime Messages)."""
    img = np.zeros((*image_hw, 3), np.uint8)
    img[..., 0] = 200
    return {
        "arm/state": {"ee_pose": ee_pose(np.array([t]))[0], "joint_pos": joints(np.array([t]))[0]},
        "gripper/state": {"width": float(grip(np.array([t]))[0])},
        "wrist_camera/frame": {"image": img},
        "front_camera/frame": {"image": img},
        "task/episode": {"task": "stack", "event": "start"},
    }


class FakeMessage:
    """Runtime Message shape: `.fields` dict and item access (docs/contracts.md)."""

    def __init__(self, **fields):
        self.fields = fields
        self.topic, self.seq, self.timestamp_ns = "x", 0, 0

    def __getitem__(self, name):
        return self.fields[name]


# -- names and specs ---------------------------------------------------------------------------------
def test_names_aliases_and_unknown():
    assert get_codec("ee").name == "eepose_absolute"
    assert get_codec("joints").name == "joints_absolute"
    assert {"ee_traj", "joints_traj", "ee_joints_traj", "ee_rot6d_joints", "ee_joints"} <= set(available_codecs())
    with pytest.raises(CodecError, match="unknown codec 'eee'"):
        get_codec("eee")


@pytest.mark.parametrize(
    "name,state_dim,action_dim",
    [
        ("eepose_absolute", 8, 8),
        ("joints_absolute", 8, 8),
        ("ee_joints", 15, 8),
        ("ee_traj", 8, 8),
        ("joints_traj", 8, 8),
        ("ee_joints_traj", 15, 8),
        ("ee_rot6d_joints", 17, 10),
    ],
)
def test_feature_shapes(name, state_dim, action_dim):
    codec = get_codec(name, image_size=(96, 128))
    f = codec.features()
    assert f["observation.state"]["shape"] == (state_dim,)
    assert f["action"]["shape"] == (action_dim,)
    assert len(f["observation.state"]["names"]) == state_dim
    assert f["observation.images.wrist"] == {
        "dtype": "video",
        "shape": (96, 128, 3),
        "names": ["height", "width", "channels"],
    }
    assert set(f) == {"observation.images.wrist", "observation.images.front", "observation.state", "action"}


@pytest.mark.parametrize("name", ALL)
def test_spec_round_trip_is_json(name):
    codec = get_codec(name, cameras={"top": "top_camera/frame"}, image_size=(64, 80), task_field=None, fps=10)
    spec = json.loads(json.dumps(codec.spec()))
    again = codec_from_spec(spec)
    assert again.spec() == codec.spec()
    assert spec["params"] == {
        "cameras": {"top": "top_camera/frame"},
        "image_size": [64, 80],
        "task_field": None,
        "fps": 10,
        "channels": {
            "arm_state": "arm/state",
            "arm_command": "arm/command",
            "gripper_state": "gripper/state",
            "gripper_command": "gripper/command",
            "task": "task/episode",
            "objects": "task/objects",
        },
    }
    assert codec_from_spec(json.dumps(spec)).name == name


def test_spec_with_foreign_features_is_refused():
    spec = get_codec("ee").spec()
    spec["features"]["observation.state"]["shape"] = [9]
    with pytest.raises(CodecError, match="does not match"):
        codec_from_spec(spec)


def test_spec_differences():
    a = get_codec("ee").spec()
    assert spec_differences(a, get_codec("eepose_absolute").spec()) == []
    diffs = spec_differences(a, get_codec("joints", image_size=(120, 160)).spec())
    assert any("codec" in d for d in diffs) and any("image_size" in d for d in diffs)


def test_required_streams():
    need = {(c, f) for c, f, _ in get_codec("ee_traj").required_streams()}
    assert ("arm/command", "ee_pose") not in need and ("arm/state", "ee_pose") in need
    need = {(c, f) for c, f, _ in get_codec("joints", cameras={"top": "top_camera/frame"}).required_streams()}
    assert {
        ("arm/state", "joint_pos"),
        ("arm/command", "ee_pose"),
        ("gripper/command", "width"),
        ("top_camera/frame", "image"),
    } <= need
    assert ("wrist_camera/frame", "image") not in need


def test_bad_params():
    with pytest.raises(CodecError):
        get_codec("ee", image_size=(2, 2))
    with pytest.raises(CodecError):
        get_codec("ee", cameras={"wrist": "not-a-channel"})
    with pytest.raises(CodecError):
        get_codec("ee", cameras={"bad.name": "a/b"})


# -- encode / decode round trips -------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_episode_encode_decode_round_trip(name):
    codec = get_codec(name)
    t = np.linspace(0.0, 5.0, 76)
    pose, cmd = ee_pose(t), ee_pose(t + 0.1)
    state, action = codec.encode_arrays(
        state_ee_pose=pose, state_grip=grip(t), state_joints=joints(t), command_ee_pose=cmd, command_grip=grip(t + 0.1)
    )
    assert state.dtype == np.float32 and action.dtype == np.float32
    assert state.shape == (76, codec.state_dim) and action.shape == (76, codec.action_dim)
    traj = LAYOUTS[name].labels == "trajectory"
    for i in range(76):
        out = codec.decode(action[i])
        assert out["ee_pose"].shape == (7,)
        assert np.isclose(np.linalg.norm(out["ee_pose"][3:]), 1.0)
        want_pose = pose[min(i + 1, 75)] if traj else cmd[i]
        want_grip = float(grip(t)[min(i + 1, 75)] > 0.5) if traj else float(grip(t + 0.1)[i])
        assert np.allclose(out["ee_pose"][:3], want_pose[:3], atol=1e-6)
        assert same_rotation(out["ee_pose"][3:], want_pose[3:], atol=1e-5)
        assert out["width"] == pytest.approx(want_grip, abs=1e-6)
    # Sign-continuous quaternions in state and action (where they are quaternions).
    if LAYOUTS[name].rotation == "quat":
        aq = action[:, 3:7]
        assert np.all(np.sum(aq[1:] * aq[:-1], axis=1) > 0)
        if "ee_pose" in LAYOUTS[name].state:
            sq = state[:, 3:7]
            assert np.all(np.sum(sq[1:] * sq[:-1], axis=1) > 0)
            assert float(np.dot(sq[0], aq[0])) > 0
    if "joints" in LAYOUTS[name].state:
        names = codec.state_names
        j0 = names.index("joint_0")
        assert np.allclose(state[:, j0 : j0 + 7], joints(t), atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_live_encoding(name):
    codec = get_codec(name, image_size=(60, 80))
    obs = codec.encode_live(live_messages(1.0))
    assert obs["observation.state"].shape == (codec.state_dim,) and obs["observation.state"].dtype == np.float32
    for cam in ("wrist", "front"):
        img = obs[f"observation.images.{cam}"]
        assert img.shape == (60, 80, 3) and img.dtype == np.uint8 and img.flags.writeable
        assert int(img[..., 0].mean()) == 200
    assert set(obs) == {"observation.state", "observation.images.wrist", "observation.images.front"}
    assert codec.live_task(live_messages(1.0)) == "stack"
    assert codec.live_task({}, default="x") == "x"
    # Live and offline encoders produce the same state for the same inputs.
    t = np.array([1.0])
    offline, _ = codec.encode_arrays(
        state_ee_pose=ee_pose(t),
        state_grip=grip(t),
        state_joints=joints(t),
        command_ee_pose=ee_pose(t),
        command_grip=grip(t),
    )
    assert np.allclose(obs["observation.state"], offline[0], atol=1e-6)


def test_live_accepts_runtime_messages_and_keeps_quaternion_continuous():
    codec = get_codec("ee", image_size=(60, 80))
    prev = None
    for t in np.linspace(0, 6, 90):  # crosses the source sign flip
        raw = live_messages(float(t))
        latest = {ch: FakeMessage(**fields) for ch, fields in raw.items()}
        q = codec.encode_live(latest)["observation.state"][3:7]
        if prev is not None:
            assert float(np.dot(q, prev)) > 0
        prev = q
    codec.reset()
    # A fresh chain starts in the hemisphere of the reference, whatever the previous episode ended with.
    q = codec.encode_live(live_messages(5.5))["observation.state"][3:7]
    assert float(np.dot(q, QUAT_CHAIN_REFERENCE)) >= 0


def test_quaternion_chain_start_does_not_depend_on_solver_noise():
    # The Panda's top-down home orientation is a half turn: w is +-1e-7 depending on the solver. Offline
    # (a grid starting a few steps late) and live (the first tick) must still start in the same hemisphere.
    codec = get_codec("ee", cameras={})
    home = np.array([0.55, 0.0, 0.48, 6.3e-7, 0.70714, 0.70707, 6.6e-7])
    flipped = home.copy()
    flipped[3] = -6.3e-7
    for first in (home, flipped):
        state, _ = codec.encode_arrays(
            state_ee_pose=np.stack([first, home]),
            state_grip=np.ones(2),
            state_joints=None,
            command_ee_pose=np.stack([home, home]),
            command_grip=np.ones(2),
        )
        codec.reset()
        live = codec.encode_live({"arm/state": {"ee_pose": first}, "gripper/state": {"width": 1.0}})
        assert np.allclose(state[0], live["observation.state"], atol=1e-6)
        assert state[0][4] > 0 and state[1][4] > 0


def test_live_missing_channel_is_named():
    codec = get_codec("joints")
    latest = live_messages(0.0)
    del latest["front_camera/frame"]
    with pytest.raises(CodecError, match="front_camera/frame"):
        codec.encode_live(latest)
    latest = live_messages(0.0)
    latest["arm/state"] = {"ee_pose": np.zeros(7)}
    with pytest.raises(CodecError, match="joint_pos"):
        codec.encode_live(latest)


def test_decode_normalises_and_clips():
    codec = get_codec("ee")
    out = codec.decode(np.array([0.1, 0.2, 0.3, -2.0, 0.0, 0.0, 0.0, 1.7], np.float32))
    assert np.allclose(out["ee_pose"], [0.1, 0.2, 0.3, 1.0, 0.0, 0.0, 0.0], atol=1e-6)
    assert out["width"] == 1.0
    assert codec.decode(np.zeros((1, 8)))["ee_pose"][3] == 1.0  # zero quaternion -> identity, batch dim ok
    with pytest.raises(CodecError, match="8-d"):
        codec.decode(np.zeros(10))
    r6 = get_codec("ee_rot6d_joints").decode(np.array([0, 0, 0, 2, 0, 0, 0, 3, 0, 0.5]))
    assert np.allclose(r6["ee_pose"][3:], [1, 0, 0, 0])


# -- resampling ----------------------------------------------------------------------------------------
HAND_TS = {
    # irregular, hand-made timestamps (seconds); the grid runs from 0.05 (latest start) to 1.0 (earliest end)
    "arm": [0.00, 0.013, 0.05, 0.07, 0.21, 0.33, 0.34, 0.5, 0.66, 0.71, 0.9, 1.1, 1.3],
    "cam": [0.05, 0.12, 0.19, 0.26, 0.39, 0.45, 0.52, 0.60, 0.68, 0.74, 0.81, 0.87, 1.0],
}


def brute_force_zoh(ts: list[float], t: float) -> int:
    best = 0
    for i, x in enumerate(ts):
        if x <= t + 1e-12:
            best = i
    return best


@pytest.mark.parametrize("fps", [1, 4, 10, 15, 30])
def test_resampling_against_hand_timestamps(fps):
    ns = {k: (np.array(v) * 1e9).round().astype(np.int64) for k, v in HAND_TS.items()}
    grid = make_grid(ns, fps)
    expect_n = int(np.floor((1.0 - 0.05) * fps + 1e-9)) + 1
    assert grid.num_frames == expect_n
    assert grid.start_ns == int(0.05e9) and grid.end_ns == int(1.0e9)
    assert np.all(np.diff(grid.timestamps_ns) >= 1e9 // fps)
    for name, ts in HAND_TS.items():
        idx = zoh_indices(ns[name], grid.timestamps_ns)
        expect = [brute_force_zoh(ts, 0.05 + k / fps) for k in range(expect_n)]
        assert idx.tolist() == expect, name


def test_resampling_unsorted_and_empty():
    ts = np.array([30, 10, 20], np.int64)
    assert zoh_indices(ts, np.array([10, 25, 35])).tolist() == [1, 2, 0]
    grid = make_grid({"a": np.array([0, 10]), "b": np.array([20, 30])}, 15)
    assert grid.num_frames == 0
    with pytest.raises(ValueError):
        make_grid({"a": np.array([], np.int64)}, 15)


# -- episode reader ------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_episode_reader(tmp_path, encoding):
    path = write_episode(tmp_path / "episode_000000.h5", EpisodeSpec(duration_s=1.0, image_encoding=encoding))
    with EpisodeFile(path) as ep:
        assert ep.info.outcome == "success" and ep.info.task == "pick up the red cube"
        assert "arm/state" in ep.channels() and ep.has_field("arm/state", "ee_pose")
        assert ep.field("arm/state", "ee_pose").shape == (101, 7)
        assert ep.image_shape("wrist_camera/frame") == (48, 64, 3)
        imgs = ep.images("wrist_camera/frame", [3, 0, 3])
        assert imgs.shape == (3, 48, 64, 3)
        assert np.array_equal(imgs[0], imgs[2])
        assert list(ep.field("task/episode", "event")) == ["start", "end"]
        rows = list(ep.iter_channel("task/episode"))
        assert rows[1]["outcome"] == "success"


def test_episode_reader_rejects_non_episodes(tmp_path):
    bad = tmp_path / "episode_x.h5"
    bad.write_text("not hdf5")
    with pytest.raises(EpisodeError, match="episode_x.h5: not an HDF5 episode file"):
        EpisodeFile(bad)
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something/else"
    with pytest.raises(EpisodeError, match="other.h5: not a robotflow episode file"):
        EpisodeFile(tmp_path / "other.h5")
