"""Training side of the codecs with relative positions (`ee_objects_rel`): action chunks relative to the EE.

The dataset keeps absolute actions (so it stays an ordinary LeRobot dataset, and replaying its `action`
column drives the robot). What the policy learns is each chunk's target positions as offsets from the EE
position of the frame the chunk starts at: `action[t + k, :3] - state[t, :3]`. A chunk label depends on
its start frame, so it cannot be a dataset column; `RelativeChunkDataset` makes it when a training sample
is read, and `relative_chunk_stats` gives the normaliser the statistics of those offsets (the absolute
column's mean and std would put every offset tens of sigmas from zero). At inference the chunk executor
adds the observed position back (`ChunkExecutorConfig.relative_positions`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

ACTION, STATE = "action", "observation.state"
POSITION = slice(0, 3)  # the EE position in both the state and the action of the relative codecs
# Training shifts the EE's x/y in the state by up to this much (uniform, per sample). With object positions
# and action chunks relative to the EE, the state's x/y is the one absolute position left, and a policy
# fitted to 100 placements uses it as a shortcut ("at this spot of the table, go down") that sends it to
# the wrong place for an unseen placement. Shifting it teaches that the task is the same anywhere on the
# table; the labels are unchanged, as they are offsets from the true position.
TRANSLATION_JITTER_M = 0.1


class RelativeChunkDataset(LeRobotDataset):
    """A LeRobotDataset whose samples carry action chunks relative to the sample's own EE position.

    Built by re-classing a loaded dataset (`make_relative`), so LeRobot's loader keeps building it; a
    module-level class so DataLoader workers can pickle it."""

    translation_jitter_m = 0.0

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = super().__getitem__(idx)
        state = item[STATE].clone()
        ref = state[-1, POSITION] if state.ndim == 2 else state[POSITION]  # the newest observation step
        action = item[ACTION].clone()
        action[..., POSITION] -= ref
        item[ACTION] = action
        if self.translation_jitter_m > 0:
            shift = (torch.rand(2) * 2 - 1) * self.translation_jitter_m
            state[..., :2] += shift.to(state.dtype)
        item[STATE] = state
        return item


def relative_chunk_stats(ds: LeRobotDataset, offsets: list[int]) -> dict[str, np.ndarray]:
    """mean, std, min, max and quantiles of `action[t + k, :3] - state[t, :3]` over every frame t and chunk offset k
    inside t's episode (LeRobot pads past the end, and the loss ignores padded steps)."""
    actions = np.asarray(ds.hf_dataset.with_format("numpy")[ACTION], np.float64)[:, POSITION]
    states = np.asarray(ds.hf_dataset.with_format("numpy")[STATE], np.float64)[:, POSITION]
    episodes = np.asarray(ds.hf_dataset.with_format("numpy")["episode_index"])
    rows = []
    for ep in np.unique(episodes):
        idx = np.flatnonzero(episodes == ep)
        a, s = actions[idx], states[idx]
        for k in offsets:
            if 0 <= k < len(idx):
                rows.append(a[k:] - s[: len(idx) - k])
    rel = np.concatenate(rows)
    stats = {"mean": rel.mean(0), "std": rel.std(0), "min": rel.min(0), "max": rel.max(0)}
    for q in (1, 10, 50, 90, 99):  # what LeRobot's quantile normalisation modes read
        stats[f"q{q:02d}"] = np.quantile(rel, q / 100, axis=0)
    return stats


def make_relative(ds: LeRobotDataset, translation_jitter_m: float = TRANSLATION_JITTER_M) -> LeRobotDataset:
    """Turn a loaded training dataset into one of relative chunks, with the normaliser's action statistics
    for the position replaced by those of the offsets (in memory; the dataset on disk is unchanged), and
    the state's x/y shifted by up to `translation_jitter_m` per sample."""
    if type(ds) is not LeRobotDataset:
        raise TypeError(f"relative action chunks need a local LeRobotDataset, got {type(ds).__name__}")
    offsets = list((ds.delta_indices or {}).get(ACTION, [0]))
    stats = relative_chunk_stats(ds, offsets)
    for key, value in stats.items():
        column = np.array(ds.meta.stats[ACTION][key], dtype=np.float64, copy=True)
        column[POSITION] = value
        ds.meta.stats[ACTION][key] = column
    ds.__class__ = RelativeChunkDataset
    ds.translation_jitter_m = float(translation_jitter_m)
    return ds
