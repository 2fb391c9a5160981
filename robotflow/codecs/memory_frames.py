"""Training side of the camera codecs: every video frame of a dataset decoded once, held in memory as uint8.

LeRobot decodes each sample's frames from the dataset's videos on every training step. On the project's 2-core
machine that costs about as much as a camera ACT step itself (DESIGN.md, "Camera ACT on these 2 CPUs"), and a
converted dataset at 96x128 is small: 10k frames of two cameras are 740 MB as uint8. `keep_frames_in_memory`
decodes each video file once, front to back, and answers LeRobot's frame queries by timestamp from memory.

It can also shift every sample's images by a few pixels (`shift_px`, random per sample and camera; the border is
replicated): the random-shift augmentation of DrQ, which keeps a policy trained on a hundred demonstrations from
keying on exact pixel positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av  # PyAV, as LeRobot's pyav video backend
import numpy as np
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def decode_video(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames of one video file as (N, H, W, 3) uint8 RGB, and their presentation times in seconds (N,)."""
    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * stream.time_base))
    return np.stack(frames), np.asarray(times)


class InMemoryFrames:
    """Stands in for `LeRobotDataset._query_videos`: the frames nearest each queried timestamp, from memory.

    Returns what LeRobot's decoder does: float32 in 0..1, (C, H, W) for one timestamp, (T, C, H, W) for several.
    """

    def __init__(self, ds: LeRobotDataset, shift_px: int = 0):
        self.ds = ds
        self.shift_px = int(shift_px)
        self.tolerance_s = float(ds.tolerance_s)
        self.videos: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
        for ep_idx in range(ds.meta.total_episodes):
            for key in ds.meta.video_keys:
                path = ds.root / ds.meta.get_video_file_path(ep_idx, key)
                if path not in self.videos:
                    self.videos[path] = decode_video(path)

    @property
    def nbytes(self) -> int:
        return sum(frames.nbytes for frames, _ in self.videos.values())

    def __call__(self, query_timestamps: dict[str, list[float]], ep_idx: int) -> dict[str, torch.Tensor]:
        ep = self.ds.meta.episodes[ep_idx]
        item = {}
        for key, query_ts in query_timestamps.items():
            frames, times = self.videos[self.ds.root / self.ds.meta.get_video_file_path(ep_idx, key)]
            shifted = np.asarray(query_ts, np.float64) + float(ep[f"videos/{key}/from_timestamp"])
            idx = np.clip(np.searchsorted(times, shifted), 1, len(times) - 1)
            idx -= shifted - times[idx - 1] < times[idx] - shifted  # the nearer neighbour
            if np.any(np.abs(times[idx] - shifted) > self.tolerance_s):
                raise ValueError(
                    f"{key}: no frame within {self.tolerance_s} s of {shifted.tolist()} in episode {ep_idx}"
                )
            picked = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2)  # (T, C, H, W) uint8
            if self.shift_px > 0:
                picked = random_shift(picked, self.shift_px)
            item[key] = (picked.float() / 255.0).squeeze(0)
        return item


def random_shift(frames: torch.Tensor, px: int) -> torch.Tensor:
    """Translate (T, C, H, W) frames by one random offset of up to `px` pixels each way, replicating the border."""
    _, _, h, w = frames.shape
    padded = torch.nn.functional.pad(frames.float(), (px, px, px, px), mode="replicate")
    dy, dx = (int(v) for v in torch.randint(0, 2 * px + 1, (2,)))
    return padded[:, :, dy : dy + h, dx : dx + w].to(frames.dtype)


def keep_frames_in_memory(ds: LeRobotDataset, shift_px: int = 0) -> LeRobotDataset:
    """Decode `ds`'s videos once and serve its frames from memory (in place; returns `ds`)."""
    if not isinstance(ds, LeRobotDataset):
        raise TypeError(f"frames in memory need a local LeRobotDataset, got {type(ds).__name__}")
    if ds.meta.video_keys:
        ds._query_videos = InMemoryFrames(ds, shift_px)  # an instance attribute shadows LeRobot's method
    return ds


def describe(ds: Any) -> str:
    frames = getattr(ds, "_query_videos", None)
    if isinstance(frames, InMemoryFrames):
        return f"{len(frames.videos)} video file(s) decoded into memory, {frames.nbytes / 1e6:.0f} MB"
    return "frames decoded from video per sample"
