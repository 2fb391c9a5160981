"""Rerun views: a node that streams a running graph's channels, and loggers for recorded episodes and datasets.

`robotflow launch --rerun [FILE.rrd|spawn]` adds two nodes. A `view.tap` in the graph's own process reads the
chosen channels with `latest` delivery (zero-copy there) and republishes each one's newest message at most
`--rerun-rate` times a second (10 Hz by default), with its original timestamp. The `view.rerun` node reads only
the tap's outputs and logs them under the original channel names. On wall-clock graphs the view runs in its own
process group, so image conversion and Rerun's encoder never share the GIL with a control loop, and only the
rate-limited copy crosses the process boundary. Sending it every frame of two 30 fps 640x480 cameras (55 MB/s)
cost the graph's process 50-100 ms of CPU a second (a do-nothing reader there cost a control loop as much as
Rerun did); the tap's copy costs it about a quarter of that (benchmarks/rerun.py). Entities are named after the
channel and field (`front_camera/frame/image`, `arm/state/ee_pose`); the timeline is the graph clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rerun as rr  # at import, so a view process has paid for it before the graph's clock starts

from robotflow.recording.edits import EDITS_FILE, episode_files, load_edits
from robotflow.recording.format import episode_name
from robotflow.recording.reader import EpisodeFile
from robotflow.recording.replay import is_image_field
from robotflow.runtime.graph import GraphError, GraphSpec, NodeDef
from robotflow.runtime.node import Input, Node
from robotflow.runtime.params import in_range

TIMELINE = "time"
SCALAR_MAX = 32  # wider numeric fields (point clouds, depth rows) are not plotted as scalars


def open_stream(target: str, application_id: str = "robotflow"):
    """A Rerun recording stream writing to `target`: a `.rrd` file, `spawn` (start a viewer), or a viewer's
    `rerun+http://HOST:PORT/proxy` URL."""
    rec = rr.RecordingStream(application_id)
    if target == "spawn":
        # The viewer binary comes with rerun-sdk into the environment's bin/, which need not be on PATH.
        bindir = str(Path(sys.executable).parent)
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "")])
        try:
            rec.spawn()
        except (RuntimeError, OSError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RuntimeError(f"cannot start the Rerun viewer ({first}); write a file instead (FILE.rrd)") from None
    elif target.startswith(("rerun://", "rerun+http://", "rerun+https://")):
        rec.connect_grpc(target)
    else:
        Path(target).expanduser().parent.mkdir(parents=True, exist_ok=True)
        rec.save(str(Path(target).expanduser()))
    return rec


def is_image(value: Any) -> bool:
    return (
        isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[-1] in (1, 3, 4)
    )


def log_fields(rec: Any, entity: str, fields: dict[str, Any]) -> int:
    """Log one message's fields under `entity`; returns how many were logged.

    uint8 HxWxC arrays are images; a 7-vector named `*ee_pose*` (x, y, z, qw, qx, qy, qz: docs/contracts.md) is
    also a 3-D transform; other numbers (up to SCALAR_MAX values) are scalar plots. Strings are skipped.
    """
    n = 0
    for name, value in fields.items():
        path = f"{entity}/{name}"
        if is_image(value):
            rec.log(path, rr.Image(value))
            n += 1
            continue
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub" or arr.size == 0 or arr.size > SCALAR_MAX:
            continue
        flat = arr.reshape(-1).astype(np.float64)
        if "ee_pose" in name and flat.size == 7:
            w, x, y, z = flat[3:7]
            rec.log(
                f"world/{entity}/{name}",
                rr.Transform3D(translation=flat[:3], quaternion=rr.Quaternion(xyzw=[x, y, z, w]), axis_length=0.1),
            )
        rec.log(path, rr.Scalars(flat))
        n += 1
    return n


@dataclass
class RerunTapParams:
    ports: list[str] = field(default_factory=list)  # one input per channel, republished on the output of that name
    slots: int = in_range(
        1, None, 1
    )  # ticks per round: the i-th port is forwarded on the ticks where tick % slots == i % slots


class RerunTap(Node):
    """Republishes the newest message of each input, if it is new since it was last forwarded, on the output of
    the same name: the view's rate-limited copy of the graph's channels (see module docs).

    With `slots` > 1 each tick forwards only its share of the channels (each still once per round): a control
    loop sharing this process's GIL then meets several short tap ticks rather than one long one (a 640x480 frame
    takes ~0.1 ms to send, draining 50 queued small messages ~0.3 ms).
    """

    Params = RerunTapParams

    @classmethod
    def declare_inputs(cls, params: RerunTapParams) -> dict[str, Input]:
        return {port: Input(delivery="latest") for port in params.ports}

    @classmethod
    def declare_outputs(cls, params: RerunTapParams) -> tuple[str, ...]:
        return tuple(params.ports)

    def setup(self) -> None:
        self.forwarded = dict.fromkeys(self._subs, 0)
        slots = self.params.slots
        self.rounds = [[p for i, p in enumerate(self.params.ports) if i % slots == k] for k in range(slots)]
        self.tick = 0

    def step(self) -> None:
        ports, self.tick = self.rounds[self.tick % len(self.rounds)], self.tick + 1
        for port in ports:
            msg = self.read_new(port)
            if msg is None:
                continue
            # The publisher itself, not emit(): the copy keeps the producer's timestamp, not this tick's time,
            # so the view's timeline is the channel's. Arrays go on as they came (read-only, never modified).
            self._pubs[port].send(msg.timestamp_ns, msg.fields)
            self.forwarded[port] += 1

    def report(self) -> dict:
        return {"forwarded": self.forwarded}


@dataclass
class RerunViewParams:
    target: str = "spawn"  # FILE.rrd, `spawn` (open a viewer), or a viewer URL (rerun+http://HOST:9876/proxy)
    application_id: str = "robotflow"
    nice: int = 15  # niceness added to the view's own process (not applied when it shares the graph's process)
    names: dict[str, str] = field(default_factory=dict)  # input port -> entity name (default: the channel read)


class RerunView(Node):
    """Streams every input channel to Rerun (see module docs); inputs are whatever the graph file lists."""

    Params = RerunViewParams
    any_inputs = True

    @classmethod
    def declare_inputs(cls, params: RerunViewParams) -> dict[str, Input]:
        return {}

    def setup(self) -> None:
        self.niceness = os.getpriority(os.PRIO_PROCESS, 0)
        if self.params.nice and getattr(self._runtime, "group", None) is not None:
            # Best effort: on a busy machine the view gives the CPU up first, so the graph's threads (and the one
            # holding the control process's GIL) are not kept waiting behind Rerun's encoding. Linux keeps a
            # niceness per thread: set it on every thread of this process (ZeroMQ's, Rerun's), later ones inherit.
            self.niceness = min(19, self.niceness + self.params.nice)
            for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else [0]:
                with contextlib.suppress(OSError):  # a thread that has just exited
                    os.setpriority(os.PRIO_PROCESS, int(tid), self.niceness)
        self.rec = open_stream(self.params.target, self.params.application_id)
        self.logged = 0
        self.messages = dict.fromkeys(self._subs, 0)
        self.entities = {port: self.params.names.get(port, sub.topic) for port, sub in self._subs.items()}

    def step(self) -> None:
        for port in self._subs:
            msg = self.read_new(port)
            if msg is None:
                continue
            self.rec.set_time(TIMELINE, duration=msg.timestamp_ns / 1e9)
            self.logged += log_fields(self.rec, self.entities[port], msg.fields)
            self.messages[port] += 1

    def teardown(self) -> None:
        rec = getattr(self, "rec", None)
        if rec is not None:
            rec.flush(timeout_sec=10.0)
            rec.disconnect()

    def report(self) -> dict:
        return {
            "target": self.params.target,
            "messages": sum(self.messages.values()),
            "messages_by_channel": {self.entities[p]: n for p, n in self.messages.items()},
            "fields_logged": self.logged,
            "pid": os.getpid(),
            "niceness": self.niceness,
        }


# ---- recorded data --------------------------------------------------------------------------------


def log_episode(rec: Any, path: str | Path) -> int:
    """Log every stream of a recorded episode file, on its own timestamps; returns the messages logged."""
    n = 0
    with EpisodeFile(path) as ep:
        t0 = min((int(ep.timestamps(ch)[0]) for ch in ep.channels() if len(ep.timestamps(ch))), default=0)
        for ch in ep.channels():
            ts = ep.timestamps(ch)
            cols = {name: ep.field(ch, name) for name in ep.fields(ch)}
            for i in range(len(ts)):
                rec.set_time(TIMELINE, duration=(int(ts[i]) - t0) / 1e9)
                fields = {}
                for name, col in cols.items():
                    fields[name] = ep.images(ch, [i], name)[0] if is_image_field(ep, ch, name) else col[i]
                log_fields(rec, ch, fields)
                n += 1
    return n


def log_dataset_episode(rec: Any, root: str | Path, episode: int) -> int:
    """Log one episode of a LeRobot dataset (cameras, state, action) on its timestamps; returns the frames."""
    # torch and LeRobot only for a dataset: a graph's view process never pays for them.
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/view", root=root, episodes=[episode])
    cams = set(ds.meta.camera_keys)
    n = 0
    for i in range(len(ds)):
        item = ds[i]
        rec.set_time(TIMELINE, duration=float(item["timestamp"]))
        fields = {}
        for key, value in item.items():
            if key in cams:
                img = (value.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
                fields[key] = img
            elif key.startswith(("observation.", "action")) and isinstance(value, torch.Tensor):
                fields[key] = value.numpy()
        log_fields(rec, "dataset", fields)
        n += 1
    return n


class ViewError(Exception):
    """What `robotflow view` was given cannot be shown; one line."""


def show_recording(path: Path, name: str, episode: int, target: str) -> str:
    """Log an episode file, episode `episode` of a directory of recorded episodes (its number, unless its edit log
    dropped it) or of a LeRobot dataset directory (its position), at `path` into `target` (a .rrd file or
    `spawn`); `name` is how messages call it. Returns what was shown. Raises ViewError, EpisodeError, EditError."""
    is_dataset = (path / "meta" / "info.json").is_file()
    if path.is_dir() and not is_dataset and episode_files(path):
        path, name = _recorded_episode(path, name, episode), f"{name.rstrip('/')}/{episode_name(episode)}"
    elif not is_dataset and not (path.is_file() and path.suffix == ".h5"):
        raise ViewError(
            f"{name} is neither an episode file (.h5), a directory of them, nor a LeRobot dataset (a directory with "
            "meta/info.json)"
        )
    if is_dataset:
        total = json.loads((path / "meta" / "info.json").read_text()).get("total_episodes", 0)
        if not 0 <= episode < total:
            raise ViewError(f"--episode {episode}: {name} has episodes 0..{total - 1}")
    try:
        rec = open_stream(target, "robotflow-view")
    except RuntimeError as e:
        raise ViewError(f"{e} with --save") from None
    try:
        if is_dataset:
            return f"episode {episode} of {name}: {log_dataset_episode(rec, path, episode)} frames"
        return f"{name}{_edit_note(path)}: {log_episode(rec, path)} messages"
    finally:
        rec.flush(timeout_sec=30.0)
        rec.disconnect()


def _recorded_episode(directory: Path, name: str, episode: int) -> Path:
    """Episode number `episode` of a recording directory; a dropped one (edits.jsonl) is left out."""
    edits = load_edits(directory)
    kept = [n for n in episode_files(directory) if not edits.is_dropped(n)]
    wanted = episode_name(episode)
    if edits.is_dropped(wanted):
        raise ViewError(
            f"--episode {episode}: {wanted} is dropped in {EDITS_FILE} "
            f"(`robotflow episodes undrop {name} {episode}` to view it, or give the file)"
        )
    if wanted not in kept:
        listed = ", ".join(n.removeprefix("episode_").removesuffix(".h5").lstrip("0") or "0" for n in kept[:10])
        raise ViewError(f"--episode {episode}: {name} has no {wanted} (episodes: {listed or 'none kept'})")
    return directory / wanted


def _edit_note(path: Path) -> str:
    """` (label failure, dropped)`: what the episode's edit log and label say, to show beside its name."""
    edits = load_edits(path.parent)
    with EpisodeFile(path) as ep:
        label = edits.label(ep.name, ep.info.label)
    notes = ([f"label {label}"] if label else []) + (["dropped"] if edits.is_dropped(path.name) else [])
    return f" ({', '.join(notes)})" if notes else ""


# ---- adding the view to a graph -----------------------------------------------------------------


def with_view(spec: GraphSpec, target: str, channels: tuple[str, ...] = (), rate: float = 10.0) -> GraphSpec:
    """`spec` with a `view.tap` and a `view.rerun` node showing `channels` (NODE/OUTPUT; default: every output but
    episode events), each at most `rate` messages a second, under their own names and timestamps.

    The tap runs in the graph's main process; on the wall clock the view gets its own process group. A
    virtual-clock graph runs in one process, and there logging costs simulated time nothing. Raises GraphError.
    """
    outputs = [f"{n.name}/{o}" for n in spec.nodes for o in n.outputs]
    chosen = list(dict.fromkeys(channels)) or [c for c in outputs if not c.endswith("/episode")]
    unknown = [c for c in chosen if c not in outputs]
    if unknown:
        raise GraphError(
            f"--rerun-channel {unknown[0]}: no such channel in {spec.path} (channels: {', '.join(outputs)})"
        )
    if not rate > 0:
        raise GraphError(f"--rerun-rate must be a positive number of Hz, got {rate}")
    taken = {n.name for n in spec.nodes}

    def unique(name: str, used: set[str]) -> str:
        while name in used:
            name += "_"
        used.add(name)
        return name

    tap, name = unique("rerun_tap", taken), unique("rerun_view", taken)
    ports: dict[str, str] = {}  # port (a tap output, a view input) -> the channel it carries
    for c in chosen:
        ports[unique(c.replace("/", "."), set(ports))] = c
    slots = min(len(ports), 5)
    spec = spec.add_node(
        NodeDef(
            tap,
            "view.tap",
            params={"ports": list(ports), "slots": slots},
            rate=rate * slots,
            inputs={p: {"source": c, "delivery": "latest"} for p, c in ports.items()},
        )
    )
    return spec.add_node(
        NodeDef(
            name,
            "view.rerun",
            params={"target": target, "names": ports},
            # Twice the tap's rate, so phase jitter between the two does not let a copy be superseded unseen.
            rate=2 * rate,
            inputs={p: {"source": f"{tap}/{p}", "delivery": "latest"} for p in ports},
            process="rerun" if spec.clock == "wall" else None,
        )
    )
