"""Resampling recorded streams onto the uniform frame grid of a LeRobot dataset.

Every channel in an episode file carries its own runtime-clock timestamps and rate (cameras at 15-30 Hz,
arm state at 100-1000 Hz, gripper slower). A LeRobot dataset has one frame every ``1/fps`` seconds, so
the converter picks, for each grid time, the newest message of each stream at or before that time
(zero-order hold). That is exactly what a policy node with ``latest`` delivery sees live, so the
training data matches deployment. Interpolation would be smoother for the arm, but it would invent
states the robot never reported and it cannot be applied to images at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["FrameGrid", "make_grid", "zoh_indices"]

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class FrameGrid:
    """Grid times (int64 ns, runtime clock) of one episode's frames."""

    timestamps_ns: np.ndarray
    fps: int
    start_ns: int
    end_ns: int

    @property
    def num_frames(self) -> int:
        return int(self.timestamps_ns.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def grid_window(grid: FrameGrid, start_ns: int, end_ns: int) -> FrameGrid:
    """The frames of `grid` from `start_ns` to `end_ns` (inclusive), on the same times."""
    ts = grid.timestamps_ns[(grid.timestamps_ns >= start_ns) & (grid.timestamps_ns <= end_ns)]
    if ts.shape[0] == 0:
        return FrameGrid(ts, grid.fps, start_ns, end_ns)
    return FrameGrid(ts, grid.fps, int(ts[0]), int(ts[-1]))


def make_grid(streams: Mapping[str, np.ndarray], fps: int) -> FrameGrid:
    """Grid from the latest stream start to the earliest stream end, one frame every ``1/fps`` s.

    Starting at the latest first message guarantees every stream has a value to hold at frame 0;
    ending at the earliest last message avoids holding a stream that has already stopped (a camera
    that died before the arm) for the tail of the episode. Grid times are computed as
    ``start + ceil(k * 1e9 / fps)`` in integers, so there is no floating-point drift over long
    episodes. Rounding *up* matters: a camera running at exactly the dataset rate stamps frame k at
    ``round(k * 1e9 / fps)`` ns, and a grid rounded down would land 1 ns before it and hold the
    previous frame (duplicating one frame and dropping the next).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not streams:
        raise ValueError("no streams to resample")
    starts, ends = [], []
    for name, ts in streams.items():
        if ts.shape[0] == 0:
            raise ValueError(f"stream '{name}' has no messages")
        starts.append(int(ts.min()))
        ends.append(int(ts.max()))
    start, end = max(starts), min(ends)
    if end < start:
        return FrameGrid(np.zeros((0,), np.int64), fps, start, end)
    # ceil(k * NS / fps) <= end - start  <=>  k <= (end - start) * fps / NS (end - start is integral).
    n = (end - start) * fps // NS_PER_S + 1
    k = np.arange(n, dtype=np.int64)
    grid = start - ((-k * NS_PER_S) // fps)
    return FrameGrid(grid, fps, start, end)


def zoh_indices(timestamps_ns: np.ndarray, grid_ns: np.ndarray) -> np.ndarray:
    """Index of the newest message at or before each grid time (zero-order hold).

    Timestamps are normally monotonic (one runtime clock per channel); if a file has them out of
    order we hold the message with the newest timestamp, not the newest write.
    """
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    if ts.shape[0] > 1 and np.any(np.diff(ts) < 0):
        order = np.argsort(ts, kind="stable")
        pos = np.searchsorted(ts[order], grid_ns, side="right") - 1
        return order[np.clip(pos, 0, None)]
    pos = np.searchsorted(ts, grid_ns, side="right") - 1
    # Grid times never precede a stream's first message (see make_grid); clip guards direct callers.
    return np.clip(pos, 0, None)
