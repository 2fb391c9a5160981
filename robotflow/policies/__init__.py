"""Policies: LeRobot checkpoints in robotflow graphs.

- `checkpoints`: run layout helpers (`list_checkpoints`, `remote_checkpoints`, `latest_step`) and the one
  resolver, `resolve_checkpoint` (local path or URL, step -> local pretrained_model dir). No torch import.
  The codec a checkpoint runs with is `robotflow.codecs.spec.checkpoint_codec`.
- `loading.load_policy`: a checkpoint of any LeRobot policy type with its saved pre/post-processors and codec.
- `inference.PolicyInference`: LeRobot's inference steps for one policy, shared by everything below.
- `chunking.ChunkExecutor`: asynchronous action-chunk execution (ACT, or a remote chunk source);
  `sync_runner.SyncPolicyRunner`: LeRobot's own synchronous `select_action` path for any policy.
- `base.PolicyNode`: episode gating and observation staleness of every policy node.
- `nodes`: the `policy.act` and `policy.lerobot` graph nodes; `remote`: `policy.remote` (Protocol v1, `robotflow.wire`).

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
