"""Policy nodes: `policy.act` (asynchronous chunk execution) and `policy.lerobot` (any LeRobot policy).

Both read the codec's channels with `latest` delivery, encode them with the codec the checkpoint was
trained with, take one action per tick and emit `ee_target` {ee_pose} and `grip` {width}
(docs/contracts.md). Ports:

    arm_state       <- arm/state             (required)
    gripper_state   <- gripper/state         (required)
    <camera>        <- <camera node>/frame   one per camera in params.cameras (default: the codec's, `wrist`, `front`)
    objects         <- task/objects          (required by the privileged `*_objects` codecs: simulation only)
    episode         <- task/episode          (optional, queue) resets the policy on `start`, gives the task text;
                                             when connected, the node acts only between `start` and `end`

Every tick the node checks the age of each input it encodes: one older than `max_observation_age_s` (a
stalled camera, a frozen arm state) makes it skip the tick instead of acting on the past; the arm's
command watchdog (robotflow/safety.py) then holds the arm if that lasts. That gating, and acting only
inside an episode, is `robotflow.policies.base.PolicyNode`'s, shared with `policy.remote`.

The ports come from the graph alone (`codec` and `cameras`): validating a graph reads no checkpoint. The
channel names are the graph's `inputs:`, so a graph whose nodes are named `robot`, `hand`, `cam_top` wires
`arm_state: robot/state` and needs nothing else. At setup the checkpoint's codec
(`robotflow.codecs.spec.checkpoint_codec`: stored beside it, found through its `train_config.json`, or the
graph's `codec` for a plain `lerobot-train` checkpoint) must have the graph's codec name and cameras, else
setup fails with one line; the node then encodes with that codec, so image size and features are exactly
what the policy was trained on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from robotflow.codecs import LAYOUTS, CodecError, canonical_name, codec_from_spec, get_codec
from robotflow.codecs.spec import CHECKPOINT_SPEC_FILE
from robotflow.runtime.channels import Message
from robotflow.runtime.node import Input
from robotflow.runtime.params import in_range, non_negative, positive

from .base import PolicyNode
from .loading import LoadedPolicy, check_device, release_policy, take_policy

log = logging.getLogger("robotflow.policies")

# Ports the node always has; a camera may not take one of these names.
_FIXED_PORTS = ("arm_state", "gripper_state", "objects", "episode")


@dataclass
class LeRobotNodeParams:
    """Params of `policy.lerobot`.

    checkpoint: a run dir (`<output-dir>/<run-name>`), a step dir, or a `pretrained_model` dir, or the
        URL of one (`s3://...`, any fsspec: only the checkpoint used is downloaded).
    codec: the graph's codec name (`ee`, `eepose_absolute`, ...); must match the checkpoint's.
    cameras: camera names, one input port each; must be the checkpoint's (None: the codec's defaults).
    checkpoint_step: with a run dir, which step (None: the newest).
    device: `auto` (CUDA when available, else CPU), `cpu`, `cuda`, `cuda:1`, `mps`.
    warmup: run one forward pass in setup so the first tick does not pay for kernel selection.
    """

    checkpoint: str
    codec: str = field(metadata={"check": canonical_name})
    cameras: list[str] | None = None
    checkpoint_step: int | None = non_negative(None)
    device: str = field(default="auto", metadata={"check": check_device})
    warmup: bool = True
    max_observation_age_s: float = positive(0.25)  # skip the tick when any input is older than this (runtime clock)

    def __post_init__(self) -> None:
        self.codec = canonical_name(self.codec)  # an alias -> its codec (an unknown name fails the field check)
        for cam in self.cameras or ():
            if cam in _FIXED_PORTS or not cam.replace("_", "").isalnum():
                raise CodecError(f"camera name {cam!r} must be alphanumeric/underscore and not one of {_FIXED_PORTS}")

    def camera_names(self) -> list[str]:
        if self.cameras is not None:
            return list(self.cameras)
        return list(get_codec(self.codec).params.cameras)


@dataclass
class ACTNodeParams(LeRobotNodeParams):
    """Params of `policy.act` (see ChunkExecutorConfig for the execution options).

    n_action_steps: actions used per chunk (None: the checkpoint's).
    temporal_ensemble_coeff: None: the checkpoint's setting (usually off); a float turns ACT's temporal
        ensembling on (n_action_steps must then be None or 1).
    refill_at: queue level that requests the next chunk (None: the measured chunk latency in periods).
    async_inference: None = on with a wall clock, off on a virtual clock (in lock-step simulation a
        synchronous forward pass costs no simulated time, and the run stays deterministic).
    inference_threads: torch threads of the inference worker (None: all cores but one).
    """

    n_action_steps: int | None = in_range(1, None, None)
    temporal_ensemble_coeff: float | None = None
    refill_at: int | None = non_negative(None)
    async_inference: bool | None = None
    inference_threads: int | None = in_range(1, None, None)


class _PolicyNode(PolicyNode):
    Params = LeRobotNodeParams

    @classmethod
    def declare_inputs(cls, params: LeRobotNodeParams) -> dict[str, Input]:
        inputs = {"arm_state": Input(), "gripper_state": Input()}
        for cam in params.camera_names():
            inputs[cam] = Input()
        if LAYOUTS[params.codec].objects:
            # Required: a graph without the simulated task's object poses is refused when it is loaded.
            inputs["objects"] = Input()
        inputs.update(PolicyNode.GATING_INPUTS)
        return inputs

    def _make_runner(self, loaded: LoadedPolicy) -> Any:
        raise NotImplementedError

    def setup(self) -> None:
        p = self.params
        if not p.checkpoint:
            raise ValueError(
                f"{self.name}: set params.checkpoint to a run dir or pretrained_model dir, or the URL of one "
                "(robotflow rollout sets it from --checkpoints-dir)"
            )
        # load_policy resolves the checkpoint (a local path or a URL); the codec is checked against the
        # graph's before torch reads any weights.
        self.loaded = take_policy(
            p.checkpoint, step=p.checkpoint_step, device=p.device, codec=p.codec, cameras=p.camera_names()
        )
        self.codec = codec_from_spec(self.loaded.codec_spec)
        self.log("codec %s from %s", self.codec.name, self.loaded.codec_source)
        self.codec.reset()
        # encode_live reads channels by the codec's names (those of the recording it was trained on); the
        # graph's wiring of each port may differ, so messages are keyed by the codec's names here.
        ch = self.codec.params.channels
        self._channels = {
            "arm_state": ch.arm_state,
            "gripper_state": ch.gripper_state,
            **{cam: channel for cam, channel in self.codec.params.cameras.items()},
        }
        if self.codec.layout.objects:
            self._channels["objects"] = ch.objects
        self.runner = self._make_runner(self.loaded)
        self.start_gating(self._channels, p.max_observation_age_s, {"actions": 0, "no_action": 0})
        if p.warmup:
            self.log("warm-up forward pass took %.0f ms", 1e3 * self.runner.warmup())

    def on_episode_start(self) -> None:
        self.runner.reset()
        self.codec.reset()

    def on_episode_end(self) -> None:
        self.runner.reset()  # a chunk in flight belongs to the episode that ended

    def on_handback(self) -> None:
        self.runner.reset()  # the queued chunk was planned before the operator moved the arm

    def act(self, latest: dict[str, Message], now_ns: int, observed_ns: int) -> None:
        by_channel = {self._channels[port]: msg for port, msg in latest.items()}
        if self.episode_msg is not None:
            by_channel[self.codec.params.channels.task] = self.episode_msg
        obs = self.codec.encode_live(by_channel)
        live_task = getattr(self.codec, "live_task", None)
        task = live_task(by_channel) if live_task is not None else None
        if task:
            obs["task"] = task  # ACT ignores it; language-conditioned policies read it
        action = self.runner.step(obs, now_ns, observed_ns)
        if action is None:  # no chunk covers now yet (first chunk of an episode): do not act
            self.counts["no_action"] += 1
            return
        self.counts["actions"] += 1
        cmd = self.codec.decode(action)
        self.emit("ee_target", ee_pose=cmd["ee_pose"])
        self.emit("grip", width=cmd["width"])

    def report(self) -> dict | None:
        counts = getattr(self, "counts", None)
        if counts is None:
            return None
        stats = getattr(self.runner, "stats", None)
        return {**counts, **(stats.as_dict() if stats is not None else {})}

    def teardown(self) -> None:
        runner = getattr(self, "runner", None)
        if runner is not None:
            idle = runner.close()
            stats = getattr(runner, "stats", None)
            if stats is not None:
                self.log("policy stats: %s", stats.as_dict())
            if idle:  # a policy still inside a forward pass is never handed to another node
                release_policy(self.loaded)


class ACTNode(_PolicyNode):
    """ACT with asynchronous chunk execution: ticks pop precomputed actions; chunks are inferred ahead."""

    Params = ACTNodeParams

    def _make_runner(self, loaded: LoadedPolicy) -> Any:
        from .chunking import ChunkExecutor, ChunkExecutorConfig  # heavy: torch

        p: ACTNodeParams = self.params
        if loaded.policy_type != "act":
            raise ValueError(
                f"policy.act needs an ACT checkpoint, {loaded.path} is {loaded.policy_type!r} (use policy.lerobot)"
            )
        coeff = (
            p.temporal_ensemble_coeff
            if p.temporal_ensemble_coeff is not None
            else loaded.config.temporal_ensemble_coeff
        )
        if self.codec.layout.relative and not (loaded.codec_source or "").startswith(CHECKPOINT_SPEC_FILE):
            # Only `robotflow train` makes the chunks relative; plain lerobot-train learns absolute targets from
            # the same dataset, and adding the EE position to those would send the arm twice as far.
            raise ValueError(
                f"{self.name}: {loaded.path} was not trained by `robotflow train` (no {CHECKPOINT_SPEC_FILE} beside "
                f"it), and codec '{self.codec.name}' needs the relative action chunks only it trains"
            )
        use_async = p.async_inference
        if use_async is None:
            use_async = getattr(self._clock, "kind", "wall") != "virtual"
        cfg = ChunkExecutorConfig(
            n_action_steps=p.n_action_steps,
            temporal_ensemble_coeff=coeff,
            refill_at=p.refill_at,
            async_inference=use_async,
            inference_threads=p.inference_threads,
            fps=float(self.codec.params.fps),  # the dataset's: action i of a chunk is for start + i / fps
            relative_positions=self.codec.layout.relative,
        )
        return ChunkExecutor(loaded.policy, loaded.preprocessor, loaded.postprocessor, cfg, device=loaded.device)


class LeRobotNode(_PolicyNode):
    """Any LeRobot policy type (act, diffusion, ...) through its own synchronous `select_action`."""

    Params = LeRobotNodeParams

    def _make_runner(self, loaded: LoadedPolicy) -> Any:
        from .sync_runner import SyncPolicyRunner  # heavy: torch, lerobot

        if self.codec.layout.relative:
            # select_action hands out one action at a time from LeRobot's own queue, which does not say which
            # observation its chunk came from, so there is no position to add the offsets to.
            raise ValueError(f"{self.name}: codec '{self.codec.name}' predicts relative chunks; run it with policy.act")
        return SyncPolicyRunner(loaded.policy, loaded.preprocessor, loaded.postprocessor, device=loaded.device)


__all__ = ["ACTNodeParams", "LeRobotNodeParams"]
