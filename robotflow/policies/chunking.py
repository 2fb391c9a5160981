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

A tick never blocks longer than most of a period (`max_wait_s`): when no action covers now (the first chunk of
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
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .ensembling import TemporalEnsembler
from .inference import PolicyInference, dummy_observation
from .inference_worker import ChunkResult, ChunkSource, InferenceWorker, Job, default_threads
from .loading import load_policy

log = logging.getLogger("robotflow.policies")

WAIT_FRACTION = 0.8  # of a period: the default longest wait of a tick for the chunk in flight

# The action for time t is the one whose timestamp is nearest to t: round((t - start) / period). Rounding, not
# flooring: ticks jitter both ways around the grid of the chunk's observation, and a tick that started 0.1 ms
# early would otherwise re-execute the previous action, a whole period late (a repeated slot).


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
    max_wait_s: the longest a tick waits for a chunk in flight (None: 0.8 / fps, so a tick that waits and gives
        up still returns before the next tick is due, and the loop's schedule does not slip).
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
class ScheduleKeeping:
    """Whether the executed actions keep the plan's schedule, one slot per tick.

    Each executed action has a slot on the action grid (its timestamp / period). Ticks should execute
    consecutive slots: a jump of k > 1 slots skips k - 1 planned actions, the same slot twice repeats one.
    `error_ms` is |tick time - the executed action's timestamp|: how far from its slot each action ran. (The
    lateness of an action picked for now is bounded by the pick rule by construction, so its p99 cannot show
    a schedule that slips; these counts can.)
    """

    skipped_slots: int = 0
    repeated_slots: int = 0
    error_ms: deque = field(default_factory=lambda: deque(maxlen=10000))
    _last_action_ns: int | None = None

    def record(self, now_ns: int, action_ns: int, period_ns: float) -> None:
        self.error_ms.append(abs(now_ns - action_ns) / 1e6)
        if self._last_action_ns is not None:
            # Slots apart, from the two actions' timestamps: a new chunk's grid starts at its own observation, a
            # fraction of a period off the old one's, which the difference rounds away (rounding each timestamp
            # to an absolute grid would count a phase shift across a grid line as a skip or a repeat).
            gap = round((action_ns - self._last_action_ns) / period_ns)
            if gap == 0:
                self.repeated_slots += 1
            elif gap > 1:
                self.skipped_slots += gap - 1
        self._last_action_ns = action_ns

    def new_episode(self) -> None:
        self._last_action_ns = None  # slots of different episodes are unrelated

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schedule_skipped_slots": self.skipped_slots}
        d["schedule_repeated_slots"] = self.repeated_slots
        if self.error_ms:
            d["schedule_error_ms_p99"] = float(np.percentile(list(self.error_ms), 99))
        return d


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
    schedule: ScheduleKeeping = field(default_factory=ScheduleKeeping)

    def as_dict(self) -> dict[str, Any]:
        keys = ("ticks", "actions", "chunks", "cold_starts", "stalls", "no_action", "stale_chunks", "skipped_actions")
        d = {k: getattr(self, k) for k in keys}
        if self.infer_ms:
            d["infer_ms_p50"] = float(np.percentile(list(self.infer_ms), 50))
        return {**d, **self.schedule.as_dict()}


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
        self.inference: PolicyInference | None = PolicyInference(policy, preprocessor, postprocessor, device=device)
        self.policy, self.preprocessor, self.postprocessor = policy, preprocessor, postprocessor
        self.loaded: Any = None  # the LoadedPolicy, when built by from_pretrained
        self._history = self.inference.new_history()
        self._init(
            config or ChunkExecutorConfig(),
            int(policy.config.chunk_size),
            int(policy.config.n_action_steps),
            self._local_chunk,
            self._reset_policy,
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
        ex.inference = ex.policy = ex.preprocessor = ex.postprocessor = ex.loaded = None
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
        # Not a whole period: a tick starts a little after its deadline, so waiting a full period made every
        # cold-start tick overrun the next deadline, and the loop's ticks slipped a few ms off the first
        # chunk's grid (schedule error p99 3-7 ms on an idle machine).
        self.max_wait_s = cfg.max_wait_s if cfg.max_wait_s is not None else WAIT_FRACTION / cfg.fps
        self.stats = ExecutorStats()
        self._source, self._reset_source = source, reset
        self._ensembler: TemporalEnsembler | None = None
        # Synchronous local policy: ensembled in normalized space, as LeRobot does, for bit-exact parity.
        # Otherwise unnormalized chunks, to keep the control tick free of pipeline calls. Relative chunks
        # become absolute only once unnormalized, so they ensemble unnormalized too.
        self._normalized_ensemble = (
            self.ensembling and not cfg.async_inference and self.inference is not None and not cfg.relative_positions
        )
        if self.ensembling:
            self._ensembler = TemporalEnsembler(cfg.temporal_ensemble_coeff, self.chunk_size)
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
            InferenceWorker(source, reset, cfg.inference_threads or default_threads()) if cfg.async_inference else None
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
        loaded = load_policy(path, step=step, device=device, codec=codec)
        cfg = config or ChunkExecutorConfig()
        if cfg.temporal_ensemble_coeff is None and loaded.config.temporal_ensemble_coeff is not None:
            cfg = replace(cfg, temporal_ensemble_coeff=loaded.config.temporal_ensemble_coeff)
        ex = cls(loaded.policy, loaded.preprocessor, loaded.postprocessor, cfg, device=loaded.device)
        ex.loaded = loaded
        return ex

    # ---- local inference ------------------------------------------------------------------------
    @torch.inference_mode()
    def _infer(self, observation: Mapping[str, Any]) -> Any:
        chunk = self.inference.predict_chunk(self.inference.batch(observation), self._history)
        if self._normalized_ensemble:
            return chunk  # normalized: LeRobot ensembles before unnormalizing
        # Unnormalizing is elementwise, so doing the whole chunk here gives the same bits as LeRobot's
        # per-action postprocessing, and leaves the control tick nothing but an array index.
        n = self.chunk_size if self.ensembling else self.n_action_steps
        actions = self.inference.unnormalize(chunk[:, :n])
        if self.config.relative_positions:
            actions[:, :3] += np.asarray(observation["observation.state"], np.float32)[:3]
        return actions

    def _reset_policy(self) -> None:
        self.inference.reset()
        self._history = self.inference.new_history()

    def _local_chunk(self, observation: Mapping[str, Any], observation_ns: int) -> tuple[Any, int]:
        return self._infer(observation), observation_ns

    def warmup(self, observation: Mapping[str, Any] | None = None) -> float:
        """Run one forward pass (on zeros shaped like the policy's inputs by default); returns seconds.

        The first pass allocates and picks kernels; doing it before the graph starts keeps it out of the
        first tick.
        """
        if observation is None:
            if self.inference is None:
                raise ValueError("warmup of a chunk source needs an observation")
            observation = dummy_observation(self.inference.config)
        t = time.perf_counter()
        self._source(observation, 0)
        if self._reset_source is not None:
            self._reset_source()
        return time.perf_counter() - t

    # ---- the plan -------------------------------------------------------------------------------
    def _slot(self, t_ns: int, origin_ns: int, nearest: bool = True) -> int:
        # nearest=False: the slot that contains t (a late tick's own slot), with a tolerance for clock rounding.
        return math.floor((t_ns - origin_ns) / self.period_ns + (0.5 if nearest else 1e-3))

    def _install(self, res: ChunkResult, now: int, nearest: bool = True) -> None:
        self.stats.chunks += 1
        self.stats.infer_ms.append(res.infer_s * 1e3)
        horizon = self.chunk_size if self.ensembling else len(res.chunk)
        if self.ensembling:
            if self._epoch is None:
                self._epoch, self._ens_slot = res.start_ns, 0
            self._advance_ensembler(now)
            skip = max(0, self._ens_slot - self._slot(res.start_ns, self._epoch))
        else:
            skip = max(0, self._slot(now, res.start_ns, nearest))
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
        if self._normalized_ensemble:
            with torch.inference_mode():
                self._ensembler.update(res.chunk, skip)
        elif self._ensembler is not None:
            # float64: the control tick then reads the average of unnormalized actions at full precision.
            self._ensembler.update(torch.from_numpy(np.asarray(res.chunk, dtype=np.float64))[None], skip)
        else:
            self._plan, self._plan_start = res.chunk, res.start_ns

    def _advance_ensembler(self, now: int) -> None:
        slot = self._slot(now, self._epoch)
        if slot > self._ens_slot:
            self._ensembler.drop(slot - self._ens_slot)
            self._ens_slot = slot

    def _pick(self, now: int, nearest: bool = True) -> Any:
        """The action for now (None: none covers now), and sets last_action_ns. nearest=False: the action whose
        slot contains now, for a tick that waited for its chunk (the next tick takes the next slot)."""
        if self.ensembling:
            if self._epoch is None:
                return None
            self._advance_ensembler(now)
            if len(self._ensembler) == 0:
                return None
            self.last_action_ns = int(self._epoch + self._ens_slot * self.period_ns)
            action = self._ensembler.peek()
            return action if self._normalized_ensemble else action[0].numpy().astype(np.float32)
        if self._plan is None:
            return None
        i = max(0, self._slot(now, self._plan_start, nearest))
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
        self._worker.submit(Job(self._generation, observation, observation_ns))

    def _collect(self, timeout: float) -> ChunkResult | None:
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
        self.stats.schedule.record(now_ns, self.last_action_ns, self.period_ns)  # as the caller's clock saw the tick
        self._acted_this_episode = True
        if self._normalized_ensemble:
            with torch.inference_mode():  # as inside LeRobot's predict_action
                action = self.inference.unnormalize(action)
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
            self._install(ChunkResult(self._generation, chunk, int(start), time.perf_counter() - t), now)
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
            # Bounded: a tick never waits longer than max_wait_s (most of a period) for the chunk in flight. On a
            # timed call, time passes while it waits: the action picked is the one for when the chunk arrived.
            t0 = time.monotonic_ns()
            deadline = t0 + int(self.max_wait_s * 1e9)
            while action is None and self._inflight and (left := deadline - time.monotonic_ns()) > 0:
                res = self._collect(left / 1e9)
                if res is not None:
                    now += (time.monotonic_ns() - t0) if timed else 0
                    self._install(res, now, nearest=False)
                    action = self._pick(now, nearest=False)
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
        self.stats.schedule.new_episode()
        if self._ensembler is not None:
            self._ensembler.reset()
        if self._worker is not None:
            self._worker.request_reset()
        elif self._reset_source is not None:
            self._reset_source()

    def close(self) -> bool:
        """Stop the worker thread; False if it is still busy with the policy."""
        stopped = True
        if self._worker is not None:
            stopped = self._worker.close()
            self._worker = None
        return stopped

    def __enter__(self) -> ChunkExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
