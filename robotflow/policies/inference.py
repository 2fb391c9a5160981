"""One inference path for a LeRobot policy, LeRobot's own: prepare -> preprocessor -> policy -> postprocessor.

`PolicyInference` is what the chunk executor (`ChunkExecutor`), the synchronous runner (`SyncPolicyRunner`)
and the server (`robotflow.serving.server.ServedModel`) run a policy with. Its steps are those of
`lerobot.utils.control_utils.predict_action` (tests/test_policy_chunking.py checks the executor against it
with `torch.equal`), with the policy call split in two public entry points:

- `predict_chunk(batch)`: `policy.predict_action_chunk`, a whole normalized chunk (the executor, the server);
- `select_action(batch)`: `policy.select_action`, one action from the policy's own queues (the runner).

Observations are LeRobot frames of numpy arrays (`observation.state` (S,), `observation.images.X`
(H, W, 3) uint8, optional `task` text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from lerobot.configs.types import FeatureType
from lerobot.policies.utils import populate_queues, prepare_observation_for_inference
from lerobot.utils.constants import ACTION, OBS_IMAGES


class PolicyInference:
    """A LeRobot policy with the pre/post-processors saved beside it, run the way LeRobot runs it.

    Call the methods under `torch.inference_mode()` (as `predict_action` does); `predict_chunk` and
    `select_action` enter it themselves.
    """

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, *, device: str | None = None):
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.device = torch.device(device or getattr(policy.config, "device", None) or "cpu")
        # A policy that predicts from a history of observations (diffusion's n_obs_steps) says so with
        # observation_delta_indices; ACT's is None.
        self.keeps_history = policy.config.observation_delta_indices is not None
        policy.eval()
        policy.reset()

    @property
    def config(self) -> Any:
        return self.policy.config

    def use_channels_last(self) -> None:
        """Keep the convolution weights channels-last. On these CPUs oneDNN then runs ACT's resnet18 on two
        240x320 images 15% faster (177 -> 150 ms p50, in one process, alternating), with the same actions up to
        float rounding (max difference 1.2e-7); it is not bit-identical to LeRobot's own path, so only the
        inference server turns it on."""
        self.policy.to(memory_format=torch.channels_last)

    def batch(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        """A frame -> the preprocessed batch the policy reads (`prepare_observation_for_inference`)."""
        frame = {}
        for k, v in observation.items():
            if isinstance(v, np.ndarray):
                # Arrays from channels are read-only views; torch.from_numpy wants a writable buffer.
                frame[k] = v if v.flags.writeable else v.copy()
            elif k not in ("task", "robot_type"):
                frame[k] = np.asarray(v)
        prepared = prepare_observation_for_inference(
            frame, self.device, observation.get("task"), observation.get("robot_type")
        )
        return self.preprocessor(prepared)

    @torch.inference_mode()
    def predict_chunk(self, batch: dict[str, Any], history: dict[str, Any] | None = None) -> torch.Tensor:
        """A (batch, n, action_dim) normalized chunk; `history`: see `new_history` (policies that keep one)."""
        if self.keeps_history:
            if history is None:
                raise ValueError(f"a {self.config.type} policy predicts from an observation history: pass one")
            batch = _feed_history(self.policy, batch, history)
        chunk = self.policy.predict_action_chunk(batch)
        return chunk if chunk.ndim == 3 else chunk.unsqueeze(0)

    @torch.inference_mode()
    def select_action(self, batch: dict[str, Any]) -> torch.Tensor:
        """The policy's own next (batch, action_dim) normalized action, from its own queues."""
        return self.policy.select_action(batch)

    def unnormalize(self, actions: torch.Tensor) -> np.ndarray:
        """Normalized actions (batch first) -> the first batch item's unnormalized float32 numpy actions."""
        return self.postprocessor(actions)[0].float().cpu().numpy()

    def new_history(self) -> dict[str, Any] | None:
        """Fresh observation history for one stream of observations (a served session); None for policies
        that keep none."""
        if not self.keeps_history:
            return None
        self.policy.reset()
        return _swap_history(self.policy, None)

    def reset(self) -> None:
        self.policy.reset()

    def dummy_observation(self) -> dict[str, np.ndarray]:
        return dummy_observation(self.config)


def _swap_history(policy: Any, history: dict[str, Any] | None) -> dict[str, Any]:
    # LeRobot 0.4.4 keeps a policy's observation history in the private `_queues` and feeds it only inside
    # `select_action`, which also pops its action queue: there is no public way to keep one history per
    # served session. These two functions are the only place robotflow touches it.
    old = policy._queues
    if history is not None:
        policy._queues = history
    return old


def _feed_history(policy: Any, batch: dict[str, Any], history: dict[str, Any]) -> dict[str, Any]:
    """Add an observation to a session's history, as the policy's own `select_action` does before it calls
    `predict_action_chunk`; returns the batch to predict from (the policy then reads `history`)."""
    batch = {k: v for k, v in batch.items() if k != ACTION}
    image_keys = list(getattr(policy.config, "image_features", None) or [])
    if image_keys and OBS_IMAGES in history:
        batch[OBS_IMAGES] = torch.stack([batch[k] for k in image_keys], dim=-4)
    updated = populate_queues(history, batch)
    _swap_history(policy, updated)
    return batch


def dummy_observation(policy_config: Any) -> dict[str, np.ndarray]:
    """Zeros shaped like a policy's inputs, in the numpy frame layout `PolicyInference.batch` takes."""
    obs: dict[str, np.ndarray] = {}
    for key, feat in policy_config.input_features.items():
        if feat.type is FeatureType.VISUAL:
            c, h, w = feat.shape
            obs[key] = np.zeros((h, w, c), dtype=np.uint8)
        else:
            obs[key] = np.zeros(feat.shape, dtype=np.float32)
    return obs
