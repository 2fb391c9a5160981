"""Training runs and their checkpoints.

LeRobot's training loop writes a run as::

    <output-dir>/<run-name>/
        checkpoints/
            000500/pretrained_model/{config.json, model.safetensors, train_config.json,
                                     policy_preprocessor.json, policy_postprocessor.json, *.safetensors,
                                     robotflow_codec.json}   <- added by `robotflow train`
            000500/training_state/...
            last -> 000500

These helpers read that layout (and nothing else), locally or in object storage (`robotflow.storage`).
A step dir counts as a checkpoint once it is whole: `last` points at it or a later one, or the codec spec that
`robotflow train` writes after LeRobot's save is there (a run killed mid-save leaves a config.json beside
cut-short weights). `resolve_checkpoint` is the one resolver every loader uses (`load_policy`, the policy nodes, the server's
catalog, rollout); `list_checkpoints` / `remote_checkpoints` are what `robotflow rollout --list` prints. The codec spec beside a
checkpoint, and where a checkpoint without one gets its codec, is `robotflow.codecs.spec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from robotflow.codecs.spec import CHECKPOINT_SPEC_FILE, read_checkpoint_spec, spec_name
from robotflow.storage import Cache, exists, is_remote, join, list_dir, local_input

CHECKPOINTS_DIR = "checkpoints"  # lerobot.utils.constants.CHECKPOINTS_DIR
LAST_CHECKPOINT_LINK = "last"  # lerobot.utils.constants.LAST_CHECKPOINT_LINK
PRETRAINED_MODEL_DIR = "pretrained_model"  # lerobot.utils.constants.PRETRAINED_MODEL_DIR

T = TypeVar("T")


class CheckpointError(FileNotFoundError):
    """A run directory or checkpoint that does not exist or lacks the files a policy needs."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved checkpoint of a run."""

    step: int | None  # None only for a single checkpoint whose directory is not named by its step
    path: Path  # the local `pretrained_model` directory: what `from_pretrained` reads
    codec: str | None  # codec name from the robotflow_codec.json beside it, None when there is none
    spec: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # that codec spec

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
    last = root / LAST_CHECKPOINT_LINK
    last_step = int(last.resolve().name) if last.exists() and last.resolve().name.isdigit() else None
    for child in root.iterdir():
        # Step dirs are zero-padded integers; `last` is a symlink to one of them and is skipped here.
        if child.is_symlink() or not child.name.isdigit():
            continue
        model_dir = child / PRETRAINED_MODEL_DIR
        if not (model_dir / "config.json").is_file():
            continue  # a checkpoint being written, or a broken one
        # Whole: LeRobot moved `last` to it or past it, or `robotflow train` wrote the codec spec, which it does
        # after LeRobot's save. LeRobot writes config.json before the weights, so a run killed mid-save has a
        # newest step dir with a config and cut-short weights: not a checkpoint (tests/test_faults_kill.py).
        whole = (last_step is not None and int(child.name) <= last_step) or (model_dir / CHECKPOINT_SPEC_FILE).is_file()
        if not whole:
            continue
        found.append(_info(model_dir))
    return sorted(found, key=lambda c: c.step)


def latest_step(run_dir: str | Path) -> int | None:
    """Step of the newest checkpoint of a run, or None when it has none."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1].step if ckpts else None


def resolve_checkpoint(
    path: str | Path, step: int | str | None = None, *, cache: Cache | None = None
) -> CheckpointInfo:
    """The one checkpoint resolver: a local path or a URL (``s3://``, any fsspec), and a step -> the checkpoint.

    `path` may be a run dir (`<output-dir>/<run-name>`), its `checkpoints/` dir, one step dir, or a
    `pretrained_model` dir, locally or in object storage. `step` (an int, a digit string, `last` or None =
    newest) picks among a run's checkpoints and must be None (or `last`) when `path` already names one
    checkpoint. From object storage only the chosen checkpoint is downloaded (into the `robotflow.storage`
    cache). The result's `path` is always a local `pretrained_model` dir; its `step` is None for a single
    checkpoint whose directory name is not a step.
    """
    if isinstance(path, str) and is_remote(path):
        return _resolve_remote(path.rstrip("/"), step, cache or Cache())
    return _resolve_local(local_input(path), step)


def _resolve_local(p: Path, step: int | str | None) -> CheckpointInfo:
    if not p.exists():
        raise CheckpointError(f"checkpoint path {p} does not exist")
    for direct in (p, p / PRETRAINED_MODEL_DIR):
        if (direct / "config.json").is_file():
            _check_single(str(p), step)
            return _info(direct)
    ckpts = list_checkpoints(p)
    if not ckpts:
        raise CheckpointError(
            f"no checkpoints under {p} (expected {p}/{CHECKPOINTS_DIR}/<step>/{PRETRAINED_MODEL_DIR})"
        )
    return _pick(str(p), [(c.step, c) for c in ckpts], step)


def _resolve_remote(url: str, step: int | str | None, cache: Cache) -> CheckpointInfo:
    for single in (url, join(url, PRETRAINED_MODEL_DIR)):
        if exists(join(single, "config.json")):
            _check_single(url, step)
            return _info(cache.download(single))
    ckpts = remote_checkpoints(url)
    if not ckpts:
        raise CheckpointError(
            f"no checkpoints under {url} (expected {url}/{CHECKPOINTS_DIR}/<step>/{PRETRAINED_MODEL_DIR})"
        )
    return _info(cache.download(_pick(url, ckpts, step)))


def remote_checkpoints(url: str) -> list[tuple[int, str]]:
    """(step, URL of its pretrained_model dir) for each complete checkpoint of a remote run, oldest first.

    `url` is a run directory or its `checkpoints/` dir. A checkpoint counts once its config.json is there
    (`robotflow.storage` uploads it last).
    """
    base = url.rstrip("/")
    root = base if base.endswith("/" + CHECKPOINTS_DIR) else join(base, CHECKPOINTS_DIR)
    out = []
    for name in list_dir(root):
        model = join(root, name, PRETRAINED_MODEL_DIR)
        if name.isdigit() and exists(join(model, "config.json")):
            out.append((int(name), model))
    return sorted(out)


def _check_single(where: str, step: int | str | None) -> None:
    if step not in (None, "last"):
        raise CheckpointError(f"{where} is a single checkpoint; --checkpoint {step} needs the run directory")


def _info(model_dir: Path) -> CheckpointInfo:
    """A local pretrained_model dir as a CheckpointInfo; the step comes from its step dir's name."""
    step_dir = model_dir.parent if model_dir.name == PRETRAINED_MODEL_DIR else model_dir
    spec = read_checkpoint_spec(model_dir)
    return CheckpointInfo(
        int(step_dir.name) if step_dir.name.isdigit() else None, model_dir, spec_name(spec) if spec else None, spec
    )


def _pick(where: str, ckpts: list[tuple[int, T]], step: int | str | None) -> T:
    """The checkpoint of `step` (None or `last`: the newest) among (step, checkpoint) pairs, oldest first."""
    if step is None or step == "last":
        return ckpts[-1][1]
    try:
        want = int(step)
    except (TypeError, ValueError):
        raise CheckpointError(f"checkpoint step must be an integer or 'last', got {step!r}") from None
    for s, found in ckpts:
        if s == want:
            return found
    raise CheckpointError(
        f"run {where} has no checkpoint at step {want}; available: {', '.join(str(s) for s, _ in ckpts)}"
    )
