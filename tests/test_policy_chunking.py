"""ChunkExecutor against LeRobot's own inference path, with real (tiny, randomly initialised) ACT policies."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

pytest.importorskip("lerobot")

from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy, ACTTemporalEnsembler
from lerobot.policies.factory import make_pre_post_processors
from lerobot.utils.control_utils import predict_action

from robotflow.policies.chunking import ChunkExecutor, ChunkExecutorConfig, ScheduleKeeping
from robotflow.policies.ensembling import TemporalEnsembler

H, W = 48, 64
CAMS = ("observation.images.wrist", "observation.images.front")


def tiny_config(**kw) -> ACTConfig:
    feats = {"observation.state": PolicyFeature(FeatureType.STATE, (8,))}
    for cam in CAMS:
        feats[cam] = PolicyFeature(FeatureType.VISUAL, (3, H, W))
    args = dict(
        input_features=feats,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (8,))},
        dim_model=64,
        n_heads=4,
        dim_feedforward=128,
        n_encoder_layers=1,
        n_decoder_layers=1,
        n_vae_encoder_layers=1,
        chunk_size=10,
        n_action_steps=10,
        pretrained_backbone_weights=None,
        device="cpu",
    )
    args.update(kw)
    return ACTConfig(**args)


def tiny_stats() -> dict:
    g = torch.Generator().manual_seed(3)
    stats = {
        "observation.state": {"mean": torch.randn(8, generator=g), "std": torch.rand(8, generator=g) + 0.5},
        "action": {"mean": torch.randn(8, generator=g), "std": torch.rand(8, generator=g) + 0.5},
    }
    for cam in CAMS:
        stats[cam] = {"mean": torch.full((3, 1, 1), 0.45), "std": torch.full((3, 1, 1), 0.25)}
    return stats


def make_pair(**kw):
    """Two ACT policies with the same weights: one for the executor, one for LeRobot's native path."""
    torch.manual_seed(0)
    cfg = tiny_config(**kw)
    ours = ACTPolicy(cfg)
    native = ACTPolicy(tiny_config(**kw))
    native.load_state_dict(ours.state_dict())
    pre, post = make_pre_post_processors(cfg, dataset_stats=tiny_stats())
    npre, npost = make_pre_post_processors(native.config, dataset_stats=tiny_stats())
    return (ours, pre, post), (native, npre, npost)


def observations(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        obs = {"observation.state": rng.standard_normal(8).astype(np.float32)}
        for cam in CAMS:
            obs[cam] = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        yield obs


@pytest.mark.parametrize(
    "kw, cfg",
    [
        ({}, ChunkExecutorConfig(async_inference=False)),  # LeRobot's n_action_steps = chunk size
        ({"n_action_steps": 4}, ChunkExecutorConfig(async_inference=False)),
        (
            {"n_action_steps": 1, "temporal_ensemble_coeff": 0.01},
            ChunkExecutorConfig(async_inference=False, temporal_ensemble_coeff=0.01),
        ),
        (
            {"n_action_steps": 1, "temporal_ensemble_coeff": -0.2},
            ChunkExecutorConfig(async_inference=False, temporal_ensemble_coeff=-0.2),
        ),
    ],
)
def test_sync_equals_lerobot_select_action(kw, cfg):
    (ours, pre, post), (native, npre, npost) = make_pair(**kw)
    ex = ChunkExecutor(ours, pre, post, cfg)
    native.reset()
    # Crosses several chunk boundaries (10 and 4 steps); ensembling (a pass per tick) until entries
    # have averaged a full chunk_size of predictions.
    n = 12 if cfg.temporal_ensemble_coeff is not None else 23
    for i, obs in enumerate(observations(n)):
        got = ex.step(dict(obs))
        want = predict_action(dict(obs), native, torch.device("cpu"), npre, npost, use_amp=False)
        assert torch.equal(torch.from_numpy(got), want[0]), f"tick {i}: {got} != {want[0].numpy()}"
    assert ex.stats.cold_starts == 1 and ex.stats.stalls == 0
    ex.reset()
    native.reset()
    for obs in observations(3, seed=9):
        want = predict_action(dict(obs), native, torch.device("cpu"), npre, npost, use_amp=False)
        assert torch.equal(torch.from_numpy(ex.step(dict(obs))), want[0])


@pytest.mark.parametrize("coeff", [None, 0.01])
def test_relative_chunks_get_the_observed_position_added(coeff):
    """Codecs with relative positions: every action of a chunk is offset by the EE position (state[:3]) of
    the observation that chunk was predicted from, not of the tick that executes it."""
    n = 10 if coeff is None else 1  # ensembling predicts (and so offsets) a chunk every tick
    (ours, pre, post), (native, npre, npost) = make_pair(n_action_steps=n, temporal_ensemble_coeff=coeff)
    common = {"async_inference": False, "n_action_steps": n, "temporal_ensemble_coeff": coeff}
    absolute = ChunkExecutor(native, npre, npost, ChunkExecutorConfig(**common))
    relative = ChunkExecutor(ours, pre, post, ChunkExecutorConfig(**common, relative_positions=True))
    obs = list(observations(3))
    got, want = relative.step(dict(obs[0])), absolute.step(dict(obs[0]))
    assert np.allclose(got[:3], want[:3] + obs[0]["observation.state"][:3], atol=1e-5)
    assert np.array_equal(got[3:], want[3:])
    if coeff is None:  # later ticks still act on the chunk of obs 0, so they carry obs 0's position
        for o in obs[1:]:
            got, want = relative.step(dict(o)), absolute.step(dict(o))
            assert np.allclose(got[:3], want[:3] + obs[0]["observation.state"][:3], atol=1e-5)


def test_ensembler_matches_lerobot_and_handles_late_chunks():
    torch.manual_seed(0)
    ref, ours = ACTTemporalEnsembler(0.05, 6), TemporalEnsembler(0.05, 6)
    for _ in range(15):
        chunk = torch.randn(1, 6, 3)
        a = ref.update(chunk)
        ours.update(chunk)
        assert torch.equal(a, ours.pop())
    # A chunk predicted 2 ticks ago: its first 2 actions are for executed ticks and are dropped.
    ours.reset()
    first = torch.randn(1, 6, 3)
    ours.update(first)
    popped = [ours.pop() for _ in range(3)]
    assert torch.equal(popped[2], first[:, 2])
    late = torch.randn(1, 6, 3)
    ours.update(late, skip=2)  # predicted at tick 1, now tick 3
    w = torch.exp(-0.05 * torch.arange(6))
    expected = (first[:, 3] * w[0] + late[:, 2] * w[1]) / (w[0] + w[1])
    assert torch.allclose(ours.pop(), expected)
    assert len(ours) == 6 - 3  # late chunk covers ticks 1..6; tick 3 consumed


def test_ensembling_unnormalized_chunks_equals_unnormalizing_the_ensemble():
    """The async executor ensembles unnormalized float64 chunks; affine unnormalization commutes with it."""
    torch.manual_seed(1)
    std, mean = torch.rand(3) + 0.5, torch.randn(3)
    ref, ours = TemporalEnsembler(0.01, 8), TemporalEnsembler(0.01, 8)
    for skip in [0, 0, 2, 0, 1, 3, 0, 0, 5, 1]:
        chunk = torch.randn(1, 8, 3)
        ref.update(chunk, skip)
        ours.update((chunk * std + mean).double(), skip)
        for _ in range(2):
            want = ref.pop()[0] * std + mean
            assert np.allclose(ours.pop()[0].numpy(), want.numpy(), atol=1e-5)
        assert len(ours) == len(ref)


def test_async_latency_skip_and_no_stall():
    (ours, pre, post), _ = make_pair(n_action_steps=10)
    ex = ChunkExecutor(ours, pre, post, ChunkExecutorConfig(async_inference=True, refill_at=5, inference_threads=1))
    try:
        # A control period as long as one forward pass (this machine is shared: measure, don't assume),
        # so refill_at=5 leaves about five passes of margin.
        period = min(0.25, max(0.02, ex.warmup()))
        actions = []
        for obs in observations(40):
            actions.append(ex.step(obs))
            time.sleep(period)
        st = ex.stats
        # The episode's first ticks may go without an action (a tick waits at most 0.8 of a period for the
        # first chunk); from the first action on, every tick has one.
        first = next(i for i, a in enumerate(actions) if a is not None)
        assert st.cold_starts in (first, first + 1)
        assert st.chunks >= 4
        assert st.stalls == 0, st.as_dict()
        assert st.stale_chunks == 0
        # Every installed chunk after the first came from an observation some ticks old.
        assert st.skipped_actions >= st.chunks - 1
        assert all(a is not None and a.shape == (8,) and a.dtype == np.float32 for a in actions[first:])
    finally:
        ex.close()


def test_async_actions_are_the_chunk_of_the_observed_tick():
    """Async actions are the chunk of the observed tick, from the elapsed index on (bit for bit when the
    worker uses as many threads as the reference: reduction order depends on the thread count)."""
    (ours, pre, post), (native, npre, npost) = make_pair(n_action_steps=10)
    ex = ChunkExecutor(
        ours,
        pre,
        post,
        # The first chunk is waited for (the bound on a tick's wait is another test's subject).
        ChunkExecutorConfig(
            async_inference=True, refill_at=6, inference_threads=torch.get_num_threads(), max_wait_s=60.0
        ),
    )
    try:
        obs_list = list(observations(14))
        got = [ex.step(obs_list[0])]
        for t in range(1, 4):
            got.append(ex.step(obs_list[t]))  # tick 3 leaves 6 actions: refill requested with obs 3
        while ex._inflight and ex._worker._result is None:
            time.sleep(0.005)
        got += [ex.step(obs_list[t]) for t in range(4, 8)]  # chunk from obs 3 installed at tick 4: skip 1
        assert ex.stats.skipped_actions == 1
        # Reference: the chunk LeRobot predicts for observation 3, from index 1 on.
        native.reset()
        with torch.inference_mode():
            from lerobot.policies.utils import prepare_observation_for_inference

            batch = npre(prepare_observation_for_inference(dict(obs_list[3]), torch.device("cpu")))
            ref = npost(native.predict_action_chunk(batch))[0]
        for k, t in enumerate(range(4, 8)):
            assert torch.equal(torch.from_numpy(got[t]), ref[1 + k])
    finally:
        ex.close()


def test_async_temporal_ensembling_runs():
    (ours, pre, post), _ = make_pair(n_action_steps=1, temporal_ensemble_coeff=0.01)
    ex = ChunkExecutor(ours, pre, post, ChunkExecutorConfig(temporal_ensemble_coeff=0.01, inference_threads=1))
    try:
        period = min(0.1, max(0.01, ex.warmup() / 3))  # a chunk spans ~3 ticks: well inside its 10-step horizon
        actions = []
        for obs in observations(25):
            a = ex.step(obs)
            if a is not None:  # None until the first chunk arrives (a tick waits at most 0.8 of a period)
                assert a.shape == (8,) and np.isfinite(a).all()
                actions.append(a)
            time.sleep(period)
        assert len(actions) >= 15 and ex.stats.chunks >= 3 and ex.stats.stale_chunks == 0
    finally:
        ex.close()


def test_config_validation():
    (ours, pre, post), _ = make_pair()
    with pytest.raises(ValueError, match="n_action_steps must be 1"):
        ChunkExecutor(
            ours, pre, post, ChunkExecutorConfig(async_inference=False, n_action_steps=5, temporal_ensemble_coeff=0.01)
        )
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkExecutor(ours, pre, post, ChunkExecutorConfig(async_inference=False, n_action_steps=11))


# ---- execution by time, through the chunk-source seam (what a remote policy plugs into) ------------

FPS = 20.0
PERIOD_NS = int(1e9 / FPS)


class ClockSource:
    """A chunk source whose actions encode their own timestamps: action i = start_ns + i * period (in s),
    so every executed action says which instant it was meant for. Sleeps `latency_s` like inference."""

    def __init__(self, n: int = 10, latency_s: float = 0.0):
        self.n, self.latency_s = n, latency_s
        self.calls: list[int] = []
        self.resets: list[str] = []

    def __call__(self, observation, observation_ns):
        self.calls.append(observation_ns)
        if self.latency_s:
            time.sleep(self.latency_s)
        t = (observation_ns + np.arange(self.n) * (1e9 / FPS)) / 1e9
        return np.stack([t, np.full(self.n, observation["k"])], axis=1), observation_ns

    def reset(self):
        import threading

        self.resets.append(threading.current_thread().name)


def test_forced_overruns_keep_actions_on_their_timestamps():
    src = ClockSource(n=10)
    ex = ChunkExecutor.from_source(
        src, chunk_size=10, config=ChunkExecutorConfig(async_inference=False, fps=FPS, n_action_steps=10)
    )
    now = 1_000_000_000
    rng = np.random.default_rng(0)
    for k in range(200):
        # Overruns: ticks skip 0-3 periods and wake up to 0.9 of a period late.
        now += PERIOD_NS * int(rng.integers(1, 5)) + int(rng.uniform(0, 0.9) * PERIOD_NS)
        obs_ns = now - int(rng.uniform(0, 0.5) * PERIOD_NS)  # observations a little older than the tick
        a = ex.step({"k": k}, now, obs_ns)
        assert a is not None
        late = now / 1e9 - a[0]
        # The action whose timestamp is nearest to the tick: never more than half a period either way.
        assert abs(late) <= 0.5 / FPS + 1e-9, f"tick {k}: action for {a[0]:.4f} s executed at {now / 1e9:.4f} s"
        assert ex.last_action_ns == pytest.approx(a[0] * 1e9, abs=1)
    # The tick-counting executor would have walked each chunk one action per tick, lagging by the skips.
    assert ex.stats.skipped_actions == 0 and ex.stats.chunks > 30


def test_schedule_keeping_counts_skipped_and_repeated_slots():
    """The figure can fail: a tick that jumps a slot or executes one twice is counted, an on-time one is not."""
    sk = ScheduleKeeping()
    period = 10_000_000
    for slot in (100, 101, 102, 104, 104, 105, 108):  # 103 skipped; 104 twice; 106 and 107 skipped
        sk.record(slot * period + 1_000_000, slot * period, period)
    assert (sk.skipped_slots, sk.repeated_slots) == (3, 1)
    assert sk.as_dict()["schedule_error_ms_p99"] == pytest.approx(1.0)
    sk.new_episode()
    sk.record(5 * period, 5 * period, period)  # a new episode's first slot is not a jump
    assert sk.skipped_slots == 3


def test_a_new_chunks_grid_a_fraction_of_a_period_off_is_not_a_skip():
    """A chunk's grid starts at its own observation: 0.4 of a period after the old one's grid, consecutive actions
    are 1.4 periods apart, one slot, whichever absolute grid line the shift crosses."""
    period = 10_000_000
    for phase in (0.0, 0.3, 0.45, 0.55, 0.8):
        sk = ScheduleKeeping()
        old = [int((k + phase) * period) for k in range(5)]
        new = [old[-1] + int(1.4 * period) + k * period for k in range(5)]
        for t in old + new:
            sk.record(t, t, period)
        assert (sk.skipped_slots, sk.repeated_slots) == (0, 0), phase


def test_overrunning_ticks_show_as_skipped_slots():
    src = ClockSource(n=10)
    ex = ChunkExecutor.from_source(
        src, chunk_size=10, config=ChunkExecutorConfig(async_inference=False, fps=FPS, n_action_steps=10)
    )
    now = 1_000_000_000
    for k in range(30):
        now += PERIOD_NS * (2 if k == 10 else 1)  # one tick overruns by a whole period
        assert ex.step({"k": k}, now, now) is not None
    st = ex.stats.as_dict()
    assert st["schedule_skipped_slots"] == 1 and st["schedule_repeated_slots"] == 0
    assert st["schedule_error_ms_p99"] < 1e-3  # every action ran at its own timestamp


def test_async_chunks_land_on_their_timestamps_and_ticks_never_wait_longer_than_a_period():
    src = ClockSource(n=8, latency_s=0.25)  # inference takes 5 periods
    ex = ChunkExecutor.from_source(
        src, chunk_size=8, config=ChunkExecutorConfig(fps=FPS, n_action_steps=8, refill_at=7), reset=src.reset
    )
    try:
        t_first = time.monotonic()
        assert ex.step({"k": 0}, time.monotonic_ns()) is None  # nothing to act on yet: no waiting for it
        assert time.monotonic() - t_first < 0.2  # returned after max_wait (0.8 of a period), not the 0.25 s chunk
        got = []
        deadline = time.monotonic_ns()
        for k in range(1, 40):
            deadline += PERIOD_NS
            time.sleep(max(0.0, (deadline - time.monotonic_ns()) / 1e9))
            now = time.monotonic_ns()
            a = ex.step({"k": k}, now, now)
            if a is not None:
                got.append((now, time.monotonic_ns(), a))  # executed when step() returns
        assert len(got) > 20
        for now, done, a in got:
            # On its timestamp, though predicted 5 periods ago: the nearest action, at most half a period off;
            # a tick that waited for its chunk takes the slot that holds the chunk's arrival (at most a period
            # late). The margin covers a loaded machine delaying the return from step().
            if done - now > 5_000_000:
                assert -0.02 <= done / 1e9 - a[0] <= 1 / FPS + 0.02
            else:
                assert abs(done / 1e9 - a[0]) <= 0.5 / FPS + 0.02
        assert ex.stats.skipped_actions >= 4 * (ex.stats.chunks - 1)  # inference latency skipped, not replayed
        assert ex.stats.cold_starts >= 1
        # reset while a chunk is in flight: that chunk is dropped, and the source's reset runs on the worker.
        ex.reset()
        assert ex.step({"k": 99}, time.monotonic_ns()) is None or ex.stats.chunks >= 1
        t0 = time.monotonic()
        while not src.resets and time.monotonic() - t0 < 5:
            time.sleep(0.01)
            ex.step({"k": 100}, time.monotonic_ns())
        assert src.resets and all(name == "robotflow-chunk-inference" for name in src.resets)
    finally:
        ex.close()


def _run_async(ex, ticks: int) -> None:
    deadline = time.monotonic_ns()
    for k in range(ticks):
        deadline += PERIOD_NS
        time.sleep(max(0.0, (deadline - time.monotonic_ns()) / 1e9))
        now = time.monotonic_ns()
        ex.step({"k": k}, now, now)


def test_default_refill_covers_the_measured_latency_and_uses_most_of_each_chunk():
    # Chunks take 1.5 periods to arrive. A fixed half-plan refill re-plans every ~4 actions; the measured
    # default requests the next chunk 2 actions before the plan ends, so ~7 of each chunk's 10 run.
    runs = {}
    for refill_at in (None, 5):
        src = ClockSource(n=10, latency_s=1.5 / FPS)
        ex = ChunkExecutor.from_source(
            src, chunk_size=10, config=ChunkExecutorConfig(fps=FPS, n_action_steps=10, refill_at=refill_at)
        )
        try:
            _run_async(ex, 60)
        finally:
            ex.close()
        runs[refill_at] = ex
    auto, half = runs[None], runs[5]
    assert 2 <= auto.refill_at <= 4, "at least the periods a chunk takes to arrive, rounded up"
    assert auto.stats.stalls <= 1, "the plan never runs out while the next chunk is in flight"
    assert auto.stats.chunks < 0.8 * half.stats.chunks, (auto.stats.chunks, half.stats.chunks)
    assert auto.stats.actions >= half.stats.actions - 2


def test_reset_drops_the_chunk_in_flight():
    src = ClockSource(n=8, latency_s=0.1)
    ex = ChunkExecutor.from_source(src, chunk_size=8, config=ChunkExecutorConfig(fps=FPS, max_wait_s=0.0))
    try:
        assert ex.step({"k": 1}, 0) is None  # submits a chunk predicted from k=1
        ex.reset()
        time.sleep(0.3)  # the old chunk is done now, but belongs to the previous episode
        a = ex.step({"k": 2}, PERIOD_NS)
        assert a is None  # dropped, and a new request went out with k=2
        time.sleep(0.3)
        a = ex.step({"k": 3}, 2 * PERIOD_NS)
        assert a is not None and a[1] == 2
    finally:
        ex.close()


def test_temporal_ensembling_by_time_averages_per_slot():
    src = ClockSource(n=6)
    ex = ChunkExecutor.from_source(
        src, chunk_size=6, config=ChunkExecutorConfig(async_inference=False, fps=FPS, temporal_ensemble_coeff=0.0)
    )
    # Ticks 0, 1, 4 (two skipped): with coeff 0 each slot is the plain mean of the chunks that cover it.
    for k, slot in enumerate([0, 1, 4]):
        a = ex.step({"k": k}, slot * PERIOD_NS)
    assert a[0] == pytest.approx(4 / FPS)  # the action of slot 4, on time
    assert a[1] == pytest.approx(1.0)  # mean of k = 0, 1, 2: all three chunks cover slot 4
