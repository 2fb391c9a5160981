"""Policies: LeRobot checkpoints in robotflow graphs.

- `checkpoints`: run layout helpers (`list_checkpoints`, `remote_checkpoints`, `latest_step`) and the one
  resolver, `resolve_checkpoint` (local path or URL, step -> local pretrained_model dir). No torch import.
  The codec a checkpoint runs with is `robotflow.codecs.spec.checkpoint_codec`.
- `loading.load_policy`: a checkpoint of any LeRobot policy type with its saved pre/post-processors and codec.
- `chunking.ChunkExecutor`: asynchronous action-chunk execution (ACT); `SyncPolicyRunner`: LeRobot's own
  synchronous path for any policy.
- `nodes`: the `policy.act` and `policy.lerobot` graph nodes.

See docs/policies.md.
"""

from .checkpoints import (
    CheckpointError,
    CheckpointInfo,
    latest_step,
    list_checkpoints,
    remote_checkpoints,
    resolve_checkpoint,
)

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "latest_step",
    "list_checkpoints",
    "remote_checkpoints",
    "resolve_checkpoint",
]
