"""Action-chunk execution by time around a LeRobot chunking policy (ACT), local or remote.

LeRobot's `ACTPolicy.select_action` runs a whole forward pass inline every `n_action_steps` ticks
(about 140 ms for resnet18 / dim 512 / two 240x320 cameras on two CPU cores): at 15 Hz that tick is
two periods late. `ChunkExecutor` keeps LeRobot's semantics but moves the forward pass to a worker
thread that starts *before* the plan runs out, so a control tick only picks a precomputed action.

Timing model. A chunk is a plan in time: it starts at the timestamp of the observation it was predicted
from, and action `i` is meant for `start + i / fps` (fps: the dataset's). Each tick picks the action whose
slot holds now (zero-order hold, as the dataset was resampled), so overruns, skipped or slow ticks and
inference latency never shift the trajectory: a chunk that arrives 200 ms after its observation starts
at its 200 ms action, and a late tick executes the action of the instant it runs. A newer chunk replaces
what is left of the older one. With temporal ensembling, actions of every chunk are averaged per slot of
the episode's time grid.

A tick never blocks longer than one period (`max_wait_s`): when no action covers now (the first chunk of
an episode, or inference slower than the plan), `step()` returns None and the caller does not act.

Chunks come from a `ChunkSource`: the local policy (the default constructor), or any callable run on the
worker thread, such as a remote inference client (`ChunkExecutor.from_source`).

With `async_inference=False` and no timestamps (`step(obs)`: one call per period), the executor
reproduces `lerobot.utils.control_utils.predict_action` (prepare -> preprocessor -> `select_action` ->
postprocessor) bit for bit, with and without temporal ensembling: tests/test_policy_chunking.py checks it
with `torch.equal`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

log = logging.getLogger("robotflow.policies")

# infer(observation, observation_ns) -> (chunk, chunk_start_ns): `chunk` is an (n, action_dim) array of
# unnormalized actions, action i meant for chunk_start_ns + i / fps. Called on the executor's worker thread.
ChunkSource = Callable[[Mapping[str, Any], int], tuple[np.ndarray, int]]

# Slots are floor((t - start) / period): a tick stamped a few ns before its ideal instant (virtual clock
# rounding) must still land in its own slot.
_SLOT_TOLERANCE = 1e-3


@dataclass
class ChunkExecutorConfig:
    """How chunks are executed.

    n_action_steps: actions used from each chunk (None: the policy config's value). Like LeRobot, it is
        capped by the chunk size, and must be 1 (or None) with temporal ensembling.
    temporal_ensemble_coeff: None disables ensembling; otherwise ACT's exponential weighting
        w_i = exp(-coeff * i), w_0 the oldest prediction (ACTTemporalEnsembler semantics).
    refill_at: actions left in the plan after a tick at which the next chunk is requested. It must cover
        the inference latency in periods, or ticks go without an action. None: measured, the periods a
        chunk takes to arrive after its observation (the most of the last 8, rounded up, at least 1; half
        of n_action_steps until a chunk has arrived), so about n_action_steps actions of each chunk run,
        as in lock-step evaluation. Ignored with ensembling, where a new chunk is requested whenever the
        worker is idle.
    async_inference: False runs the forward pass inline, exactly like LeRobot's select_action.
    inference_threads: torch intra-op threads of the worker (None: all cores but one, so the control
        loop and drivers keep a core while a chunk is inferred).
    fps: the rate the policy's actions were trained at (the dataset's fps): action i of a chunk is meant for
        start + i / fps.
    max_wait_s: the longest a tick waits for a chunk in flight (None: one period, 1 / fps).
    relative_positions: the policy predicts action[:3] as offsets from observation.state[:3] of the
        observation its chunk came from (codecs with relative positions, e.g. `ee_objects_rel`); the
        executor adds that position back, so `step()` returns absolute actions either way.
    """

    n_action_steps: int | None = None
    temporal_ensemble_coeff: float | None = None
    refill_at: int | None = None
    async_inference: bool = True
    inference_threads: int | None = None
    fps: float = 15.0
    max_wait_s: float | None = None
    relative_positions: bool = False

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")


@dataclass
class ExecutorStats:
    """Counters of an executor since it was created."""

    ticks: int = 0
    actions: int = 0  # ticks that returned an action
    chunks: int = 0  # chunks installed
    cold_starts: int = 0  # ticks at the start of an episode that found no action yet
    stalls: int = 0  # later ticks that found no action for now (refill_at too low, or CPU starved)
    no_action: int = 0  # ticks that returned None after waiting at most max_wait_s
    stale_chunks: int = 0  # chunks that arrived after their whole horizon had elapsed
    skipped_actions: int = 0  # leading actions of new chunks whose time had passed when they arrived
    infer_ms: deque = field(default_factory=lambda: deque(maxlen=1000))
    late_ms: deque = field(default_factory=lambda: deque(maxlen=10000))  # now - the picked action's timestamp

    def as_dict(self) -> dict[str, Any]:
        keys = ("ticks", "actions", "chunks", "cold_starts", "stalls", "no_action", "stale_chunks", "skipped_actions")
        d = {k: getattr(self, k) for k in keys}
        if self.infer_ms:
            d["infer_ms_p50"] = float(np.percentile(list(self.infer_ms), 50))
        if self.late_ms:
            d["late_action_ms_p99"] = float(np.percentile(list(self.late_ms), 99))
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

    def peek(self) -> torch.Tensor:
        """The (batch, action_dim) action of the current slot."""
        return self.actions[:, 0]

    def drop(self, n: int = 1) -> None:
        """Move on by n slots (their actions were executed or their time has passed)."""
        if self.actions is not None:
            self.actions, self.count = self.actions[:, n:], self.count[n:]

    def pop(self) -> torch.Tensor:
        """The (batch, action_dim) action of the current tick, then move on one slot."""
        action = self.peek()
        self.drop(1)
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

    def peek(self) -> np.ndarray:
        return self.actions[0].astype(np.float32)

    def drop(self, n: int = 1) -> None:
        if self.actions is not None:
            self.actions, self.count = self.actions[n:], self.count[n:]

    def pop(self) -> np.ndarray:
        action = self.peek()
        self.drop(1)
        return action


@dataclass
class _Job:
    generation: int
    observation: Mapping[str, Any]
    observation_ns: int


@dataclass
class _Result:
    generation: int
    chunk: Any  # np.ndarray (n, D) unnormalized, or a normalized tensor (B, C, D) for sync ensembling
    start_ns: int  # timestamp action 0 is meant for
    infer_s: float
    error: BaseException | None = None


class _InferenceWorker:
    """One thread that runs forward passes, one at a time, on the latest job it was given.

    A reset of the source (the policy's internal queues) runs here too, before the next job, so it never
    races a forward pass and never makes the control thread wait for one.
    """

    def __init__(self, source: ChunkSource, reset: Callable[[], None] | None, threads: int | None):
        self._source = source
        self._reset = reset
        self._threads = threads
        self._cv = threading.Condition()
        self._job: _Job | None = None
        self._result: _Result | None = None
        self._reset_pending = False
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
                reset, self._reset_pending = self._reset_pending, False
            t = time.perf_counter()
            try:
                if reset and self._reset is not None:
                    self._reset()
                chunk, start_ns = self._source(job.observation, job.observation_ns)
                res = _Result(job.generation, chunk, int(start_ns), time.perf_counter() - t)
            except BaseException as e:  # handed to the control thread, which re-raises it
                res = _Result(job.generation, None, job.observation_ns, time.perf_counter() - t, e)
            with self._cv:
                self._result = res
                self._cv.notify_all()

    def submit(self, job: _Job) -> None:
        with self._cv:
            self._job = job
            self._cv.notify_all()

    def request_reset(self) -> None:
        with self._cv:
            self._reset_pending = True

    def take(self, timeout: float) -> _Result | None:
        """The finished result, waiting at most `timeout` seconds (0: do not wait)."""
        with self._cv:
            if timeout > 0:
                self._cv.wait_for(lambda: self._result is not None or self._closed, timeout)
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
    """Serves the action for now from chunks predicted by a LeRobot policy or another chunk source.

    policy: a LeRobot policy with `predict_action_chunk` (ACT; its `config.chunk_size` and
        `config.n_action_steps` are used). preprocessor / postprocessor: the pipelines saved with the
        checkpoint (`make_pre_post_processors(cfg, pretrained_path=...)`).
    Observations are LeRobot frames of numpy arrays (`observation.state` (S,), `observation.images.X`
    (H, W, 3) uint8), converted exactly as `lerobot.policies.utils.prepare_observation_for_inference`.
    `step()` returns the action for now, unnormalized, float32 (action_dim,), or None when there is none.
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
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.loaded: Any = None  # the LoadedPolicy, when built by from_pretrained
        self.device = torch.device(device or getattr(policy.config, "device", None) or "cpu")
        policy.eval()
        policy.reset()
        self._init(
            config or ChunkExecutorConfig(),
            int(policy.config.chunk_size),
            int(policy.config.n_action_steps),
            self._local_chunk,
            policy.reset,
        )

    @classmethod
    def from_source(
        cls,
        infer: ChunkSource,
        *,
        chunk_size: int,
        config: ChunkExecutorConfig | None = None,
        reset: Callable[[], None] | None = None,
    ) -> ChunkExecutor:
        """An executor over any chunk source (a remote inference client, ...): `infer(observation,
        observation_ns) -> (chunk, chunk_start_ns)` runs on the worker thread (inline when
        `async_inference=False`); `reset()`, if given, runs before the first chunk of each episode."""
        ex = cls.__new__(cls)
        ex.policy = ex.preprocessor = ex.postprocessor = ex.loaded = None
        ex.device = torch.device("cpu")
        ex._init(config or ChunkExecutorConfig(), int(chunk_size), int(chunk_size), infer, reset)
        return ex

    def _init(self, cfg: ChunkExecutorConfig, chunk_size: int, default_n: int, source, reset) -> None:
        self.config = cfg
        self.chunk_size = chunk_size
        self.ensembling = cfg.temporal_ensemble_coeff is not None
        n = cfg.n_action_steps if cfg.n_action_steps is not None else (1 if self.ensembling else default_n)
        if self.ensembling and n != 1:
            raise ValueError(
                "temporal ensembling averages a new chunk every tick: n_action_steps must be 1 "
                f"(got {n}), as in LeRobot's ACT"
            )
        if not 1 <= n <= self.chunk_size:
            raise ValueError(f"n_action_steps must be within 1..chunk_size={self.chunk_size}, got {n}")
        self.n_action_steps = n
        self.refill_at = cfg.refill_at if cfg.refill_at is not None else n // 2
        # refill_at None: set from how late chunks arrive (_install). A fixed half of the plan would have the
        # policy re-plan twice as often as in training and lock-step evaluation, which can change what it
        # does: an EE-relative stack_cubes policy solved 19/20 seeds in lock-step and 7/20 re-planning at 5 of 10.
        measured = cfg.refill_at is None and cfg.async_inference and not self.ensembling
        self._arrivals: deque | None = deque(maxlen=8) if measured else None
        self._submitted_ns = 0
        if not 0 <= self.refill_at < max(n, 1) and not self.ensembling:
            raise ValueError(f"refill_at must be within 0..n_action_steps-1={n - 1}, got {self.refill_at}")
        self.period_ns = 1e9 / cfg.fps
        self.max_wait_s = cfg.max_wait_s if cfg.max_wait_s is not None else 1.0 / cfg.fps
        self.stats = ExecutorStats()
        self._source, self._reset_source = source, reset
        self._ensembler: TemporalEnsembler | NumpyTemporalEnsembler | None = None
        if self.ensembling:
            # Synchronous local policy: LeRobot's tensor ops in normalized space, for bit-exact parity.
            # Otherwise unnormalized numpy chunks, to keep the control tick free of torch and pipeline calls.
            # Relative chunks become absolute only once unnormalized, so they ensemble in numpy too.
            local_sync = not cfg.async_inference and self.policy is not None and not cfg.relative_positions
            ens_cls = TemporalEnsembler if local_sync else NumpyTemporalEnsembler
            self._ensembler = ens_cls(cfg.temporal_ensemble_coeff, self.chunk_size)
        self._plan: np.ndarray | None = None  # non-ensembling: the current chunk ...
        self._plan_start = 0  # ... and the timestamp of its action 0
        self._epoch: int | None = None  # ensembling: origin of the episode's slot grid
        self._ens_slot = 0  # ensembling: slot of the ensembler's row 0
        self._tick_ns = -1  # the tick clock of step(obs) without timestamps
        self._generation = 0
        self._inflight = False
        self._acted_this_episode = False
        self.last_action_ns: int | None = None  # timestamp of the action the last step() returned
        self._worker = (
            _InferenceWorker(source, reset, cfg.inference_threads or _default_threads())
            if cfg.async_inference
            else None
        )

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

    # ---- local inference ------------------------------------------------------------------------
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
        actions = self.postprocessor(chunk[:, :n])[0].float().cpu().numpy()
        if self.config.relative_positions:
            actions[:, :3] += np.asarray(observation["observation.state"], np.float32)[:3]
        return actions

    def _local_chunk(self, observation: Mapping[str, Any], observation_ns: int) -> tuple[Any, int]:
        return self._infer(observation), observation_ns

    def warmup(self, observation: Mapping[str, Any] | None = None) -> float:
        """Run one forward pass (on zeros shaped like the policy's inputs by default); returns seconds.

        The first pass allocates and picks kernels; doing it before the graph starts keeps it out of the
        first tick.
        """
        if observation is None:
            if self.policy is None:
                raise ValueError("warmup of a chunk source needs an observation")
            observation = dummy_observation(self.policy.config)
        t = time.perf_counter()
        self._source(observation, 0)
        if self._reset_source is not None:
            self._reset_source()
        return time.perf_counter() - t

    # ---- the plan -------------------------------------------------------------------------------
    def _slot(self, t_ns: int, origin_ns: int) -> int:
        return math.floor((t_ns - origin_ns) / self.period_ns + _SLOT_TOLERANCE)

    def _install(self, res: _Result, now: int) -> None:
        self.stats.chunks += 1
        self.stats.infer_ms.append(res.infer_s * 1e3)
        horizon = self.chunk_size if self.ensembling else len(res.chunk)
        if self.ensembling:
            if self._epoch is None:
                self._epoch, self._ens_slot = res.start_ns, 0
            self._advance_ensembler(now)
            skip = max(0, self._ens_slot - self._slot(res.start_ns, self._epoch))
        else:
            skip = max(0, self._slot(now, res.start_ns))
        if skip >= horizon:
            self.stats.stale_chunks += 1
            log.warning(
                "action chunk arrived %.0f ms after its observation (horizon %.0f ms): inference too slow",
                (now - res.start_ns) / 1e6,
                horizon * self.period_ns / 1e6,
            )
            return
        self.stats.skipped_actions += skip
        if self._arrivals is not None:
            # Periods from the observation to the chunk's arrival (not to this tick, which rounds up by a tick).
            self._arrivals.append((self._submitted_ns - res.start_ns + res.infer_s * 1e9) / self.period_ns)
            self.refill_at = min(self.n_action_steps - 1, max(1, math.ceil(max(self._arrivals))))
        if isinstance(self._ensembler, TemporalEnsembler):
            with torch.inference_mode():
                self._ensembler.update(res.chunk, skip)
        elif self._ensembler is not None:
            self._ensembler.update(res.chunk, skip)
        else:
            self._plan, self._plan_start = res.chunk, res.start_ns

    def _advance_ensembler(self, now: int) -> None:
        slot = self._slot(now, self._epoch)
        if slot > self._ens_slot:
            self._ensembler.drop(slot - self._ens_slot)
            self._ens_slot = slot

    def _pick(self, now: int) -> Any:
        """The action for now (None: none covers now), and sets last_action_ns."""
        if self.ensembling:
            if self._epoch is None:
                return None
            self._advance_ensembler(now)
            if len(self._ensembler) == 0:
                return None
            self.last_action_ns = int(self._epoch + self._ens_slot * self.period_ns)
            return self._ensembler.peek()
        if self._plan is None:
            return None
        i = max(0, self._slot(now, self._plan_start))
        if i >= len(self._plan):
            return None
        self.last_action_ns = int(self._plan_start + i * self.period_ns)
        return self._plan[i].copy()  # the caller owns it; the plan stays intact

    def _remaining(self, now: int) -> int:
        """Actions of the plan after the one for now."""
        if self.ensembling:
            return max(0, len(self._ensembler) - 1)
        if self._plan is None:
            return 0
        return max(0, len(self._plan) - max(0, self._slot(now, self._plan_start)) - 1)

    # ---- the worker -----------------------------------------------------------------------------
    def _submit(self, observation: Mapping[str, Any], observation_ns: int, now: int) -> None:
        self._inflight = True
        self._submitted_ns = now
        self._worker.submit(_Job(self._generation, observation, observation_ns))

    def _collect(self, timeout: float) -> _Result | None:
        res = self._worker.take(timeout)
        if res is None:
            return None
        self._inflight = False
        if res.error is not None:
            raise RuntimeError(f"chunk inference failed: {res.error!r}") from res.error
        if res.generation != self._generation:
            return None  # predicted for an episode that has been reset since
        return res

    # ---- public API -----------------------------------------------------------------------------
    def step(
        self, observation: Mapping[str, Any], now_ns: int | None = None, observation_ns: int | None = None
    ) -> np.ndarray | None:
        """The action for `now_ns` given the latest observation, taken at `observation_ns` (float32,
        unnormalized), or None when no chunk covers now yet: the caller then does not act this tick.

        Without timestamps the executor keeps a tick clock: each call is one period after the previous one
        and the observation is of that instant (LeRobot's select_action semantics).
        """
        timed = now_ns is not None
        if not timed:
            self._tick_ns += 1
            now_ns = int(round(self._tick_ns * self.period_ns))
        obs_ns = now_ns if observation_ns is None else int(observation_ns)
        self.stats.ticks += 1
        if self._worker is None:
            action = self._step_sync(observation, now_ns, obs_ns)
        else:
            action = self._step_async(observation, now_ns, obs_ns, timed)
        if action is None:
            self.stats.no_action += 1
            return None
        self.stats.actions += 1
        self.stats.late_ms.append((now_ns - self.last_action_ns) / 1e6)  # as the caller's clock saw the tick
        self._acted_this_episode = True
        if isinstance(self._ensembler, TemporalEnsembler):
            with torch.inference_mode():  # as inside LeRobot's predict_action
                action = self.postprocessor(action)[0].float().cpu().numpy()
        return action

    def _count_missing(self) -> None:
        if self._acted_this_episode:
            self.stats.stalls += 1
        else:
            self.stats.cold_starts += 1

    def _step_sync(self, observation: Mapping[str, Any], now: int, obs_ns: int) -> Any:
        # LeRobot's select_action: ensembling predicts every tick, otherwise when the plan is used up.
        action = None if self.ensembling else self._pick(now)
        if action is None:
            if not self._acted_this_episode:
                self.stats.cold_starts += 1  # a refill is routine here: only the episode's first pass counts
            t = time.perf_counter()
            chunk, start = self._source(observation, obs_ns)
            self._install(_Result(self._generation, chunk, int(start), time.perf_counter() - t), now)
            action = self._pick(now)
        return action

    def _step_async(self, observation: Mapping[str, Any], now: int, obs_ns: int, timed: bool) -> Any:
        res = self._collect(0.0) if self._inflight else None
        if res is not None:
            self._install(res, now)
        action = self._pick(now)
        if action is None:
            self._count_missing()
            if not self._inflight:
                self._submit(observation, obs_ns, now)
            # Bounded: a tick never waits longer than max_wait_s (one period) for the chunk in flight. On a
            # timed call, time passes while it waits: the action picked is the one for when the chunk arrived.
            t0 = time.monotonic_ns()
            deadline = t0 + int(self.max_wait_s * 1e9)
            while action is None and self._inflight and (left := deadline - time.monotonic_ns()) > 0:
                res = self._collect(left / 1e9)
                if res is not None:
                    now += (time.monotonic_ns() - t0) if timed else 0
                    self._install(res, now)
                    action = self._pick(now)
        # Refill ahead of need: this observation is the freshest there is.
        if not self._inflight and (self.ensembling or self._remaining(now) <= self.refill_at):
            self._submit(observation, obs_ns, now)
        return action

    def queue_level(self) -> int:
        """Actions left in the plan after the last one picked."""
        now = self.last_action_ns if self.last_action_ns is not None else 0
        return self._remaining(now)

    def reset(self) -> None:
        """Start a new episode: drop the plan, and any chunk in flight when it arrives. Never blocks: the
        policy's own reset runs on the worker thread before its next forward pass."""
        self._generation += 1
        self._plan, self._epoch, self._ens_slot = None, None, 0
        self._acted_this_episode = False
        self.last_action_ns = None
        if self._ensembler is not None:
            self._ensembler.reset()
        if self._worker is not None:
            self._worker.request_reset()
        elif self._reset_source is not None:
            self._reset_source()

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

    def step(
        self, observation: Mapping[str, Any], now_ns: int | None = None, observation_ns: int | None = None
    ) -> np.ndarray:
        """The next action of LeRobot's own queue (timestamps are accepted for the node's sake and unused)."""
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
