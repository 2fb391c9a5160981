"""The `TrainPipelineConfig` LeRobot's loop runs: dataset, policy, optimizer schedule and W&B from `TrainOptions`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from robotflow.codecs import video_backend
from robotflow.codecs.codec import CodecError
from robotflow.codecs.spec import check_same_codec, checkpoint_codec, load_dataset_codec
from robotflow.policies.checkpoints import (
    CHECKPOINTS_DIR,
    LAST_CHECKPOINT_LINK,
    PRETRAINED_MODEL_DIR,
    CheckpointError,
    resolve_checkpoint,
)
from robotflow.policies.loading import resolve_device
from robotflow.training.errors import TrainError, warn
from robotflow.training.launch import rank
from robotflow.training.options import TrainOptions

log = logging.getLogger("robotflow.train")


def dataset_repo_id(root: Path) -> str:
    """The dataset's repo_id: from info.json when it records one, else `local/<dir name>`.

    LeRobot only uses it as a name when `root` is given; it never reaches the Hub here.
    """
    info = json.loads((root / "meta" / "info.json").read_text())
    rid = info.get("repo_id")
    return str(rid) if rid else f"local/{root.name}"


def imagenet_weights_loadable(weights_name: str, timeout_s: float = 10.0) -> tuple[bool, str]:
    """Whether torchvision can provide `weights_name` (cached, or downloadable right now).

    Returns (ok, reason). Downloads into torch's hub cache when the network allows it, so LeRobot's own
    constructor then finds the file locally.
    """
    import torch  # torch/torchvision: imported only to train
    import torchvision

    try:
        weights = torchvision.models.get_weight(weights_name)
    except (ValueError, KeyError) as e:
        return False, f"unknown torchvision weights {weights_name!r}: {e}"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if cached.is_file():
        return True, f"cached at {cached}"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # torch.hub's urlopen has no timeout of its own
    try:
        weights.get_state_dict(progress=False)
        return True, "downloaded"
    except Exception as e:  # noqa: BLE001 - any failure means "not loadable"; the reason is reported
        return False, f"{type(e).__name__}: {e}".splitlines()[0]
    finally:
        socket.setdefaulttimeout(old)


def policy_config(opts: TrainOptions, device: str) -> Any:
    """LeRobot's config of `opts.policy`, with robotflow's sizes and offline-friendly backbone weights."""
    from lerobot.policies.factory import make_policy_config  # torch/lerobot: imported only to train

    kwargs: dict[str, Any] = {"device": device, "push_to_hub": False, **opts.policy_args}
    for name in ("dim_model", "chunk_size", "n_action_steps"):
        value = getattr(opts, name)
        if value is not None:
            kwargs[name] = value
    if opts.chunk_size is not None and opts.n_action_steps is None and opts.policy == "act":
        kwargs["n_action_steps"] = min(opts.chunk_size, 100)
    try:
        cfg = make_policy_config(opts.policy, **kwargs)
    except TypeError as e:
        raise TrainError(f"policy {opts.policy!r} does not take one of {sorted(kwargs)}: {e}") from None
    except ValueError as e:
        raise TrainError(f"policy {opts.policy!r}: {e}") from None
    if hasattr(cfg, "pretrained_backbone_weights") and cfg.pretrained_backbone_weights:
        cfg.pretrained_backbone_weights = _backbone_weights(cfg.pretrained_backbone_weights, opts.pretrained_backbone)
    return cfg


def _backbone_weights(weights: str, wanted: bool) -> str | None:
    """`weights` when asked for and loadable; else None (a randomly initialised backbone), with a warning."""
    if not wanted:
        return None
    ok, why = imagenet_weights_loadable(weights)
    if ok:
        log.info("backbone starts from %s (%s)", weights, why)
        return weights
    warn(
        f"ImageNet weights {weights} cannot be loaded ({why}); training from a randomly initialised backbone. "
        "Pass --no-pretrained-backbone to choose this explicitly."
    )
    return None


def wandb_config(opts: TrainOptions, wandb_config_cls: type) -> Any:
    """W&B through LeRobot's own logger: on with --wandb or an API key; offline when there is no key."""
    enable = opts.wandb or bool(os.environ.get("WANDB_API_KEY"))
    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    if opts.wandb and mode == "offline" and rank() == 0:
        print("W&B: no WANDB_API_KEY, logging offline (upload later with `wandb sync`)", file=sys.stderr, flush=True)
    return wandb_config_cls(enable=enable, project="robotflow", mode=mode)


def _resumed_config(opts: TrainOptions, root: Path, run_dir: Path, wandb: Any) -> tuple[Any, list[str]]:
    """The saved config of the run being resumed, pointed at this run's steps, dataset and W&B."""
    from lerobot.configs.train import TrainPipelineConfig  # torch/lerobot: imported only to train

    cfg_file = run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK / PRETRAINED_MODEL_DIR / "train_config.json"
    if not cfg_file.is_file():
        raise TrainError(f"cannot resume {run_dir}: no {cfg_file.relative_to(run_dir.parent)}")
    cfg = TrainPipelineConfig.from_pretrained(cfg_file)
    cfg.resume = True
    cfg.steps = opts.steps
    cfg.save_freq = opts.save_freq
    if getattr(cfg.scheduler, "type", None) == "cosine_decay_with_warmup":
        cfg.scheduler.num_decay_steps = opts.steps  # a longer --steps stretches the decay to the new end
    cfg.output_dir = run_dir
    cfg.dataset.root = str(root)  # the dataset may have moved since
    cfg.wandb.enable, cfg.wandb.mode = wandb.enable, wandb.mode
    if hasattr(cfg.policy, "pretrained_backbone_weights"):
        cfg.policy.pretrained_backbone_weights = None  # the checkpoint holds the trained backbone
    return cfg, [f"--config_path={cfg_file}"]


def _never_saved(run_dir: Path) -> bool:
    """A run dir that a killed run left before its first checkpoint was whole: LeRobot points `last` at a
    checkpoint once it is saved, so without `last` there is at most the first one, half-written."""
    checkpoints = run_dir / CHECKPOINTS_DIR
    steps = [p for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.is_dir() else []
    return run_dir.is_dir() and not (checkpoints / LAST_CHECKPOINT_LINK).exists() and len(steps) <= 1


def build_train_config(opts: TrainOptions) -> tuple[Any, list[str]]:
    """The `TrainPipelineConfig` for a new run, or the saved one of the run being resumed, and the argv
    LeRobot's `validate()` must see (`robotflow.training.lerobot_patches.lerobot_argv`)."""
    from lerobot.configs.default import DatasetConfig, WandBConfig  # torch/lerobot: imported only to train
    from lerobot.configs.train import TrainPipelineConfig

    root = Path(opts.dataset_root).expanduser().resolve()
    if not (root / "meta" / "info.json").is_file():
        raise TrainError(f"{root} is not a LeRobot dataset (no meta/info.json); create one with `robotflow convert`")
    run_dir = opts.run_dir.resolve()
    wandb = wandb_config(opts, WandBConfig)
    if opts.resume and _never_saved(run_dir):
        # Stopped before its first checkpoint was whole: nothing to continue from, nothing worth keeping.
        warn(f"{run_dir} has no checkpoint yet (stopped before its first save): starting it from step 0")
        if rank() == 0:
            shutil.rmtree(run_dir)
    elif opts.resume:
        return _resumed_config(opts, root, run_dir, wandb)
    if run_dir.exists() and rank() == 0:  # other ranks start after rank 0 may have created it
        raise TrainError(f"run directory {run_dir} already exists: pass --resume to continue it, or another --run-name")
    cfg = TrainPipelineConfig(
        # torchcodec (LeRobot's default) when FFmpeg's libraries load, else pyav with a warning.
        dataset=DatasetConfig(repo_id=dataset_repo_id(root), root=str(root), video_backend=video_backend()),
        policy=policy_config(opts, resolve_device(opts.device)),
        output_dir=run_dir,
        job_name=opts.run_name,
        steps=opts.steps,
        save_freq=opts.save_freq,
        batch_size=opts.batch_size,
        num_workers=opts.num_workers,
        log_freq=opts.log_freq,
        seed=opts.seed,
        eval_freq=0,  # no simulated env inside LeRobot: robotflow evaluates with `rollout`
        wandb=wandb,
    )
    argv: list[str] = []
    if opts.init_from:
        cfg.policy, argv = _initial_policy(opts, resolve_device(opts.device), root)
    _apply_lr_schedule(cfg, opts)
    return cfg, argv


def _initial_policy(opts: TrainOptions, device: str, dataset_root: Path) -> tuple[Any, list[str]]:
    """The config of the checkpoint a fine-tuning run starts from, and the argv that makes LeRobot load its
    weights (`--policy.path`: validate() re-reads it; the processors then take this dataset's statistics).
    The checkpoint's codec must be the dataset's: the same features in the same order."""
    from lerobot.configs.policies import PreTrainedConfig  # torch/lerobot: imported only to train

    fixed = [f"--{n.replace('_', '-')}" for n in ("dim_model", "chunk_size") if getattr(opts, n) is not None]
    if fixed or opts.policy_args:
        raise TrainError(
            f"--init-from takes the architecture from the checkpoint: drop {', '.join(fixed) or '--policy-arg'}"
        )
    try:
        model_dir = resolve_checkpoint(opts.init_from).path
    except CheckpointError as e:
        raise TrainError(f"--init-from: {e}") from None
    try:
        check_same_codec(
            checkpoint_codec(model_dir).spec,
            load_dataset_codec(dataset_root).spec(),
            have_what=f"--init-from {opts.init_from}",
            want_what=f"dataset {dataset_root}",
        )
    except CodecError as e:
        raise TrainError(str(e)) from None
    cfg = PreTrainedConfig.from_pretrained(model_dir)
    if cfg.type != opts.policy:
        raise TrainError(f"--init-from {opts.init_from} is a {cfg.type!r} policy, not --policy {opts.policy!r}")
    # validate() rebuilds the config from --policy.path and the --policy.* overrides after it.
    overrides: dict[str, Any] = {"device": device, "push_to_hub": False}
    if opts.n_action_steps is not None:
        overrides["n_action_steps"] = opts.n_action_steps
    if getattr(cfg, "pretrained_backbone_weights", None):
        overrides["pretrained_backbone_weights"] = None  # the checkpoint holds the trained backbone
    for key, value in overrides.items():
        setattr(cfg, key, value)
    log.info("fine-tuning from %s", model_dir)
    return cfg, [f"--policy.path={model_dir}", *(f"--policy.{k}={_cli_value(v)}" for k, v in overrides.items())]


def _cli_value(value: Any) -> str:
    """A value as draccus parses it from a command line: strings bare, the rest as JSON (false, null, 10)."""
    return value if isinstance(value, str) else json.dumps(value)


def _apply_lr_schedule(cfg: Any, opts: TrainOptions) -> None:
    if opts.lr_schedule == "constant":
        return
    if opts.lr_schedule != "cosine":
        raise TrainError(f"unknown --lr-schedule {opts.lr_schedule!r}: use constant or cosine")
    from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig  # torch/lerobot: only to train

    # LeRobot takes optimizer and scheduler together or not at all: keep the policy's optimizer preset
    # (its learning rate, weight decay and backbone group), and decay that rate.
    cfg.use_policy_training_preset = False
    cfg.optimizer = cfg.policy.get_optimizer_preset()
    cfg.scheduler = CosineDecayWithWarmupSchedulerConfig(
        num_warmup_steps=max(1, opts.steps // 50),
        num_decay_steps=opts.steps,
        peak_lr=cfg.optimizer.lr,
        decay_lr=cfg.optimizer.lr * 0.01,
    )
