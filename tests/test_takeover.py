"""Take-over: a scripted operator takes the arm from a running ACT policy mid-episode and hands it back.

The graph is the real one (MuJoCo sim, policy.act with an ACT checkpoint, teleop.scripted, control.arbiter,
the recorder); the policy is a "hover" ACT whose action statistics pin its output to the arm's home pose, so
whatever moves the arm away from home is the operator's doing and the hand-back brings it home again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lerobot")

import torch
from click.testing import CliRunner
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.factory import make_pre_post_processors
from safetensors.torch import load_file

from robotflow.codecs import get_codec, write_checkpoint_spec
from robotflow.codecs.conversion import ConvertJob, convert_episodes
from robotflow.drivers.sim.world import SimWorld
from robotflow.policies.checkpoints import resolve_checkpoint
from robotflow.recording.graph_transform import with_recorder
from robotflow.recording.reader import EpisodeFile
from robotflow.recording.summary import summarize_episodes
from robotflow.runtime.graph import load_graph, parse_graph
from robotflow.runtime.scheduler import Scheduler
from robotflow.scripts.train import train_command

TAKEOVER_AT_S, TAKEOVER_FOR_S = 1.5, 2.5
HANDOVER_STEP_M = 0.01

GRAPH = """
nodes:
  - {{name: world, type: sim.world, rate: 500, params: {{task: pick_place, timestep: 0.002}}}}
  - name: arm
    type: sim.arm
    rate: 100
    inputs: {{ee_target: arbiter/ee_target}}
  - name: gripper
    type: sim.gripper
    rate: 100
    inputs: {{target: arbiter/grip}}
  - name: task
    type: sim.task
    rate: 50
    params: {{task: pick_place, seed: 1000, episodes: 1, timeout_s: 8.0}}
  - name: policy
    type: policy.act
    rate: 15
    params: {{checkpoint: "{ckpt}", codec: ee_objects}}
    inputs: {{arm_state: arm/state, gripper_state: gripper/state, objects: task/objects, episode: task/episode,
              control: arbiter/control}}
  - name: operator
    type: teleop.scripted
    rate: 50
    params: {{drive: window, takeover_at_s: {at}, takeover_for_s: {for_s}}}
    inputs: {{state: arm/state, objects: task/objects, episode: task/episode, control: arbiter/control}}
  - name: arbiter
    type: control.arbiter
    rate: 100
    params: {{handover_step_m: {step}}}
    inputs:
      policy_ee: policy/ee_target
      policy_grip: policy/grip
      human_ee: operator/ee_target
      human_grip: operator/grip
      takeover: operator/takeover
      episode: task/episode
"""


def hover_checkpoint(model_dir: Path) -> Path:
    """An ACT checkpoint (codec ee_objects, pick_place) whose actions are the arm's home pose, gripper open:
    random weights, with action statistics of that mean and a negligible spread."""
    world = SimWorld("pick_place")
    world.reset_robot()
    world.forward()
    home = np.concatenate([world.ee_pose(), [1.0]])
    codec = get_codec("ee_objects").with_objects([o.name for o in world.objects])
    feats = codec.features()
    state_dim, env_dim = feats["observation.state"]["shape"][0], feats["observation.environment_state"]["shape"][0]
    cfg = ACTConfig(
        input_features={
            "observation.state": PolicyFeature(FeatureType.STATE, (state_dim,)),
            "observation.environment_state": PolicyFeature(FeatureType.ENV, (env_dim,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (8,))},
        dim_model=32,
        n_heads=2,
        dim_feedforward=64,
        n_encoder_layers=1,
        n_decoder_layers=1,
        n_vae_encoder_layers=1,
        chunk_size=10,
        n_action_steps=10,
        device="cpu",
    )
    torch.manual_seed(0)
    stats = {
        "observation.state": {"mean": torch.zeros(state_dim), "std": torch.ones(state_dim)},
        "observation.environment_state": {"mean": torch.zeros(env_dim), "std": torch.ones(env_dim)},
        "action": {"mean": torch.tensor(home, dtype=torch.float32), "std": torch.full((8,), 1e-6)},
    }
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    ACTPolicy(cfg).save_pretrained(model_dir)
    pre.save_pretrained(model_dir)
    post.save_pretrained(model_dir)
    write_checkpoint_spec(model_dir, codec.spec())
    return model_dir


@pytest.fixture(scope="module")
def takeover_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("takeover")
    ckpt = hover_checkpoint(root / "pretrained_model")
    text = GRAPH.format(ckpt=ckpt, at=TAKEOVER_AT_S, for_s=TAKEOVER_FOR_S, step=HANDOVER_STEP_M)
    spec, _ = with_recorder(parse_graph(text), {"output_dir": str(root / "episodes"), "progress": False})
    sched = Scheduler(spec)
    result = sched.run()
    assert result.ok, result.error
    files = sorted((root / "episodes").glob("episode_*.h5"))
    assert len(files) == 1
    return sched.reports, files[0]


def test_operator_takes_over_and_hands_back_without_a_jump(takeover_run):
    reports, path = takeover_run
    with EpisodeFile(path) as ep:
        control_t = ep.timestamps("arbiter/control")
        source = np.asarray([str(s) for s in ep.field("arbiter/control", "source")])
        forwarded_t = ep.timestamps("arbiter/ee_target")
        forwarded = ep.field("arbiter/ee_target", "ee_pose")
        start_ns = int(ep.attr("start_timestamp_ns"))
    human = source == "human"
    # One contiguous segment under the operator, where the operator's window put it.
    edges = np.flatnonzero(np.diff(human.astype(int)))
    assert len(edges) == 2, f"expected one take-over and one hand-back, got switches at {edges}"
    took, gave = (control_t[edges + 1] - start_ns) * 1e-9
    assert took == pytest.approx(TAKEOVER_AT_S, abs=0.1)
    assert gave - took == pytest.approx(TAKEOVER_FOR_S, abs=0.1)
    # The operator moved the arm (toward the cube) and the policy brought it back home afterwards.
    during = forwarded[(forwarded_t > control_t[edges[0] + 1]) & (forwarded_t < control_t[edges[1]])]
    assert np.linalg.norm(during[-1, :3] - forwarded[0, :3]) > 0.05
    assert np.linalg.norm(forwarded[-1, :3] - forwarded[0, :3]) < 0.01
    # No jump: across each switch, the forwarded EE targets move at most the hand-over step per command.
    for edge in edges:
        t_switch = control_t[edge + 1]
        i = int(np.searchsorted(forwarded_t, t_switch))
        window = forwarded[max(i - 3, 0) : i + 15, :3]
        steps = np.linalg.norm(np.diff(window, axis=0), axis=1)
        assert steps.max() <= max(HANDOVER_STEP_M, 0.006) + 1e-9, steps.round(4)


def test_takeover_is_counted_and_the_safety_layer_saw_nothing_unusual(takeover_run):
    reports, path = takeover_run
    assert reports["arbiter"]["interventions"] == 1 and reports["arbiter"]["handbacks"] == 1
    assert reports["policy"]["handbacks"] == 1  # the policy dropped its queued chunk on the hand-back
    assert reports["operator"]["takeovers"] == 1
    safety = reports["arm"]["safety"]
    assert safety["rejected"] == 0 and safety["timeouts"] == 0 and safety["clamped"] == 0, safety
    assert safety["step_limited"] == 0, safety  # the arbiter's hand-over ramp kept every step small
    with EpisodeFile(path) as ep:
        last = ep.field("arbiter/control", "human_s")[-1]
        interventions = ep.field("arbiter/control", "interventions")[-1]
    assert interventions == 1 and float(last) == pytest.approx(TAKEOVER_FOR_S, abs=0.1)


def test_info_counts_the_intervention(takeover_run):
    _, path = takeover_run
    summary = summarize_episodes(path.parent)
    (row,) = summary["episodes"]
    assert row["interventions"] == 1
    assert row["human_s"] == pytest.approx(TAKEOVER_FOR_S, abs=0.1)


def test_interventions_convert_and_fine_tune_the_policy(takeover_run, tmp_path):
    """`convert --interventions` makes one dataset episode of the take-over with its lead-in, and `train
    --init-from` starts from the checkpoint's weights (a run from scratch would not be near them)."""
    _, path = takeover_run
    summary = convert_episodes(
        ConvertJob(
            input_path=str(path.parent),
            output_dir=str(tmp_path / "corrections"),
            codec="ee_objects",
            interventions=True,
            lead_in_s=1.0,
            progress=False,
        )
    )
    assert summary.episodes == 1
    assert summary.frames == pytest.approx((TAKEOVER_FOR_S + 1.0) * 15, abs=2)
    ckpt = path.parent.parent / "pretrained_model"
    args = ["--dataset-root", str(tmp_path / "corrections"), "--run-name", "tuned", "--output-dir", str(tmp_path)]
    args += ["--steps", "2", "--batch-size", "2", "--num-workers", "0", "--device", "cpu", "--init-from", str(ckpt)]
    result = CliRunner().invoke(train_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    tuned = load_file(resolve_checkpoint(tmp_path / "tuned").path / "model.safetensors")
    start = load_file(ckpt / "model.safetensors")
    assert tuned.keys() == start.keys()
    drift = max(float((tuned[k].float() - start[k].float()).abs().max()) for k in start)
    assert drift < 1e-3, drift  # two AdamW steps at the checkpoint's 1e-5 learning rate
    args[args.index("tuned")] = "again"
    refused = CliRunner().invoke(train_command, [*args[:-1], str(tmp_path / "nowhere")])
    assert refused.exit_code != 0 and "--init-from" in refused.output and "Traceback" not in refused.output


def test_hardware_takeover_graph_keeps_the_policy_graphs_arm_and_policy():
    """The Franka take-over graph changes only who commands the arm: the arm's params (safety layer included),
    the gripper and the policy are the policy graph's, and the arm and gripper listen to the arbiter alone."""
    root = Path(__file__).resolve().parents[1] / "graphs"
    hw, takeover = (
        load_graph(root / "franka_stack_cubes_policy.yaml"),
        load_graph(root / "franka_stack_cubes_policy_takeover.yaml"),
    )
    assert takeover.node("arm").params == hw.node("arm").params
    assert takeover.node("gripper").params == hw.node("gripper").params
    assert takeover.node("policy").params == hw.node("policy").params
    assert takeover.node("arm").inputs["ee_target"].source == "arbiter/ee_target"
    assert takeover.node("gripper").inputs["target"].source == "arbiter/grip"
    assert takeover.node("policy").inputs["control"].source == "arbiter/control"
    assert takeover.node("teleop").inputs["control"].source == "arbiter/control"
