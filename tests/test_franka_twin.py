"""The Franka twin (robotflow/drivers/twin/) through the real franky-control: one record-and-roll-out pass.

The twin graphs are the hardware graphs' franka.arm and franka.gripper talking libfranka to franky-sim on a loopback
address of their own; the world, the task and the cameras run in the graph's `twin` process group. One short expert
episode is recorded, converted with the low-dim codec, a policy is trained a few steps, and one episode is rolled out
through franky. Success is not expected from so little (graphs/*_twin_* and README report the measured rates).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks._franky_sim import free_loopback_host
from robotflow.drivers.twin.nodes import TWIN_HOME, TwinCameraNode, TwinTaskNode, TwinWorldNode
from robotflow.recording.reader import EpisodeFile
from robotflow.runtime.graph import load_graph
from robotflow.runtime.node import known_types, register
from robotflow.safety import ArmSafetyParams
from robotflow.scripts.cli import main

ROOT = Path(__file__).resolve().parents[1]
NORMALIZATION = {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ENV": "MEAN_STD", "ACTION": "MEAN_STD"}

# The twin's types come from setup.cfg's entry points; a checkout whose installed metadata predates them registers
# them here, so the graph files' short names resolve either way.
for _name, _cls in (("twin.world", TwinWorldNode), ("twin.camera", TwinCameraNode), ("twin.task", TwinTaskNode)):
    if _name not in known_types():
        register(_name)(_cls)


def _host_args(host: str) -> list[str]:
    return [arg for node in ("world", "arm", "gripper") for arg in ("--set", f'{node}.host="{host}"')]


def _cli(*args: str) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("name", ["franka_stack_cubes", "franka_stack_cubes_policy"])
def test_twin_graphs_keep_the_hardware_graphs_nodes_and_safety_params(name):
    """Only the cameras and the task are swapped: the arm's safety layer and dynamics, the gripper and the policy
    are the hardware graph's (the arm's address, robot model and homing pose are the twin's)."""
    hw, twin = (
        load_graph(ROOT / f"graphs/{name}.yaml"),
        load_graph(ROOT / f"graphs/{name.replace('franka_', 'franka_twin_')}.yaml"),
    )
    for field in [f.name for f in dataclasses.fields(ArmSafetyParams)] + [
        "dynamics_factor",
        "home_on_start",
        "auto_recover",
    ]:
        assert getattr(twin.node("arm").params, field) == getattr(hw.node("arm").params, field), field
    assert dataclasses.replace(twin.node("gripper").params, host="", connect_timeout_s=0.0) == dataclasses.replace(
        hw.node("gripper").params, host="", connect_timeout_s=0.0
    )
    if "policy" in name:
        assert twin.node("arm").params.control == hw.node("arm").params.control
        assert twin.node("policy").params == hw.node("policy").params
        assert twin.node("policy").process == hw.node("policy").process


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two expert episodes through franky, cut short (4 s each): the pipeline, not demonstrations."""
    out = tmp_path_factory.mktemp("twin")
    _cli(
        "record",
        str(ROOT / "graphs/franka_twin_stack_cubes_lowdim.yaml"),
        "--episodes",
        "2",
        "--output-dir",
        str(out / "demos"),
        "--task",
        "stack the red cube on the green cube",
        "--set",
        "task.timeout_s=4.0",
        *_host_args(free_loopback_host()),
    )
    return out


def test_expert_episodes_recorded_through_franky(recorded):
    files = sorted((recorded / "demos").glob("episode_*.h5"))
    assert len(files) == 2
    for seed, f in enumerate(files):
        with EpisodeFile(f) as ep:
            assert ep.info.seed == seed
            pose = ep.field("arm/state", "ee_pose")
            joints = ep.field("arm/state", "joint_pos")
            objects = ep.field("task/objects", "poses")
            targets = ep.field("teleop/ee_target", "ee_pose")
        assert len(pose) > 150  # 4 s at franka.arm's 100 Hz
        assert objects.shape[1:] == (2, 7) and len(targets) > 50
        # The arm followed the expert toward the red cube: franky moved the twin's robot.
        assert np.linalg.norm(pose[-1, :3] - pose[0, :3]) > 0.05
        # Every episode started with the arm home, driven there through franky between episodes, never
        # teleported (the second one used to start where the first ended).
        assert np.linalg.norm(pose[0, :3] - np.array([0.457, 0.0, 0.364])) < 0.02
        np.testing.assert_allclose(joints[0], TWIN_HOME, atol=0.03)


def test_convert_train_and_roll_out_through_franky(recorded, tmp_path):
    out = recorded
    _cli(
        "convert",
        "--input",
        str(out / "demos"),
        "--codec",
        "ee_objects_rel",
        "--output-dir",
        str(out / "dataset"),
        "--fps",
        "15",
        "--json",
    )
    _cli(
        "train",
        "--dataset-root",
        str(out / "dataset"),
        "--run-name",
        "act",
        "--output-dir",
        str(out / "runs"),
        "--steps",
        "2",
        "--save-freq",
        "2",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--dim-model",
        "32",
        "--chunk-size",
        "10",
        "--n-action-steps",
        "5",
        "--num-workers",
        "0",
        "--no-pretrained-backbone",
        "--policy-arg=dim_feedforward=64",
        f"--policy-arg=normalization_mapping={json.dumps(NORMALIZATION)}",
    )
    summary = tmp_path / "rollout.json"
    _cli(
        "rollout",
        "--checkpoints-dir",
        str(out / "runs" / "act"),
        "--graph",
        str(ROOT / "graphs/franka_twin_stack_cubes_lowdim_policy.yaml"),
        "--episodes",
        "1",
        "--seed",
        "1000",
        "--output-dir",
        str(tmp_path / "rollouts"),
        "--summary",
        str(summary),
        "--set",
        "task.timeout_s=3.0",
        *_host_args(free_loopback_host()),
    )
    doc = json.loads(summary.read_text())
    assert [e["seed"] for e in doc["episodes"]] == [1000]  # scored by twin.task, from its process group
    with EpisodeFile(tmp_path / "rollouts" / "episode_000000.h5") as ep:
        assert ep.info.seed == 1000
        assert len(ep.field("arm/state", "ee_pose")) > 100  # the policy's episode ran through franky
        assert len(ep.field("policy/ee_target", "ee_pose")) > 10
