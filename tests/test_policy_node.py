"""`policy.act` / `policy.lerobot` inside a real robotflow graph (real scheduler, channels, codec, LeRobot)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lerobot")

import torch
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.factory import make_pre_post_processors
from test_policy_chunking import H, W, tiny_config, tiny_stats

from robotflow.codecs import get_codec, write_checkpoint_spec
from robotflow.policies import nodes  # noqa: F401  (registers policy.act and policy.lerobot)
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Node, register
from robotflow.runtime.scheduler import Scheduler


@dataclass
class _NoParams:
    pass


@register("testpolicy.arm")
class ArmState(Node):
    """Stands in for sim.arm's `state` output (docs/contracts.md fields)."""

    Params = _NoParams
    outputs = ("state",)

    def step(self) -> None:
        self.emit(
            "state", joint_pos=np.zeros(7), joint_vel=np.zeros(7), ee_pose=np.array([0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0])
        )


@register("testpolicy.gripper")
class GripperState(Node):
    Params = _NoParams
    outputs = ("state",)

    def step(self) -> None:
        self.emit("state", width=0.7)


def save_checkpoint(model_dir: Path, codec_name: str = "ee") -> Path:
    """A pretrained_model dir as LeRobot's trainer writes it (weights, config, processors) + codec spec."""
    torch.manual_seed(0)
    cfg = tiny_config()
    policy = ACTPolicy(cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=tiny_stats())
    policy.save_pretrained(model_dir)
    pre.save_pretrained(model_dir)
    post.save_pretrained(model_dir)
    write_checkpoint_spec(model_dir, get_codec(codec_name, image_size=(H, W)).spec())
    return model_dir


GRAPH = """
nodes:
  - name: arm
    type: testpolicy.arm
    rate: 30
  - name: gripper
    type: testpolicy.gripper
    rate: 30
  - name: wrist_camera
    type: test.frames
    rate: 15
    params: {{width: 128, height: 96}}
  - name: front_camera
    type: test.frames
    rate: 15
    params: {{width: 128, height: 96}}
  - name: policy
    type: {node_type}
    rate: 15
    params: {{checkpoint: "{ckpt}", codec: {codec}, device: cpu}}
    inputs: {{arm_state: arm/state, gripper_state: gripper/state, wrist: wrist_camera/frame, front: front_camera/frame}}
  - name: sink
    type: test.sink
    rate: 15
    inputs: {{target: policy/ee_target, grip: policy/grip}}
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "pretrained_model")


@pytest.mark.parametrize("node_type", ["policy.act", "policy.lerobot"])
def test_policy_node_drives_arm_and_gripper(checkpoint, node_type):
    graph = parse_graph(GRAPH.format(node_type=node_type, ckpt=checkpoint, codec="ee"))
    spec = next(s for s in graph.nodes if s.name == "policy")
    assert set(spec.inputs) == {"arm_state", "gripper_state", "wrist", "front"}
    sched = Scheduler(graph, duration_s=2.5)
    result = sched.run()
    assert result.ok, result.error
    sink = sched.nodes["sink"]
    assert sink.received.get("target", 0) >= 5 and sink.received.get("grip", 0) >= 5
    pose = np.asarray(sink.last["target"]["ee_pose"])
    assert pose.shape == (7,) and pose[3] >= 0 and abs(np.linalg.norm(pose[3:]) - 1) < 1e-6
    assert 0.0 <= float(sink.last["grip"]["width"]) <= 1.0


def test_policy_node_loads_a_checkpoint_from_a_url(checkpoint, monkeypatch, tmp_path):
    """A run in object storage as params.checkpoint: the node resolves it as load_policy does (one step
    downloaded), not as a local path."""
    from s3_server import BUCKET, s3_server

    from robotflow.storage import Cache

    with s3_server(monkeypatch, tmp_path):
        url = f"s3://{BUCKET}/runs/act"
        Cache().upload(checkpoint, f"{url}/checkpoints/000003/pretrained_model")
        graph = parse_graph(GRAPH.format(node_type="policy.act", ckpt=url, codec="ee"))
        sched = Scheduler(graph, duration_s=2.0)
        result = sched.run()
    assert result.ok, result.error
    assert sched.nodes["policy"].loaded.checkpoint.step == 3
    assert sched.nodes["sink"].received.get("target", 0) >= 5


def test_policy_node_refuses_other_codec(checkpoint):
    graph = parse_graph(GRAPH.format(node_type="policy.act", ckpt=checkpoint, codec="joints"))
    result = Scheduler(graph, duration_s=2.0).run()
    assert not result.ok and result.failed_node == "policy"
    assert "eepose_absolute" in result.error and "joints_absolute" in result.error


def test_load_policy_reads_weights_without_fetching_imagenet(checkpoint, tmp_path):
    """A checkpoint trained from ImageNet weights names them in config.json; loading must not fetch them."""
    import json
    import shutil

    from safetensors.torch import load_file

    from robotflow.policies.loading import load_policy

    model_dir = tmp_path / "pretrained_model"
    shutil.copytree(checkpoint, model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["pretrained_backbone_weights"] = "ResNet18_Weights.IMAGENET1K_V1"
    (model_dir / "config.json").write_text(json.dumps(cfg))
    loaded = load_policy(model_dir, device="auto", codec="eepose_absolute")
    saved = load_file(str(model_dir / "model.safetensors"))
    state = loaded.policy.state_dict()
    assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
    assert loaded.codec_spec["name"] == "eepose_absolute"


def test_lerobot_runner_serves_a_diffusion_checkpoint(tmp_path):
    """`policy.lerobot`'s runner: any policy type from the checkpoint's config, through its own queues."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    from robotflow.policies.loading import load_policy
    from robotflow.policies.sync_runner import SyncPolicyRunner

    feats = {
        "observation.state": PolicyFeature(FeatureType.STATE, (8,)),
        "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, H, W)),
    }
    cfg = DiffusionConfig(
        input_features=feats,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (8,))},
        crop_shape=None,
        down_dims=(16, 32),
        diffusion_step_embed_dim=16,
        n_groups=4,
        spatial_softmax_num_keypoints=8,
        num_inference_steps=3,
        horizon=8,
        n_action_steps=4,
        device="cpu",
    )
    torch.manual_seed(0)
    policy = DiffusionPolicy(cfg)
    stats = {k: v for k, v in tiny_stats().items() if k in ("observation.state", "action", "observation.images.wrist")}
    stats["action"] = {"min": -torch.ones(8), "max": torch.ones(8)}
    stats["observation.state"] = {"min": -torch.ones(8), "max": torch.ones(8)}
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    model_dir = tmp_path / "pretrained_model"
    policy.save_pretrained(model_dir)
    pre.save_pretrained(model_dir)
    post.save_pretrained(model_dir)
    write_checkpoint_spec(model_dir, get_codec("ee", image_size=(H, W), cameras={"wrist": "wrist_camera/frame"}).spec())

    loaded = load_policy(model_dir, device="cpu", codec="ee")
    assert type(loaded.policy).__name__ == "DiffusionPolicy"
    runner = SyncPolicyRunner(loaded.policy, loaded.preprocessor, loaded.postprocessor)
    rng = np.random.default_rng(0)
    for _ in range(6):  # crosses a chunk boundary (n_action_steps 4)
        a = runner.step(
            {
                "observation.state": rng.standard_normal(8).astype(np.float32),
                "observation.images.wrist": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
            }
        )
        assert a.shape == (8,) and np.isfinite(a).all()


@dataclass
class _EpisodeParams:
    start_ticks: tuple = (3, 25)  # ticks (15 Hz) at which an episode starts
    end_ticks: tuple = (13,)


@register("testpolicy.episodes")
class Episodes(Node):
    """Emits task/episode events on a schedule and records when."""

    Params = _EpisodeParams
    outputs = ("episode",)

    def setup(self) -> None:
        self.k, self.sent = 0, []

    def step(self) -> None:
        self.k += 1
        for event, ticks in (("start", self.params.start_ticks), ("end", self.params.end_ticks)):
            if self.k in ticks:
                self.emit("episode", event=event, index=len(self.sent), task="stack", outcome="success")
                self.sent.append((event, self.now_ns()))


@dataclass
class _FreezeParams:
    after_ticks: int = 60  # stop publishing after this many ticks (30 Hz): a frozen sensor


@register("testpolicy.freezing_arm")
class FreezingArm(ArmState):
    Params = _FreezeParams

    def setup(self) -> None:
        self.k, self.frozen_at = 0, None

    def step(self) -> None:
        self.k += 1
        if self.k <= self.params.after_ticks:
            super().step()
        elif self.frozen_at is None:
            self.frozen_at = self.now_ns()


@register("testpolicy.stamps")
class Stamps(Node):
    """Keeps the timestamp of every message on every (queue) input."""

    any_inputs = True

    def setup(self) -> None:
        self.stamps: dict[str, list[int]] = {}

    def step(self) -> None:
        for port in self._subs:
            self.stamps.setdefault(port, []).extend(m.timestamp_ns for m in self.read_all(port))


EPISODE_GRAPH = """
nodes:
  - {{name: arm, type: testpolicy.freezing_arm, rate: 30, params: {{after_ticks: {freeze}}}}}
  - {{name: gripper, type: testpolicy.gripper, rate: 30}}
  - {{name: wrist_camera, type: test.frames, rate: 15, params: {{width: 128, height: 96}}}}
  - {{name: front_camera, type: test.frames, rate: 15, params: {{width: 128, height: 96}}}}
  - {{name: episodes, type: testpolicy.episodes, rate: 15}}
  - name: policy
    type: policy.act
    rate: 15
    params: {{checkpoint: "{ckpt}", codec: ee, device: cpu, max_observation_age_s: 0.25}}
    inputs: {{arm_state: arm/state, gripper_state: gripper/state, wrist: wrist_camera/frame,
             front: front_camera/frame, episode: episodes/episode}}
  - name: sink
    type: testpolicy.stamps
    rate: 15
    inputs: {{target: {{source: policy/ee_target, delivery: queue}}}}
"""


def test_policy_acts_only_inside_episodes(checkpoint):
    graph = parse_graph(EPISODE_GRAPH.format(ckpt=checkpoint, freeze=10_000))
    sched = Scheduler(graph, duration_s=2.6)
    result = sched.run()
    assert result.ok, result.error
    (_, start1), (_, end1), (_, start2) = sched.nodes["episodes"].sent
    stamps = np.array(sched.nodes["sink"].stamps["target"])
    period = 1e9 / 15
    assert len(stamps) >= 5
    assert not np.any(stamps < start1)  # nothing before the first start
    # Nothing between an `end` and the next `start` (the policy sees an event at its next tick).
    assert not np.any((stamps > end1 + 1.5 * period) & (stamps < start2)), (stamps - end1) / 1e6
    assert np.any((stamps > start1) & (stamps < end1)) and np.any(stamps > start2)
    rep = sched.reports["policy"]
    assert rep["idle"] >= 10 and len(stamps) <= rep["actions"] <= len(stamps) + 1  # the last may be unread


def test_policy_skips_ticks_on_stale_observations(checkpoint):
    graph = parse_graph(EPISODE_GRAPH.format(ckpt=checkpoint, freeze=30))  # the arm state freezes after 1 s
    sched = Scheduler(graph, duration_s=2.6)
    result = sched.run()
    assert result.ok, result.error
    frozen_at = sched.nodes["arm"].frozen_at
    stamps = np.array(sched.nodes["sink"].stamps["target"])
    # Once the newest arm state is older than max_observation_age_s, the policy emits nothing.
    assert frozen_at is not None and not np.any(stamps > frozen_at + 0.25e9 + 1e9 / 15)
    rep = sched.reports["policy"]
    assert rep["stale_observations"] >= 5
