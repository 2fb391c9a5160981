"""`robotflow train` with S3 paths (real moto server on loopback), W&B offline, and two training processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from episode_factory import write_episodes
from s3_server import BUCKET, s3_server

from robotflow.codecs import ConvertOptions, convert, get_codec
from robotflow.scripts.cli import main
from robotflow.storage import Cache

TINY = [
    "--steps=2",
    "--save-freq=1",
    "--batch-size=2",
    "--device=cpu",
    "--no-pretrained-backbone",
    "--dim-model=32",
    "--chunk-size=5",
    "--num-workers=0",
    "--log-freq=1",
    "--policy-arg=dim_feedforward=64",
    "--policy-arg=n_heads=2",
    "--policy-arg=n_encoder_layers=1",
    "--policy-arg=n_decoder_layers=1",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("remote_train")
    write_episodes(tmp / "eps", 2, duration_s=2.0, image_shape=(48, 64))
    root = tmp / "data"
    convert(tmp / "eps", root, get_codec("ee", image_size=(48, 64)), ConvertOptions(progress=False))
    return root


def robotflow(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "robotflow.scripts.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        timeout=timeout,
    )


def test_train_from_and_to_s3_with_wandb_offline(dataset, tmp_path, monkeypatch):
    import s3fs

    with s3_server(monkeypatch, tmp_path):
        data_url = f"s3://{BUCKET}/datasets/stack"
        Cache().upload(dataset, data_url)
        env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
        env["WANDB_DIR"] = str(tmp_path / "wandb_home")
        res = subprocess.run(
            [sys.executable, "-m", "robotflow.scripts.cli", "train", f"--dataset-root={data_url}"]
            + [f"--output-dir=s3://{BUCKET}/runs", "--run-name=act_s3", "--wandb", *TINY],
            capture_output=True,
            text=True,
            env={**env, "HF_HUB_OFFLINE": "1"},
            timeout=600,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "logging offline" in res.stderr
        fs = s3fs.S3FileSystem()
        run = f"{BUCKET}/runs/act_s3"
        for step in ("000001", "000002"):
            model = f"{run}/checkpoints/{step}/pretrained_model"
            assert fs.exists(f"{model}/model.safetensors") and fs.exists(f"{model}/config.json")
            spec = json.loads(fs.cat(f"{model}/robotflow_codec.json"))
            assert spec["name"] == "eepose_absolute"
        assert not fs.exists(f"{run}/checkpoints/last/pretrained_model/config.json")  # symlinks stay local
        assert fs.glob(f"{run}/wandb/offline-run-*"), fs.find(run)[:20]

        # In this process (LeRobot is imported already): the policy nodes' loader takes the run's URL,
        from robotflow.policies.loading import load_policy

        loaded = load_policy(f"s3://{BUCKET}/runs/act_s3", device="cpu")
        assert loaded.path.parent.name == "000002" and loaded.codec_spec["name"] == "eepose_absolute"
        # listing the remote run, and refusing to overwrite it.
        listed = CliRunner().invoke(main, ["rollout", f"--checkpoints-dir=s3://{BUCKET}/runs/act_s3", "--list"])
        assert listed.exit_code == 0, listed.output
        assert [line.split()[0] for line in listed.output.splitlines()] == ["1", "2"]

        again = CliRunner().invoke(
            main,
            ["train", f"--dataset-root={data_url}", f"--output-dir=s3://{BUCKET}/runs", "--run-name=act_s3", *TINY],
        )
        assert again.exit_code != 0 and "already exists" in again.output and "Traceback" not in again.output


def test_train_with_two_processes(dataset, tmp_path):
    # 30-60 s on 2 shared cores: two processes each import LeRobot and run a tiny ACT for 2 steps.
    res = robotflow(
        "train",
        f"--dataset-root={dataset}",
        f"--output-dir={tmp_path}",
        "--run-name=ddp",
        "--num-processes=2",
        *[a for a in TINY if not a.startswith("--save-freq")],
        "--save-freq=2",
        env={"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"},
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert "effective batch size: 4" in out  # LeRobot's Accelerate loop saw 2 processes of batch 2
    ckpts = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir() if not p.is_symlink())
    assert ckpts == ["000002"]
    model = tmp_path / "ddp" / "checkpoints" / "000002" / "pretrained_model"
    assert (model / "model.safetensors").stat().st_size > 0 and (model / "robotflow_codec.json").is_file()


def test_worker_arguments_round_trip(tmp_path, monkeypatch):
    """The processes `--num-processes` launches get exactly the options of the command (but one process each)."""
    import dataclasses

    from robotflow.scripts.train import train_command
    from robotflow.training import TrainOptions, launch

    opts = TrainOptions(
        dataset_root=str(tmp_path / "data"),
        run_name="r",
        output_dir="s3://bucket/runs",
        steps=7,
        save_freq=3,
        resume=True,
        pretrained_backbone=False,
        dim_model=32,
        chunk_size=5,
        wandb=True,
        policy_args={"n_heads": 2, "optimizer_lr": 0.0001},
        lr_schedule="cosine",
        num_processes=2,
    )
    args = [f"--dataset-root={opts.dataset_root}", "--run-name=r", "--output-dir=s3://bucket/runs", "--steps=7"]
    args += ["--save-freq=3", "--resume", "--no-pretrained-backbone", "--dim-model=32", "--chunk-size=5", "--wandb"]
    args += ["--policy-arg=n_heads=2", "--policy-arg=optimizer_lr=0.0001", "--lr-schedule=cosine", "--num-processes=2"]
    seen = []
    monkeypatch.setattr("robotflow.scripts.train.train", lambda o: seen.append(o) or tmp_path)
    train_command.main(args, standalone_mode=False)
    assert seen == [opts]
    launched = []
    monkeypatch.setattr(
        launch.subprocess, "run", lambda cmd: launched.append(cmd) or subprocess.CompletedProcess(cmd, 0)
    )
    launch.launch_processes(opts)
    assert launched[0][-2:-1] == ["robotflow.training.worker"]
    assert launch.options_from_json(launched[0][-1]) == dataclasses.replace(opts, num_processes=1)
