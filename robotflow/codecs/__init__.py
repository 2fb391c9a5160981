"""Codecs: observation encoders + action decoders, and the LeRobot dataset export.

Public API (see docs/codecs.md):

- ``get_codec(name, **params)`` / ``codec_from_spec(spec)`` / ``load_dataset_codec(root)``
- ``Codec.encode_live(latest)``, ``Codec.decode(action)``, ``Codec.reset()``, ``Codec.spec()``,
  ``Codec.features()``
- ``convert(...)`` / ``append(...)`` for recorded episodes -> LeRobot v3.0 datasets.

The export half imports LeRobot lazily (inside functions), so the policy node can import codecs
without paying for LeRobot's dataset stack.
"""

from robotflow.codecs.codec import (
    ALIASES,
    DEFAULT_CAMERAS,
    DEFAULT_IMAGE_SIZE,
    LAYOUTS,
    Codec,
    CodecError,
    CodecLayout,
    CodecParams,
    available_codecs,
    canonical_name,
    codec_from_spec,
    get_codec,
    spec_differences,
)
from robotflow.codecs.export import (
    CODEC_SPEC_FILE,
    INFO_CODEC_KEY,
    ConvertError,
    ConvertOptions,
    ConvertSummary,
    append,
    convert,
    load_dataset_codec,
    read_dataset_codec_spec,
    video_backend,
    write_codec_spec,
)

__all__ = [
    "ALIASES",
    "DEFAULT_CAMERAS",
    "DEFAULT_IMAGE_SIZE",
    "LAYOUTS",
    "Codec",
    "CodecError",
    "CodecLayout",
    "CodecParams",
    "available_codecs",
    "canonical_name",
    "codec_from_spec",
    "get_codec",
    "spec_differences",
    "CODEC_SPEC_FILE",
    "INFO_CODEC_KEY",
    "ConvertError",
    "ConvertOptions",
    "ConvertSummary",
    "append",
    "convert",
    "load_dataset_codec",
    "read_dataset_codec_spec",
    "video_backend",
    "write_codec_spec",
]
