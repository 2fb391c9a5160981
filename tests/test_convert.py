"""Episode files -> LeRobot v3.0 dataset: real h5py, real LeRobot writer/loader, real video files.

Episodes are tiny (48x64 images, 2-3 s) so the whole module runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from episode_factory import EpisodeSpec, frame_level, write_episode, write_episodes

from robotflow.codecs import ConvertOptions, convert, get_codec, load_dataset_codec, read_dataset_spec
from robotflow.codecs.export import video_backend
from robotflow.codecs.spec import INFO_CODEC_KEY
from robotflow.scripts.convert import convert as convert_cli

SIZE = (48, 64)


def load(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("robotflow/test", root=root, video_backend=video_backend())


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_cli(*args: str):
    return CliRunner().invoke(convert_cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Two kept episodes (one with jittered timestamps and late-starting camera), one discarded, one aborted."""
    base = tmp_path_factory.mktemp("conv")
    eps = base / "episodes"
    write_episode(eps / "episode_000000.h5", EpisodeSpec(duration_s=3.0, image_shape=SIZE, episode_index=0))
    write_episode(
        eps / "episode_000001.h5",
        EpisodeSpec(
            duration_s=2.0,
            image_shape=SIZE,
            episode_index=1,
            seed=1,
            jitter_s=0.004,
            start_offsets={"front_camera/frame": 0.2},
            end_trims={"arm/state": 0.3},
            task="place",
        ),
    )
    write_episode(eps / "episode_000002.h5", EpisodeSpec(duration_s=1.0, image_shape=SIZE, outcome="discarded"))
    write_episode(eps / "episode_000003.h5", EpisodeSpec(duration_s=1.0, image_shape=SIZE, outcome="aborted"))
    (eps / "episode_000004.h5.partial").write_bytes(b"being written")
    out = base / "dataset"
    codec = get_codec("ee", image_size=SIZE)
    summary = convert(eps, out, codec, ConvertOptions(progress=False))
    return {"episodes": eps, "out": out, "summary": summary, "codec": codec, "base": base}


def test_dataset_loads_with_expected_frames_and_features(converted):
    s = converted["summary"]
    assert s.episodes == 2 and [k.reason.split()[0] for k in s.skipped] == ["discarded", "aborted"]
    # Episode 0: all streams 0..3 s -> 46 frames at 15 fps. Episode 1: front camera starts at 0.2 s,
    # arm ends at 1.7 s (+ up to 4 ms jitter) -> grid 0.2..~1.7 s -> 23 frames.
    ds = load(converted["out"])
    assert ds.num_episodes == 2 and ds.num_frames == s.frames == 46 + 23
    assert ds.fps == 15
    feats = ds.meta.features
    assert feats["observation.state"]["shape"] in ((8,), [8])
    assert feats["action"]["dtype"] == "float32"
    assert feats["observation.images.wrist"]["dtype"] == "video"
    item = ds[10]
    assert tuple(item["observation.images.front"].shape) == (3, *SIZE)
    assert tuple(item["observation.state"].shape) == (8,) and tuple(item["action"].shape) == (8,)
    assert item["task"] == "pick up the red cube"
    assert ds[46 + 3]["task"] == "place"
    stats = ds.meta.stats
    for key in ("observation.state", "action", "observation.images.wrist", "observation.images.front"):
        assert {"mean", "std", "min", "max"} <= set(stats[key]), key
    assert np.asarray(stats["observation.state"]["mean"]).shape == (8,)


def test_values_follow_zero_order_hold(converted):
    """Dataset frame k holds, for each stream, the newest message at or before grid time k/fps."""
    from robotflow.recording.reader import EpisodeFile

    ds = load(converted["out"])
    with EpisodeFile(converted["episodes"] / "episode_000000.h5") as ep:
        ts = {c: ep.timestamps(c) for c in ("arm/state", "arm/command", "gripper/state", "wrist_camera/frame")}
        arm_pose = ep.field("arm/state", "ee_pose")
        cmd_pose = ep.field("arm/command", "ee_pose")
        widths = ep.field("gripper/state", "width")
    start = max(int(t[0]) for t in ts.values())

    def held(channel: str, k: int) -> int:
        grid_ns = start + -(-k * 1_000_000_000 // 15)
        return max(i for i, t in enumerate(ts[channel]) if t <= grid_ns)

    for k in (0, 1, 7, 20, 45):
        item = ds[k]
        state, action = item["observation.state"].numpy(), item["action"].numpy()
        want = arm_pose[held("arm/state", k)]
        assert np.allclose(state[:3], want[:3], atol=1e-5)
        assert abs(abs(float(np.dot(state[3:7], want[3:7]))) - 1) < 1e-5
        assert state[7] == pytest.approx(widths[held("gripper/state", k)], abs=1e-5)
        assert np.allclose(action[:3], cmd_pose[held("arm/command", k)][:3], atol=1e-5)
        # The camera frame held at t is recognisable by its background level, even through video.
        img = item["observation.images.wrist"].numpy() * 255.0
        assert abs(float(np.median(img[:, :, -8:])) - frame_level(held("wrist_camera/frame", k))) < 8
    # A camera at exactly the dataset rate maps one-to-one (no duplicated or skipped frames).
    assert [held("wrist_camera/frame", k) for k in range(46)] == list(range(46))
    # Quaternions continuous along the episode (the factory rotation crosses the w>=0 sign flip).
    q = np.stack([ds[k]["observation.state"].numpy()[3:7] for k in range(46)])
    assert np.all(np.sum(q[1:] * q[:-1], axis=1) > 0)


def test_codec_spec_is_stored(converted):
    out = converted["out"]
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info[INFO_CODEC_KEY]["name"] == "eepose_absolute"
    assert read_dataset_spec(out) == converted["codec"].spec()
    assert load_dataset_codec(out).spec() == converted["codec"].spec()


@pytest.mark.parametrize("fps", [5, 10])
def test_convert_at_other_fps(tmp_path, fps):
    eps = tmp_path / "eps"
    write_episode(eps / "episode_000000.h5", EpisodeSpec(duration_s=2.0, image_shape=SIZE))
    s = convert(eps, tmp_path / "out", get_codec("ee_traj", image_size=SIZE), ConvertOptions(fps=fps, progress=False))
    assert s.frames == 2 * fps + 1
    ds = load(tmp_path / "out")
    assert ds.fps == fps and ds.num_frames == 2 * fps + 1
    assert load_dataset_codec(tmp_path / "out").params.fps == fps
    # Trajectory labels: the action of frame k is the observed pose of frame k+1.
    a3, s4 = ds[3]["action"].numpy(), ds[4]["observation.state"].numpy()
    assert np.allclose(a3[:3], s4[:3], atol=1e-6)
    assert a3[7] in (0.0, 1.0)


def test_cli_convert_include_aborted_and_summary(tmp_path, converted):
    out = tmp_path / "with_aborted"
    res = run_cli(
        "--input",
        str(converted["episodes"]),
        "--output-dir",
        str(out),
        "--codec",
        "ee",
        "--image-size",
        "48x64",
        "--include-aborted",
        "--json",
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip())
    assert summary["episodes"] == 3 and summary["frames"] == 46 + 23 + 16 and summary["size_bytes"] > 0
    assert [s["reason"] for s in summary["skipped"]] == ["discarded"]
    # Refuses to overwrite a non-empty output.
    res = CliRunner().invoke(convert_cli, ["--input", str(converted["episodes"]), "--output-dir", str(out)])
    assert res.exit_code == 1 and "not empty" in res.output


def _one_line_error(res) -> str:
    assert res.exit_code == 1, res.output
    lines = [l for l in res.output.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


def test_cli_bad_inputs(tmp_path):
    runner = CliRunner()
    msg = _one_line_error(
        runner.invoke(convert_cli, ["--input", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o")])
    )
    assert "does not exist" in msg
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "episode_000000.h5").write_text("garbage")
    msg = _one_line_error(runner.invoke(convert_cli, ["--input", str(bad), "--output-dir", str(tmp_path / "o")]))
    assert "episode_000000.h5" in msg and "not an HDF5 episode file" in msg
    lacking = tmp_path / "lacking"
    write_episode(lacking / "episode_000000.h5", EpisodeSpec(duration_s=1.0, image_shape=SIZE))
    write_episode(
        lacking / "episode_000001.h5", EpisodeSpec(duration_s=1.0, image_shape=SIZE, omit=("front_camera/frame",))
    )
    msg = _one_line_error(runner.invoke(convert_cli, ["--input", str(lacking), "--output-dir", str(tmp_path / "o")]))
    assert "episode_000001.h5" in msg and "front_camera/frame" in msg
    # With only the wrist camera selected, the same episodes are fine.
    ok = runner.invoke(
        convert_cli,
        [
            "--input",
            str(lacking),
            "--output-dir",
            str(tmp_path / "wrist_only"),
            "--quiet",
            "--image-size",
            "48x64",
            "--camera",
            "wrist=wrist_camera/frame",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "observation.images.front" not in load(tmp_path / "wrist_only").meta.features
    nojoints = tmp_path / "nojoints"
    write_episode(
        nojoints / "episode_000000.h5", EpisodeSpec(duration_s=1.0, image_shape=SIZE, omit=("arm/state:joint_pos",))
    )
    msg = _one_line_error(
        runner.invoke(convert_cli, ["--input", str(nojoints), "--output-dir", str(tmp_path / "o"), "--codec", "joints"])
    )
    assert "episode_000000.h5" in msg and "joint_pos" in msg
    msg = _one_line_error(
        runner.invoke(convert_cli, ["--input", str(lacking), "--output-dir", str(tmp_path / "o"), "--codec", "nope"])
    )
    assert "unknown codec 'nope'" in msg
    assert not (tmp_path / "o").exists(), "a refused conversion must not leave an output behind"
    assert not any(p.name.startswith(".o.") for p in tmp_path.iterdir()), "temp dirs are cleaned up"


def test_append_adds_episodes_and_refuses_mismatch(tmp_path):
    first, more = tmp_path / "first", tmp_path / "more"
    write_episodes(first, 1, duration_s=1.0, image_shape=SIZE)
    write_episodes(more, 2, duration_s=1.0, image_shape=SIZE, task="other task")
    out = tmp_path / "ds"
    assert (
        run_cli(
            "--input", str(first), "--output-dir", str(out), "--codec", "ee", "--image-size", "48x64", "--quiet"
        ).exit_code
        == 0
    )
    before = tree_digest(out)

    # Codec mismatch, image-size mismatch, fps mismatch: one-line error, dataset byte-identical.
    for extra in (["--codec", "joints"], ["--codec", "ee", "--image-size", "96x128"], ["--codec", "ee", "--fps", "30"]):
        res = CliRunner().invoke(convert_cli, ["append", "--input", str(more), "--output-dir", str(out), *extra])
        msg = _one_line_error(res)
        assert "mismatch" in msg, msg
        assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "first", "more"], "no temp dirs left behind"

    # The alias resolves to the same codec; params are inherited from the dataset.
    res = run_cli("append", "--input", str(more), "--output-dir", str(out), "--codec", "eepose_absolute", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip())
    assert summary["episodes"] == 2 and summary["total_episodes"] == 3 and summary["total_frames"] == 3 * 16
    ds = load(out)
    assert ds.num_episodes == 3 and ds.num_frames == 48
    assert ds[20]["task"] == "other task" and ds[0]["task"] == "pick up the red cube"
    assert tuple(ds[47]["observation.images.wrist"].shape) == (3, *SIZE)
    assert read_dataset_spec(out)["name"] == "eepose_absolute"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "first", "more"]


def test_append_to_non_dataset_is_refused(tmp_path):
    eps = tmp_path / "eps"
    write_episodes(eps, 1, duration_s=1.0, image_shape=SIZE)
    res = CliRunner().invoke(
        convert_cli, ["append", "--input", str(eps), "--output-dir", str(tmp_path / "none"), "--codec", "ee"]
    )
    assert "not an existing LeRobot dataset" in _one_line_error(res)


def test_parallel_workers_match_sequential(tmp_path):
    eps = tmp_path / "eps"
    write_episodes(eps, 3, duration_s=1.0, image_shape=SIZE)
    codec = get_codec("ee_joints", image_size=SIZE)
    s = convert(eps, tmp_path / "par", codec, ConvertOptions(workers=2, progress=False))
    assert s.episodes == 3
    ds = load(tmp_path / "par")
    assert ds.num_episodes == 3 and ds.num_frames == 48
    assert list(ds.meta.episodes["episode_index"]) == [0, 1, 2]
    assert np.allclose(ds[16]["observation.state"].numpy(), ds[0]["observation.state"].numpy(), atol=1e-6)
    assert read_dataset_spec(tmp_path / "par")["name"] == "ee_joints"


def test_reads_files_written_by_the_recorder(tmp_path):
    """The runtime recorder's own EpisodeWriter output converts (the format contract, both sides)."""
    from episode_factory import ee_pose, grip, joints, make_image

    from robotflow.recording.writer import EpisodeWriter
    from robotflow.runtime.channels import Message

    path = tmp_path / "eps" / "episode_000000.h5"
    path.parent.mkdir()
    writer = EpisodeWriter(
        path,
        {"format": "robotflow.episode/1", "task": "recorded", "episode_index": 0},
        image_encoding="jpeg",
        jpeg_quality=90,
    )
    t0 = 7_000_000_000
    for k in range(150):  # 1.5 s of arm at 100 Hz, gripper at 50 Hz, cameras at 15 Hz (shifted 3 ms)
        t = k / 100.0
        ts = t0 + k * 10_000_000
        writer.append(
            "arm/state",
            Message(
                "arm/state",
                k,
                ts,
                {"ee_pose": ee_pose(np.array([t]))[0], "joint_pos": joints(np.array([t]))[0], "joint_vel": np.zeros(7)},
            ),
        )
        writer.append(
            "arm/command", Message("arm/command", k, ts, {"ee_pose": ee_pose(np.array([t + 0.1]))[0], "mode": "ee"})
        )
        if k % 2 == 0:
            writer.append(
                "gripper/state", Message("gripper/state", k // 2, ts, {"width": float(grip(np.array([t]))[0])})
            )
            writer.append("gripper/command", Message("gripper/command", k // 2, ts, {"width": 1.0}))
        if k % 7 == 0:
            for cam in ("wrist_camera/frame", "front_camera/frame"):
                writer.append(cam, Message(cam, k // 7, ts + 3_000_000, {"image": make_image(k // 7, (60, 80))}))
        if k == 75:
            writer.flush()  # the recorder flushes periodically: datasets grow in several appends
    writer.close({"outcome": "success", "duration_s": 1.5, "counts_json": "{}"})

    out = tmp_path / "ds"
    s = convert(path.parent, out, get_codec("ee_joints", image_size=SIZE), ConvertOptions(progress=False))
    ds = load(out)
    assert ds.num_frames == s.frames == 23  # grid 0.003 .. 1.473 s (last camera frame) at 15 fps
    assert ds[0]["task"] == "recorded"
    assert tuple(ds[21]["observation.images.wrist"].shape) == (3, *SIZE)
    assert ds[5]["action"].numpy()[7] == pytest.approx(1.0)


class _CommandsEpisode:
    """The reader's view of an arm/command channel: joint commands (homing) first, then EE commands."""

    name = "episode_000000.h5"

    def __init__(self):
        self.ts = np.array([0, 10, 20, 30, 40], dtype=np.int64)
        self.mode = np.array(["joints", "joints", "ee", "ee", "ee"])
        pose = np.zeros((5, 7))  # joint rows: the file fills their ee_pose with zeros
        pose[2:] = [
            [0.5, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0],
            [0.51, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0],
            [0.52, 0, 0.3, 0, 1, 0, 0],
        ]
        self.fields_ = {"ee_pose": pose, "mode": self.mode}

    def timestamps(self, channel):
        return self.ts

    def field(self, channel, name):
        return self.fields_[name]

    def has_field(self, channel, name):
        return name in self.fields_


def test_command_labels_skip_the_arms_joint_commands():
    """A hardware arm homed through joint_target starts an episode with joint commands: they are no EE labels (their
    zero-filled ee_pose made a label at the origin); before the first EE command the label is the measured pose."""
    from robotflow.codecs.export import held_ee_commands

    grid = np.array([5, 15, 25, 35, 45], dtype=np.int64)
    state = np.tile([0.45, 0.0, 0.36, 0.0, 1.0, 0.0, 0.0], (5, 1))
    out = held_ee_commands(_CommandsEpisode(), "arm/command", grid, state)
    np.testing.assert_allclose(out[:2], state[:2])  # before the first EE command: where the arm was
    np.testing.assert_allclose(out[2:, 0], [0.5, 0.51, 0.52])
    assert np.all(out[:, :3].any(axis=1)), "no label at the origin"
