"""Load a LeRobot checkpoint with its saved pre/post-processors, the way LeRobot's own scripts do, and its codec."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robotflow.codecs import CodecError, CodecMismatchError, checkpoint_codec

from .checkpoints import CheckpointInfo, resolve_checkpoint

log = logging.getLogger("robotflow.policies")


def check_device(device: str) -> None:
    """Refuse a device name torch would not take (a constraint on `device` params and options)."""
    if device not in ("auto", "cpu", "cuda", "mps") and not re.fullmatch(r"cuda:\d+", device):
        raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {device!r}")


def resolve_device(device: str = "auto") -> str:
    """`auto` picks CUDA, then Apple MPS, then CPU; anything else is passed through to torch."""
    import torch  # heavy: imported when a policy is loaded, not when a graph is validated

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available (use device: auto or cpu)")
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@dataclass
class LoadedPolicy:
    """A LeRobot policy ready for inference, with the pipelines that were saved beside it."""

    policy: Any  # lerobot.policies.pretrained.PreTrainedPolicy
    preprocessor: Any  # PolicyProcessorPipeline: batch, device, normalise
    postprocessor: Any  # PolicyProcessorPipeline: unnormalise, to CPU
    path: Path  # the pretrained_model directory
    device: str
    codec_spec: dict[str, Any] | None  # None only with require_codec=False and no codec to be found
    codec_source: str | None = None  # where the spec came from (beside the checkpoint, its dataset, the caller)
    checkpoint: CheckpointInfo | None = None  # what `resolve_checkpoint` found (its step among them)
    shelf_key: tuple | None = None  # set by take_policy: where release_policy shelves it

    @property
    def config(self) -> Any:
        return self.policy.config

    @property
    def policy_type(self) -> str:
        return self.policy.config.type


def load_policy(
    path: str | Path,
    *,
    step: int | str | None = None,
    device: str = "auto",
    codec: str | None = None,
    cameras: Sequence[str] | None = None,
    require_codec: bool = True,
) -> LoadedPolicy:
    """Load a checkpoint of any LeRobot policy type.

    path, step: a run dir, a step dir or a `pretrained_model` dir, or the URL of one, and a step of a run
        (see `resolve_checkpoint`, which does all the resolving).
    codec, cameras: the caller's codec name and camera names (`robotflow.codecs.spec.checkpoint_codec`):
        a checkpoint trained with another codec raises `CodecMismatchError` before any weights are read,
        and a checkpoint without a stored codec (plain `lerobot-train`) runs with the named one.
    require_codec: when False, a checkpoint whose codec cannot be found loads with `codec_spec=None`.
    """
    # Heavy: torch and LeRobot are imported when a checkpoint is loaded, not when a graph is validated.
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    found_ckpt = resolve_checkpoint(path, step)
    model_dir = found_ckpt.path
    spec, source = None, None
    try:
        found = checkpoint_codec(model_dir, codec, cameras=cameras)
        spec, source = found.spec, found.source
    except CodecMismatchError:
        raise
    except CodecError:
        if require_codec:
            raise

    dev = resolve_device(device)
    cfg = PreTrainedConfig.from_pretrained(model_dir)
    cfg.device = dev
    # The checkpoint holds the trained backbone; asking torchvision for ImageNet weights first would only
    # download (and, offline, fail on) weights that load_state_dict overwrites a moment later.
    if getattr(cfg, "pretrained_backbone_weights", None) is not None:
        cfg.pretrained_backbone_weights = None
    policy = get_policy_class(cfg.type).from_pretrained(model_dir, config=cfg)
    policy.eval()
    # Same overrides as lerobot_record / the async policy server: the saved device may be the training GPU.
    preprocessor, postprocessor = make_pre_post_processors(
        policy_cfg=cfg,
        pretrained_path=str(model_dir),
        preprocessor_overrides={"device_processor": {"device": dev}},
        postprocessor_overrides={"device_processor": {"device": "cpu"}},
    )
    log.info("loaded %s policy from %s on %s", cfg.type, model_dir, dev)
    return LoadedPolicy(policy, preprocessor, postprocessor, model_dir, dev, spec, source, found_ckpt)


# Evaluation workers run one seeded episode graph after another in the same process (robotflow.evaluation).
# Loading the policy for each one (LeRobot's config parsing, the model's construction and its weights: about
# 1.5 s of a vision episode here) repeats the same work. A process that keeps loaded policies puts each one a
# node releases on this shelf and hands it to the next node that loads the same checkpoint. A policy is on
# the shelf or in one node, never in two: ACT's action queue is per policy.
_shelf: dict[tuple, list[LoadedPolicy]] | None = None


def keep_loaded_policies(keep: bool = True) -> None:
    """Keep (or stop keeping, emptying the shelf) released policies in this process for later loads."""
    global _shelf
    _shelf = {} if keep else None


def take_policy(
    path: str | Path,
    *,
    step: int | str | None = None,
    device: str = "auto",
    codec: str | None = None,
    cameras: Sequence[str] | None = None,
) -> LoadedPolicy:
    """`load_policy`, or a policy of the same checkpoint released earlier in this process when policies are
    kept (`keep_loaded_policies`), reset for a new episode. Give it back with `release_policy`."""
    key = (str(path), str(step), device, codec, tuple(cameras or ()))
    kept = _shelf.get(key) if _shelf is not None else None
    if kept:
        loaded = kept.pop()
        loaded.policy.reset()
    else:
        loaded = load_policy(path, step=step, device=device, codec=codec, cameras=cameras)
    loaded.shelf_key = key
    return loaded


def release_policy(loaded: LoadedPolicy) -> None:
    """A node is done with `loaded`: shelve it when this process keeps policies (else it is simply dropped)."""
    if _shelf is not None and loaded.shelf_key is not None:
        _shelf.setdefault(loaded.shelf_key, []).append(loaded)
