"""Training runs, their checkpoints, and the codec spec stored beside each checkpoint.

LeRobot's training loop writes a run as::

    <output-dir>/<run-name>/
        checkpoints/
            000500/pretrained_model/{config.json, model.safetensors, train_config.json,
                                     policy_preprocessor.json, policy_postprocessor.json, *.safetensors,
                                     robotflow_codec.json}   <- added by `robotflow train`
            000500/training_state/...
            last -> 000500

These helpers read that layout (and nothing else): they are what `robotflow rollout --list` and
`--checkpoint STEP` use, and what the policy nodes use to find the weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINTS_DIR = "checkpoints"  # lerobot.utils.constants.CHECKPOINTS_DIR
LAST_CHECKPOINT_LINK = "last"  # lerobot.utils.constants.LAST_CHECKPOINT_LINK
PRETRAINED_MODEL_DIR = "pretrained_model"  # lerobot.utils.constants.PRETRAINED_MODEL_DIR
CODEC_FILENAME = "robotflow_codec.json"


class CheckpointError(FileNotFoundError):
    """A run directory or checkpoint that does not exist or lacks the files a policy needs."""


class CodecMismatchError(ValueError):
    """The checkpoint was trained with another codec than the one the graph uses."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One saved checkpoint of a run."""

    step: int
    path: Path  # the `pretrained_model` directory: what `from_pretrained` reads
    codec: str | None  # codec name from robotflow_codec.json, None when the file is missing

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
        spec = read_codec_spec(model_dir)
        found.append(CheckpointInfo(int(child.name), model_dir, codec_name(spec) if spec else None))
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


# ---- codec spec ---------------------------------------------------------------------------------


def codec_name(spec: dict[str, Any] | str) -> str:
    """The codec's name in a spec (a spec may also be given as just its name)."""
    if isinstance(spec, str):
        return spec
    name = spec.get("name") or spec.get("codec") or spec.get("type")
    if not name:
        raise ValueError(f"codec spec has no 'name': {spec!r}")
    return str(name)


def read_codec_spec(model_dir: str | Path) -> dict[str, Any] | None:
    """The codec spec saved beside a checkpoint, or None when there is none."""
    f = Path(model_dir) / CODEC_FILENAME
    if not f.is_file():
        return None
    return json.loads(f.read_text())


def write_codec_spec(model_dir: str | Path, spec: dict[str, Any]) -> Path:
    """Store the codec spec beside a checkpoint (atomic: a reader never sees half a file)."""
    f = Path(model_dir) / CODEC_FILENAME
    tmp = f.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    tmp.replace(f)
    return f


def read_dataset_codec_spec(dataset_root: str | Path) -> dict[str, Any] | None:
    """The codec spec a LeRobot dataset was converted with, or None when it has none.

    Uses `robotflow.codecs.read_dataset_codec_spec` (the codecs package owns the format) when importable;
    otherwise reads `<root>/meta/robotflow_codec.json`, then `meta/info.json["robotflow_codec"]`.
    """
    root = Path(dataset_root).expanduser()
    try:
        from robotflow.codecs import CodecError
        from robotflow.codecs import read_dataset_codec_spec as _codecs_read
    except ImportError:
        _codecs_read = None
    if _codecs_read is not None:
        try:
            return dict(_codecs_read(root))
        except CodecError:
            return None
    f = root / "meta" / CODEC_FILENAME
    if f.is_file():
        return json.loads(f.read_text())
    info = root / "meta" / "info.json"
    if info.is_file():
        spec = json.loads(info.read_text()).get("robotflow_codec")
        if spec is not None:
            return spec if isinstance(spec, dict) else {"name": str(spec)}
    return None


def canonical_codec_name(name: str) -> str:
    """Resolve codec aliases (`ee` -> `eepose_absolute`) when the codecs package knows the name."""
    try:
        from robotflow.codecs import canonical_name
    except ImportError:
        return name
    try:
        return canonical_name(name)
    except ValueError:
        return name


def _spec_of(codec: Any) -> dict[str, Any]:
    """A codec object's spec dict (codecs expose `spec()`)."""
    spec = codec.spec() if callable(getattr(codec, "spec", None)) else codec
    if isinstance(spec, str):
        return {"name": spec}
    return dict(spec)


def check_codec(model_dir: str | Path, expected: Any, *, require_spec: bool = True) -> dict[str, Any] | None:
    """Refuse a checkpoint whose codec differs from the graph's.

    `expected` is a codec name, a spec dict or a codec object. Names must match; when both full specs are
    known they must match too (same name with other image sizes or keys would fail at the first tick
    instead). Returns the checkpoint's spec. A checkpoint without a codec file is refused when
    `require_spec` (checkpoints trained by `robotflow train` always have one).
    """
    got = read_codec_spec(model_dir)
    want_spec = expected if isinstance(expected, dict) else (None if isinstance(expected, str) else _spec_of(expected))
    want_name = canonical_codec_name(codec_name(want_spec if want_spec is not None else expected))
    if got is None:
        if require_spec:
            raise CodecMismatchError(
                f"checkpoint {model_dir} has no {CODEC_FILENAME} (not trained by `robotflow train`?); "
                f"the graph uses codec {want_name!r}: copy the dataset's codec spec there to confirm it matches"
            )
        return None
    got_name = canonical_codec_name(codec_name(got))
    if got_name != want_name:
        raise CodecMismatchError(
            f"codec mismatch: checkpoint {model_dir} was trained with codec {got_name!r} but the graph uses {want_name!r}"
        )
    if want_spec is not None:
        diffs = _spec_differences(got, want_spec)
        if diffs:
            raise CodecMismatchError(
                f"codec mismatch: checkpoint {model_dir} codec {got_name!r} differs from the graph's {want_name!r}: "
                f"{'; '.join(diffs)} (checkpoint vs graph)"
            )
    return got


def _spec_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    try:
        from robotflow.codecs import spec_differences
    except ImportError:
        a, b = _normalise(a), _normalise(b)
        return [
            f"{k}: {json.dumps(a.get(k))} != {json.dumps(b.get(k))}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
    return list(spec_differences(a, b))


def _normalise(spec: dict[str, Any]) -> Any:
    # JSON round trip: tuples become lists, so an in-memory spec compares equal to the stored one.
    return json.loads(json.dumps(spec, sort_keys=True))
