"""LeRobot's defaults work unmodified on a converted dataset: torchcodec decodes its videos (FFmpeg's libraries come
from `make`'s system step) and plain `lerobot-train` trains on it without `--dataset.video_backend`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from episode_factory import write_episodes

from robotflow.codecs import ConvertOptions, convert, get_codec


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("defaults")
    write_episodes(tmp / "eps", 2, duration_s=2.0, image_shape=(48, 64))
    root = tmp / "data"
    convert(tmp / "eps", root, get_codec("ee", image_size=(48, 64)), ConvertOptions(progress=False))
    return root


def test_dataset_loads_with_default_arguments(dataset: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/x", root=dataset)
    assert ds.video_backend == "torchcodec"
    item = ds[len(ds) - 1]
    cams = [k for k in ds.meta.camera_keys]
    assert cams and all(tuple(item[k].shape) == (3, 48, 64) for k in cams)
    assert float(item[cams[0]].max()) > 0  # decoded pixels, not an empty tensor


def test_torchcodec_finds_ffmpeg():
    from robotflow.codecs import video_backend

    assert video_backend() == "torchcodec"


def lerobot_train_args(root: Path, out: Path, steps: int = 2) -> list[str]:
    """A tiny ACT for `lerobot-train` on CPU: nothing but what its own CLI needs (no video backend)."""
    return [
        "--dataset.repo_id=local/x",
        f"--dataset.root={root}",
        "--policy.type=act",
        "--policy.push_to_hub=false",
        "--policy.device=cpu",
        "--policy.dim_model=32",
        "--policy.dim_feedforward=64",
        "--policy.n_heads=2",
        "--policy.n_encoder_layers=1",
        "--policy.n_decoder_layers=1",
        "--policy.chunk_size=5",
        "--policy.n_action_steps=5",
        "--policy.pretrained_backbone_weights=null",
        "--batch_size=2",
        f"--steps={steps}",
        "--num_workers=0",
        f"--save_freq={steps}",
        "--log_freq=1",
        f"--output_dir={out}",
    ]


def test_plain_lerobot_train(dataset: Path, tmp_path: Path):
    exe = shutil.which("lerobot-train", path=str(Path(sys.executable).parent))
    assert exe, "lerobot-train is installed with lerobot"
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([exe, *lerobot_train_args(dataset, out)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    model = out / "checkpoints" / "000002" / "pretrained_model"
    assert (model / "model.safetensors").stat().st_size > 0
    # Such a checkpoint has no robotflow_codec.json; its train_config.json names the dataset, which has the codec.
    from robotflow.codecs.spec import checkpoint_codec

    found = checkpoint_codec(model)
    assert found.name == "eepose_absolute" and str(dataset) in found.source
