"""What robotflow changes inside LeRobot's training loop, each for the duration of one `train(cfg)` call.

LeRobot's loop looks up `save_checkpoint` and `make_dataset` as module-level names of
`lerobot.scripts.lerobot_train`, and `TrainPipelineConfig.validate()` re-reads `sys.argv`; each patch here
swaps one of those and restores it on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from robotflow.codecs import codec_from_spec
from robotflow.codecs.spec import write_checkpoint_spec
from robotflow.policies.checkpoints import PRETRAINED_MODEL_DIR
from robotflow.training.errors import TrainError
from robotflow.training.options import TrainOptions

log = logging.getLogger("robotflow")


@contextlib.contextmanager
def lerobot_argv(args: list[str]) -> Iterator[None]:
    """`sys.argv` as a `lerobot-train` command line would have held it.

    TrainPipelineConfig.validate() re-reads sys.argv for `--policy.path` and (on resume) `--config_path`;
    it must see exactly those, not robotflow's own flags.
    """
    saved = sys.argv
    sys.argv = [saved[0] if saved else "robotflow", *args]
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _wrapped(name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """`lerobot_train.<name>` replaced by `wrap(original)` inside the block."""
    import lerobot.scripts.lerobot_train as lt  # torch/lerobot: imported only to train

    original = getattr(lt, name)
    setattr(lt, name, wrap(original))
    try:
        yield
    finally:
        setattr(lt, name, original)


@contextlib.contextmanager
def codec_beside_checkpoints(
    spec: dict[str, Any] | None, on_saved: Callable[[Path], None] | None = None
) -> Iterator[None]:
    """Write the codec spec into each checkpoint's pretrained_model dir as LeRobot saves it, then call
    `on_saved(checkpoint_dir)` (the uploader's `submit`).

    Wrapping LeRobot's `save_checkpoint` means a checkpoint is complete (weights + codec) before `last`
    points to it, even for runs that are interrupted later.
    """
    if spec is None and on_saved is None:
        yield
        return

    def wrap(original: Callable[..., None]) -> Callable[..., None]:
        def save_checkpoint(checkpoint_dir: Path, *args: Any, **kwargs: Any) -> None:
            original(checkpoint_dir, *args, **kwargs)
            if spec is not None:
                write_checkpoint_spec(Path(checkpoint_dir) / PRETRAINED_MODEL_DIR, spec)
            if on_saved is not None:
                on_saved(Path(checkpoint_dir))

        return save_checkpoint

    with _wrapped("save_checkpoint", wrap):
        yield


@contextlib.contextmanager
def relative_chunks(spec: dict[str, Any] | None) -> Iterator[None]:
    """For a codec with relative positions, train on action chunks relative to each sample's EE position
    (`robotflow.codecs.relative`), by wrapping the dataset LeRobot's `make_dataset` returns."""
    if spec is None or not codec_from_spec(spec).layout.relative:
        yield
        return
    from robotflow.codecs.relative import make_relative  # torch: imported only to train

    def wrap(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda cfg: make_relative(original(cfg))

    with _wrapped("make_dataset", wrap):
        yield


@contextlib.contextmanager
def camera_training(opts: TrainOptions) -> Iterator[None]:
    """`--frames-in-memory`/`--image-shift` (wrapping `make_dataset`, like `relative_chunks`) and `--bf16`
    (Accelerate reads its mixed precision from the environment when LeRobot's loop creates it)."""
    if opts.image_shift_px and not opts.frames_in_memory:
        raise TrainError("--image-shift needs --frames-in-memory")
    with contextlib.ExitStack() as stack:
        if opts.frames_in_memory:
            from robotflow.codecs.memory_frames import describe, keep_frames_in_memory  # torch: only to train

            def wrap(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
                def make_dataset(cfg: Any) -> Any:
                    ds = keep_frames_in_memory(original(cfg), opts.image_shift_px)
                    log.info("training frames: %s", describe(ds))
                    return ds

                return make_dataset

            stack.enter_context(_wrapped("make_dataset", wrap))
        if opts.bf16:
            stack.enter_context(_environment("ACCELERATE_MIXED_PRECISION", "bf16"))
        yield


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
