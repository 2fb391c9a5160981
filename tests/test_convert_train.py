"""A converted dataset trains with LeRobot's own entry point (`python -m lerobot.scripts.lerobot_train`).

Runs the real CLI in a subprocess (as users and the train command do), offline, on CPU, with a tiny
ACT (dim_model 64, randomly initialised resnet18, 48x64 images, batch 2, 2 steps). About 25 s on
2 cores, under the 60 s bar for `slow`, so it runs with the default suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from episode_factory import write_episodes

from robotflow.codecs import ConvertOptions, checkpoint_codec, convert, get_codec, load_dataset_codec
from robotflow.codecs.export import video_backend


@pytest.mark.parametrize("codec_name", ["ee_rot6d_joints"])
def test_lerobot_train_runs_on_converted_dataset(tmp_path: Path, codec_name: str):
    write_episodes(tmp_path / "eps", 2, duration_s=2.0, image_shape=(48, 64))
    data = tmp_path / "data"
    convert(tmp_path / "eps", data, get_codec(codec_name, image_size=(48, 64)), ConvertOptions(progress=False))
    out = tmp_path / "train"
    cmd = [
        sys.executable,
        "-m",
        "lerobot.scripts.lerobot_train",
        "--dataset.repo_id=robotflow/test",
        f"--dataset.root={data}",
        f"--dataset.video_backend={video_backend()}",
        "--policy.type=act",
        "--policy.push_to_hub=false",
        "--policy.device=cpu",
        "--policy.dim_model=64",
        "--policy.dim_feedforward=128",
        "--policy.n_heads=4",
        "--policy.n_encoder_layers=1",
        "--policy.n_decoder_layers=1",
        "--policy.chunk_size=5",
        "--policy.n_action_steps=5",
        "--policy.pretrained_backbone_weights=null",
        "--batch_size=2",
        "--steps=2",
        "--num_workers=0",
        "--save_freq=2",
        "--log_freq=1",
        "--eval_freq=0",
        "--wandb.enable=false",
        f"--output_dir={out}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    model = out / "checkpoints" / "000002" / "pretrained_model"
    cfg = json.loads((model / "config.json").read_text())
    codec = load_dataset_codec(data)
    assert cfg["input_features"]["observation.state"]["shape"] == [codec.state_dim]
    assert cfg["output_features"]["action"]["shape"] == [codec.action_dim]
    assert set(cfg["input_features"]) == {"observation.state", *codec.camera_keys}
    assert (model / "model.safetensors").stat().st_size > 0
    # Plain lerobot-train puts no robotflow_codec.json beside its checkpoints: train_config.json leads to the dataset.
    found = checkpoint_codec(model)
    assert not (model / "robotflow_codec.json").exists()
    assert found.spec == codec.spec() and "train_config.json" in found.source

    # Deployment path: live messages -> codec.encode_live -> LeRobot predict_action -> codec.decode.
    import numpy as np
    import torch
    from episode_factory import ee_pose, joints, make_image
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.utils.control_utils import predict_action

    policy = ACTPolicy.from_pretrained(model)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(model))
    latest = {
        "arm/state": {"ee_pose": ee_pose(np.array([0.5]))[0], "joint_pos": joints(np.array([0.5]))[0]},
        "gripper/state": {"width": 0.7},
        "wrist_camera/frame": {"image": make_image(3, (96, 128))},  # camera larger than stored: resized
        "front_camera/frame": {"image": make_image(4, (96, 128))},
    }
    codec.reset()
    obs = codec.encode_live(latest)
    action = predict_action(obs, policy, torch.device("cpu"), pre, post, use_amp=False, task=codec.live_task(latest))
    cmd = codec.decode(action.numpy())
    assert cmd["ee_pose"].shape == (7,) and np.isclose(np.linalg.norm(cmd["ee_pose"][3:]), 1.0)
    assert 0.0 <= cmd["width"] <= 1.0
