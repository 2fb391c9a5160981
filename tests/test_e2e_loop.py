"""The whole loop in simulation, small: scripted demos -> recording -> dataset -> training -> rollout."""

import json
from pathlib import Path

from click.testing import CliRunner

from robotflow.recording.reader import EpisodeFile
from robotflow.scripts.cli import main

ROOT = Path(__file__).resolve().parents[1]
CAMS = [
    "--set",
    "wrist_camera.width=64",
    "--set",
    "wrist_camera.height=48",
    "--set",
    "front_camera.width=64",
    "--set",
    "front_camera.height=48",
]


def invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_record_convert_train_rollout(tmp_path):
    eps, ds, runs = tmp_path / "episodes", tmp_path / "dataset", tmp_path / "runs"
    invoke("record", ROOT / "graphs/sim_stack_cubes.yaml", "--episodes", 2, "--output-dir", eps, *CAMS)
    out = invoke(
        "convert", "--input", eps, "--codec", "ee", "--output-dir", ds, "--fps", 15, "--image-size", "48x64", "--quiet"
    )
    assert "converted 2 episodes" in out
    invoke(
        "train",
        "--dataset-root",
        ds,
        "--run-name",
        "tiny",
        "--output-dir",
        runs,
        "--steps",
        2,
        "--save-freq",
        1,
        "--batch-size",
        2,
        "--device",
        "cpu",
        "--no-pretrained-backbone",
        "--dim-model",
        32,
        "--chunk-size",
        5,
        "--num-workers",
        0,
        "--log-freq",
        1,
    )
    listing = invoke("rollout", "--checkpoints-dir", runs / "tiny", "--list")
    assert [line.split()[0] for line in listing.strip().splitlines()] == ["1", "2"]

    summary = tmp_path / "rollout.json"
    rec = tmp_path / "rollouts"
    out = invoke(
        "rollout",
        "--checkpoints-dir",
        runs / "tiny",
        "--graph",
        ROOT / "graphs/sim_stack_cubes_policy.yaml",
        "--episodes",
        1,
        "--output-dir",
        rec,
        "--summary",
        summary,
        "--set",
        "task.timeout_s=2.0",
        *CAMS,
    )
    assert "success rate:" in out
    doc = json.loads(summary.read_text())
    assert set(doc) >= {"episodes", "success_rate", "checkpoint", "codec"}
    assert doc["checkpoint"].endswith("checkpoints/000002/pretrained_model") and doc["codec"] == "eepose_absolute"
    assert len(doc["episodes"]) == 1 and set(doc["episodes"][0]) == {"seed", "success", "duration_s"}
    assert doc["episodes"][0]["seed"] == 1000
    with EpisodeFile(rec / "episode_000000.h5") as ep:
        assert ep.has_channel("policy/ee_target") and ep.has_channel("front_camera/frame")
        n = len(ep.timestamps("policy/ee_target"))
        assert 25 <= n <= 35, "the policy acted at 15 Hz for the 2 s episode"

    # A graph whose codec differs from the checkpoint's is refused before anything runs.
    r = CliRunner().invoke(
        main,
        [
            "rollout",
            "--checkpoints-dir",
            str(runs / "tiny"),
            "--episodes",
            "1",
            "--set",
            "policy.codec=joints",
            "--no-record",
        ],
    )
    assert r.exit_code != 0
    assert "trained with codec 'eepose_absolute'" in r.output and "'joints_absolute'" in r.output
