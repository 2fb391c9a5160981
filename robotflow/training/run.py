"""`train(opts)`: LeRobot's own training loop on a robotflow-converted dataset.

Nothing here trains: it builds a `TrainPipelineConfig` and calls `lerobot.scripts.lerobot_train.train`, so
optimiser presets, checkpoint format, resume and W&B logging are LeRobot's. What robotflow adds is the run
layout, the codec spec beside every checkpoint, remote datasets and runs (`s3://...`, checkpoints uploaded as
they are saved), several processes through LeRobot's Accelerate path, and offline-friendly defaults (no Hub
push, ImageNet weights only when they can be loaded, W&B offline without an API key).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from robotflow.codecs.spec import (
    CodecError,
    CodecMismatchError,
    check_same_codec,
    read_checkpoint_spec,
    read_dataset_spec,
    write_checkpoint_spec,
)
from robotflow.policies.checkpoints import CHECKPOINTS_DIR, LAST_CHECKPOINT_LINK, PRETRAINED_MODEL_DIR, list_checkpoints
from robotflow.runtime.params import check_options
from robotflow.storage import Cache, StorageError, is_remote
from robotflow.training.errors import TrainError, warn
from robotflow.training.launch import launch_processes, rank, world_size
from robotflow.training.lerobot_config import build_train_config
from robotflow.training.lerobot_patches import camera_training, codec_beside_checkpoints, lerobot_argv, relative_chunks
from robotflow.training.options import TrainOptions
from robotflow.training.upload import CheckpointUploader, remote_output


def train(opts: TrainOptions) -> Path:
    """Train (or resume) a run with LeRobot's loop; returns the (local) run dir.

    Checkpoints land in `<output-dir>/<run-name>/checkpoints/<step>/pretrained_model/`, each with the
    dataset's codec spec as `robotflow_codec.json`. A remote `dataset_root` is downloaded into the cache
    first; with a remote `output_dir` the run is written to the cache and each checkpoint is uploaded as
    soon as it is saved. With `num_processes > 1` this relaunches itself under `accelerate launch`.
    """
    check_options(opts, TrainError)
    from lerobot.scripts.lerobot_train import train as lerobot_train  # torch/lerobot: imported only to train

    cache = Cache()
    opts = _local_dataset(opts, cache)
    if opts.num_processes > 1 and world_size() == 1:
        return launch_processes(opts)
    run_url = None
    if is_remote(str(opts.output_dir)):
        try:
            opts, run_url = remote_output(opts, cache)
        except StorageError as e:
            raise TrainError(str(e)) from None
    spec = _dataset_spec(opts)
    cfg, argv = build_train_config(opts)
    if rank() != 0:
        # LeRobot's validate() refuses an existing output dir unless it is a Path; rank 0 (and its W&B logger)
        # may create it before this rank gets there. Only rank 0 writes to it.
        cfg.output_dir = str(cfg.output_dir)
    if opts.resume and spec is not None:
        _check_resumed_codec(opts, spec)
    uploader = CheckpointUploader(cache, opts.run_dir, run_url) if run_url and rank() == 0 else None
    try:
        with (
            lerobot_argv(argv),
            codec_beside_checkpoints(spec, uploader.submit if uploader else None),
            relative_chunks(spec),
            camera_training(opts),
        ):
            lerobot_train(cfg)
    finally:
        if uploader is not None:
            uploader.close()
    if spec is not None and rank() == 0:  # checkpoints written by an older run without the hook get the spec too
        for ckpt in list_checkpoints(opts.run_dir):
            if ckpt.codec is None:
                write_checkpoint_spec(ckpt.path, spec)
    return opts.run_dir


def _local_dataset(opts: TrainOptions, cache: Cache) -> TrainOptions:
    """`opts` with a remote dataset downloaded into the cache; refused unless it is a LeRobot dataset."""
    if is_remote(str(opts.dataset_root)):
        try:
            opts = replace(opts, dataset_root=cache.download(str(opts.dataset_root)))
        except StorageError as e:
            raise TrainError(str(e)) from None
    if not (Path(opts.dataset_root).expanduser() / "meta" / "info.json").is_file():
        raise TrainError(
            f"{opts.dataset_root} is not a LeRobot dataset (no meta/info.json); create one with `robotflow convert`"
        )
    return opts


def _dataset_spec(opts: TrainOptions) -> dict[str, Any] | None:
    try:
        return read_dataset_spec(opts.dataset_root)
    except CodecError:
        if rank() == 0:
            warn(
                f"{opts.dataset_root} has no robotflow codec spec; policy nodes will need the codec named "
                "(their `codec` param, rollout --codec) to run its checkpoints"
            )
        return None


def _check_resumed_codec(opts: TrainOptions, spec: dict[str, Any]) -> None:
    saved = read_checkpoint_spec(opts.run_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK / PRETRAINED_MODEL_DIR)
    if saved is None:
        return
    try:
        check_same_codec(saved, spec, have_what=f"run {opts.run_name}", want_what=f"{opts.dataset_root}")
    except CodecMismatchError as e:
        raise TrainError(f"cannot resume: {e}") from None
