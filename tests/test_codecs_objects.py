"""The privileged low-dim codecs (`ee_objects`, `ee_joints_objects`): object poses as environment_state."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robotflow.codecs import CodecError, codec_from_spec, convert, get_codec, load_dataset_codec
from robotflow.codecs.export import ConvertOptions
from robotflow.recording.reader import EpisodeFile
from robotflow.runtime.graph import GraphError, parse_graph
from robotflow.scripts.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lowdim_episodes(tmp_path_factory):
    """Two scripted stack_cubes demonstrations recorded by the camera-less graph."""
    out = tmp_path_factory.mktemp("lowdim") / "episodes"
    r = CliRunner().invoke(
        main,
        ["record", str(ROOT / "graphs/sim_stack_cubes_lowdim.yaml"), "--episodes", "2", "--output-dir", str(out)],
    )
    assert r.exit_code == 0, r.output
    return out


def test_objects_codecs_have_no_cameras_and_need_object_names():
    codec = get_codec("ee_objects")
    assert codec.params.cameras == {} and codec.layout.objects
    with pytest.raises(CodecError, match="needs the object names of 'task/objects'"):
        codec.features()
    codec = get_codec("ee_joints_objects", objects=["red_cube", "green_cube"])
    feats = codec.features()
    assert feats["observation.environment_state"]["shape"] == (14,)
    assert feats["observation.environment_state"]["names"][:2] == ["red_cube.x", "red_cube.y"]
    assert feats["observation.state"]["shape"] == (15,)
    assert not any(k.startswith("observation.images") for k in feats)
    # With cameras on request.
    cams = get_codec("ee_objects", objects=["cube"], cameras={"front": "front_camera/frame"})
    assert "observation.images.front" in cams.features()
    # The spec carries the object list and rebuilds the identical codec.
    spec = json.loads(json.dumps(codec.spec()))
    assert spec["params"]["objects"] == ["red_cube", "green_cube"]
    assert codec_from_spec(spec).spec() == codec.spec()
    # Older codecs' specs do not grow an `objects` key.
    assert "objects" not in get_codec("ee").spec()["params"]


def test_objects_are_taken_by_name_and_missing_ones_are_named():
    codec = get_codec("ee_objects", objects=["red_cube", "green_cube"])
    poses = np.array([[1, 2, 3, -1, 0, 0, 0], [4, 5, 6, 0.6, 0, 0, 0.8]], dtype=np.float64)
    env = codec.encode_objects("green_cube,red_cube", poses)
    assert env.dtype == np.float32 and env.shape == (14,)
    assert np.allclose(env[:7], [4, 5, 6, 0.6, 0, 0, 0.8])  # red_cube first, as the codec lists it
    assert np.allclose(env[7:], [1, 2, 3, 1, 0, 0, 0])  # quaternion made w >= 0
    with pytest.raises(CodecError, match="object 'green_cube' not in 'task/objects'"):
        codec.encode_objects("red_cube,bin", poses)
    with pytest.raises(CodecError, match="no message yet on 'task/objects'"):
        codec.encode_live(
            {"arm/state": {"ee_pose": np.array([0.5, 0, 0.3, 1, 0, 0, 0.0])}, "gripper/state": {"width": 1.0}}
        )


def test_convert_sim_episodes_with_object_poses(lowdim_episodes, tmp_path):
    codec = get_codec("ee_objects")
    summary = convert(lowdim_episodes, tmp_path / "ds", codec, ConvertOptions(progress=False))
    assert summary.episodes == 2
    stored = load_dataset_codec(tmp_path / "ds")
    assert stored.params.objects == ("red_cube", "green_cube")  # taken from the episodes
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/ds", root=tmp_path / "ds")
    first = ds[0]
    assert first["observation.environment_state"].shape == (14,)
    assert not any(k.startswith("observation.images") for k in first)
    # Frame 0's environment state is the task/objects message held at the episode's first grid time.
    with EpisodeFile(sorted(lowdim_episodes.glob("*.h5"))[0]) as ep:
        names = str(ep.field("task/objects", "names")[0]).split(",")
        ts, poses = ep.timestamps("task/objects"), ep.field("task/objects", "poses")
        start = max(ep.timestamps(c)[0] for c in ("arm/state", "arm/command", "gripper/state", "task/objects"))
        held = poses[np.searchsorted(ts, start, side="right") - 1]
    want = np.concatenate([held[names.index("red_cube")], held[names.index("green_cube")]])
    assert np.allclose(first["observation.environment_state"].numpy(), want, atol=1e-6)
    # Coordinates the demos leave constant (the bottom cube's height, tilts) get a std floor, so a small
    # deviation at deployment is not a many-sigma input; the varying ones keep their own std.
    stats = json.loads((tmp_path / "ds" / "meta" / "stats.json").read_text())
    std = np.asarray(stats["observation.environment_state"]["std"])
    assert std.min() >= 0.01 and std[9] == 0.01  # green_cube.z
    assert std[1] > 0.05  # red_cube.y varies across seeds
    # The cube moved during the demonstration: the feature is not a constant.
    last = ds[ds.meta.episodes["length"][0] - 1]["observation.environment_state"].numpy()
    assert np.linalg.norm(last[:3] - want[:3]) > 0.02


def test_policy_graph_without_task_objects_is_refused():
    text = (ROOT / "graphs/sim_stack_cubes_lowdim_policy.yaml").read_text()
    parse_graph(text, "lowdim.yaml")  # the shipped graph loads
    broken = text.replace("      objects: task/objects\n", "")
    with pytest.raises(GraphError) as exc:
        parse_graph(broken, "lowdim.yaml")
    msg = str(exc.value)
    assert "\n" not in msg and "missing required input 'objects'" in msg


def test_relative_codec_gives_object_positions_from_the_ee_and_trains_relative_chunks(lowdim_episodes, tmp_path):
    """`ee_objects_rel`: object positions are offsets from the EE of the same frame (live and converted); the
    dataset keeps absolute actions, and training reads chunks relative to each sample's EE position, with
    the normaliser's statistics of those offsets."""
    codec = get_codec("ee_objects_rel", objects=["red_cube", "green_cube"])
    assert codec.layout.relative
    feats = codec.features()
    assert feats["observation.environment_state"]["names"][:3] == ["red_cube.dx", "red_cube.dy", "red_cube.dz"]
    assert feats["action"]["names"][:3] == ["ee.x", "ee.y", "ee.z"]
    ee = np.array([0.5, 0.1, 0.3, 0.0, 0.7071068, 0.7071068, 0.0])
    poses = np.array([[0.52, 0.05, 0.02, 1, 0, 0, 0], [0.45, -0.1, 0.02, 1, 0, 0, 0]], dtype=np.float64)
    live = codec.encode_live(
        {
            "arm/state": {"ee_pose": ee},
            "gripper/state": {"width": 1.0},
            "task/objects": {"names": "red_cube,green_cube", "poses": poses},
        }
    )
    assert np.allclose(live["observation.environment_state"][:3], [0.02, -0.05, -0.28], atol=1e-6)
    assert np.allclose(live["observation.environment_state"][7:10], [-0.05, -0.2, -0.28], atol=1e-6)
    with pytest.raises(CodecError, match="needs the EE position"):
        codec.encode_objects("red_cube,green_cube", poses)

    convert(lowdim_episodes, tmp_path / "abs", get_codec("ee_objects"), ConvertOptions(progress=False))
    convert(lowdim_episodes, tmp_path / "rel", get_codec("ee_objects_rel"), ConvertOptions(progress=False))
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robotflow.codecs.relative import make_relative

    absolute, relative = (
        LeRobotDataset("local/a", root=tmp_path / "abs"),
        LeRobotDataset("local/r", root=tmp_path / "rel"),
    )
    assert load_dataset_codec(tmp_path / "rel").params.objects == ("red_cube", "green_cube")
    for i in (0, len(relative) // 2, len(relative) - 1):
        a, r = absolute[i], relative[i]
        assert np.array_equal(r["action"].numpy(), a["action"].numpy())  # the dataset's actions stay absolute
        ee_i = r["observation.state"].numpy()[:3]
        env_a, env_r = a["observation.environment_state"].numpy(), r["observation.environment_state"].numpy()
        assert np.allclose(env_r[:3], env_a[:3] - ee_i, atol=1e-5) and np.allclose(env_r[3:7], env_a[3:7])

    chunk = [k / 15 for k in range(5)]
    ds = LeRobotDataset("local/r", root=tmp_path / "rel", delta_timestamps={"action": chunk})
    plain = LeRobotDataset("local/r", root=tmp_path / "rel", delta_timestamps={"action": chunk})
    ds = make_relative(ds)
    i = len(ds) // 2
    got, want = ds[i], plain[i]
    assert got["action"].shape == (5, 8)
    offsets = want["action"][:, :3] - want["observation.state"][:3]
    assert torch.allclose(got["action"][:, :3], offsets) and torch.equal(got["action"][:, 3:], want["action"][:, 3:])
    # The state's x/y (the one absolute position left) is shifted per sample; the labels are not.
    shift = got["observation.state"] - want["observation.state"]
    assert 0 < shift[:2].abs().max() <= 0.1 and torch.equal(shift[2:], torch.zeros(6))
    assert not torch.equal(ds[i]["observation.state"], got["observation.state"])
    # The normaliser sees offsets of a few centimetres around zero, not absolute positions around 0.5 m.
    mean, std = np.asarray(ds.meta.stats["action"]["mean"]), np.asarray(ds.meta.stats["action"]["std"])
    assert np.all(np.abs(mean[:3]) < 0.1) and np.all(std[:3] < 0.2) and std[2] > 0.01
    assert np.allclose(mean[3:], plain.meta.stats["action"]["mean"][3:])
