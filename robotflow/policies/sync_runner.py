"""`SyncPolicyRunner`: any LeRobot policy (act, diffusion, ...) through its own `select_action`, one tick at a time."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .chunking import ExecutorStats
from .inference import PolicyInference


class SyncPolicyRunner:
    """Any LeRobot policy (act, diffusion, ...) through LeRobot's own inference path.

    Each `step()` is `lerobot.utils.control_utils.predict_action`: prepare -> preprocessor ->
    `select_action` (the policy's own action / observation queues) -> postprocessor. Synchronous: a tick
    that needs a new chunk waits for its forward pass.
    """

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, *, device: str | None = None):
        self.inference = PolicyInference(policy, preprocessor, postprocessor, device=device)
        self.policy = policy
        self.stats = ExecutorStats()

    def step(
        self, observation: Mapping[str, Any], now_ns: int | None = None, observation_ns: int | None = None
    ) -> np.ndarray:
        """The next action of LeRobot's own queue (timestamps are accepted for the node's sake and unused)."""
        with torch.inference_mode():  # as inside LeRobot's predict_action
            action = self.inference.select_action(self.inference.batch(observation))
            action = self.inference.unnormalize(action)
        self.stats.ticks += 1
        return action

    def warmup(self, observation: Mapping[str, Any] | None = None) -> float:
        t = time.perf_counter()
        self.step(observation if observation is not None else self.inference.dummy_observation())
        self.policy.reset()
        return time.perf_counter() - t

    def reset(self) -> None:
        self.policy.reset()

    def close(self) -> bool:
        return True  # no thread of its own: the policy is idle once the node's tick returns
