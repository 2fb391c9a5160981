"""Training runs and their checkpoints.

LeRobot's training loop writes a run as::

    <output-dir>/<run-name>/
        checkpoints/
            000500/pretrained_model/{config.json, model.safetensors, train_config.json,
                                     policy_preprocessor.json, policy_postprocessor.json, *.safetensors,
                                     robotflow_codec.json}   <- added by `robotflow train`
            000500/training_state/...
            last -> 000500

These helpers read that layout (and nothing else): they are what `robotflow rollout --list` and
`--checkpoint STEP` use, and what the policy nodes use to find the weights. The codec spec beside a
checkpoint, and where a checkpoint without one gets its codec, is `robotflow.codecs.spec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robotflow.codecs.spec import read_checkpoint_spec, spec_name

CHECKPOINTS_DIR = "checkpoints"  # lerobot.utils.constants.CHECKPOINTS_DIR
LAST_CHECKPOINT_LINK = "last"  # lerobot.utils.constants.LAST_CHECKPOINT_LINK
PRETRAINED_MODEL_DIR = "pretrained_model"  # lerobot.utils.constants.PRETRAINED_MODEL_DIR


class CheckpointError(FileNotFoundError):
    """A run directory or checkpoint that does not exist or lacks the files a policy needs."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved checkpoint of a run."""

    step: int
    path: Path  # the `pretrained_model` directory: what `from_pretrained` reads
    codec: str | None  # codec name from the robotflow_codec.json beside it, None when there is none

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "path": str(self.path), "codec": self.codec}


def _checkpoints_root(run_dir: Path) -> Path:
    run_dir = Path(run_dir).expanduser()
    # Accept both the run dir and its `checkpoints/` subdir: people paste either.
    if run_dir.name == CHECKPOINTS_DIR and not (run_dir / CHECKPOINTS_DIR).is_dir():
        return run_dir
    return run_dir / CHECKPOINTS_DIR


def list_checkpoints(run_dir: str | Path) -> list[CheckpointInfo]:
    """All checkpoints of a run, oldest step first. A run without checkpoints gives []."""
    root = _checkpoints_root(Path(run_dir))
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        # Step dirs are zero-padded integers; `last` is a symlink to one of them and is skipped here.
        if child.is_symlink() or not child.name.isdigit():
            continue
        model_dir = child / PRETRAINED_MODEL_DIR
        if not (model_dir / "config.json").is_file():
            continue  # a checkpoint being written, or a broken one
        spec = read_checkpoint_spec(model_dir)
        found.append(CheckpointInfo(int(child.name), model_dir, spec_name(spec) if spec else None))
    return sorted(found, key=lambda c: c.step)


def latest_step(run_dir: str | Path) -> int | None:
    """Step of the newest checkpoint of a run, or None when it has none."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1].step if ckpts else None


def resolve_checkpoint(path: str | Path, step: int | str | None = None) -> Path:
    """The `pretrained_model` directory to load.

    `path` may be a run dir (`<output-dir>/<run-name>`), its `checkpoints/` dir, one step dir, or a
    `pretrained_model` dir. `step` (an int, a digit string, `last` or None = newest) picks among a run's
    checkpoints and must be None when `path` already names one checkpoint.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"checkpoint path {p} does not exist")
    direct = None
    if (p / "config.json").is_file():
        direct = p
    elif (p / PRETRAINED_MODEL_DIR / "config.json").is_file():
        direct = p / PRETRAINED_MODEL_DIR
    if direct is not None:
        if step not in (None, "last"):
            raise CheckpointError(f"{p} is a single checkpoint; --checkpoint {step} needs the run directory")
        return direct

    ckpts = list_checkpoints(p)
    if not ckpts:
        raise CheckpointError(
            f"no checkpoints under {p} (expected {p}/{CHECKPOINTS_DIR}/<step>/{PRETRAINED_MODEL_DIR})"
        )
    if step is None or step == "last":
        return ckpts[-1].path
    try:
        want = int(step)
    except (TypeError, ValueError):
        raise CheckpointError(f"checkpoint step must be an integer or 'last', got {step!r}") from None
    for c in ckpts:
        if c.step == want:
            return c.path
    raise CheckpointError(
        f"run {p} has no checkpoint at step {want}; available: {', '.join(str(c.step) for c in ckpts)}"
    )
