"""The replay node (`record.replay`): publishes recorded channels again with their original timing.

Each output is fed by one recorded channel (`channels: {ee_target: arm/command}`), so a recorded episode
can drive a graph exactly as its live source did: the simulated arm, a viewer, or a policy under test.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from robotflow.runtime.node import Node
from robotflow.runtime.params import positive

from .reader import EpisodeFile


@dataclass
class ReplayParams:
    episode: str = ""  # path of an episode_NNNNNN.h5 file
    channels: dict = field(default_factory=dict)  # output name -> recorded channel (node/output)
    speed: float = positive(1.0)  # 2.0 plays twice as fast
    stop_at_end: bool = True  # end the graph when the episode is done


class Replay(Node):
    """Replays an episode file's channels on this node's outputs (see module docs)."""

    Params = ReplayParams

    @classmethod
    def declare_outputs(cls, params: ReplayParams) -> tuple[str, ...]:
        return tuple(params.channels)

    def setup(self) -> None:
        p = self.params
        if not p.episode:
            raise ValueError("no episode to replay: set params.episode (robotflow replay EPISODE does)")
        self.episode = EpisodeFile(p.episode)
        missing = [ch for ch in p.channels.values() if not self.episode.has_channel(ch)]
        if missing:
            raise ValueError(
                f"{p.episode} has no channel {missing[0]!r} (channels: {', '.join(self.episode.channels())})"
            )
        self._heap: list = []
        for output, ch in p.channels.items():
            ts = self.episode.timestamps(ch)
            for i, t in enumerate(ts):
                self._heap.append((int(t), output, i))
        heapq.heapify(self._heap)
        self._t0 = self._heap[0][0] if self._heap else 0
        self._start: int | None = None
        self._cache: dict[str, dict] = {}
        self.emitted = 0

    def _row(self, output: str, i: int) -> dict:
        ch = self.params.channels[output]
        cols = self._cache.get(output)
        if cols is None:
            cols = self._cache[output] = {
                name: (None if is_image_field(self.episode, ch, name) else self.episode.field(ch, name))
                for name in self.episode.fields(ch)
            }
        row = {}
        for name, col in cols.items():
            row[name] = self.episode.images(ch, [i], name)[0] if col is None else col[i]
        return row

    def step(self) -> None:
        now = self.now_ns()
        if self._start is None:
            self._start = now
        horizon = self._t0 + int((now - self._start) * self.params.speed)
        while self._heap and self._heap[0][0] <= horizon:
            _, output, i = heapq.heappop(self._heap)
            self.emit(output, **self._row(output, i))
            self.emitted += 1
        if not self._heap and self.params.stop_at_end:
            self.request_stop(f"replayed {self.emitted} messages")

    def teardown(self) -> None:
        if hasattr(self, "episode"):
            self.episode.close()


def is_image_field(episode, channel: str, name: str) -> bool:
    """Image fields carry an `encoding` attribute (jpeg or raw) in the episode file."""
    return episode._h5[f"channels/{channel}/{name}"].attrs.get("encoding") is not None
