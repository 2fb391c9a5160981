"""Codecs: observation encoders + action decoders, their specs, and the LeRobot dataset export.

Public API (see docs/codecs.md):

- ``get_codec(name, **params)`` / ``codec_from_spec(spec)`` / ``load_dataset_codec(root)``
- ``Codec.encode_live(latest)``, ``Codec.decode(action)``, ``Codec.decode_chunk(actions)``, ``Codec.reset()``,
  ``Codec.spec()``, ``Codec.features()``
- ``robotflow.codecs.spec``: spec files of datasets and checkpoints, ``checkpoint_codec(model_dir)``,
  the mismatch checks.
- ``convert(...)`` / ``append(...)`` for recorded episodes -> LeRobot v3.0 datasets.

The export half imports LeRobot lazily (inside functions), so the policy node can import codecs
without paying for LeRobot's dataset stack.
"""

from robotflow.codecs.codec import (
    ALIASES,
    DEFAULT_CAMERAS,
    DEFAULT_IMAGE_SIZE,
    LAYOUTS,
    PRIVILEGED_CHANNELS,
    Codec,
    CodecChannels,
    CodecError,
    CodecLayout,
    CodecParams,
    available_codecs,
    canonical_name,
    check_camera_only,
    get_codec,
)
from robotflow.codecs.export import (
    ConvertError,
    ConvertOptions,
    ConvertSummary,
    append,
    convert,
    video_backend,
)
from robotflow.codecs.spec import (
    CHECKPOINT_SPEC_FILE,
    DATASET_SPEC_FILE,
    INFO_CODEC_KEY,
    CheckpointCodec,
    CodecMismatchError,
    checkpoint_codec,
    codec_from_spec,
    load_dataset_codec,
    read_checkpoint_spec,
    read_dataset_spec,
    spec_differences,
    write_checkpoint_spec,
    write_dataset_spec,
)

__all__ = [
    "ALIASES",
    "DEFAULT_CAMERAS",
    "DEFAULT_IMAGE_SIZE",
    "LAYOUTS",
    "PRIVILEGED_CHANNELS",
    "Codec",
    "CodecChannels",
    "CodecError",
    "CodecLayout",
    "CodecParams",
    "available_codecs",
    "canonical_name",
    "check_camera_only",
    "get_codec",
    "ConvertError",
    "ConvertOptions",
    "ConvertSummary",
    "append",
    "convert",
    "video_backend",
    "CHECKPOINT_SPEC_FILE",
    "DATASET_SPEC_FILE",
    "INFO_CODEC_KEY",
    "CheckpointCodec",
    "CodecMismatchError",
    "checkpoint_codec",
    "codec_from_spec",
    "load_dataset_codec",
    "read_checkpoint_spec",
    "read_dataset_spec",
    "spec_differences",
    "write_checkpoint_spec",
    "write_dataset_spec",
]
