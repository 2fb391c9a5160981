"""Policies: LeRobot checkpoints in robotflow graphs.

- `checkpoints`: run layout helpers (`list_checkpoints`, `latest_step`, `resolve_checkpoint`) and the codec
  spec stored beside each checkpoint (`check_codec`, `CodecMismatchError`). No torch import.
- `loading.load_policy`: a checkpoint of any LeRobot policy type with its saved pre/post-processors.
- `chunking.ChunkExecutor`: asynchronous action-chunk execution (ACT); `SyncPolicyRunner`: LeRobot's own
  synchronous path for any policy.
- `nodes`: the `policy.act` and `policy.lerobot` graph nodes.

See docs/policies.md.
"""

from .checkpoints import (
    CODEC_FILENAME,
    CheckpointError,
    CheckpointInfo,
    CodecMismatchError,
    check_codec,
    latest_step,
    list_checkpoints,
    read_codec_spec,
    resolve_checkpoint,
)

__all__ = [
    "CODEC_FILENAME",
    "CheckpointError",
    "CheckpointInfo",
    "CodecMismatchError",
    "check_codec",
    "latest_step",
    "list_checkpoints",
    "read_codec_spec",
    "resolve_checkpoint",
]
