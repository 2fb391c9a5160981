"""A sim graph whose nodes are not named `arm`, `gripper`, `*_camera`, `task` records, converts and runs a policy.

The channel names are codec params (`--channel arm/state=robot/state`, `--camera top=cam_top/frame`) stored in
the dataset's spec; the policy node's ports come from its `codec` and `cameras` params and its `inputs:` wire
them to the renamed channels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("lerobot")

from robotflow.codecs import load_dataset_codec, read_dataset_spec, write_checkpoint_spec
from robotflow.recording.reader import EpisodeFile
from robotflow.runtime.graph import GraphError, parse_graph
from robotflow.scripts.cli import main

H, W = 48, 64

GRAPH = """
description: stack_cubes with renamed nodes
nodes:
  - name: world
    type: sim.world
    rate: 500
    params: {{task: stack_cubes, timestep: 0.002, realtime: false}}
  - name: robot
    type: sim.arm
    rate: 100
    inputs: {{ee_target: pilot/ee_target}}
  - name: hand
    type: sim.gripper
    rate: 100
    inputs: {{target: pilot/grip}}
  - name: cam_top
    type: sim.camera
    rate: 15
    params: {{camera: front, width: {w}, height: {h}, fps: 15}}
  - name: scene
    type: sim.task
    rate: 50
    params: {{task: stack_cubes, seed: 0, episodes: 1, timeout_s: 1.5, hold_s: 1.0}}
{pilot}
"""

TELEOP = """  - name: pilot
    type: teleop.scripted
    rate: 50
    inputs: {objects: scene/objects, episode: scene/episode, state: robot/state}
"""

POLICY = """  - name: pilot
    type: policy.act
    rate: 15
    params: {checkpoint: "", codec: ee, cameras: [top], device: cpu, warmup: false}
    inputs: {arm_state: robot/state, gripper_state: hand/state, top: cam_top/frame, episode: scene/episode}
"""

CHANNELS = [
    "--channel",
    "arm/state=robot/state",
    "--channel",
    "arm/command=robot/command",
    "--channel",
    "gripper_state=hand/state",  # by role name works too
    "--channel",
    "gripper/command=hand/command",
    "--channel",
    "task/episode=scene/episode",
]


def invoke(*args, ok: bool = True):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output
    return r


def tiny_act_checkpoint(model_dir: Path, dataset: Path) -> Path:
    """A pretrained_model dir for the dataset's features (random weights), as LeRobot's trainer writes one."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    codec = load_dataset_codec(dataset)
    feats = {"observation.state": PolicyFeature(FeatureType.STATE, (codec.state_dim,))}
    stats = {
        "observation.state": {"mean": torch.zeros(codec.state_dim), "std": torch.ones(codec.state_dim)},
        "action": {"mean": torch.zeros(codec.action_dim), "std": torch.ones(codec.action_dim)},
    }
    for key in codec.camera_keys:
        feats[key] = PolicyFeature(FeatureType.VISUAL, (3, H, W))
        stats[key] = {"mean": torch.full((3, 1, 1), 0.45), "std": torch.full((3, 1, 1), 0.25)}
    cfg = ACTConfig(
        input_features=feats,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (codec.action_dim,))},
        dim_model=32,
        n_heads=2,
        dim_feedforward=64,
        n_encoder_layers=1,
        n_decoder_layers=1,
        n_vae_encoder_layers=1,
        chunk_size=5,
        n_action_steps=5,
        pretrained_backbone_weights=None,
        device="cpu",
    )
    torch.manual_seed(0)
    policy = ACTPolicy(cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    for part in (policy, pre, post):
        part.save_pretrained(model_dir)
    write_checkpoint_spec(model_dir, read_dataset_spec(dataset))  # what `robotflow train` puts beside it
    return model_dir


def test_renamed_graph_records_converts_and_runs_a_policy(tmp_path):
    teleop_graph, policy_graph = tmp_path / "teleop.yaml", tmp_path / "policy.yaml"
    teleop_graph.write_text(GRAPH.format(w=W, h=H, pilot=TELEOP))
    policy_graph.write_text(GRAPH.format(w=W, h=H, pilot=POLICY))
    eps, ds = tmp_path / "episodes", tmp_path / "dataset"

    # 1. Record: the recorder takes whatever channels the graph has.
    invoke("record", teleop_graph, "--episodes", 1, "--output-dir", eps)
    with EpisodeFile(eps / "episode_000000.h5") as ep:
        assert ep.has_channel("robot/state") and ep.has_channel("cam_top/frame") and not ep.has_channel("arm/state")

    # 2. Convert: the contract names are not there, so the default channels are refused with one line...
    r = invoke("convert", "--input", eps, "--codec", "ee", "--output-dir", ds, "--quiet", ok=False)
    assert r.exit_code != 0 and "missing channel 'arm/state'" in r.output and len(r.output.strip().splitlines()) == 1
    # ...and mapped, they convert.
    out = invoke(
        "convert",
        "--input",
        eps,
        "--codec",
        "ee",
        "--output-dir",
        ds,
        "--image-size",
        f"{H}x{W}",
        "--camera",
        "top=cam_top/frame",
        *CHANNELS,
        "--quiet",
    ).output
    assert "converted 1 episodes" in out
    spec = read_dataset_spec(ds)
    assert spec["params"]["channels"]["arm_state"] == "robot/state"
    assert spec["params"]["channels"]["task"] == "scene/episode"
    assert spec["params"]["cameras"] == {"top": "cam_top/frame"}
    info = json.loads((ds / "meta" / "info.json").read_text())
    assert "observation.images.top" in info["features"] and "observation.images.wrist" not in info["features"]

    # 3. Run a policy trained on it: ports come from the graph params; nothing is read from disk to validate.
    graph = parse_graph(policy_graph.read_text(), str(policy_graph))
    pilot = next(n for n in graph.nodes if n.name == "pilot")
    assert set(pilot.inputs) == {"arm_state", "gripper_state", "top", "episode"}
    assert pilot.inputs["arm_state"].source == "robot/state"
    model = tiny_act_checkpoint(tmp_path / "run" / "pretrained_model", ds)
    rec, summary = tmp_path / "rollouts", tmp_path / "rollout.json"
    out = invoke(
        "rollout", "--checkpoints-dir", model, "--graph", policy_graph, "--episodes", 1, "--output-dir", rec,
        "--summary", summary,
    ).output  # fmt: skip
    assert "success rate:" in out
    with EpisodeFile(rec / "episode_000000.h5") as ep:
        assert len(ep.timestamps("pilot/ee_target")) >= 12, "the policy acted at 15 Hz for the 1.5 s episode"

    # Another codec than the checkpoint's is refused before anything runs, in one line.
    r = invoke(
        "rollout", "--checkpoints-dir", model, "--graph", policy_graph, "--episodes", 1, "--no-record",
        "--codec", "joints", ok=False,
    )  # fmt: skip
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    assert "trained with codec 'eepose_absolute' but the graph uses 'joints_absolute'" in r.output


def test_policy_node_validation_reads_no_checkpoint(tmp_path):
    """A missing checkpoint is a setup error, never a silent default codec at validation."""
    text = GRAPH.format(w=W, h=H, pilot=POLICY.replace('checkpoint: ""', f'checkpoint: "{tmp_path}/nowhere"'))
    graph = parse_graph(text)
    assert set(next(n for n in graph.nodes if n.name == "pilot").inputs) == {
        "arm_state",
        "gripper_state",
        "top",
        "episode",
    }
    with pytest.raises(GraphError, match="unknown codec 'eee'"):
        parse_graph(text.replace("codec: ee,", "codec: eee,"))
    with pytest.raises(GraphError, match="camera name 'arm_state'"):
        parse_graph(text.replace("cameras: [top]", "cameras: [arm_state]"))
