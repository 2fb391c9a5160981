"""Asynchronous action-chunk execution around a LeRobot chunking policy (ACT).

LeRobot's `ACTPolicy.select_action` runs a whole forward pass inline every `n_action_steps` ticks
(about 140 ms for resnet18 / dim 512 / two 240x320 cameras on two CPU cores): at 15 Hz that tick is
two periods late. `ChunkExecutor` keeps LeRobot's semantics but moves the forward pass to a worker
thread that starts *before* the queue runs dry, so a control tick only pops a precomputed action.

Timing model (async). Ticks are counted by the executor: every `step()` call consumes one action.
When the queue falls to `refill_at` actions at tick `t0`, the observation of tick `t0` is handed to
the worker. The chunk it returns is indexed like LeRobot's: action `i` is meant for tick `t0 + i`.
It arrives at a later tick `t`; by then `t - t0` actions have already been executed from the old
chunk, so the new chunk is installed from index `t - t0` on (those first actions are "elapsed" and
skipped) and it replaces what was left of the old one, which came from an older observation.
Counting in ticks rather than seconds keeps this exact under the simulator's virtual clock.

With `async_inference=False` the executor reproduces `lerobot.utils.control_utils.predict_action`
(prepare -> preprocessor -> `select_action` -> postprocessor) bit for bit, with and without
temporal ensembling: tests/test_policy_chunking.py checks it with `torch.equal`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

log = logging.getLogger("robotflow.policies")


@dataclass
class ChunkExecutorConfig:
    """How chunks are executed.

    n_action_steps: actions used from each chunk (None: the policy config's value). Like LeRobot, it is
        capped by the chunk size, and must be 1 (or None) with temporal ensembling.
    temporal_ensemble_coeff: None disables ensembling; otherwise ACT's exponential weighting
        w_i = exp(-coeff * i), w_0 the oldest prediction (ACTTemporalEnsembler semantics).
    refill_at: queue level (actions left after a tick) at which the next chunk is requested.
        None: half of n_action_steps. It must cover the inference latency in ticks, or ticks stall.
        Ignored with ensembling, where a new chunk is requested whenever the worker is idle.
    async_inference: False runs the forward pass inline, exactly like LeRobot's select_action.
    inference_threads: torch intra-op threads of the worker (None: all cores but one, so the control
        loop and drivers keep a core while a chunk is inferred).
    """

    n_action_steps: int | None = None
    temporal_ensemble_coeff: float | None = None
    refill_at: int | None = None
    async_inference: bool = True
    inference_threads: int | None = None


@dataclass
class ExecutorStats:
    """Counters of an executor since it was created."""

    ticks: int = 0
    chunks: int = 0  # chunks installed
    cold_starts: int = 0  # ticks that waited for the first chunk of an episode
    stalls: int = 0  # later ticks that had to wait for a forward pass (refill_at too low, or CPU starved)
    stale_chunks: int = 0  # chunks that arrived after their whole horizon had elapsed
    skipped_actions: int = 0  # leading actions of new chunks skipped because their ticks had elapsed
    infer_ms: deque = field(default_factory=lambda: deque(maxlen=1000))

    def as_dict(self) -> dict[str, Any]:
        d = {
            k: getattr(self, k) for k in ("ticks", "chunks", "cold_starts", "stalls", "stale_chunks", "skipped_actions")
        }
        if self.infer_ms:
            d["infer_ms_p50"] = float(np.percentile(list(self.infer_ms), 50))
        return d


class TemporalEnsembler:
    """ACT's temporal ensembling (Algorithm 2 of the ACT paper), for chunks that may arrive late.

    Same online weighted average and the same tensor operations as LeRobot's `ACTTemporalEnsembler`,
    so with one chunk per tick and no delay it gives identical results; `update(chunk, skip)` also
    accepts a chunk predicted `skip` ticks ago (async inference), whose first `skip` actions are for
    ticks already executed and are dropped. Between updates, `pop()` keeps consuming the ensemble.
    """

    def __init__(self, coeff: float, chunk_size: int):
        self.chunk_size = chunk_size
        self.weights = torch.exp(-coeff * torch.arange(chunk_size))
        self.weights_cumsum = torch.cumsum(self.weights, dim=0)
        self.reset()

    def reset(self) -> None:
        self.actions: torch.Tensor | None = None  # (batch, n, action_dim); index 0 is the current tick
        self.count: torch.Tensor | None = None  # (n, 1) predictions averaged into each entry

    def __len__(self) -> int:
        return 0 if self.actions is None else int(self.actions.shape[1])

    def update(self, chunk: torch.Tensor, skip: int = 0) -> None:
        """Average a (batch, chunk_size, action_dim) chunk, predicted `skip` ticks ago, into the ensemble."""
        self.weights = self.weights.to(device=chunk.device)
        self.weights_cumsum = self.weights_cumsum.to(device=chunk.device)
        new = chunk[:, skip:] if skip else chunk
        n_new = int(new.shape[1])
        if len(self) == 0:
            self.actions = new.clone()
            self.count = torch.ones((n_new, 1), dtype=torch.long, device=new.device)
            return
        k = min(len(self), n_new)
        head, cnt = self.actions[:, :k], self.count[:k]
        # In-place on views, in LeRobot's order of operations (bitwise-equal results).
        head *= self.weights_cumsum[cnt - 1]
        head += new[:, :k] * self.weights[cnt]
        head /= self.weights_cumsum[cnt]
        self.count[:k] = torch.clamp(cnt + 1, max=self.chunk_size)
        if n_new > k:
            self.actions = torch.cat([self.actions, new[:, k:]], dim=1)
            self.count = torch.cat([self.count, torch.ones((n_new - k, 1), dtype=torch.long, device=new.device)])

    def pop(self) -> torch.Tensor:
        """The (batch, action_dim) action of the current tick."""
        action = self.actions[:, 0]
        self.actions, self.count = self.actions[:, 1:], self.count[1:]
        return action


class NumpyTemporalEnsembler:
    """The same weighting as `TemporalEnsembler`, on unnormalized (chunk_size, action_dim) numpy chunks.

    Used by the asynchronous executor: the worker unnormalizes whole chunks, so a control tick averages
    and pops with a few numpy operations that hold the GIL briefly, instead of running LeRobot's
    postprocessor pipeline (dozens of Python calls, each a chance to wait on the inference thread).
    Unnormalizing is affine and the weights sum to one, so this equals ensembling first and
    unnormalizing after, up to float rounding (it accumulates in float64).
    """

    def __init__(self, coeff: float, chunk_size: int):
        self.chunk_size = chunk_size
        self.weights = np.exp(-coeff * np.arange(chunk_size, dtype=np.float64))
        self.weights_cumsum = np.cumsum(self.weights)
        self.reset()

    def reset(self) -> None:
        self.actions: np.ndarray | None = None  # (n, action_dim) float64; row 0 is the current tick
        self.count: np.ndarray | None = None  # (n,) predictions averaged into each row

    def __len__(self) -> int:
        return 0 if self.actions is None else len(self.actions)

    def update(self, chunk: np.ndarray, skip: int = 0) -> None:
        new = np.asarray(chunk[skip:], dtype=np.float64)
        if len(self) == 0:
            self.actions, self.count = new.copy(), np.ones(len(new), dtype=np.int64)
            return
        k = min(len(self), len(new))
        c = self.count[:k]
        self.actions[:k] = (
            self.actions[:k] * self.weights_cumsum[c - 1, None] + new[:k] * self.weights[c, None]
        ) / self.weights_cumsum[c, None]
        self.count[:k] = np.minimum(c + 1, self.chunk_size)
        if len(new) > k:
            self.actions = np.concatenate([self.actions, new[k:]])
            self.count = np.concatenate([self.count, np.ones(len(new) - k, dtype=np.int64)])

    def pop(self) -> np.ndarray:
        action = self.actions[0].astype(np.float32)
        self.actions, self.count = self.actions[1:], self.count[1:]
        return action


@dataclass
class _Job:
    generation: int
    tick: int
    observation: Mapping[str, Any]


@dataclass
class _Result:
    generation: int
    tick: int  # tick of the observation the chunk was predicted from
    chunk: Any  # np.ndarray (n_action_steps, D) postprocessed, or normalized tensor (B, C, D) when ensembling
    infer_s: float
    error: BaseException | None = None


class _InferenceWorker:
    """One thread that runs forward passes, one at a time, on the latest job it was given."""

    def __init__(self, infer, threads: int | None):
        self._infer = infer
        self._threads = threads
        self._cv = threading.Condition()
        self._job: _Job | None = None
        self._result: _Result | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="robotflow-chunk-inference", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._threads:
            # OpenMP's thread count is per calling thread: this limits the worker only.
            torch.set_num_threads(self._threads)
        while True:
            with self._cv:
                while self._job is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job, self._job = self._job, None
            t = time.perf_counter()
            try:
                res = _Result(job.generation, job.tick, self._infer(job.observation), time.perf_counter() - t)
            except BaseException as e:  # handed to the control thread, which re-raises it
                res = _Result(job.generation, job.tick, None, time.perf_counter() - t, e)
            with self._cv:
                self._result = res
                self._cv.notify_all()

    def submit(self, job: _Job) -> None:
        with self._cv:
            self._job = job
            self._cv.notify_all()

    def take(self, block: bool, timeout: float | None = None) -> _Result | None:
        with self._cv:
            if block:
                if not self._cv.wait_for(lambda: self._result is not None or self._closed, timeout):
                    raise TimeoutError(f"no action chunk after {timeout} s")
            res, self._result = self._result, None
            return res

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=30)


def _default_threads() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


class ChunkExecutor:
    """Serves one action per tick from chunks predicted by a LeRobot policy.

    policy: a LeRobot policy with `predict_action_chunk` (ACT; its `config.chunk_size` and
        `config.n_action_steps` are used). preprocessor / postprocessor: the pipelines saved with the
        checkpoint (`make_pre_post_processors(cfg, pretrained_path=...)`).
    Observations are LeRobot frames of numpy arrays (`observation.state` (S,), `observation.images.X`
    (H, W, 3) uint8), converted exactly as `lerobot.policies.utils.prepare_observation_for_inference`.
    `step()` returns the next action, unnormalized, float32 (action_dim,).
    """

    def __init__(
        self,
        policy: Any,
        preprocessor: Any,
        postprocessor: Any,
        config: ChunkExecutorConfig | None = None,
        *,
        device: str | None = None,
    ):
        self.config = cfg = config or ChunkExecutorConfig()
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.loaded: Any = None  # the LoadedPolicy, when built by from_pretrained
        self.device = torch.device(device or getattr(policy.config, "device", None) or "cpu")
        self.chunk_size = int(policy.config.chunk_size)
        self.ensembling = cfg.temporal_ensemble_coeff is not None
        n = (
            cfg.n_action_steps
            if cfg.n_action_steps is not None
            else (1 if self.ensembling else int(policy.config.n_action_steps))
        )
        if self.ensembling and n != 1:
            raise ValueError(
                "temporal ensembling averages a new chunk every tick: n_action_steps must be 1 "
                f"(got {n}), as in LeRobot's ACT"
            )
        if not 1 <= n <= self.chunk_size:
            raise ValueError(f"n_action_steps must be within 1..chunk_size={self.chunk_size}, got {n}")
        self.n_action_steps = n
        self.refill_at = cfg.refill_at if cfg.refill_at is not None else n // 2
        if not 0 <= self.refill_at < max(n, 1) and not self.ensembling:
            raise ValueError(f"refill_at must be within 0..n_action_steps-1={n - 1}, got {self.refill_at}")
        self.stats = ExecutorStats()
        self._ensembler: TemporalEnsembler | NumpyTemporalEnsembler | None = None
        if self.ensembling:
            # Synchronous: LeRobot's tensor ops in normalized space, for bit-exact parity. Asynchronous:
            # unnormalized numpy chunks, to keep the control tick free of torch and pipeline calls.
            ens_cls = NumpyTemporalEnsembler if cfg.async_inference else TemporalEnsembler
            self._ensembler = ens_cls(cfg.temporal_ensemble_coeff, self.chunk_size)
        self._queue: np.ndarray | None = None
        self._pos = 0
        self._tick = 0
        self._generation = 0
        self._inflight = False
        self._installed_this_episode = 0
        self._worker = (
            _InferenceWorker(self._infer, cfg.inference_threads or _default_threads()) if cfg.async_inference else None
        )
        policy.eval()
        policy.reset()

    @classmethod
    def from_pretrained(
        cls,
        path: Any,
        config: ChunkExecutorConfig | None = None,
        *,
        step: int | str | None = None,
        device: str = "auto",
        codec: Any = None,
    ) -> ChunkExecutor:
        """An executor for a checkpoint (run dir, step dir or pretrained_model dir); `auto` picks CUDA
        when available. `codec` (name, spec or codec object) refuses a checkpoint of another codec."""
        from .loading import load_policy

        loaded = load_policy(path, step=step, device=device, codec=codec)
        cfg = config or ChunkExecutorConfig()
        if cfg.temporal_ensemble_coeff is None and loaded.config.temporal_ensemble_coeff is not None:
            cfg = replace(cfg, temporal_ensemble_coeff=loaded.config.temporal_ensemble_coeff)
        ex = cls(loaded.policy, loaded.preprocessor, loaded.postprocessor, cfg, device=loaded.device)
        ex.loaded = loaded
        return ex

    # ---- inference ------------------------------------------------------------------------------
    def _prepare(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        from lerobot.policies.utils import prepare_observation_for_inference

        frame = {}
        for k, v in observation.items():
            if isinstance(v, np.ndarray):
                # Arrays from channels are read-only views; torch.from_numpy wants a writable buffer.
                frame[k] = v if v.flags.writeable else v.copy()
            elif k not in ("task", "robot_type"):
                frame[k] = np.asarray(v)
        return prepare_observation_for_inference(
            frame, self.device, observation.get("task"), observation.get("robot_type")
        )

    @torch.inference_mode()
    def _infer(self, observation: Mapping[str, Any]) -> Any:
        batch = self.preprocessor(self._prepare(observation))
        chunk = self.policy.predict_action_chunk(batch)
        if isinstance(self._ensembler, TemporalEnsembler):
            return chunk  # normalized: LeRobot ensembles before unnormalizing
        # Unnormalizing is elementwise, so doing the whole chunk here gives the same bits as LeRobot's
        # per-action postprocessing, and leaves the control tick nothing but an array index.
        n = self.chunk_size if self.ensembling else self.n_action_steps
        actions = self.postprocessor(chunk[:, :n])
        return actions[0].float().cpu().numpy()

    def warmup(self, observation: Mapping[str, Any] | None = None) -> float:
        """Run one forward pass (on zeros shaped like the policy's inputs by default); returns seconds.

        The first pass allocates and picks kernels; doing it before the graph starts keeps it out of the
        first tick.
        """
        obs = observation if observation is not None else dummy_observation(self.policy.config)
        t = time.perf_counter()
        self._infer(obs)
        self.policy.reset()
        return time.perf_counter() - t

    # ---- chunk bookkeeping ----------------------------------------------------------------------
    def _submit(self, observation: Mapping[str, Any], tick: int) -> None:
        self._inflight = True
        self._worker.submit(_Job(self._generation, tick, observation))

    def _collect(self, block: bool) -> _Result | None:
        res = self._worker.take(block, timeout=600.0)
        if res is None:
            return None
        self._inflight = False
        if res.error is not None:
            raise RuntimeError(f"chunk inference failed: {res.error!r}") from res.error
        if res.generation != self._generation:
            return None  # predicted for an episode that has been reset since
        return res

    def _wait_for_chunk(self, observation: Mapping[str, Any], tick: int) -> _Result:
        while True:
            if not self._inflight:
                self._submit(observation, tick)
            res = self._collect(block=True)
            if res is not None:
                return res

    def _install(self, res: _Result, tick: int) -> None:
        skip = tick - res.tick
        self.stats.chunks += 1
        self.stats.infer_ms.append(res.infer_s * 1e3)
        self._installed_this_episode += 1
        horizon = self.chunk_size if self.ensembling else len(res.chunk)
        if skip >= horizon:
            self.stats.stale_chunks += 1
            log.warning(
                "action chunk arrived %d ticks after its observation (horizon %d): inference too slow for this rate",
                skip,
                horizon,
            )
            if self.ensembling:
                return
            skip = horizon - 1
        self.stats.skipped_actions += skip
        if isinstance(self._ensembler, TemporalEnsembler):
            with torch.inference_mode():
                self._ensembler.update(res.chunk, skip)
        elif self._ensembler is not None:
            self._ensembler.update(res.chunk, skip)
        else:
            self._queue, self._pos = res.chunk, skip

    def _inline(self, observation: Mapping[str, Any], tick: int) -> _Result:
        t = time.perf_counter()
        return _Result(self._generation, tick, self._infer(observation), time.perf_counter() - t)

    def _queue_len(self) -> int:
        if self.ensembling:
            return len(self._ensembler)
        return 0 if self._queue is None else len(self._queue) - self._pos

    # ---- public API -----------------------------------------------------------------------------
    def step(self, observation: Mapping[str, Any]) -> np.ndarray:
        """The action for this tick, given this tick's observation (float32, unnormalized)."""
        t = self._tick
        self._tick += 1
        self.stats.ticks += 1
        if self._worker is None:
            self._step_sync(observation, t)
        else:
            res = self._collect(block=False) if self._inflight else None
            if res is not None:
                self._install(res, t)
            if self._queue_len() == 0:
                if self._installed_this_episode:
                    self.stats.stalls += 1
                else:
                    self.stats.cold_starts += 1
                self._install(self._wait_for_chunk(observation, t), t)
        if isinstance(self._ensembler, TemporalEnsembler):
            with torch.inference_mode():  # as inside LeRobot's predict_action
                action = self.postprocessor(self._ensembler.pop())[0].float().cpu().numpy()
        elif self._ensembler is not None:
            action = self._ensembler.pop()
        else:
            action = self._queue[self._pos].copy()  # the caller owns it; the queue stays intact
            self._pos += 1
        # Refill ahead of need: the observation of this tick is the freshest there is.
        if self._worker is not None and not self._inflight and (self.ensembling or self._queue_len() <= self.refill_at):
            self._submit(observation, t)
        return action

    def _step_sync(self, observation: Mapping[str, Any], t: int) -> None:
        # LeRobot's select_action: ensembling predicts every tick, otherwise when the queue is empty.
        if self.ensembling or self._queue_len() == 0:
            if self._installed_this_episode == 0:
                self.stats.cold_starts += 1
            self._install(self._inline(observation, t), t)

    def queue_level(self) -> int:
        """Actions left before the executor would have to wait for a forward pass."""
        return self._queue_len()

    def reset(self) -> None:
        """Start a new episode: drop queued actions, and any chunk in flight when it arrives."""
        self._generation += 1
        self._queue, self._pos = None, 0
        self._installed_this_episode = 0
        if self._ensembler is not None:
            self._ensembler.reset()
        self.policy.reset()

    def close(self) -> None:
        """Stop the worker thread."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __enter__(self) -> ChunkExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def dummy_observation(policy_config: Any) -> dict[str, np.ndarray]:
    """Zeros shaped like a policy's inputs, in the numpy frame layout `ChunkExecutor.step` takes."""
    from lerobot.configs.types import FeatureType

    obs: dict[str, np.ndarray] = {}
    for key, feat in policy_config.input_features.items():
        if feat.type is FeatureType.VISUAL:
            c, h, w = feat.shape
            obs[key] = np.zeros((h, w, c), dtype=np.uint8)
        else:
            obs[key] = np.zeros(feat.shape, dtype=np.float32)
    return obs


class SyncPolicyRunner:
    """Any LeRobot policy (act, diffusion, ...) through LeRobot's own inference path.

    Each `step()` is `lerobot.utils.control_utils.predict_action`: prepare -> preprocessor ->
    `select_action` (the policy's own action / observation queues) -> postprocessor. Synchronous: a tick
    that needs a new chunk waits for its forward pass.
    """

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, *, device: str | None = None):
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.device = torch.device(device or getattr(policy.config, "device", None) or "cpu")
        self.stats = ExecutorStats()
        policy.eval()
        policy.reset()

    def step(self, observation: Mapping[str, Any]) -> np.ndarray:
        from lerobot.utils.control_utils import predict_action

        frame = {k: (v if v.flags.writeable else v.copy()) for k, v in observation.items() if isinstance(v, np.ndarray)}
        action = predict_action(
            frame,
            self.policy,
            self.device,
            self.preprocessor,
            self.postprocessor,
            use_amp=False,
            task=observation.get("task"),
            robot_type=observation.get("robot_type"),
        )
        self.stats.ticks += 1
        return action[0].float().cpu().numpy()

    def warmup(self, observation: Mapping[str, Any] | None = None) -> float:
        t = time.perf_counter()
        self.step(observation if observation is not None else dummy_observation(self.policy.config))
        self.policy.reset()
        return time.perf_counter() - t

    def reset(self) -> None:
        self.policy.reset()

    def close(self) -> None:
        pass
