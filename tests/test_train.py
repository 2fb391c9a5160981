"""`robotflow train` end to end on a tiny real LeRobot v3.0 dataset, then loading and running the checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lerobot")

from click.testing import CliRunner

from robotflow.codecs import CHECKPOINT_SPEC_FILE, CodecMismatchError, checkpoint_codec
from robotflow.policies.checkpoints import (
    CheckpointError,
    latest_step,
    list_checkpoints,
    resolve_checkpoint,
)
from robotflow.scripts.train import train_command

H, W = 48, 64
TINY = [
    "--dim-model",
    "64",
    "--chunk-size",
    "10",
    "--policy-arg",
    "dim_feedforward=128",
    "--policy-arg",
    "n_encoder_layers=1",
    "--policy-arg",
    "n_vae_encoder_layers=1",
    "--policy-arg",
    "n_heads=4",
]


def make_dataset(root: Path, codec) -> None:
    """Two short episodes (state 8, action 8, two cameras) written with LeRobot's own writer."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robotflow.codecs import write_dataset_spec

    features = {k: dict(v) for k, v in codec.features().items()}
    for key in codec.camera_keys:
        features[key]["dtype"] = "image"  # no video encoder needed for a test dataset
    ds = LeRobotDataset.create("local/tiny", fps=15, features=features, root=root, use_videos=False)
    rng = np.random.default_rng(0)
    for _ in range(2):
        for _ in range(12):
            frame = {
                "observation.state": rng.standard_normal(8).astype(np.float32),
                "action": rng.standard_normal(8).astype(np.float32),
                "task": "pick the cube",
            }
            for key in codec.camera_keys:
                frame[key] = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    write_dataset_spec(root, codec)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from robotflow.codecs import get_codec

    tmp = tmp_path_factory.mktemp("train")
    codec = get_codec("ee", image_size=(H, W))
    make_dataset(tmp / "data", codec)
    args = [
        "--dataset-root",
        str(tmp / "data"),
        "--run-name",
        "tiny",
        "--output-dir",
        str(tmp / "runs"),
        "--steps",
        "2",
        "--save-freq",
        "1",
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--no-pretrained-backbone",
        *TINY,
    ]
    os.environ.pop("WANDB_API_KEY", None)
    result = CliRunner().invoke(train_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp, codec, args


def test_checkpoint_layout_and_codec(trained_run):
    tmp, codec, _ = trained_run
    run = tmp / "runs" / "tiny"
    ckpts = list_checkpoints(run)
    assert [c.step for c in ckpts] == [1, 2]
    for c in ckpts:
        assert c.path == run / "checkpoints" / f"{c.step:06d}" / "pretrained_model"
        for f in (
            "config.json",
            "model.safetensors",
            "train_config.json",
            "policy_preprocessor.json",
            "policy_postprocessor.json",
            CHECKPOINT_SPEC_FILE,
        ):
            assert (c.path / f).is_file(), f
        assert json.loads((c.path / CHECKPOINT_SPEC_FILE).read_text()) == codec.spec()
        assert c.codec == "eepose_absolute"
    assert latest_step(run) == 2
    assert resolve_checkpoint(run).path == ckpts[-1].path
    assert resolve_checkpoint(run, 1).path == ckpts[0].path
    assert resolve_checkpoint(run / "checkpoints" / "000001").path == ckpts[0].path
    with pytest.raises(CheckpointError, match="available: 1, 2"):
        resolve_checkpoint(run, 7)
    cfg = json.loads((ckpts[0].path / "config.json").read_text())
    assert cfg["type"] == "act" and cfg["dim_model"] == 64 and cfg["pretrained_backbone_weights"] is None


def test_codec_mismatch_is_refused(trained_run):
    tmp, _, _ = trained_run
    model = resolve_checkpoint(tmp / "runs" / "tiny").path
    assert checkpoint_codec(model, "ee").name == "eepose_absolute"  # aliases resolve
    with pytest.raises(CodecMismatchError, match="'eepose_absolute'.*'joints_absolute'") as e:
        checkpoint_codec(model, "joints")
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    from robotflow.policies.loading import load_policy

    with pytest.raises(CodecMismatchError):
        load_policy(model, device="cpu", codec="joints_absolute")


def test_load_checkpoint_and_run_ticks(trained_run):
    from robotflow.codecs import codec_from_spec
    from robotflow.policies.chunking import ChunkExecutor, ChunkExecutorConfig
    from robotflow.policies.loading import load_policy
    from robotflow.policies.sync_runner import SyncPolicyRunner

    tmp, _, _ = trained_run
    loaded = load_policy(tmp / "runs" / "tiny", device="auto", codec="ee")
    assert loaded.policy_type == "act" and loaded.device == "cpu"
    codec = codec_from_spec(loaded.codec_spec)
    rng = np.random.default_rng(5)

    def latest():
        pose = np.array([0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0]) + 0.01 * rng.standard_normal(7)
        return {
            "arm/state": {"ee_pose": pose, "joint_pos": np.zeros(7)},
            "gripper/state": {"width": 0.8},
            "wrist_camera/frame": {"image": rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)},
            "front_camera/frame": {"image": rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)},
        }

    # A second, independent load through the executor's own constructor.
    ex = ChunkExecutor.from_pretrained(tmp / "runs" / "tiny", ChunkExecutorConfig(async_inference=False), codec="ee")
    assert ex.loaded.path == loaded.path
    ref = SyncPolicyRunner(loaded.policy, loaded.preprocessor, loaded.postprocessor)
    for _ in range(12):
        obs = codec.encode_live(latest())
        a = ex.step(obs)
        assert np.array_equal(a, ref.step(obs))  # same checkpoint through LeRobot's predict_action
        cmd = codec.decode(a)
        assert cmd["ee_pose"].shape == (7,) and 0.0 <= cmd["width"] <= 1.0


def test_resume_continues_the_run(trained_run):
    tmp, _, args = trained_run
    args = list(args)
    args[args.index("--steps") + 1] = "3"
    result = CliRunner().invoke(train_command, [*args, "--resume"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [c.step for c in list_checkpoints(tmp / "runs" / "tiny")] == [1, 2, 3]
    assert (resolve_checkpoint(tmp / "runs" / "tiny").path / CHECKPOINT_SPEC_FILE).is_file()
    again = CliRunner().invoke(train_command, args)  # same run name without --resume
    assert again.exit_code != 0 and "already exists" in again.output


def test_imagenet_backbone_used_when_loadable_else_clear_fallback(trained_run, tmp_path):
    from robotflow.training.lerobot_config import imagenet_weights_loadable

    tmp, _, args = trained_run
    args = [a for a in args if a != "--no-pretrained-backbone"]
    args[args.index("--output-dir") + 1] = str(tmp_path)
    args[args.index("--steps") + 1] = "1"
    result = CliRunner().invoke(train_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cfg = json.loads((resolve_checkpoint(tmp_path / "tiny").path / "config.json").read_text())
    if imagenet_weights_loadable("ResNet18_Weights.IMAGENET1K_V1")[0]:
        assert cfg["pretrained_backbone_weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    else:
        assert "ImageNet weights ResNet18_Weights.IMAGENET1K_V1 cannot be loaded" in result.output
        assert "--no-pretrained-backbone" in result.output
        assert cfg["pretrained_backbone_weights"] is None


def test_cosine_schedule_decays_the_policy_learning_rate(trained_run, tmp_path):
    """`--lr-schedule cosine` keeps the policy's optimizer preset (its rate) and decays that rate to 1% by the
    last step; the default leaves LeRobot's preset (ACT: no scheduler) alone."""
    tmp, _, args = trained_run
    args = list(args)
    args[args.index("--output-dir") + 1] = str(tmp_path)
    args[args.index("--steps") + 1] = "4"
    args[args.index("--save-freq") + 1] = "4"
    result = CliRunner().invoke(
        train_command,
        [*args, "--lr-schedule", "cosine", "--policy-arg", "optimizer_lr=0.0002"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    last = tmp_path / "tiny" / "checkpoints" / "000004"
    cfg = json.loads((last / "pretrained_model" / "train_config.json").read_text())
    assert cfg["scheduler"]["type"] == "cosine_decay_with_warmup" and cfg["optimizer"]["lr"] == 0.0002
    state = json.loads((last / "training_state" / "scheduler_state.json").read_text())
    assert state["base_lrs"][0] == 0.0002 and state["_last_lr"][0] == pytest.approx(0.0002 * 0.01)
    default = json.loads(
        (tmp / "runs" / "tiny" / "checkpoints" / "000002" / "pretrained_model" / "train_config.json").read_text()
    )
    assert default["scheduler"] is None


def test_resumed_cosine_schedule_stretches_to_the_new_steps(trained_run, tmp_path):
    """A cosine run continued with a larger --steps decays to the new end instead of staying at its floor."""
    tmp, _, args = trained_run
    args = [*args, "--lr-schedule", "cosine", "--policy-arg", "optimizer_lr=0.0002"]
    args[args.index("--output-dir") + 1] = str(tmp_path)
    args[args.index("--steps") + 1] = "2"
    args[args.index("--save-freq") + 1] = "2"
    assert CliRunner().invoke(train_command, args, catch_exceptions=False).exit_code == 0
    args[args.index("--steps") + 1] = "8"
    result = CliRunner().invoke(train_command, [*args, "--resume"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ckpts = tmp_path / "tiny" / "checkpoints"
    mid = json.loads((ckpts / "000004" / "training_state" / "scheduler_state.json").read_text())
    end = json.loads((ckpts / "000008" / "training_state" / "scheduler_state.json").read_text())
    assert mid["_last_lr"][0] > 0.0002 * 0.5 and end["_last_lr"][0] == pytest.approx(0.0002 * 0.01)
    cfg = json.loads((ckpts / "000008" / "pretrained_model" / "train_config.json").read_text())
    assert cfg["scheduler"]["num_decay_steps"] == 8


def test_camera_training_options(trained_run, tmp_path):
    """--bf16 and --frames-in-memory train; --image-shift without frames in memory is refused in one line."""
    tmp, _, args = trained_run
    args = list(args)
    args[args.index("--output-dir") + 1] = str(tmp_path)
    args[args.index("--steps") + 1] = "1"
    result = CliRunner().invoke(train_command, [*args, "--bf16", "--frames-in-memory", "--image-shift", "2"])
    assert result.exit_code == 0, result.output
    assert os.environ.get("ACCELERATE_MIXED_PRECISION") != "bf16"  # set for the run only
    args[args.index("--run-name") + 1] = "shift_only"
    refused = CliRunner().invoke(train_command, [*args, "--image-shift", "2"])
    assert refused.exit_code != 0 and "--image-shift needs --frames-in-memory" in refused.output
