"""`robotflow train`: LeRobot's own training loop on a robotflow-converted dataset.

Nothing here trains: the command builds a `TrainPipelineConfig` and calls
`lerobot.scripts.lerobot_train.train`, so optimiser presets, checkpoint format, resume and W&B logging
are LeRobot's. What robotflow adds is the run layout, the codec spec beside every checkpoint, remote
datasets and runs (`s3://...`, checkpoints uploaded as they are saved), several processes through
LeRobot's Accelerate path, and offline-friendly defaults (no Hub push, ImageNet weights only when they can
be loaded, W&B offline without an API key).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click

from robotflow.codecs.spec import (
    CodecError,
    CodecMismatchError,
    check_same_codec,
    read_checkpoint_spec,
    read_dataset_spec,
    write_checkpoint_spec,
)
from robotflow.policies.checkpoints import (
    CHECKPOINTS_DIR,
    LAST_CHECKPOINT_LINK,
    PRETRAINED_MODEL_DIR,
    list_checkpoints,
)
from robotflow.storage import Cache, StorageError, is_remote, join, list_dir, remote_checkpoints

log = logging.getLogger("robotflow.train")


class TrainError(click.ClickException):
    """A training setup problem, reported as one line."""


@dataclass
class TrainOptions:
    """Everything `robotflow train` takes; `train_policy(opts)` is the function behind the command."""

    dataset_root: Path | str  # a local directory or a URL (s3://...)
    run_name: str
    output_dir: Path | str  # a local directory or a URL
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
    # "constant": the policy's own optimizer preset (ACT: a constant learning rate). "cosine": the same optimizer,
    # with a 2% linear warm-up and a cosine decay to 1% of the rate over `steps` (README, "Low-dim result").
    lr_schedule: str = "constant"
    num_processes: int = 1  # >1: `accelerate launch` runs this many training processes (one per GPU)
    wandb: bool = False  # log to Weights & Biases (offline without WANDB_API_KEY); also on when the key is set
    # Camera policies on CPUs (README, "Camera-only result"): decode every video frame once into memory instead of
    # per sample, shift each sample's images by up to `image_shift_px` pixels (needs frames in memory), and run the
    # forward pass under bfloat16 autocast (`bf16`; Accelerate's mixed precision, on CPUs with bf16 support too).
    frames_in_memory: bool = False
    image_shift_px: int = 0
    bf16: bool = False

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
    from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig

    from robotflow.codecs import video_backend
    from robotflow.policies.loading import resolve_device

    root = Path(opts.dataset_root).expanduser().resolve()
    if not (root / "meta" / "info.json").is_file():
        raise TrainError(f"{root} is not a LeRobot dataset (no meta/info.json); create one with `robotflow convert`")
    run_dir = opts.run_dir.resolve()
    wandb = _wandb_config(opts, WandBConfig)

    if opts.resume:
        cfg_file = run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK / PRETRAINED_MODEL_DIR / "train_config.json"
        if not cfg_file.is_file():
            raise TrainError(f"cannot resume {run_dir}: no {cfg_file.relative_to(run_dir.parent)}")
        cfg = TrainPipelineConfig.from_pretrained(cfg_file)
        cfg.resume = True
        cfg.steps = opts.steps
        cfg.save_freq = opts.save_freq
        if isinstance(cfg.scheduler, CosineDecayWithWarmupSchedulerConfig):
            cfg.scheduler.num_decay_steps = opts.steps  # a longer --steps stretches the decay to the new end
        cfg.output_dir = run_dir
        cfg.dataset.root = str(root)  # the dataset may have moved since
        cfg.wandb.enable, cfg.wandb.mode = wandb.enable, wandb.mode
        if hasattr(cfg.policy, "pretrained_backbone_weights"):
            cfg.policy.pretrained_backbone_weights = None  # the checkpoint holds the trained backbone
        return cfg, [f"--config_path={cfg_file}"]

    if run_dir.exists() and _rank() == 0:  # other ranks start after rank 0 may have created it
        raise TrainError(f"run directory {run_dir} already exists: pass --resume to continue it, or another --run-name")
    cfg = TrainPipelineConfig(
        # torchcodec (LeRobot's default) when FFmpeg's libraries load, else pyav with a warning.
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
    if opts.lr_schedule == "cosine":
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
    elif opts.lr_schedule != "constant":
        raise TrainError(f"unknown --lr-schedule {opts.lr_schedule!r}: use constant or cosine")
    return cfg, []


def _rank() -> int:
    """This process's global rank under `accelerate launch`/torchrun (0 when training alone)."""
    return int(os.environ.get("RANK", "0"))


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _wandb_config(opts: TrainOptions, wandb_config_cls: type):
    """W&B through LeRobot's own logger: on with --wandb or an API key; offline when there is no key."""
    enable = opts.wandb or bool(os.environ.get("WANDB_API_KEY"))
    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    if opts.wandb and mode == "offline" and _rank() == 0:
        click.echo("W&B: no WANDB_API_KEY, logging offline (upload later with `wandb sync`)", err=True)
    return wandb_config_cls(enable=enable, project="robotflow", mode=mode)


class _CheckpointUploader:
    """Uploads each checkpoint of a run to its remote run directory while training goes on.

    A background thread keeps the training loop (and, with several processes, the barrier after each save)
    from waiting for the network; `close()` waits for the queue and uploads whatever else the run wrote.
    """

    def __init__(self, cache: Cache, run_dir: Path, url: str):
        self.cache, self.run_dir, self.url = cache, run_dir, url
        self.errors: list[str] = []
        self.uploaded: list[str] = []
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="checkpoint-upload", daemon=True)
        self._thread.start()

    def submit(self, checkpoint_dir: Path) -> None:
        self._queue.put(Path(checkpoint_dir))

    def _run(self) -> None:
        while (ckpt := self._queue.get()) is not None:
            rel = ckpt.relative_to(self.run_dir).as_posix()
            try:
                self.cache.upload(ckpt, join(self.url, rel))
                self.uploaded.append(rel)
                log.info("uploaded %s to %s", rel, self.url)
            except StorageError as e:
                self.errors.append(str(e))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if not self.errors:
            try:
                self.cache.upload(self.run_dir, self.url)
            except StorageError as e:
                self.errors.append(str(e))
        if self.errors:
            raise TrainError(
                f"{self.errors[0]}; the run is kept in {self.run_dir} (not evicted from the cache), and "
                f"`robotflow train --resume` with the same --output-dir uploads it"
            )
        self.cache.finish_output(self.url)


@contextlib.contextmanager
def _codec_beside_checkpoints(
    spec: dict[str, Any] | None, uploader: _CheckpointUploader | None = None
) -> Iterator[None]:
    """Write the codec spec into each checkpoint's pretrained_model dir as LeRobot saves it (and upload it).

    LeRobot's loop calls the module-level `save_checkpoint` of lerobot_train; wrapping that one name for
    the duration of the call means a checkpoint is complete (weights + codec) before `last` points to it,
    even for runs that are interrupted later.
    """
    if spec is None and uploader is None:
        yield
        return
    import lerobot.scripts.lerobot_train as lt

    original = lt.save_checkpoint

    def save_checkpoint(checkpoint_dir: Path, *args: Any, **kwargs: Any) -> None:
        original(checkpoint_dir, *args, **kwargs)
        if spec is not None:
            write_checkpoint_spec(Path(checkpoint_dir) / PRETRAINED_MODEL_DIR, spec)
        if uploader is not None:
            uploader.submit(Path(checkpoint_dir))

    lt.save_checkpoint = save_checkpoint
    try:
        yield
    finally:
        lt.save_checkpoint = original


@contextlib.contextmanager
def _relative_chunks(spec: dict[str, Any] | None) -> Iterator[None]:
    """For a codec with relative positions, train on action chunks relative to each sample's EE position
    (`robotflow.codecs.relative`): LeRobot's loop gets its dataset from the module-level `make_dataset` of
    lerobot_train, so that one name is wrapped for the duration of the call, like `save_checkpoint` above."""
    from robotflow.codecs import codec_from_spec

    if spec is None or not codec_from_spec(spec).layout.relative:
        yield
        return
    import lerobot.scripts.lerobot_train as lt

    from robotflow.codecs.relative import make_relative

    original = lt.make_dataset

    def make_dataset(cfg: Any) -> Any:
        return make_relative(original(cfg))

    lt.make_dataset = make_dataset
    try:
        yield
    finally:
        lt.make_dataset = original


@contextlib.contextmanager
def _camera_training(opts: TrainOptions) -> Iterator[None]:
    """`--frames-in-memory`/`--image-shift` (wrapping lerobot_train's `make_dataset`, like `_relative_chunks`)
    and `--bf16` (Accelerate reads its mixed precision from the environment when LeRobot's loop creates it)."""
    import lerobot.scripts.lerobot_train as lt

    from robotflow.codecs.memory_frames import describe, keep_frames_in_memory

    if opts.image_shift_px and not opts.frames_in_memory:
        raise TrainError("--image-shift needs --frames-in-memory")
    original, saved_env = lt.make_dataset, os.environ.get("ACCELERATE_MIXED_PRECISION")

    def make_dataset(cfg: Any) -> Any:
        ds = keep_frames_in_memory(original(cfg), opts.image_shift_px)
        log.info("training frames: %s", describe(ds))
        return ds

    if opts.frames_in_memory:
        lt.make_dataset = make_dataset
    if opts.bf16:
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
    try:
        yield
    finally:
        lt.make_dataset = original
        if opts.bf16:
            os.environ.pop("ACCELERATE_MIXED_PRECISION", None)
            if saved_env is not None:
                os.environ["ACCELERATE_MIXED_PRECISION"] = saved_env


def _remote_output(opts: TrainOptions, cache: Cache) -> tuple[TrainOptions, str]:
    """Map a remote --output-dir onto its local mirror; returns the options with the local dir and the run URL.

    A resumed run gets its newest checkpoint downloaded first. Checks that touch the remote run only on rank 0.
    """
    out_url = str(opts.output_dir).rstrip("/")
    run_url = join(out_url, opts.run_name)
    local_out = cache.local_path(out_url)
    local_run = local_out / opts.run_name
    if _rank() != 0:
        return replace(opts, output_dir=local_out), run_url
    if not opts.resume:
        if list_dir(join(run_url, CHECKPOINTS_DIR)):
            raise TrainError(f"run {run_url} already exists: pass --resume to continue it, or another --run-name")
        if local_run.exists():
            if cache.pinned(run_url):
                raise TrainError(
                    f"{local_run} holds a run for {run_url} that was never uploaded: pass --resume to continue "
                    "and upload it, or remove that directory"
                )
            shutil.rmtree(local_run)  # a cached copy of a run deleted remotely since
    elif complete := remote_checkpoints(run_url):  # the newest whose upload finished (config.json goes last)
        step_dir = complete[-1][1].rsplit("/", 1)[0]
        local_step = local_run / CHECKPOINTS_DIR / step_dir.rsplit("/", 1)[-1]
        if not (local_step / PRETRAINED_MODEL_DIR / "config.json").is_file():
            cache.download(step_dir)
            last = local_run / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK
            last.unlink(missing_ok=True)
            last.symlink_to(local_step.name)
    cache.output_dir(run_url, create=False)  # LeRobot creates it (and refuses one that exists, unless resuming)
    return replace(opts, output_dir=local_out), run_url


def train_policy(opts: TrainOptions) -> Path:
    """Train (or resume) a run with LeRobot's loop; returns the (local) run dir.

    Checkpoints land in `<output-dir>/<run-name>/checkpoints/<step>/pretrained_model/`, each with the
    dataset's codec spec as `robotflow_codec.json`. A remote --dataset-root is downloaded into the cache
    first; with a remote --output-dir the run is written to the cache and each checkpoint is uploaded as
    soon as it is saved. With `num_processes > 1` this relaunches itself under `accelerate launch`.
    """
    from lerobot.scripts.lerobot_train import train

    if opts.steps < 1 or opts.save_freq < 1 or opts.batch_size < 1 or opts.num_processes < 1:
        raise TrainError("--steps, --save-freq, --batch-size and --num-processes must be positive")
    cache = Cache()
    if is_remote(str(opts.dataset_root)):
        try:
            opts = replace(opts, dataset_root=cache.download(str(opts.dataset_root)))
        except StorageError as e:
            raise TrainError(str(e)) from None
    if not (Path(opts.dataset_root).expanduser() / "meta" / "info.json").is_file():
        raise TrainError(
            f"{opts.dataset_root} is not a LeRobot dataset (no meta/info.json); create one with `robotflow convert`"
        )
    if opts.num_processes > 1 and _world_size() == 1:
        return _launch_processes(opts)
    run_url = None
    if is_remote(str(opts.output_dir)):
        try:
            opts, run_url = _remote_output(opts, cache)
        except StorageError as e:
            raise TrainError(str(e)) from None
    try:
        spec = read_dataset_spec(opts.dataset_root)
    except CodecError:
        spec = None
        if _rank() == 0:
            click.echo(
                f"warning: {opts.dataset_root} has no robotflow codec spec; policy nodes will need the codec named "
                "(their `codec` param, rollout --codec) to run its checkpoints",
                err=True,
            )
    cfg, argv = build_train_config(opts)
    if _rank() != 0:
        # LeRobot's validate() refuses an existing output dir unless it is a Path; rank 0 (and its W&B logger)
        # may create it before this rank gets there. Only rank 0 writes to it.
        cfg.output_dir = str(cfg.output_dir)
    if opts.resume and spec is not None:
        saved = read_checkpoint_spec(opts.run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK / PRETRAINED_MODEL_DIR)
        if saved is not None:
            try:
                check_same_codec(saved, spec, have_what=f"run {opts.run_name}", want_what=f"{opts.dataset_root}")
            except CodecMismatchError as e:
                raise TrainError(f"cannot resume: {e}") from None
    uploader = _CheckpointUploader(cache, opts.run_dir, run_url) if run_url and _rank() == 0 else None
    try:
        with _argv(argv), _codec_beside_checkpoints(spec, uploader), _relative_chunks(spec), _camera_training(opts):
            train(cfg)
    finally:
        if uploader is not None:
            uploader.close()
    run_dir = opts.run_dir
    if spec is not None and _rank() == 0:  # checkpoints written by an older run without the hook get the spec too
        for ckpt in list_checkpoints(run_dir):
            if ckpt.codec is None:
                write_checkpoint_spec(ckpt.path, spec)
    return run_dir


def _cli_args(opts: TrainOptions) -> list[str]:
    """`robotflow train` arguments that reproduce `opts` (for the processes `accelerate launch` starts)."""
    args = [
        f"--dataset-root={opts.dataset_root}",
        f"--run-name={opts.run_name}",
        f"--output-dir={opts.output_dir}",
        f"--steps={opts.steps}",
        f"--save-freq={opts.save_freq}",
        f"--batch-size={opts.batch_size}",
        f"--policy={opts.policy}",
        f"--device={opts.device}",
        f"--num-workers={opts.num_workers}",
        f"--log-freq={opts.log_freq}",
        f"--seed={opts.seed}",
    ]
    for name in ("dim_model", "chunk_size", "n_action_steps"):
        if getattr(opts, name) is not None:
            args.append(f"--{name.replace('_', '-')}={getattr(opts, name)}")
    args += ["--resume"] * opts.resume + ["--no-pretrained-backbone"] * (not opts.pretrained_backbone)
    args += ["--wandb"] * opts.wandb + [f"--lr-schedule={opts.lr_schedule}"]
    args += ["--frames-in-memory"] * opts.frames_in_memory + ["--bf16"] * opts.bf16
    args += [f"--image-shift={opts.image_shift_px}"]
    args += [f"--policy-arg={k}={json.dumps(v)}" for k, v in opts.policy_args.items()]
    return args


def _launch_processes(opts: TrainOptions) -> Path:
    """Run `opts` in `num_processes` processes with `accelerate launch` (LeRobot's own multi-GPU path).

    The processes find each other through torch.distributed: NCCL on GPUs, gloo on CPU (`--device cpu`).
    The remote dataset, if any, was downloaded here once; the run's remote upload happens on rank 0.
    """
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        f"--num_processes={opts.num_processes}",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        # accelerate's multi-process launcher; with `--device cpu` LeRobot's Accelerator(cpu=True) then uses gloo.
        "--multi_gpu",
        f"--main_process_port={_free_port()}",
        "-m",
        "robotflow.scripts.train",
        *_cli_args(replace(opts, num_processes=1)),
    ]
    log.info("launching: %s", " ".join(cmd))
    res = subprocess.run(cmd)
    if res.returncode != 0:
        raise TrainError(f"training with {opts.num_processes} processes failed (exit status {res.returncode})")
    out = str(opts.output_dir)
    return (Cache().local_path(out) if is_remote(out) else Path(out).expanduser()) / opts.run_name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    help="LeRobot v3.0 dataset made by `robotflow convert`: a directory or a URL (s3://bucket/path).",
)
@click.option("--run-name", required=True, help="Name of this run; checkpoints go to OUTPUT_DIR/RUN_NAME.")
@click.option(
    "--output-dir",
    required=True,
    help="Parent directory of runs, or a URL: checkpoints are then uploaded as they are saved.",
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
@click.option(
    "--lr-schedule",
    type=click.Choice(["constant", "cosine"]),
    default="constant",
    show_default=True,
    help="constant: the policy's preset (ACT: a fixed rate); cosine: 2% warm-up, then decay to 1% of the rate.",
)
@click.option(
    "--num-processes",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Training processes on this machine, one per GPU (LeRobot's Accelerate path; gloo with --device cpu).",
)
@click.option("--wandb", "use_wandb", is_flag=True, help="Log to Weights & Biases (offline without WANDB_API_KEY).")
@click.option(
    "--frames-in-memory",
    is_flag=True,
    help="Decode every video frame once into memory (uint8) instead of per sample; pass it again with --resume.",
)
@click.option(
    "--image-shift",
    type=click.IntRange(0, 64),
    default=0,
    show_default=True,
    metavar="PX",
    help="Shift each sample's images by up to PX pixels (random-shift augmentation; needs --frames-in-memory).",
)
@click.option("--bf16", is_flag=True, help="bfloat16 autocast for the forward pass (CPUs with bf16 support, GPUs).")
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
    lr_schedule,
    num_processes,
    use_wandb,
    frames_in_memory,
    image_shift,
    bf16,
):
    """Train a LeRobot policy on a converted dataset with LeRobot's training loop.

    Checkpoints: OUTPUT_DIR/RUN_NAME/checkpoints/<step>/pretrained_model/ (+ robotflow_codec.json).
    W&B logging is on with --wandb or when WANDB_API_KEY is set. Nothing is pushed to the Hub.
    For several machines, run `accelerate launch --num_machines M --machine_rank R --main_process_ip IP
    --num_processes N --multi_gpu -m robotflow.scripts.train ...` on each (see the README).
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
        lr_schedule=lr_schedule,
        num_processes=num_processes,
        wandb=use_wandb,
        frames_in_memory=frames_in_memory,
        image_shift_px=image_shift,
        bf16=bf16,
    )
    run_dir = train_policy(opts)
    ckpts = list_checkpoints(run_dir)
    last = ckpts[-1] if ckpts else None
    click.echo(
        f"run {run_dir}: {len(ckpts)} checkpoint(s)" + (f", latest step {last.step} at {last.path}" if last else "")
    )


if __name__ == "__main__":  # pragma: no cover
    train_command()
