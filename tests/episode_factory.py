"""Write synthetic episode files in the recorder's format (docs/contracts.md, "Episode files").

Tests and the convert benchmark use these instead of a simulator. Every signal is a closed-form
function of time, so a test can compute what the converter must produce at any grid time:

- ``ee_pose(t)``: position on a slow curve; orientation a rotation about a tilted axis by ``ROT_RATE * t``
  rad, stored with ``w >= 0`` like the real source, so it flips sign when the angle crosses pi.
- ``joints(t)``: ``0.3 * sin(t + i)``; ``grip(t)``: ``0.5 + 0.5 * sin(2 t)``.
- commands lead the state by ``COMMAND_LEAD_S``.
- camera frame ``k`` is a flat colour ``frame_level(k)`` with a small moving square, so a test can tell
  which camera frame landed in which dataset frame even after JPEG and video compression.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "robotflow.episode/1"
ROT_AXIS = np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0])
ROT_RATE = 1.2  # rad/s: crosses pi after ~2.6 s, exercising the quaternion sign flip
COMMAND_LEAD_S = 0.1
DEFAULT_RATES = {
    "arm/state": 100.0,
    "arm/command": 100.0,
    "gripper/state": 50.0,
    "gripper/command": 50.0,
    "wrist_camera/frame": 15.0,
    "front_camera/frame": 15.0,
}


def ee_pose(t: np.ndarray) -> np.ndarray:
    """(N, 7) EE pose at times ``t`` (s), quaternion canonicalised to ``w >= 0``."""
    t = np.asarray(t, dtype=np.float64)
    pos = np.stack([0.4 + 0.1 * np.sin(t), 0.1 * np.cos(t), 0.3 + 0.02 * t], axis=1)
    half = 0.5 * ROT_RATE * t + 0.3
    quat = np.concatenate([np.cos(half)[:, None], np.sin(half)[:, None] * ROT_AXIS[None, :]], axis=1)
    quat *= np.where(quat[:, :1] < 0, -1.0, 1.0)
    return np.concatenate([pos, quat], axis=1)


def joints(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    return 0.3 * np.sin(t[:, None] + np.arange(7)[None, :])


def grip(t: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.sin(2.0 * np.asarray(t, dtype=np.float64))


def frame_level(k: int) -> int:
    """Background grey level of camera frame ``k`` (distinct for neighbouring frames)."""
    return int(20 + (k * 37) % 216)


def _texture(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth random 'scene' (upsampled 6x8 noise) so images compress like camera frames, not flat."""
    import cv2

    small = np.random.default_rng(seed).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def make_image(
    k: int, shape: tuple[int, int], texture: np.ndarray | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    h, w = shape
    if texture is None:
        img = np.full((h, w, 3), frame_level(k), dtype=np.uint8)
    else:
        # Scene + sensor noise: realistic compression cost for PNG/JPEG/video in the benchmark.
        noise = (rng or np.random.default_rng(k)).integers(-4, 5, size=(h, w, 3))
        img = np.clip(texture.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    size = max(2, min(h, w) // 6)
    y = (k * 3) % max(1, h - size)
    x = (k * 5) % max(1, w - size)
    img[y : y + size, x : x + size] = (230, 40, 40)
    return img


def encode_jpeg(img: np.ndarray, quality: int = 90) -> np.ndarray:
    """JPEG bytes as a uint8 array (cv2 ships with lerobot; PIL is the fallback)."""
    try:
        import cv2

        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        return buf.reshape(-1)
    except ImportError:  # pragma: no cover
        import io

        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(img).save(out, format="JPEG", quality=quality)
        return np.frombuffer(out.getvalue(), dtype=np.uint8)


@dataclass
class EpisodeSpec:
    """How to synthesise one episode. Times are seconds on the runtime clock."""

    duration_s: float = 2.0
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    start_offsets: dict[str, float] = field(default_factory=dict)  # per-channel delay of the first message
    end_trims: dict[str, float] = field(default_factory=dict)  # per-channel early stop
    timestamps: dict[str, Sequence[float]] = field(default_factory=dict)  # explicit times override rates
    jitter_s: float = 0.0
    image_shape: tuple[int, int] = (48, 64)
    image_encoding: str = "jpeg"  # or "raw"
    textured: bool = False  # camera-like textured frames instead of flat ones (benchmarks)
    outcome: str = "success"
    label: str | None = None  # the operator's label attr; None: no attr (a file from before labels)
    # the arbiter's `control` channel: (time s, source) where the source switches, "policy" or "human" until the
    # next; empty: no control channel
    control: Sequence[tuple[float, str]] = ()
    control_channel: str = "arbiter/control"
    control_rate: float = 50.0
    task: str = "pick up the red cube"
    episode_index: int = 0
    seed: int = 0
    omit: tuple[str, ...] = ()  # channels to leave out ("front_camera/frame") or "channel:field"
    t0_s: float = 5.0  # runtime clock at episode start (not zero, like a real virtual clock)


def channel_times(spec: EpisodeSpec, channel: str, rng: np.random.Generator) -> np.ndarray:
    if channel in spec.timestamps:
        return np.asarray(spec.timestamps[channel], dtype=np.float64)
    rate = spec.rates[channel]
    start = spec.start_offsets.get(channel, 0.0)
    end = spec.duration_s - spec.end_trims.get(channel, 0.0)
    n = int(np.floor((end - start) * rate + 1e-9)) + 1
    t = start + np.arange(n) / rate
    if spec.jitter_s > 0:
        t = t + rng.uniform(0.0, spec.jitter_s, size=n)
        t = np.maximum.accumulate(t)
    return t


def write_episode(path: str | Path, spec: EpisodeSpec | None = None) -> Path:
    """Write one episode file; returns its path."""
    import h5py

    spec = spec or EpisodeSpec()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    counts: dict[str, dict[str, int]] = {}
    with h5py.File(path, "w") as f:
        a = f.attrs
        a["format"] = FORMAT
        a["robotflow_version"] = "0.1.0"
        a["lerobot_version"] = "0.4.4"
        a["graph_yaml"] = "nodes: []\n"
        a["params_json"] = "{}"
        a["task"] = spec.task
        a["episode_index"] = spec.episode_index
        a["seed"] = spec.seed
        a["start_time_unix_ns"] = 1_763_000_000_000_000_000
        a["outcome"] = spec.outcome
        if spec.label is not None:
            a["label"] = spec.label
        a["end_timestamp_ns"] = round((spec.t0_s + spec.duration_s) * 1e9)
        a["duration_s"] = spec.duration_s
        a["rates_json"] = json.dumps(spec.rates)
        channels = f.create_group("channels")

        def group(channel: str, t: np.ndarray) -> h5py.Group:
            g = channels.require_group(channel)
            g.create_dataset("timestamp_ns", data=np.round((spec.t0_s + t) * 1e9).astype(np.int64))
            g.create_dataset("seq", data=np.arange(t.shape[0], dtype=np.int64))
            counts[channel] = {"received": int(t.shape[0]), "gaps": 0}
            return g

        def want(channel: str, name: str | None = None) -> bool:
            return channel not in spec.omit and (name is None or f"{channel}:{name}" not in spec.omit)

        for channel in spec.rates:
            if not want(channel):
                continue
            t = channel_times(spec, channel, rng)
            g = group(channel, t)
            if channel == "arm/state":
                if want(channel, "ee_pose"):
                    g.create_dataset("ee_pose", data=ee_pose(t))
                if want(channel, "joint_pos"):
                    g.create_dataset("joint_pos", data=joints(t))
                g.create_dataset("joint_vel", data=np.zeros((t.shape[0], 7)))
            elif channel == "arm/command":
                if want(channel, "ee_pose"):
                    g.create_dataset("ee_pose", data=ee_pose(t + COMMAND_LEAD_S))
                g.create_dataset("mode", data=np.array(["ee"] * t.shape[0], dtype=object), dtype=h5py.string_dtype())
            elif channel == "gripper/state":
                g.create_dataset("width", data=grip(t))
            elif channel == "gripper/command":
                g.create_dataset("width", data=grip(t + COMMAND_LEAD_S))
            elif channel.endswith("/frame"):
                h, w = spec.image_shape
                tex = _texture((h, w), spec.seed * 31 + len(channel)) if spec.textured else None
                frames = [make_image(k, (h, w), tex, rng) for k in range(t.shape[0])]
                if spec.image_encoding == "raw":
                    ds = g.create_dataset("image", data=np.stack(frames), compression="lzf", chunks=(1, h, w, 3))
                    ds.attrs["encoding"] = "raw"
                else:
                    ds = g.create_dataset("image", shape=(len(frames),), dtype=h5py.vlen_dtype(np.uint8))
                    for k, img in enumerate(frames):
                        ds[k] = encode_jpeg(img)
                    ds.attrs["encoding"] = "jpeg"
                ds.attrs["shape"] = [h, w, 3]
        if spec.control:
            _write_control(group(spec.control_channel, _control_times(spec)), spec)
        # Episode start/end events, as sim.task emits them.
        if want("task/episode"):
            g = group("task/episode", np.array([0.0, spec.duration_s]))
            str_dt = h5py.string_dtype()
            g.create_dataset("event", data=np.array(["start", "end"], dtype=object), dtype=str_dt)
            g.create_dataset("index", data=np.array([spec.episode_index] * 2, dtype=np.int64))
            g.create_dataset("seed", data=np.array([spec.seed] * 2, dtype=np.int64))
            g.create_dataset("outcome", data=np.array(["", spec.outcome], dtype=object), dtype=str_dt)
            g.create_dataset("duration_s", data=np.array([0.0, spec.duration_s]))
            g.create_dataset("task", data=np.array([spec.task] * 2, dtype=object), dtype=str_dt)
        a["counts_json"] = json.dumps(counts)
    return path


def _control_times(spec: EpisodeSpec) -> np.ndarray:
    return np.arange(int(np.floor(spec.duration_s * spec.control_rate + 1e-9)) + 1) / spec.control_rate


def _write_control(g, spec: EpisodeSpec) -> None:
    """The arbiter's output as recorded: `source` per tick, and its running totals (which, on the real arbiter,
    span the run: here they start at 5 interventions and 100 s so a reader that trusts them is caught)."""
    import h5py

    t = _control_times(spec)
    switch_t = np.array([s[0] for s in spec.control])
    which = np.searchsorted(switch_t, t, side="right") - 1
    source = np.array([spec.control[i][1] if i >= 0 else "policy" for i in which], dtype=object)
    human = source == "human"
    took = np.concatenate([[False], human[1:] & ~human[:-1]])
    g.create_dataset("source", data=source, dtype=h5py.string_dtype())
    g.create_dataset("interventions", data=5 + np.cumsum(took).astype(np.int64))
    g.create_dataset("human_s", data=100.0 + np.cumsum(human) / spec.control_rate)
    g.create_dataset("width", data=np.zeros(t.shape[0]))


def write_episodes(directory: str | Path, n: int, **overrides: object) -> list[Path]:
    """``n`` episodes ``episode_000000.h5``... with ``EpisodeSpec(**overrides)`` (index/seed varied)."""
    out = []
    for i in range(n):
        spec = EpisodeSpec(**{**overrides, "episode_index": i, "seed": i})  # type: ignore[arg-type]
        out.append(write_episode(Path(directory) / f"episode_{i:06d}.h5", spec))
    return out
