"""Recorded episodes -> LeRobot v3.0 dataset, through a codec.

Speed comes from what LeRobot 0.4.4 itself offers, used instead of its defaults:

- ``streaming_encoding=True``: frames go straight from memory into PyAV encoder threads (one per
  camera), instead of being written as PNG files and re-read by ffmpeg at ``save_episode`` (the
  default path spends most of its time compressing and decompressing PNGs).
- the video codec stays LeRobot's default, SVT-AV1: measured here it beat libx264 in wall time by
  2-3x inside the converter, because SVT-AV1 runs in its own threads while the x264 path kept the
  main thread waiting; dav1d decodes it as fast as h264 at training time.
- JPEG decoding of the next chunk of frames runs in a helper thread (OpenCV releases the GIL) while
  the current chunk is fed to LeRobot, so decoding overlaps LeRobot's per-frame Python work.
- ``aggregate_datasets`` merges per-shard datasets (``workers > 1``, each shard in its own process)
  and implements ``append`` without touching the existing dataset until the merged one is complete.

Everything is validated before anything is written: each episode file is opened, its outcome
filtered, and the streams the codec needs checked, so a bad file fails the run in seconds with a
one-line error naming it, and never leaves a half-written dataset behind.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robotflow.codecs.codec import Codec, CodecError
from robotflow.codecs.resample import FrameGrid, grid_window, make_grid, zoh_indices
from robotflow.codecs.spec import (
    CodecMismatchError,
    check_same_codec,
    codec_from_spec,
    read_dataset_spec,
    write_dataset_spec,
)
from robotflow.recording.control import human_segments
from robotflow.recording.reader import EpisodeError, EpisodeFile, EpisodeInfo, find_episode_files

__all__ = [
    "ConvertError",
    "ConvertOptions",
    "PlannedEpisode",
    "ConvertSummary",
    "plan_episodes",
    "encode_episode",
    "EncodedEpisode",
    "convert",
    "append",
    "dir_size_bytes",
    "video_backend",
    "quiet_video_logs",
]

log = logging.getLogger(__name__)

DEFAULT_TASK = "default task"
# Frames decoded and fed to the encoder per step: bounds memory to ~chunk x cameras x one image.
FEED_CHUNK = 32
# How many frames may wait in one camera's encoder queue before we pause feeding. LeRobot's
# streaming encoder *drops* a frame when its queue is full for 0.1 s (right for live recording,
# wrong for conversion), so we size the queue above an episode and keep it from filling instead.
QUEUE_HIGH_WATER = 48
# LeRobot video codec names <- the codec name ffprobe/PyAV report in info.json.
_VCODEC_FROM_INFO = {"h264": "h264", "hevc": "hevc", "av1": "libsvtav1", "libsvtav1": "libsvtav1"}


class ConvertError(Exception):
    """A conversion problem with a one-line, user-facing message."""


@dataclass(frozen=True)
class ConvertOptions:
    """Options of one convert/append run (CLI flags map 1:1)."""

    fps: int | None = None  # None: the codec's fps
    task: str | None = None  # overrides the episode's task text
    repo_id: str = "robotflow/dataset"
    include_aborted: bool = False
    vcodec: str = "libsvtav1"
    workers: int = 1
    progress: bool = True
    robot_type: str | None = None
    encoder_threads: int | None = 1  # threads per camera encoder (None: codec default)
    interventions_lead_in_s: float | None = None  # None: whole episodes; else each intervention from this long before


@dataclass(frozen=True)
class PlannedEpisode:
    """An episode accepted by validation, with its frame grid (timestamps only, no data read yet)."""

    path: Path
    info: EpisodeInfo
    grid: FrameGrid
    task: str


@dataclass
class SkippedEpisode:
    path: Path
    reason: str


@dataclass
class EncodedEpisode:
    """State/action matrices of one episode; images are decoded lazily by :meth:`image_chunk`."""

    planned: PlannedEpisode
    state: np.ndarray  # (N, D) float32
    action: np.ndarray  # (N, A) float32
    image_indices: dict[str, tuple[str, np.ndarray]]  # feature key -> (channel, message index per frame)
    environment_state: np.ndarray | None = None  # (N, E) float32, privileged object poses (*_objects codecs)

    @property
    def num_frames(self) -> int:
        return int(self.state.shape[0])


@dataclass
class ConvertSummary:
    """What a run produced; printed by the CLI and returned to Python callers."""

    output_dir: Path
    codec: str
    episodes: int
    frames: int
    fps: int
    duration_s: float  # dataset duration (frames / fps)
    wall_s: float
    size_bytes: int
    skipped: list[SkippedEpisode] = field(default_factory=list)
    total_episodes: int = 0  # in the dataset after an append
    total_frames: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "output_dir": str(self.output_dir),
            "codec": self.codec,
            "episodes": self.episodes,
            "frames": self.frames,
            "fps": self.fps,
            "duration_s": round(self.duration_s, 3),
            "wall_s": round(self.wall_s, 3),
            "size_bytes": self.size_bytes,
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.skipped],
            "total_episodes": self.total_episodes,
            "total_frames": self.total_frames,
        }


# ---------------------------------------------------------------------------------------------
# Planning and encoding
# ---------------------------------------------------------------------------------------------
def _episode_task(ep: EpisodeFile, codec: Codec, override: str | None) -> str:
    if override:
        return override
    tf = codec.params.task_field
    if tf:
        if tf == "task" and ep.info.task:
            return ep.info.task
        attr = ep.attr(tf)
        if attr:
            return attr
        task_channel = codec.params.channels.task
        if ep.has_field(task_channel, tf):
            for value in ep.field(task_channel, tf):
                if str(value):
                    return str(value)
    return DEFAULT_TASK


def _check_streams(ep: EpisodeFile, codec: Codec) -> None:
    for channel, name, why in codec.required_streams():
        if not ep.has_channel(channel):
            raise ConvertError(f"{ep.name}: missing channel '{channel}' ({why}) required by codec '{codec.name}'")
        if not ep.has_field(channel, name):
            hint = ""
            if channel == codec.params.channels.arm_command and ep.has_field(channel, "joint_pos"):
                hint = "; the arm was commanded in joint space: use a _traj codec, whose labels come from the arm state"
            raise ConvertError(
                f"{ep.name}: channel '{channel}' has no field '{name}' ({why}) required by codec '{codec.name}'{hint}"
            )
        if ep.timestamps(channel).shape[0] == 0:
            raise ConvertError(f"{ep.name}: channel '{channel}' ({why}) has no messages")


def plan_episodes(
    input_path: str | Path,
    codec: Codec,
    fps: int,
    *,
    task: str | None = None,
    include_aborted: bool = False,
    interventions_lead_in_s: float | None = None,
) -> tuple[list[PlannedEpisode], list[SkippedEpisode]]:
    """Find, open and validate every episode file; nothing is written.

    With `interventions_lead_in_s` set, each intervention (a run of ticks an operator drove,
    robotflow.recording.control) becomes a dataset episode of its own, from that long before the take-over to
    the hand-back, and episodes without one are skipped: the data to learn from corrections.

    Raises :class:`ConvertError` with a one-line message for a missing input, a file that is not an
    episode, or an episode lacking a stream the codec needs.
    """
    try:
        paths = find_episode_files(input_path)
    except EpisodeError as exc:
        raise ConvertError(str(exc)) from None
    if not paths:
        partial = list(Path(input_path).rglob("*.h5.partial")) if Path(input_path).is_dir() else []
        hint = f" ({len(partial)} unfinished *.h5.partial: see 'robotflow recover')" if partial else ""
        raise ConvertError(f"{input_path}: no episode files (*.h5) found{hint}")
    planned: list[PlannedEpisode] = []
    skipped: list[SkippedEpisode] = []
    for path in paths:
        try:
            with EpisodeFile(path) as ep:
                outcome = ep.info.outcome
                if outcome == "discarded":
                    skipped.append(SkippedEpisode(path, "discarded"))
                    continue
                if outcome == "aborted" and not include_aborted:
                    skipped.append(SkippedEpisode(path, "aborted (use --include-aborted to keep)"))
                    continue
                _check_streams(ep, codec)
                channels = sorted({c for c, _, _ in codec.required_streams()})
                grid = make_grid({c: ep.timestamps(c) for c in channels}, fps)
                if grid.num_frames < 2:
                    raise ConvertError(
                        f"{ep.name}: streams overlap for {max(0, grid.end_ns - grid.start_ns) / 1e9:.3f} s only, "
                        f"fewer than 2 frames at {fps} fps"
                    )
                episode_task = _episode_task(ep, codec, task)
                if interventions_lead_in_s is None:
                    planned.append(PlannedEpisode(path, ep.info, grid, episode_task))
                    continue
                windows = _intervention_grids(ep, grid, interventions_lead_in_s)
                if not windows:
                    skipped.append(SkippedEpisode(path, "no interventions"))
                planned += [PlannedEpisode(path, ep.info, g, episode_task) for g in windows]
        except EpisodeError as exc:
            raise ConvertError(str(exc)) from None
    if not planned:
        raise ConvertError(
            f"{input_path}: no episodes left to convert ({len(skipped)} skipped: "
            + ", ".join(sorted({s.reason for s in skipped}))
            + ")"
        )
    return planned, skipped


def _intervention_grids(ep: EpisodeFile, grid: FrameGrid, lead_in_s: float) -> list[FrameGrid]:
    """The episode's frame grid cut to each intervention with its lead-in (those of at least 2 frames)."""
    out = []
    for seg in human_segments(ep) or []:
        window = grid_window(grid, seg.start_ns - int(lead_in_s * 1e9), seg.end_ns)
        if window.num_frames >= 2:
            out.append(window)
    return out


# Smallest std the low-dim observations are normalised with, in their units (m, quaternion components, grip).
# Demonstrations leave some coordinates almost constant (the bottom cube's height: std 5e-5 m; a resting
# cube's tilt components: 1e-4); LeRobot's MEAN_STD divides by that std, so a millimetre or a small tilt at
# deployment would become a 20-sigma input. With the floor such coordinates stay near zero after
# normalisation, and the coordinates that carry the task (object x/y, yaw) keep their own std.
OBSERVATION_STD_FLOOR = 1e-2


def floor_observation_std(root: Path, codec: Codec) -> None:
    """Raise the std of the low-dim observation features in ``meta/stats.json`` to OBSERVATION_STD_FLOOR.

    Only for the privileged ``*_objects`` codecs, whose whole input is these numbers.
    """
    if not codec.layout.objects:
        return
    path = Path(root) / "meta" / "stats.json"
    stats = json.loads(path.read_text())
    for key in ("observation.state", "observation.environment_state"):
        if key in stats and "std" in stats[key]:
            stats[key]["std"] = np.maximum(np.asarray(stats[key]["std"], np.float64), OBSERVATION_STD_FLOOR).tolist()
    path.write_text(json.dumps(stats, indent=4))


def _episode_objects(path: Path, codec: Codec) -> list[str]:
    """Object names of an episode's first ``task/objects`` message (the environment_state layout)."""
    channel = codec.params.channels.objects
    with EpisodeFile(path) as ep:
        names = [n for n in str(ep.field(channel, "names")[0]).split(",") if n]
    if not names:
        raise ConvertError(f"{path.name}: '{channel}' lists no objects")
    return names


def held_ee_commands(ep: EpisodeFile, channel: str, grid: np.ndarray, state_pose: np.ndarray) -> np.ndarray:
    """The commanded EE pose held at each grid time, from the arm's EE commands only.

    An arm echoes whichever target it applies: a hardware arm homed between episodes through `joint_target`
    starts each episode with joint commands, whose `ee_pose` field the file fills with zeros. Those rows are
    not EE labels (they made the first label of every Franka twin episode a pose at the origin, 0.46 m from
    the hand). Grid times before the first EE command take the measured EE pose: the arm held where it was.
    """
    ts, poses = ep.timestamps(channel), ep.field(channel, "ee_pose")
    if ep.has_field(channel, "mode"):
        ee = np.asarray(ep.field(channel, "mode")).astype(str) == "ee"
        ts, poses = ts[ee], poses[ee]
    if len(ts) == 0:
        raise ConvertError(
            f"{ep.name}: channel '{channel}' has no EE command (the arm was only commanded in joint space)"
        )
    out = np.array(poses[zoh_indices(ts, grid)], dtype=np.float64)
    before = grid < ts[0]
    out[before] = state_pose[before]
    return out


def encode_episode(ep: EpisodeFile, planned: PlannedEpisode, codec: Codec) -> EncodedEpisode:
    """Resample the codec's streams onto the episode grid (zero-order hold) and encode state/action."""
    grid = planned.grid.timestamps_ns

    def held(channel: str, name: str) -> np.ndarray:
        return ep.field(channel, name)[zoh_indices(ep.timestamps(channel), grid)]

    ch = codec.params.channels
    parts = set(codec.layout.state)
    needs_ee = bool(parts & {"ee_pose", "ee_rot6d"}) or codec.layout.labels == "trajectory"
    kwargs: dict[str, Any] = {
        "state_ee_pose": held(ch.arm_state, "ee_pose") if needs_ee else None,
        "state_grip": held(ch.gripper_state, "width").astype(np.float64).reshape(-1),
        "state_joints": held(ch.arm_state, "joint_pos") if "joints" in parts else None,
    }
    if codec.layout.labels == "command":
        state_pose = kwargs["state_ee_pose"] if kwargs["state_ee_pose"] is not None else held(ch.arm_state, "ee_pose")
        kwargs["command_ee_pose"] = held_ee_commands(ep, ch.arm_command, grid, state_pose)
        kwargs["command_grip"] = held(ch.gripper_command, "width").astype(np.float64).reshape(-1)
    state, action = codec.encode_arrays(**kwargs)
    env = None
    if codec.layout.objects:
        try:
            ee_positions = kwargs["state_ee_pose"][:, :3] if codec.layout.relative else None
            env = codec.encode_objects_arrays(held(ch.objects, "names"), held(ch.objects, "poses"), ee_positions)
        except CodecError as exc:
            raise ConvertError(f"{ep.name}: {exc}") from None
    images = {key: (ch, zoh_indices(ep.timestamps(ch), grid)) for key, ch in codec.camera_keys.items()}
    return EncodedEpisode(planned, state, action, images, env)


def image_chunk(ep: EpisodeFile, enc: EncodedEpisode, codec: Codec, key: str, start: int, stop: int) -> np.ndarray:
    """Decoded, resized frames ``start:stop`` of camera feature ``key``."""
    channel, idx = enc.image_indices[key]
    return codec.encode_images(ep.images(channel, idx[start:stop]))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _wait_for_encoder(ds: Any) -> None:
    """Backpressure on LeRobot's streaming encoder so it never drops a frame (see QUEUE_HIGH_WATER)."""
    enc = getattr(ds, "_streaming_encoder", None)
    queues = getattr(enc, "_frame_queues", None)
    if not queues:
        return
    while any(q.qsize() >= QUEUE_HIGH_WATER for q in queues.values()):
        time.sleep(0.002)


def _create_dataset(root: Path, codec: Codec, fps: int, opts: ConvertOptions, max_len: int) -> Any:
    """An empty LeRobot dataset at ``root`` that encodes videos while frames are added."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # torch/lerobot: imported only to convert

    return LeRobotDataset.create(
        repo_id=opts.repo_id,
        fps=fps,
        features=codec.features(),
        root=root,
        robot_type=opts.robot_type,
        use_videos=True,
        vcodec=opts.vcodec,
        streaming_encoding=True,
        # Above any episode, so the encoder's drop-on-full never triggers; _wait_for_encoder keeps
        # the real occupancy at QUEUE_HIGH_WATER so memory stays small.
        encoder_queue_maxsize=max_len + 1,
        # One thread per camera encoder: the cameras already run in parallel threads, and on a
        # 2-core machine more threads per encoder only add contention.
        encoder_threads=opts.encoder_threads,
    )


def _write_episode(
    ds: Any, p: PlannedEpisode, codec: Codec, opts: ConvertOptions, prefetch: concurrent.futures.Executor
) -> int:
    """Add one episode's frames to ``ds`` and save it; returns its frame count.

    ``prefetch`` decodes the next chunk of JPEGs while this thread feeds LeRobot.
    """
    from tqdm.auto import tqdm

    video_keys = list(codec.camera_keys)
    with EpisodeFile(p.path) as ep:
        enc = encode_episode(ep, p, codec)
        n = enc.num_frames
        frame_bar = tqdm(total=n, desc=p.path.name, unit="fr", leave=False, disable=not opts.progress)

        def load_chunk(start: int) -> dict[str, np.ndarray]:
            stop = min(n, start + FEED_CHUNK)
            return {k: image_chunk(ep, enc, codec, k, start, stop) for k in video_keys}

        starts = list(range(0, n, FEED_CHUNK))
        pending = prefetch.submit(load_chunk, starts[0])
        for j, start in enumerate(starts):
            imgs = pending.result()
            if j + 1 < len(starts):
                pending = prefetch.submit(load_chunk, starts[j + 1])
            stop = min(n, start + FEED_CHUNK)
            for i in range(start, stop):
                _wait_for_encoder(ds)
                frame: dict[str, Any] = {"observation.state": enc.state[i], "action": enc.action[i], "task": p.task}
                if enc.environment_state is not None:
                    frame["observation.environment_state"] = enc.environment_state[i]
                for k in video_keys:
                    frame[k] = imgs[k][i - start]
                ds.add_frame(frame)
            frame_bar.update(stop - start)
        frame_bar.close()
        ds.save_episode()
    return n


def _write_dataset(
    root: Path,
    planned: Sequence[PlannedEpisode],
    codec: Codec,
    fps: int,
    opts: ConvertOptions,
    position: int = 0,
) -> int:
    """Write ``planned`` episodes into a new LeRobot dataset at ``root``; returns frames written."""
    import datasets as hf_datasets  # LeRobot's dataset stack: imported only to convert
    from tqdm.auto import tqdm

    quiet_video_logs()
    ds = _create_dataset(root, codec, fps, opts, max(p.grid.num_frames for p in planned))
    frames = 0
    # HF datasets prints a "Map" bar per saved episode; our own bars already show progress.
    hf_bars = not hf_datasets.are_progress_bars_disabled()
    hf_datasets.disable_progress_bars()
    prefetch = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rf-decode")
    try:
        for p in tqdm(planned, desc="episodes", unit="ep", disable=not opts.progress, position=position):
            frames += _write_episode(ds, p, codec, opts, prefetch)
    finally:
        prefetch.shutdown(wait=True)
        ds.finalize()
        if hf_bars:
            hf_datasets.enable_progress_bars()
    return frames


def _write_shard(args: tuple[str, list[PlannedEpisode], dict[str, Any], int, ConvertOptions, int]) -> int:
    root, planned, spec, fps, opts, position = args
    return _write_dataset(Path(root), planned, codec_from_spec(spec), fps, opts, position)


def _shards(planned: Sequence[PlannedEpisode], n: int) -> list[list[PlannedEpisode]]:
    """Split into ``n`` contiguous shards with about equal frame counts (order is preserved)."""
    total = sum(p.grid.num_frames for p in planned)
    out: list[list[PlannedEpisode]] = [[]]
    acc = 0
    for p in planned:
        if out[-1] and acc >= total * len(out) / n and len(out) < n:
            out.append([])
        out[-1].append(p)
        acc += p.grid.num_frames
    return [s for s in out if s]


def _aggregate(sources: Sequence[Path], dest: Path, repo_id: str, progress: bool = True) -> None:
    """Merge datasets with LeRobot's ``aggregate_datasets`` (episode order = ``sources`` order)."""
    import types
    from functools import partial

    import tqdm as tqdm_module
    from lerobot.datasets import aggregate as lr_aggregate

    saved = lr_aggregate.tqdm
    if not progress:
        # aggregate_datasets always shows two tqdm bars; --quiet/--json runs must print nothing.
        lr_aggregate.tqdm = types.SimpleNamespace(tqdm=partial(tqdm_module.tqdm, disable=True))
    try:
        lr_aggregate.aggregate_datasets(
            repo_ids=[f"{repo_id}-part{i}" for i in range(len(sources))],
            aggr_repo_id=repo_id,
            roots=list(sources),
            aggr_root=dest,
        )
    finally:
        lr_aggregate.tqdm = saved


def _build(
    root: Path, planned: Sequence[PlannedEpisode], codec: Codec, fps: int, opts: ConvertOptions, work: Path
) -> int:
    """Write ``planned`` into a new dataset at ``root`` (which must not exist), sharded if asked."""
    workers = max(1, min(opts.workers, len(planned)))
    if workers == 1:
        return _write_dataset(root, planned, codec, fps, opts)
    shards = _shards(planned, workers)
    roots = [work / f"shard-{i:03d}" for i in range(len(shards))]
    # fork where available (Linux): the children inherit the already-imported LeRobot/torch stack,
    # which costs 5-8 s per process to import cold on these machines; the parent has started no
    # encoder threads at this point (LeRobot's own encoding pool forks the same way).
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=len(shards), mp_context=ctx) as pool:
        jobs = [(str(r), s, codec.spec(), fps, opts, i) for i, (r, s) in enumerate(zip(roots, shards))]
        frames = sum(pool.map(_write_shard, jobs))
    _aggregate(roots, root, opts.repo_id, opts.progress)
    return frames


@functools.cache
def video_backend() -> str:
    """The video decoder LeRobot should use here: ``torchcodec`` (LeRobot's default) when its FFmpeg libraries load,
    else ``pyav``, with a warning.

    torchcodec's wheels link against the system FFmpeg (libavutil.so.56-60), which `make`'s system step installs
    from Debian; without it loading a dataset with the default backend fails at the first frame. PyAV bundles its
    own FFmpeg, so it is the fallback. Pass the result as ``LeRobotDataset(..., video_backend=...)`` or
    ``--dataset.video_backend=...`` to lerobot-train.
    """
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads the shared libraries)
    except Exception as e:  # RuntimeError/OSError from the loader, ImportError when absent
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        logging.getLogger("robotflow.codecs").warning(
            "torchcodec cannot load (%s); decoding videos with pyav. Install FFmpeg's libraries "
            "(`make install` as root does) to use LeRobot's default decoder.",
            first,
        )
        return "pyav"
    return "torchcodec"


def quiet_video_logs() -> None:
    """Silence libx264/libav per-stream INFO dumps (dozens of lines per episode) but keep errors."""
    import av  # PyAV: LeRobot's video encoder

    # LeRobot's encoder threads restore FFmpeg's default (terminal) callback when they finish, so
    # the libav-side threshold must be lowered too, not only PyAV's.
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_libav_level(av.logging.ERROR)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its config banner at the default level


def dir_size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _fresh_workdir(near: Path, tag: str) -> Path:
    """A temp dir next to ``near`` (same filesystem, so the final rename is atomic), named with this process's
    id so that a later run can tell it from a live one's (clear_interrupted)."""
    near.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{near.name}.{tag}-{os.getpid()}-", dir=near.parent))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clear_interrupted(output_dir: Path) -> None:
    """Clean up after a convert or append that was killed (its process is gone) beside ``output_dir``.

    Its work dir holds a half-built dataset, removed here. One case holds more: an append killed between its
    two renames (_swap_in) left the output path empty and the old dataset in the work dir's `previous`; it is
    renamed back, so the output path holds the dataset as it was before that append (untouched).
    """
    pattern = re.compile(rf"\.{re.escape(output_dir.name)}\.(convert|append)-(\d+)-.+")
    if not output_dir.parent.is_dir():
        return
    for work in output_dir.parent.iterdir():
        m = pattern.fullmatch(work.name)
        if m is None or not work.is_dir() or _process_alive(int(m.group(2))):
            continue
        previous = work / "previous"
        if previous.is_dir() and not output_dir.exists():
            os.replace(previous, output_dir)
            log.warning("%s: put back the dataset an interrupted append had moved aside", output_dir)
        shutil.rmtree(work, ignore_errors=True)


def convert(
    input_path: str | Path, output_dir: str | Path, codec: Codec, opts: ConvertOptions = ConvertOptions()
) -> ConvertSummary:
    """Convert every kept episode under ``input_path`` into a new LeRobot dataset at ``output_dir``.

    The dataset is built in a temp dir beside ``output_dir`` and renamed into place at the end, so an
    interrupted run never leaves a partial dataset at the output path.
    """
    t0 = time.perf_counter()
    output_dir = Path(output_dir)
    clear_interrupted(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ConvertError(
            f"{output_dir}: output exists and is not empty (use 'robotflow convert append' to add episodes)"
        )
    fps = int(opts.fps or codec.params.fps)
    if fps != codec.params.fps:
        codec = Codec(codec.name, dataclasses.replace(codec.params, fps=fps))
    planned, skipped = plan_episodes(
        input_path,
        codec,
        fps,
        task=opts.task,
        include_aborted=opts.include_aborted,
        interventions_lead_in_s=opts.interventions_lead_in_s,
    )
    if codec.layout.objects and not codec.params.objects:
        codec = codec.with_objects(_episode_objects(planned[0].path, codec))
    work = _fresh_workdir(output_dir, "convert")
    try:
        built = work / "dataset"
        frames = _build(built, planned, codec, fps, opts, work)
        write_dataset_spec(built, codec)
        floor_observation_std(built, codec)
        if output_dir.exists():
            output_dir.rmdir()  # empty (checked above)
        os.replace(built, output_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _summary(output_dir, codec, planned, frames, fps, t0, skipped, len(planned), frames)


def _existing_vcodec(info: dict[str, Any]) -> str | None:
    for ft in info.get("features", {}).values():
        if ft.get("dtype") == "video" and ft.get("info"):
            return _VCODEC_FROM_INFO.get(str(ft["info"].get("video.codec")))
    return None


def _check_appendable(
    output_dir: Path, codec: Codec, opts: ConvertOptions, inherit: Callable[[dict[str, Any]], Codec] | None
) -> tuple[Codec, dict[str, Any], dict[str, Any]]:
    """The codec to append with, the dataset's codec spec and its info.json; ConvertError unless they match."""
    info_path = output_dir / "meta" / "info.json"
    if not info_path.is_file():
        raise ConvertError(
            f"{output_dir}: not an existing LeRobot dataset (no meta/info.json); use 'robotflow convert'"
        )
    try:
        existing_spec = read_dataset_spec(output_dir)
    except CodecError as exc:
        raise ConvertError(str(exc)) from None
    if inherit is not None:
        codec = inherit(existing_spec)
    if codec.layout.objects and not codec.params.objects:
        codec = codec.with_objects(existing_spec.get("params", {}).get("objects") or [])
    try:
        check_same_codec(existing_spec, codec, have_what=f"dataset {output_dir}", want_what="this run")
    except CodecMismatchError as exc:
        raise ConvertError(str(exc)) from None
    info = json.loads(info_path.read_text())
    fps = int(info["fps"])
    if opts.fps is not None and int(opts.fps) != fps:
        raise ConvertError(f"{output_dir}: fps mismatch, dataset is {fps} fps and --fps is {opts.fps}")
    for key, ft in codec.features().items():
        have = info.get("features", {}).get(key)
        if have is None or list(have["shape"]) != list(ft["shape"]) or have["dtype"] != ft["dtype"]:
            raise ConvertError(
                f"{output_dir}: feature mismatch on '{key}': dataset {have and have.get('shape')} vs codec {list(ft['shape'])}"
            )
    return codec, existing_spec, info


def _swap_in(merged: Path, output_dir: Path, old: Path) -> None:
    """Replace ``output_dir`` by ``merged``: the old dataset moves aside only once the merged one is complete,
    and comes back if the second rename fails, so the output path always holds a whole dataset. A process
    killed between the two renames leaves it in ``old``; the next convert or append puts it back
    (clear_interrupted)."""
    os.replace(output_dir, old)
    try:
        os.replace(merged, output_dir)
    except BaseException:
        os.replace(old, output_dir)
        raise


def append(
    input_path: str | Path,
    output_dir: str | Path,
    codec: Codec,
    opts: ConvertOptions = ConvertOptions(),
    inherit: Callable[[dict[str, Any]], Codec] | None = None,
) -> ConvertSummary:
    """Add the episodes under ``input_path`` to the robotflow-converted dataset at ``output_dir``.

    Refused (with the dataset untouched) when the codec name, params or features differ from the
    dataset's. The new episodes are converted into a temp dir, aggregated with the existing dataset
    into another temp dir, and only then swapped into place with two renames.
    ``inherit``, when given, builds the codec from the existing spec (CLI: params not set on the
    command line are taken from the dataset).
    """
    t0 = time.perf_counter()
    output_dir = Path(output_dir)
    clear_interrupted(output_dir)
    codec, existing_spec, info = _check_appendable(output_dir, codec, opts, inherit)
    fps = int(info["fps"])
    vcodec = _existing_vcodec(info) or opts.vcodec
    planned, skipped = plan_episodes(
        input_path,
        codec,
        fps,
        task=opts.task,
        include_aborted=opts.include_aborted,
        interventions_lead_in_s=opts.interventions_lead_in_s,
    )
    run_opts = dataclasses.replace(opts, vcodec=vcodec, fps=fps, robot_type=info.get("robot_type"))
    work = _fresh_workdir(output_dir, "append")
    try:
        new = work / "new"
        frames = _build(new, planned, codec, fps, run_opts, work)
        merged = work / "merged"
        try:
            _aggregate([output_dir, new], merged, opts.repo_id, opts.progress)
        except ValueError as exc:  # validate_all_metadata: fps/robot_type/features differ
            raise ConvertError(f"{output_dir}: cannot merge new episodes: {str(exc).splitlines()[0]}") from None
        write_dataset_spec(merged, existing_spec)
        floor_observation_std(merged, codec)
        _swap_in(merged, output_dir, work / "previous")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    merged_info = json.loads((output_dir / "meta" / "info.json").read_text())
    totals = int(merged_info["total_episodes"]), int(merged_info["total_frames"])
    return _summary(output_dir, codec, planned, frames, fps, t0, skipped, *totals)


def _summary(output_dir, codec, planned, frames, fps, t0, skipped, total_episodes, total_frames) -> ConvertSummary:
    return ConvertSummary(
        output_dir=output_dir,
        codec=codec.name,
        episodes=len(planned),
        frames=frames,
        fps=fps,
        duration_s=frames / fps,
        wall_s=time.perf_counter() - t0,
        size_bytes=dir_size_bytes(output_dir),
        skipped=skipped,
        total_episodes=total_episodes,
        total_frames=total_frames,
    )
