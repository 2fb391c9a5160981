"""End to end in simulation: record scripted demonstrations, inspect them, replay one into the arm."""

import json
from pathlib import Path

from click.testing import CliRunner

from robotflow.recording.reader import EpisodeFile
from robotflow.scripts.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--set",
    "wrist_camera.width=64",
    "--set",
    "wrist_camera.height=48",
    "--set",
    "front_camera.width=64",
    "--set",
    "front_camera.height=48",
]


def test_record_info_replay_sim_stack_cubes(tmp_path):
    out = tmp_path / "episodes"
    r = CliRunner().invoke(
        main,
        [
            "record",
            str(ROOT / "graphs/sim_stack_cubes.yaml"),
            "--episodes",
            "1",
            "--output-dir",
            str(out),
            "--task",
            "stack the cubes",
            *SMALL,
        ],
    )
    assert r.exit_code == 0, r.output
    assert "success" in r.output
    with EpisodeFile(out / "episode_000000.h5") as ep:
        assert ep.info.outcome == "success" and ep.info.task == "stack the cubes" and ep.info.seed == 0
        for ch in (
            "arm/state",
            "arm/command",
            "gripper/state",
            "gripper/command",
            "wrist_camera/frame",
            "front_camera/frame",
            "teleop/ee_target",
        ):
            assert ep.has_channel(ch), ch
        assert ep.images("front_camera/frame", [0]).shape == (1, 48, 64, 3)
        ts = ep.timestamps("arm/state")
        assert abs((ts[1] - ts[0]) - 10_000_000) <= 1, "virtual-clock stamps at exactly 100 Hz"
    r = CliRunner().invoke(main, ["info", str(out), "--json"])
    doc = json.loads(r.output)
    assert doc["outcomes"] == {"success": 1} and abs(doc["streams"]["arm/state"]["rate_hz"] - 100) < 1
    r = CliRunner().invoke(
        main,
        [
            "replay",
            str(out / "episode_000000.h5"),
            "--graph",
            str(ROOT / "graphs/sim_stack_cubes_replay.yaml"),
            "--set",
            "front_camera.width=64",
            "--set",
            "front_camera.height=48",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "success rate: 100% (1/1)" in r.output, "replaying the expert's commands stacks the cubes again"
