"""`robotflow train`: LeRobot's own training loop on a robotflow-converted dataset.

Nothing here trains: the command builds a `TrainPipelineConfig` and calls
`lerobot.scripts.lerobot_train.train`, so optimiser presets, checkpoint format, resume and W&B logging
are LeRobot's. What robotflow adds is the run layout, the codec spec beside every checkpoint, and
offline-friendly defaults (no Hub push, ImageNet weights only when they can be loaded).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from robotflow.policies.checkpoints import (
    CHECKPOINTS_DIR,
    LAST_CHECKPOINT_LINK,
    PRETRAINED_MODEL_DIR,
    list_checkpoints,
    read_codec_spec,
    read_dataset_codec_spec,
    write_codec_spec,
)

log = logging.getLogger("robotflow.train")


class TrainError(click.ClickException):
    """A training setup problem, reported as one line."""


@dataclass
class TrainOptions:
    """Everything `robotflow train` takes; `train_policy(opts)` is the function behind the command."""

    dataset_root: Path
    run_name: str
    output_dir: Path
    steps: int = 100_000
    save_freq: int = 10_000
    batch_size: int = 8
    resume: bool = False
    policy: str = "act"
    device: str = "auto"
    pretrained_backbone: bool = True
    dim_model: int | None = None
    chunk_size: int | None = None
    n_action_steps: int | None = None
    num_workers: int = 2
    log_freq: int = 100
    seed: int = 1000
    policy_args: dict[str, Any] = field(default_factory=dict)  # more policy config fields, by name

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser() / self.run_name


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
    import torch
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


def _policy_config(opts: TrainOptions, device: str):
    from lerobot.policies.factory import make_policy_config

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
        if not opts.pretrained_backbone:
            cfg.pretrained_backbone_weights = None
        else:
            ok, why = imagenet_weights_loadable(cfg.pretrained_backbone_weights)
            if ok:
                log.info("backbone starts from %s (%s)", cfg.pretrained_backbone_weights, why)
            else:
                click.echo(
                    f"warning: ImageNet weights {cfg.pretrained_backbone_weights} cannot be loaded ({why}); "
                    "training from a randomly initialised backbone. Pass --no-pretrained-backbone to "
                    "choose this explicitly.",
                    err=True,
                )
                cfg.pretrained_backbone_weights = None
    return cfg


@contextlib.contextmanager
def _codec_beside_checkpoints(spec: dict[str, Any] | None) -> Iterator[None]:
    """Write the codec spec into each checkpoint's pretrained_model dir as LeRobot saves it.

    LeRobot's loop calls the module-level `save_checkpoint` of lerobot_train; wrapping that one name for
    the duration of the call means a checkpoint is complete (weights + codec) before `last` points to it,
    even for runs that are interrupted later.
    """
    if spec is None:
        yield
        return
    import lerobot.scripts.lerobot_train as lt

    original = lt.save_checkpoint

    def save_checkpoint(checkpoint_dir: Path, *args: Any, **kwargs: Any) -> None:
        original(checkpoint_dir, *args, **kwargs)
        write_codec_spec(Path(checkpoint_dir) / PRETRAINED_MODEL_DIR, spec)

    lt.save_checkpoint = save_checkpoint
    try:
        yield
    finally:
        lt.save_checkpoint = original


@contextlib.contextmanager
def _argv(args: list[str]) -> Iterator[None]:
    # TrainPipelineConfig.validate() re-reads sys.argv for `--policy.path` and (on resume) `--config_path`;
    # give it exactly what a `lerobot-train` command line would have held, not robotflow's own flags.
    saved = sys.argv
    sys.argv = [saved[0] if saved else "robotflow", *args]
    try:
        yield
    finally:
        sys.argv = saved


def build_train_config(opts: TrainOptions):
    """The `TrainPipelineConfig` for a new run, or the saved one of the run being resumed."""
    from lerobot.configs.default import DatasetConfig, WandBConfig
    from lerobot.configs.train import TrainPipelineConfig

    from robotflow.codecs import video_backend
    from robotflow.policies.loading import resolve_device

    root = Path(opts.dataset_root).expanduser().resolve()
    if not (root / "meta" / "info.json").is_file():
        raise TrainError(f"{root} is not a LeRobot dataset (no meta/info.json); create one with `robotflow convert`")
    run_dir = opts.run_dir.resolve()
    wandb = WandBConfig(enable=bool(os.environ.get("WANDB_API_KEY")), project="robotflow")

    if opts.resume:
        cfg_file = run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK / PRETRAINED_MODEL_DIR / "train_config.json"
        if not cfg_file.is_file():
            raise TrainError(f"cannot resume {run_dir}: no {cfg_file.relative_to(run_dir.parent)}")
        cfg = TrainPipelineConfig.from_pretrained(cfg_file)
        cfg.resume = True
        cfg.steps = opts.steps
        cfg.save_freq = opts.save_freq
        cfg.output_dir = run_dir
        cfg.dataset.root = str(root)  # the dataset may have moved since
        cfg.wandb.enable = wandb.enable
        if hasattr(cfg.policy, "pretrained_backbone_weights"):
            cfg.policy.pretrained_backbone_weights = None  # the checkpoint holds the trained backbone
        return cfg, [f"--config_path={cfg_file}"]

    if run_dir.exists():
        raise TrainError(f"run directory {run_dir} already exists: pass --resume to continue it, or another --run-name")
    cfg = TrainPipelineConfig(
        # torchcodec (LeRobot's default decoder) needs system FFmpeg libraries; pyav works everywhere.
        dataset=DatasetConfig(repo_id=dataset_repo_id(root), root=str(root), video_backend=video_backend()),
        policy=_policy_config(opts, resolve_device(opts.device)),
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
    return cfg, []


def train_policy(opts: TrainOptions) -> Path:
    """Train (or resume) a run with LeRobot's loop; returns the run dir.

    Checkpoints land in `<output-dir>/<run-name>/checkpoints/<step>/pretrained_model/`, each with the
    dataset's codec spec as `robotflow_codec.json`.
    """
    from lerobot.scripts.lerobot_train import train

    if opts.steps < 1 or opts.save_freq < 1 or opts.batch_size < 1:
        raise TrainError("--steps, --save-freq and --batch-size must be positive")
    if not (Path(opts.dataset_root).expanduser() / "meta" / "info.json").is_file():
        raise TrainError(
            f"{opts.dataset_root} is not a LeRobot dataset (no meta/info.json); create one with `robotflow convert`"
        )
    spec = read_dataset_codec_spec(opts.dataset_root)
    if spec is None:
        click.echo(
            f"warning: {opts.dataset_root} has no robotflow codec spec; its checkpoints will not load in "
            "policy nodes until a robotflow_codec.json is placed beside them",
            err=True,
        )
    cfg, argv = build_train_config(opts)
    if opts.resume and spec is not None:
        saved = read_codec_spec(opts.run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK / PRETRAINED_MODEL_DIR)
        if saved is not None and saved.get("name") != spec.get("name"):
            raise TrainError(
                f"cannot resume: run {opts.run_name} was trained with codec {saved.get('name')!r}, "
                f"the dataset uses {spec.get('name')!r}"
            )
    with _argv(argv), _codec_beside_checkpoints(spec):
        train(cfg)
    run_dir = opts.run_dir
    if spec is not None:  # checkpoints written by an older run without the hook get the spec too
        for ckpt in list_checkpoints(run_dir):
            if ckpt.codec is None:
                write_codec_spec(ckpt.path, spec)
    return run_dir


def _parse_policy_args(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--policy-arg")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw  # a bare string
    return out


@click.command("train")
@click.option(
    "--dataset-root",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="LeRobot v3.0 dataset made by `robotflow convert`.",
)
@click.option("--run-name", required=True, help="Name of this run; checkpoints go to OUTPUT_DIR/RUN_NAME.")
@click.option(
    "--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Parent directory of runs."
)
@click.option("--steps", type=int, default=100_000, show_default=True, help="Total training steps.")
@click.option(
    "--save-freq", type=int, default=10_000, show_default=True, help="Checkpoint every K steps (and at the end)."
)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--resume", is_flag=True, help="Continue OUTPUT_DIR/RUN_NAME from its last checkpoint up to --steps.")
@click.option("--policy", default="act", show_default=True, help="LeRobot policy type (act, diffusion, ...).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda, mps.")
@click.option("--no-pretrained-backbone", is_flag=True, help="Start the vision backbone from random weights.")
@click.option("--dim-model", type=int, default=None, help="ACT transformer width (LeRobot default 512).")
@click.option("--chunk-size", type=int, default=None, help="Actions per predicted chunk (LeRobot default 100).")
@click.option(
    "--n-action-steps", type=int, default=None, help="Actions executed per chunk (default: chunk size, max 100)."
)
@click.option("--num-workers", type=int, default=2, show_default=True, help="Dataloader worker processes.")
@click.option("--log-freq", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=1000, show_default=True)
@click.option(
    "--policy-arg",
    "policy_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other field of the policy's LeRobot config (JSON value), e.g. kl_weight=10.",
)
def train_command(
    dataset_root,
    run_name,
    output_dir,
    steps,
    save_freq,
    batch_size,
    resume,
    policy,
    device,
    no_pretrained_backbone,
    dim_model,
    chunk_size,
    n_action_steps,
    num_workers,
    log_freq,
    seed,
    policy_args,
):
    """Train a LeRobot policy on a converted dataset with LeRobot's training loop.

    Checkpoints: OUTPUT_DIR/RUN_NAME/checkpoints/<step>/pretrained_model/ (+ robotflow_codec.json).
    W&B logging is on when WANDB_API_KEY is set. Nothing is pushed to the Hub.
    """
    opts = TrainOptions(
        dataset_root=dataset_root,
        run_name=run_name,
        output_dir=output_dir,
        steps=steps,
        save_freq=save_freq,
        batch_size=batch_size,
        resume=resume,
        policy=policy,
        device=device,
        pretrained_backbone=not no_pretrained_backbone,
        dim_model=dim_model,
        chunk_size=chunk_size,
        n_action_steps=n_action_steps,
        num_workers=num_workers,
        log_freq=log_freq,
        seed=seed,
        policy_args=_parse_policy_args(policy_args),
    )
    run_dir = train_policy(opts)
    ckpts = list_checkpoints(run_dir)
    last = ckpts[-1] if ckpts else None
    click.echo(
        f"run {run_dir}: {len(ckpts)} checkpoint(s)" + (f", latest step {last.step} at {last.path}" if last else "")
    )


if __name__ == "__main__":  # pragma: no cover
    train_command()
