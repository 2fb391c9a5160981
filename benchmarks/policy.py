"""Control-tick latency: asynchronous chunk execution vs LeRobot's blocking `select_action`.

    python -m benchmarks.policy --json

One randomly initialised ACT (resnet18, dim 512, chunk 100, two 240x320 cameras by default) serves a
fake 15 Hz observation stream twice in the same process: first through LeRobot's own inference path
(`predict_action`: prepare -> preprocessor -> select_action -> postprocessor, a forward pass inline
every n_action_steps ticks), then through `ChunkExecutor` (forward passes on a worker thread, started
when the plan falls to refill_at actions; each tick picks the action whose timestamp is nearest now). Only the
call that produces the tick's action is timed. Schedule keeping: `schedule_skipped_slots` /
`schedule_repeated_slots` count ticks whose executed action jumped or repeated a slot of the action grid (the
chunk's observation time + i periods), `schedule_error_ms_p99` is |tick time - executed action's timestamp|,
beside `tick_jitter_ms_p99`, how late the ticks themselves started.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from robotflow.policies.chunking import ScheduleKeeping


@dataclass
class BenchConfig:
    height: int = 240
    width: int = 320
    cameras: int = 2
    dim_model: int = 512
    chunk_size: int = 100
    n_action_steps: int = 50
    refill_at: int | None = None
    rate_hz: float = 15.0
    ticks: int = 225
    inference_threads: int | None = None
    switch_interval_s: float | None = None
    temporal_ensemble_coeff: float | None = None  # set it with --n-action-steps 1
    seed: int = 0


def make_policy(cfg: BenchConfig):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    cams = [f"observation.images.cam{i}" for i in range(cfg.cameras)]
    feats = {"observation.state": PolicyFeature(FeatureType.STATE, (8,))}
    feats.update({c: PolicyFeature(FeatureType.VISUAL, (3, cfg.height, cfg.width)) for c in cams})
    acfg = ACTConfig(
        input_features=feats,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (8,))},
        dim_model=cfg.dim_model,
        chunk_size=cfg.chunk_size,
        n_action_steps=cfg.n_action_steps,
        pretrained_backbone_weights=None,
        temporal_ensemble_coeff=cfg.temporal_ensemble_coeff,
        device="cpu",
    )
    torch.manual_seed(cfg.seed)
    policy = ACTPolicy(acfg)
    stats = {
        "observation.state": {"mean": torch.zeros(8), "std": torch.ones(8)},
        "action": {"mean": torch.zeros(8), "std": torch.ones(8)},
    }
    stats.update({c: {"mean": torch.full((3, 1, 1), 0.45), "std": torch.full((3, 1, 1), 0.25)} for c in cams})
    pre, post = make_pre_post_processors(acfg, dataset_stats=stats)
    return policy, pre, post, cams


def observation_stream(cfg: BenchConfig, cams: list[str], n: int):
    """Fresh arrays each tick, as a camera driver publishes them (made outside the timed region)."""
    rng = np.random.default_rng(cfg.seed)
    frames = [rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8) for _ in range(4)]
    for i in range(n):
        obs = {"observation.state": rng.standard_normal(8).astype(np.float32)}
        for j, c in enumerate(cams):
            obs[c] = frames[(i + j) % len(frames)].copy()
        yield obs


def run_ticks(step, cfg: BenchConfig, cams: list[str], action_ns=None) -> tuple[list[float], list[float], dict]:
    """Call `step(obs, now_ns)` at rate_hz on absolute deadlines. Returns each call's duration (ms), each tick's
    own jitter (how late it started against its deadline, ms) and, when `action_ns(now_ns)` gives the timestamp of
    the action the call returned, how well the executed actions kept their schedule (`ScheduleKeeping`)."""
    period = 1.0 / cfg.rate_hz
    out, jitter, schedule = [], [], ScheduleKeeping()
    stream = observation_stream(cfg, cams, cfg.ticks)
    obs = next(stream)
    deadline = time.perf_counter()
    for _i in range(cfg.ticks):
        t0 = time.perf_counter()
        jitter.append((t0 - deadline) * 1e3)
        now_ns = time.monotonic_ns()  # the observation is of this instant
        action = step(obs, now_ns)
        out.append((time.perf_counter() - t0) * 1e3)
        if action is not None and action_ns is not None:
            schedule.record(now_ns, action_ns(now_ns), 1e9 * period)
        obs = next(stream, obs)  # next tick's observation, prepared outside the timing
        deadline += period
        delay = deadline - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            deadline = time.perf_counter()  # overran (blocking forward pass): do not try to catch up
    return out, jitter, schedule.as_dict()


class BlockingTimestamps:
    """The timestamps of LeRobot's queued actions: a chunk starts at the observation of the tick that ran
    its forward pass, and action i is meant for that instant + i periods; select_action pops one per call,
    however late the calls come."""

    def __init__(self, policy, period_ns: float):
        self.policy, self.period_ns = policy, period_ns
        self.start_ns, self.index = 0, -1

    def before(self, now_ns: int) -> None:
        if len(self.policy._action_queue) == 0:  # this call runs a forward pass on this tick's observation
            self.start_ns, self.index = now_ns, -1
        self.index += 1

    def action_ns(self, now_ns: int) -> int:
        return int(self.start_ns + self.index * self.period_ns)


def pct(xs, q) -> float:
    return round(float(np.percentile(xs, q)), 3) if len(xs) else float("nan")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    for f in fields(BenchConfig):
        ap.add_argument(
            "--" + f.name.replace("_", "-"), type=float if "float" in str(f.type) else int, default=f.default
        )
    args = ap.parse_args(argv)
    cfg = BenchConfig(**{f: getattr(args, f) for f in asdict(BenchConfig())})
    if cfg.switch_interval_s:
        sys.setswitchinterval(cfg.switch_interval_s)

    from lerobot.utils.control_utils import predict_action

    from robotflow.policies.chunking import ChunkExecutor, ChunkExecutorConfig

    load_before = os.getloadavg()[0]
    policy, pre, post, cams = make_policy(cfg)
    cpu = torch.device("cpu")
    warm = next(observation_stream(cfg, cams, 1))

    # 1. LeRobot's blocking path. Warm it once so neither run pays for first-call allocation.
    predict_action(dict(warm), policy, cpu, pre, post, use_amp=False)
    policy.reset()
    stamps = BlockingTimestamps(policy, 1e9 / cfg.rate_hz)

    def blocking_step(o, now_ns):
        stamps.before(now_ns)
        return predict_action(o, policy, cpu, pre, post, use_amp=False)

    blocking, _, blocking_schedule = run_ticks(blocking_step, cfg, cams, stamps.action_ns)
    infer_ticks = sorted(blocking)[-max(1, cfg.ticks // cfg.n_action_steps) :]

    # 2. The asynchronous executor on the same weights.
    ex = ChunkExecutor(
        policy,
        pre,
        post,
        ChunkExecutorConfig(
            n_action_steps=cfg.n_action_steps,
            refill_at=cfg.refill_at,
            inference_threads=cfg.inference_threads or None,
            temporal_ensemble_coeff=cfg.temporal_ensemble_coeff,
            fps=cfg.rate_hz,  # the benchmark's actions are meant one per tick
        ),
    )
    ex.warmup(warm)
    try:
        ticks, jitter, schedule = run_ticks(
            lambda o, now: ex.step(o, now, now), cfg, cams, lambda now: ex.last_action_ns
        )
    finally:
        ex.close()
    # The first ticks of the episode have no action until the first chunk arrives (a tick never waits
    # longer than one period): they are not steady state.
    st = ex.stats
    steady = ticks[max(1, st.cold_starts) :]
    result = {
        "chunk_infer_ms_p50": round(float(np.percentile(list(st.infer_ms), 50)), 1),
        "tick_ms_p50": pct(steady, 50),
        "tick_ms_p99": pct(steady, 99),
        "tick_ms_max": round(max(steady), 3),
        # Schedule keeping while chunks are inferred: consecutive ticks execute consecutive slots (goal: 0 skipped),
        # each within 5 ms of its timestamp beyond the tick's own jitter; LeRobot's blocking queue beside it.
        **schedule,
        "schedule_error_ms_p99": round(schedule.get("schedule_error_ms_p99", float("nan")), 3),
        "tick_jitter_ms_p99": pct(jitter, 99),
        "blocking_schedule_skipped_slots": blocking_schedule["schedule_skipped_slots"],
        "blocking_schedule_repeated_slots": blocking_schedule["schedule_repeated_slots"],
        "blocking_schedule_error_ms_p99": round(blocking_schedule.get("schedule_error_ms_p99", float("nan")), 3),
        "period_ms": round(1e3 / cfg.rate_hz, 3),
        "blocking_tick_ms_p50": pct(blocking, 50),
        "blocking_tick_ms_p99": pct(blocking, 99),
        "blocking_tick_ms_max": round(max(blocking), 3),
        "blocking_infer_tick_ms_p50": pct(infer_ticks, 50),
        "cold_start_tick_ms": round(ticks[0], 1),
        "cold_start_ticks": st.cold_starts,
        "actions": st.actions,
        "chunks": st.chunks,
        "stalls": st.stalls,
        "stale_chunks": st.stale_chunks,
        "skipped_actions": st.skipped_actions,
        "refill_at": ex.refill_at,
        "worker_threads": cfg.inference_threads or max(1, (os.cpu_count() or 2) - 1),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        # Other processes on the machine change every number here; keep the load beside them.
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "config": asdict(cfg),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")
    return result


if __name__ == "__main__":
    main()
