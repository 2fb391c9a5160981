"""Codec specs: how a codec travels with a dataset and a checkpoint, and the checks that they agree.

This module is the one place that reads and writes spec files:

- dataset: ``<root>/meta/robotflow_codec.json`` (the source of truth: LeRobot's aggregation rewrites
  info.json from scratch) and a copy under ``robotflow_codec`` in ``meta/info.json`` (so LeRobot's own
  metadata shows it);
- checkpoint: ``<pretrained_model>/robotflow_codec.json``, written by ``robotflow train`` as each
  checkpoint is saved.

A checkpoint trained by plain ``lerobot-train`` has no spec beside it. :func:`checkpoint_codec` then follows
its ``train_config.json`` to the dataset it was trained on, or takes the codec the caller names, and in every
case checks the codec against the feature shapes in the checkpoint's ``config.json``, so a policy is never
fed an observation of another shape.

Which differences matter: the codec name (aliases resolved), the camera names, image size, fps, task field,
object names and the feature shapes/names. Channel names (``channels`` and the channel of each camera) are
wiring: a checkpoint trained on episodes from a node called ``robot`` runs in a graph whose arm node is
``arm``, and ``convert append`` adds episodes recorded under other node names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robotflow.codecs.codec import (
    ALIASES,
    CODEC_SPEC_FORMAT,
    DEFAULT_CAMERAS,
    Codec,
    CodecError,
    CodecParams,
    check_camera_only,
    get_codec,
)

__all__ = [
    "DATASET_SPEC_FILE",
    "INFO_CODEC_KEY",
    "CHECKPOINT_SPEC_FILE",
    "TRAIN_CONFIG_FILE",
    "CodecMismatchError",
    "CheckpointCodec",
    "spec_name",
    "codec_from_spec",
    "spec_differences",
    "check_same_codec",
    "write_dataset_spec",
    "read_dataset_spec",
    "load_dataset_codec",
    "read_checkpoint_spec",
    "write_checkpoint_spec",
    "checkpoint_codec",
]

DATASET_SPEC_FILE = "meta/robotflow_codec.json"
INFO_CODEC_KEY = "robotflow_codec"
CHECKPOINT_SPEC_FILE = "robotflow_codec.json"
TRAIN_CONFIG_FILE = "train_config.json"  # lerobot.configs.train.TRAIN_CONFIG_NAME
# Params that say where a codec reads, not what it produces (see the module docstring).
_WIRING_PARAMS = ("channels",)


class CodecMismatchError(CodecError):
    """Two codecs that must agree do not (dataset vs this run, checkpoint vs graph); the message is one line."""


def spec_name(spec: Mapping[str, Any] | str) -> str:
    """The canonical codec name of a spec (or of a bare name): aliases resolve, unknown names stay as written."""
    name = spec if isinstance(spec, str) else spec.get("name")
    if not name:
        raise CodecError(f"codec spec has no 'name': {json.dumps(spec)[:200]}")
    return ALIASES.get(str(name), str(name))


def _as_spec(codec: Codec | Mapping[str, Any]) -> dict[str, Any]:
    return codec.spec() if isinstance(codec, Codec) else dict(codec)


def codec_from_spec(spec: Mapping[str, Any] | str) -> Codec:
    """Rebuild a codec from :meth:`Codec.spec` output (a dict or its JSON text) and verify its features.

    A spec whose recorded feature shapes differ from what this version of the codec produces is
    refused: a checkpoint trained on one layout must never be driven through another.
    """
    if isinstance(spec, str):
        spec = json.loads(spec)
    if spec.get("format", CODEC_SPEC_FORMAT) != CODEC_SPEC_FORMAT:
        raise CodecError(f"unsupported codec spec format {spec.get('format')!r}")
    codec = Codec(spec_name(spec), CodecParams.from_json(spec.get("params", {})))
    if codec.layout.camera_only:  # said as such, not as a generic feature mismatch
        check_camera_only(codec.name, spec.get("features", {}), {})
    if "features" in spec:
        diffs = _feature_differences(spec.get("features", {}), codec.spec()["features"])
        if diffs:
            raise CodecError(f"codec spec for '{codec.name}' does not match this robotflow version: {diffs[0]}")
    return codec


def _comparable_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The params that must agree: wiring dropped, camera channels reduced to camera names."""
    params = dict(spec.get("params", {}))
    for key in _WIRING_PARAMS:
        params.pop(key, None)
    if "cameras" in params:
        params["cameras"] = sorted(params["cameras"] or {})
    return params


def _feature_differences(fa: Mapping[str, Any], fb: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key in sorted(set(fa) | set(fb)):
        if key not in fa or key not in fb:
            out.append(f"feature {key} only in {'first' if key in fa else 'second'}")
            continue
        a, b = fa[key], fb[key]
        sa, sb = list(a.get("shape", [])), list(b.get("shape", []))
        if sa != sb or a.get("dtype") != b.get("dtype"):
            out.append(f"feature {key}: {a.get('dtype')}{sa} != {b.get('dtype')}{sb}")
        elif list(a.get("names") or []) != list(b.get("names") or []):
            out.append(f"feature {key}: names differ")
    return out


def spec_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two codec specs that make them incompatible (empty when compatible).

    Channel names are wiring and never differ; cameras compare by name, not by the channel they were read from.
    """
    out: list[str] = []
    name_a, name_b = spec_name(a), spec_name(b)
    if name_a != name_b:
        out.append(f"codec '{name_a}' != '{name_b}'")
    pa, pb = _comparable_params(a), _comparable_params(b)
    for key in sorted(set(pa) | set(pb)):
        if pa.get(key) != pb.get(key):
            out.append(f"param {key}: {json.dumps(pa.get(key))} != {json.dumps(pb.get(key))}")
    out.extend(_feature_differences(a.get("features", {}), b.get("features", {})))
    return out


def check_same_codec(
    have: Codec | Mapping[str, Any], want: Codec | Mapping[str, Any], *, have_what: str, want_what: str
) -> None:
    """Raise :class:`CodecMismatchError` (one line, both sides named) unless the two codecs are compatible."""
    a, b = _as_spec(have), _as_spec(want)
    diffs = spec_differences(a, b)
    if diffs:
        raise CodecMismatchError(
            f"codec mismatch: {have_what} has codec '{spec_name(a)}' and {want_what} '{spec_name(b)}': "
            + "; ".join(diffs[:3])
        )


# ---- datasets ------------------------------------------------------------------------------------


def write_dataset_spec(root: str | Path, codec: Codec | Mapping[str, Any]) -> None:
    """Store the codec spec in ``meta/robotflow_codec.json`` and under ``robotflow_codec`` in info.json."""
    root = Path(root)
    spec = _as_spec(codec)
    (root / DATASET_SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info[INFO_CODEC_KEY] = spec
    info_path.write_text(json.dumps(info, indent=4, ensure_ascii=False) + "\n")


def read_dataset_spec(root: str | Path) -> dict[str, Any]:
    """The codec spec a LeRobot dataset was converted with; :class:`CodecError` when it has none."""
    root = Path(root).expanduser()
    spec_file = root / DATASET_SPEC_FILE
    if spec_file.is_file():
        return _read_json(spec_file)
    info_path = root / "meta" / "info.json"
    if info_path.is_file():
        info = _read_json(info_path)
        if isinstance(info.get(INFO_CODEC_KEY), dict):
            return info[INFO_CODEC_KEY]
        raise CodecError(f"{root}: LeRobot dataset has no robotflow codec (not converted by robotflow convert)")
    raise CodecError(f"{root}: not a LeRobot dataset (no meta/info.json)")


def load_dataset_codec(root: str | Path) -> Codec:
    """The :class:`Codec` a dataset was converted with."""
    return codec_from_spec(read_dataset_spec(root))


# ---- checkpoints ---------------------------------------------------------------------------------


def read_checkpoint_spec(model_dir: str | Path) -> dict[str, Any] | None:
    """The codec spec saved beside a checkpoint by ``robotflow train``, or None when there is none."""
    f = Path(model_dir) / CHECKPOINT_SPEC_FILE
    return _read_json(f) if f.is_file() else None


def write_checkpoint_spec(model_dir: str | Path, codec: Codec | Mapping[str, Any]) -> Path:
    """Store the codec spec beside a checkpoint (atomic: a reader never sees half a file)."""
    f = Path(model_dir) / CHECKPOINT_SPEC_FILE
    tmp = f.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_as_spec(codec), indent=2, sort_keys=True) + "\n")
    tmp.replace(f)
    return f


@dataclass(frozen=True)
class CheckpointCodec:
    """The codec a checkpoint runs with and where it came from (for messages and summaries)."""

    spec: dict[str, Any]
    source: str

    @property
    def name(self) -> str:
        return spec_name(self.spec)

    def codec(self) -> Codec:
        """A fresh codec (its live state, the quaternion history, is per user)."""
        return codec_from_spec(self.spec)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CodecError(f"{path}: unreadable JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise CodecError(f"{path}: expected a JSON object")
    return doc


def _lerobot_home() -> Path:
    """Where LeRobot keeps datasets given by repo_id only (lerobot.utils.constants.HF_LEROBOT_HOME)."""
    if os.environ.get("HF_LEROBOT_HOME"):
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home).expanduser() / "lerobot"


def _training_dataset(model_dir: Path) -> Path | None:
    """The dataset root named by the checkpoint's train_config.json (None when it names none)."""
    f = model_dir / TRAIN_CONFIG_FILE
    if not f.is_file():
        return None
    ds = _read_json(f).get("dataset") or {}
    if ds.get("root"):
        return Path(str(ds["root"])).expanduser()
    if ds.get("repo_id"):
        return _lerobot_home() / str(ds["repo_id"])
    return None


def _config_image_size(config: Mapping[str, Any]) -> tuple[int, int] | None:
    sizes = {
        tuple(f["shape"][-2:])
        for k, f in (config.get("input_features") or {}).items()
        if k.startswith("observation.images.") and len(f.get("shape", [])) == 3
    }
    return sizes.pop() if len(sizes) == 1 else None


def _check_against_config(spec: Mapping[str, Any], config: Mapping[str, Any], model_dir: Path, source: str) -> None:
    """The codec's features must be exactly the policy's input/output features (images CHW in LeRobot's config)."""
    inputs = config.get("input_features")
    outputs = config.get("output_features")
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        return  # a config without feature shapes (not a LeRobot policy we know): nothing to compare
    want: dict[str, list[int]] = {}
    for key, ft in spec.get("features", {}).items():
        shape = list(ft.get("shape", []))
        if ft.get("dtype") in ("video", "image") and len(shape) == 3:
            shape = [shape[2], shape[0], shape[1]]
        want[key] = shape
    have = {k: list(v.get("shape", [])) for k, v in {**inputs, **outputs}.items()}
    name = spec_name(spec)
    for key in sorted(set(want) | set(have)):
        if key not in have:
            problem = f"the policy has no input {key}"
        elif key not in want:
            problem = f"the policy needs {key} {have[key]}, which the codec does not produce"
        elif have[key] != want[key]:
            problem = f"{key} is {have[key]} in the policy and {want[key]} from the codec"
        else:
            continue
        raise CodecMismatchError(f"codec mismatch: checkpoint {model_dir} and codec '{name}' ({source}): {problem}")


def _declared_differences(spec: Mapping[str, Any], name: str | None, cameras: Sequence[str] | None) -> str | None:
    if name is not None and ALIASES.get(name, name) != spec_name(spec):
        return f"was trained with codec '{spec_name(spec)}' but the graph uses '{ALIASES.get(name, name)}'"
    have = sorted((spec.get("params") or {}).get("cameras") or {})
    if cameras is not None and sorted(cameras) != have:
        return f"was trained with cameras {have} but the graph declares {sorted(cameras)}"
    return None


def checkpoint_codec(
    model_dir: str | Path, codec: str | None = None, *, cameras: Sequence[str] | None = None
) -> CheckpointCodec:
    """The codec a checkpoint (a ``pretrained_model`` dir) was trained with.

    Looked up in order: ``robotflow_codec.json`` beside it (``robotflow train``); the dataset its
    ``train_config.json`` names (``dataset.root``, else LeRobot's cache for ``dataset.repo_id``) and that
    dataset's ``meta/robotflow_codec.json`` (plain ``lerobot-train`` on a converted dataset); else ``codec``,
    a codec name, with ``cameras`` (default: the policy's image inputs) and the image size of the policy's
    config.

    ``codec`` and ``cameras`` are also what the caller declares (a graph's policy node, ``--codec``): a
    stored spec of another codec or other cameras raises :class:`CodecMismatchError`. Whatever the source,
    the codec's feature shapes must equal the policy's input/output features. Every error is one line.
    """
    model_dir = Path(model_dir)
    config_file = model_dir / "config.json"
    config = _read_json(config_file) if config_file.is_file() else {}
    spec = read_checkpoint_spec(model_dir)
    source = f"{CHECKPOINT_SPEC_FILE} beside the checkpoint"
    why_not = f"no {TRAIN_CONFIG_FILE} names a robotflow dataset"
    if spec is None:
        root = _training_dataset(model_dir)
        if root is not None and (root / "meta").is_dir():
            try:
                spec = read_dataset_spec(root)
                source = f"dataset {root}, from {TRAIN_CONFIG_FILE}"
            except CodecError:  # a LeRobot dataset robotflow did not convert
                why_not = f"its training dataset {root} ({TRAIN_CONFIG_FILE}) has no robotflow codec"
        elif root is not None:
            why_not = f"its training dataset {root} ({TRAIN_CONFIG_FILE}) is not on this machine"
    if spec is not None:
        problem = _declared_differences(spec, codec, cameras)
        if problem:
            raise CodecMismatchError(f"codec mismatch: checkpoint {model_dir} {problem} ({source})")
    elif codec is not None:
        image_size = _config_image_size(config)
        if cameras is None:
            cameras = [
                k.removeprefix("observation.images.")
                for k in config.get("input_features") or {}
                if k.startswith("observation.images.")
            ]
        # Channels of the cameras are wiring (see module docs): the contract names for known cameras.
        cams = {c: DEFAULT_CAMERAS.get(c, f"{c}_camera/frame") for c in cameras}
        spec = get_codec(codec, cameras=cams, image_size=image_size).spec()
        source = "the codec named by the graph or --codec"
    else:
        raise CodecError(
            f"checkpoint {model_dir} has no {CHECKPOINT_SPEC_FILE} and {why_not}: name its codec (--codec NAME, "
            f"or the policy node's codec param), or copy the dataset's {DATASET_SPEC_FILE} beside it "
            f"as {CHECKPOINT_SPEC_FILE}"
        )
    _check_against_config(spec, config, model_dir, source)
    return CheckpointCodec(dict(spec), source)
