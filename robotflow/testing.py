"""Small nodes for tests, benchmarks and the runtime demo graph (graphs/demo_runtime.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robotflow.codecs import load_dataset_codec
from robotflow.runtime.node import Input, Node
from robotflow.runtime.params import non_negative, positive


@dataclass
class CounterParams:
    start: int = 0
    stop_after: int = non_negative(0)  # ends the graph after this many ticks (0: never)


class Counter(Node):
    """Emits an increasing integer and a small array each tick."""

    Params = CounterParams
    outputs = ("count",)

    def setup(self) -> None:
        self.n = self.params.start

    def step(self) -> None:
        self.emit("count", value=self.n, vec=np.full(4, self.n, dtype=np.float64))
        self.n += 1
        if self.params.stop_after and self.n - self.params.start >= self.params.stop_after:
            self.request_stop(f"counted {self.params.stop_after}")


@dataclass
class FramesParams:
    width: int = positive(640)
    height: int = positive(480)


class Frames(Node):
    """Publishes a fresh HxWx3 uint8 frame each tick, like a camera driver."""

    Params = FramesParams
    outputs = ("frame",)

    def setup(self) -> None:
        self.k = 0

    def step(self) -> None:
        img = np.empty((self.params.height, self.params.width, 3), dtype=np.uint8)
        img[...] = self.k % 256  # a real copy of pixel data per frame, as a camera would make
        self.emit("frame", image=img, index=self.k)
        self.k += 1


@dataclass
class SinkParams:
    expect_every: bool = False  # fail if a sequence gap is seen (queue inputs)


class Sink(Node):
    """Reads whatever it is given; keeps counts (and the last message) for tests."""

    Params = SinkParams
    any_inputs = True

    def setup(self) -> None:
        self.received: dict[str, int] = {}
        self.last: dict[str, object] = {}
        self.seqs: dict[str, list[int]] = {}

    def step(self) -> None:
        for port, sub in self._subs.items():
            msgs = sub.read_all() if sub.delivery == "queue" else [m for m in [sub.read_new()] if m is not None]
            for m in msgs:
                self.received[port] = self.received.get(port, 0) + 1
                self.seqs.setdefault(port, []).append(m.seq)
                self.last[port] = m


class Relay(Node):
    """Triggered on `x`: re-emits its value + 1 on `y` (for chains and cycles)."""

    inputs = {"x": Input()}
    outputs = ("y",)
    trigger = "x"

    def step(self) -> None:
        m = self.read_new("x")
        if m is not None:
            self.emit("y", value=m["value"] + 1)


@dataclass
class BusyParams:
    size: int = positive(256)  # numpy matrix side: keeps a core busy with GIL-releasing BLAS work


class Busy(Node):
    """Burns CPU with numpy matrix products (the load a vision or policy node adds)."""

    Params = BusyParams

    def setup(self) -> None:
        self.a = np.random.default_rng(0).standard_normal((self.params.size, self.params.size))

    def step(self) -> None:
        for _ in range(4):
            self.a = np.tanh(self.a @ self.a.T / self.params.size)


@dataclass
class FailParams:
    after: int = non_negative(3)
    message: str = "simulated driver fault"
    in_setup: bool = False


class Fail(Node):
    """Raises after `after` ticks (or in setup): exercises safe shutdown."""

    Params = FailParams
    outputs = ("out",)

    def setup(self) -> None:
        if self.params.in_setup:
            raise RuntimeError(self.params.message)
        self.k = 0

    def step(self) -> None:
        self.k += 1
        if self.k >= self.params.after:
            raise RuntimeError(self.params.message)
        self.emit("out", value=self.k)


@dataclass
class EchoParams:
    fail_at: int = non_negative(0)  # raise when a value reaches this (0: never)


class Echo(Node):
    """Triggered on `x` (queue delivery): re-emits each value with a small frame; fails on request."""

    Params = EchoParams
    inputs = {"x": Input(delivery="queue")}
    outputs = ("echo",)
    trigger = "x"

    def step(self) -> None:
        for m in self.read_all("x"):
            if self.params.fail_at and m["value"] >= self.params.fail_at:
                raise RuntimeError(f"value {m['value']} out of range")
            self.emit("echo", value=m["value"], frame=np.full((120, 160, 3), m["value"] % 255, np.uint8))


@dataclass
class EpisodesParams:
    episodes: int = non_negative(2)
    length_s: float = positive(1.0)  # episode duration on the graph clock
    gap_s: float = non_negative(0.2)  # reset time between episodes (not recorded)
    task: str = "count things"
    seed: int = non_negative(0)


class Episodes(Node):
    """Starts and ends fixed-length episodes (the recorder's episode source without a simulator)."""

    Params = EpisodesParams
    outputs = ("episode",)

    def setup(self) -> None:
        self.results: list[dict] = []
        self.index = 0
        self.t_start: int | None = None
        self.t_next = 0

    def step(self) -> None:
        now = self.now_ns()
        p = self.params
        if self.t_start is None and now >= self.t_next:
            if self.index >= p.episodes:
                self.request_stop(f"{p.episodes} episodes done")
                return
            self.t_start = now
            self.emit("episode", event="start", index=self.index, seed=p.seed + self.index, task=p.task)
        elif self.t_start is not None and now - self.t_start >= p.length_s * 1e9:
            dur = (now - self.t_start) / 1e9
            self.emit(
                "episode",
                event="end",
                index=self.index,
                seed=p.seed + self.index,
                outcome="success",
                duration_s=dur,
                task=p.task,
            )
            self.results.append({"seed": p.seed + self.index, "success": True, "duration_s": dur})
            self.index += 1
            self.t_start = None
            self.t_next = now + int(p.gap_s * 1e9)


@dataclass
class DatasetActionsParams:
    dataset: str = ""  # root of a LeRobot dataset made by `robotflow convert` (its codec spec decodes actions)
    episode: int = non_negative(0)  # episode index in the dataset


class DatasetActions(Node):
    """Plays one dataset episode's `action` column into the arm and gripper (zero-order hold, one per tick).

    The train side of the codec, driven open loop: give the node `rate:` = the dataset's fps and the task
    the episode's seed, and a sound action path (recorded commands -> resampling -> codec -> decode)
    solves the task again. Action k goes out k periods after the task's `start` event, as frame k of the
    dataset was taken k periods after the episode's first message.
    """

    Params = DatasetActionsParams
    inputs = {"episode": Input(delivery="queue", required=False)}
    outputs = ("ee_target", "grip")

    def setup(self) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset  # torch; only this test node needs it

        p = self.params
        self.codec = load_dataset_codec(p.dataset)
        ds = LeRobotDataset("local/actions", root=p.dataset, episodes=[p.episode])
        rows = ds.hf_dataset.filter(lambda r: r["episode_index"] == p.episode)
        self.actions = np.stack([np.asarray(a, dtype=np.float32) for a in rows["action"]])
        self.k = None  # next action index; None until the episode starts

    def step(self) -> None:
        for msg in self.read_all("episode"):
            if msg["event"] == "start":
                self.k = 0
            elif msg["event"] == "end":
                self.k = None
        if self.k is None:
            return
        cmd = self.codec.decode(self.actions[min(self.k, len(self.actions) - 1)])
        self.k += 1
        self.emit("ee_target", ee_pose=cmd["ee_pose"])
        self.emit("grip", width=cmd["width"])
