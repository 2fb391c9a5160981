"""`TrainOptions`: everything a training run takes; the `robotflow train` options are generated from its fields."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robotflow.policies.loading import check_device
from robotflow.runtime.params import in_range, non_negative, path_writable


def parse_policy_args(items: Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` items -> {key: JSON value, or the raw string when it is not JSON}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw  # a bare string
    return out


@dataclass(frozen=True)
class TrainOptions:
    """One training run; `robotflow.training.train(opts)` runs it. Field metadata: robotflow.scripts.options."""

    dataset_root: Path | str = field(
        metadata={"help": "LeRobot v3.0 dataset made by `robotflow convert`: a directory or a URL (s3://bucket/path)."}
    )
    run_name: str = field(metadata={"help": "Name of this run; checkpoints go to OUTPUT_DIR/RUN_NAME."})
    output_dir: Path | str = path_writable(
        help="Parent directory of runs, or a URL: checkpoints are then uploaded as they are saved."
    )
    steps: int = in_range(1, None, 100_000, help="Total training steps.")
    save_freq: int = in_range(1, None, 10_000, help="Checkpoint every K steps (and at the end).")
    batch_size: int = in_range(1, None, 8)
    resume: bool = field(
        default=False, metadata={"help": "Continue OUTPUT_DIR/RUN_NAME from its last checkpoint up to --steps."}
    )
    init_from: str | None = field(
        default=None,
        metadata={
            "metavar": "CHECKPOINT",
            "help": "Fine-tune: start this new run from a checkpoint's weights and architecture (a run dir, its "
            "checkpoints or a pretrained_model dir, or a URL; the newest step), with a fresh optimizer and "
            "schedule. Normalisation comes from this run's dataset: fine-tune on demos plus corrections.",
        },
    )
    policy: str = field(default="act", metadata={"help": "LeRobot policy type (act, diffusion, ...)."})
    device: str = field(
        default="auto", metadata={"check": check_device, "help": "auto (CUDA when available), cpu, cuda, mps."}
    )
    pretrained_backbone: bool = field(
        default=True,
        metadata={
            "flag": "--no-pretrained-backbone",
            "negate": True,
            "help": "Start the vision backbone from random weights.",
        },
    )
    dim_model: int | None = field(default=None, metadata={"help": "ACT transformer width (LeRobot default 512)."})
    chunk_size: int | None = field(
        default=None, metadata={"help": "Actions per predicted chunk (LeRobot default 100)."}
    )
    n_action_steps: int | None = field(
        default=None, metadata={"help": "Actions executed per chunk (default: chunk size, max 100)."}
    )
    num_workers: int = non_negative(2, help="Dataloader worker processes.")
    log_freq: int = in_range(1, None, 100)
    seed: int = non_negative(1000)
    policy_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "flag": "--policy-arg",
            "multiple": True,
            "metavar": "KEY=VALUE",
            "parse": parse_policy_args,
            "help": "Any other field of the policy's LeRobot config (JSON value), e.g. kl_weight=10.",
        },
    )
    # "constant": the policy's own optimizer preset (ACT: a constant learning rate). "cosine": the same optimizer,
    # with a 2% linear warm-up and a cosine decay to 1% of the rate over `steps` (README, "Low-dim result").
    lr_schedule: str = field(
        default="constant",
        metadata={
            "choices": ("constant", "cosine"),
            "help": "constant: the policy's preset (ACT: a fixed rate); cosine: 2% warm-up, then decay to 1% of "
            "the rate.",
        },
    )
    num_processes: int = field(
        default=1,
        metadata={
            "range": (1, 1024),
            "help": "Training processes on this machine, one per GPU (LeRobot's Accelerate path; gloo with "
            "--device cpu).",
        },
    )
    wandb: bool = field(default=False, metadata={"help": "Log to Weights & Biases (offline without WANDB_API_KEY)."})
    # Camera policies on CPUs (README, "Camera-only result"): decode every video frame once into memory instead of
    # per sample, shift each sample's images by up to `image_shift_px` pixels (needs frames in memory), and run the
    # forward pass under bfloat16 autocast (Accelerate's mixed precision, on CPUs with bf16 support too).
    frames_in_memory: bool = field(
        default=False,
        metadata={
            "help": "Decode every video frame once into memory (uint8) instead of per sample; pass it again "
            "with --resume."
        },
    )
    image_shift_px: int = field(
        default=0,
        metadata={
            "flag": "--image-shift",
            "range": (0, 64),
            "metavar": "PX",
            "help": "Shift each sample's images by up to PX pixels (random-shift augmentation; needs "
            "--frames-in-memory).",
        },
    )
    bf16: bool = field(
        default=False, metadata={"help": "bfloat16 autocast for the forward pass (CPUs with bf16 support, GPUs)."}
    )

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser() / self.run_name
