"""Camera-only codecs (`ee_cams`, `ee_cams_rel`): cameras and the robot's own state, and nothing the simulator
alone knows. The codec itself refuses a privileged input, in one line, however it is asked for."""

import numpy as np
import pytest
import torch

from robotflow.codecs import PRIVILEGED_CHANNELS, CodecError, codec_from_spec, get_codec
from robotflow.codecs.memory_frames import random_shift


@pytest.mark.parametrize("name", ["ee_cams", "ee_cams_rel"])
def test_camera_only_codec_has_cameras_and_robot_state_only(name):
    codec = get_codec(name, image_size=(96, 128))
    assert sorted(codec.features()) == [
        "action",
        "observation.images.front",
        "observation.images.wrist",
        "observation.state",
    ]
    assert codec.layout.camera_only and codec.layout.relative == name.endswith("_rel")
    assert "task/objects" in PRIVILEGED_CHANNELS
    assert all(channel not in PRIVILEGED_CHANNELS for channel, _, _ in codec.required_streams())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cameras": {"front": "task/objects"}}, "cannot read 'task/objects' (camera 'front')"),
        ({"channels": {"arm/state": "task/objects"}}, "cannot read 'task/objects' (arm_state)"),
        ({"objects": ["red_cube"]}, "cannot take object names"),
        ({"cameras": {}}, "needs at least one camera"),
    ],
)
def test_camera_only_codec_refuses_privileged_inputs(kwargs, message):
    with pytest.raises(CodecError) as e:
        get_codec("ee_cams_rel", **kwargs)
    text = str(e.value)
    assert message in text and "camera-only" in text and "\n" not in text


def test_spec_with_a_privileged_feature_is_refused_as_such():
    spec = get_codec("ee_cams_rel", image_size=(48, 64)).spec()
    assert codec_from_spec(spec).name == "ee_cams_rel"
    spec["features"]["observation.environment_state"] = {"dtype": "float32", "shape": [7], "names": list("abcdefg")}
    with pytest.raises(CodecError, match="camera-only and cannot have feature 'observation.environment_state'"):
        codec_from_spec(spec)


def test_live_encoding_reads_no_object_channel():
    codec = get_codec("ee_cams_rel", image_size=(24, 32))
    image = np.zeros((48, 64, 3), np.uint8)
    latest = {
        "arm/state": {"ee_pose": np.array([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0])},
        "gripper/state": {"width": 1.0},
        "wrist_camera/frame": {"image": image},
        "front_camera/frame": {"image": image},
    }
    obs = codec.encode_live(latest)  # no task/objects message: none is needed
    assert sorted(obs) == ["observation.images.front", "observation.images.wrist", "observation.state"]
    assert obs["observation.images.front"].shape == (24, 32, 3)


def test_random_shift_moves_the_image_and_keeps_its_size():
    one = torch.arange(3 * 8 * 10).reshape(1, 3, 8, 10).to(torch.uint8)
    frames = torch.cat([one, one])  # two observation steps of one sample
    torch.manual_seed(0)
    shifted = [random_shift(frames, 2) for _ in range(20)]
    assert all(s.shape == frames.shape and s.dtype == torch.uint8 for s in shifted)
    assert any(not torch.equal(s, frames) for s in shifted)
    # One offset for every frame of the sample: its observation steps move together.
    assert all(torch.equal(s[0], s[1]) for s in shifted)
