"""The recorder node (`record.hdf5`): every message of the channels it reads, one HDF5 file per episode.

Nothing is lost and the control loop is not disturbed:
- Inputs use `queue` delivery: every message arrives, or a gap is counted and written into the episode.
- The node thread only moves messages (zero-copy views) onto a writer thread; JPEG encoding and h5py
  writes happen there. Its backlog (bytes received but not yet in the file) is bounded by what the writer,
  at its measured rate, can write in `backlog_s`, well inside the scheduler's teardown budget, so a clean
  stop always closes the last episode. A full backlog makes the node thread wait (backpressure, measured:
  `backpressure_ms`); its input queues then fill and ZeroMQ's losses show as counted gaps, never silently.
- Episodes are written as `episode_NNNNNN.h5.partial`, flushed every `flush_s`, and renamed when the
  episode closes, so finished episodes are always complete files; `robotflow recover` handles a partial.
- A filling disk stops the recording before a write can fail: HDF5 left with a failed write in the middle of
  a flush can leave a file that no longer opens. Before each flush the writer checks that the output's free
  space covers what it is about to write plus `min_free_mb`; when it does not, the open episode is closed
  as far as it was written (outcome `aborted`, `end_reason` says why, the unflushed rest is dropped), and
  the node fails with one line, which stops the graph safely.

A loss shows as a sequence gap when the channel's next message arrives; a loss in the last instants of an
episode is therefore counted in the channel's totals (the run's stats table) rather than in that episode.

Episode boundaries come from `task/episode` events (`event: start|end`, see docs/contracts.md). Messages
are routed by their runtime timestamp, after a short reorder window, so a frame stamped just before an
`end` event still lands in its episode even if it reaches the recorder a moment later. Without an
episode input, the whole run is one episode. A fault (a message with a non-empty `fault` field: an arm's state in
mode "fault") ends the open episode with the outcome `fault` (`stop_on_fault`). The node's counts (in the run's stats) say what was not
written: `outside_episode` (before the first, between or after episodes, or late for a closed one) and
`late` (arrived after the reorder window; still written when its episode is open).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robotflow.runtime.channels import Message
from robotflow.runtime.node import Input, Node
from robotflow.runtime.params import in_range, non_negative, one_of, path_writable, positive
from robotflow.runtime.scheduler import TEARDOWN_S

from .format import (
    EPISODE_FORMAT,
    LABELS,
    OUTCOMES,
    encode_jpeg,
    episode_name,
    is_image,
    next_episode_index,
    package_version,
)

log = logging.getLogger("robotflow.recorder")


class _ChannelBuffer:
    """Per-channel pending rows, appended to resizable datasets in batches."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.seq: list[int] = []
        self.fields: dict[str, list] = {}
        self.count = 0


class EpisodeWriter:
    """Owns one open HDF5 episode file. Used only by the writer thread."""

    def __init__(self, path: Path, attrs: dict, image_encoding: str, jpeg_quality: int):
        import h5py

        self.final_path = path
        self.partial_path = path.with_name(path.name + ".partial")
        self.file = h5py.File(self.partial_path, "w")
        self.image_encoding = image_encoding
        self.jpeg_quality = jpeg_quality
        for k, v in attrs.items():
            self.file.attrs[k] = v
        self.file.attrs["outcome"] = "aborted"  # until closed properly: what a crash leaves behind
        self.channels = self.file.require_group("channels")
        # On disk at once: a crash before the first timed flush leaves an empty episode that recover can
        # read (killed 0.6 s into an episode, 4 of 6 partials could not be opened before this).
        self.file.flush()
        self.buffers: dict[str, _ChannelBuffer] = {}
        self.kinds: dict[tuple[str, str], str] = {}
        self.t_first: int | None = None  # the first and last timestamp in the file
        self.t_last: int | None = None

    def append(self, channel: str, msg: Message) -> None:
        buf = self.buffers.get(channel)
        if buf is None:
            buf = self.buffers[channel] = _ChannelBuffer()
        buf.ts.append(msg.timestamp_ns)
        buf.seq.append(msg.seq)
        for name, value in msg.fields.items():
            col = buf.fields.setdefault(name, [None] * (len(buf.ts) - 1))
            col.append(value)
        for col in buf.fields.values():  # a field missing from this message: keep columns aligned
            if len(col) < len(buf.ts):
                col.append(None)

    def flush(self) -> None:
        for channel, buf in self.buffers.items():
            n = len(buf.ts)
            if not n:
                continue
            grp = self.channels.require_group(channel)
            self.t_first = min(buf.ts[0], self.t_first) if self.t_first is not None else buf.ts[0]
            self.t_last = max(buf.ts[-1], self.t_last) if self.t_last is not None else buf.ts[-1]
            self._extend(grp, "timestamp_ns", np.asarray(buf.ts, dtype=np.int64))
            self._extend(grp, "seq", np.asarray(buf.seq, dtype=np.int64))
            for name, col in buf.fields.items():
                kind = self.kinds.get((channel, name))
                sample = next((v for v in col if v is not None), None)
                if kind is None and sample is not None:
                    kind = self._kind(sample)
                    self.kinds[(channel, name)] = kind
                if kind == "jpeg":
                    self._write_jpeg(grp, name, col, buf.count, sample)
                elif kind == "str":
                    self._write_str(grp, name, col, buf.count)
                elif kind is not None:
                    self._write_array(grp, name, col, buf.count, sample, kind)
            buf.count += n
            buf.ts.clear()
            buf.seq.clear()
            for name in buf.fields:
                buf.fields[name] = []
        self.file.flush()

    def written_counts(self) -> dict[str, dict[str, int]]:
        """Rows in the file per channel (counts_json of an episode closed early; gaps are not known here)."""
        return {ch: {"received": buf.count, "gaps": 0} for ch, buf in self.buffers.items()}

    def written_span_s(self) -> float:
        """Seconds from the first to the last message in the file."""
        return (self.t_last - self.t_first) / 1e9 if self.t_first is not None else 0.0

    def drop_pending(self) -> None:
        """Forget the rows not written yet (no room left for them)."""
        for buf in self.buffers.values():
            buf.ts.clear()
            buf.seq.clear()
            for name in buf.fields:
                buf.fields[name] = []

    def _write_jpeg(self, grp: Any, name: str, col: list, rows_before: int, sample: Any) -> None:
        import h5py

        data = np.empty(len(col), dtype=object)
        for i, v in enumerate(col):
            data[i] = encode_jpeg(v, self.jpeg_quality) if v is not None else np.zeros(0, np.uint8)
        if name not in grp:
            ds = grp.create_dataset(
                name, shape=(rows_before,), maxshape=(None,), chunks=(64,), dtype=h5py.vlen_dtype(np.uint8)
            )
            ds.attrs["encoding"] = "jpeg"
            ds.attrs["shape"] = list(sample.shape)
        self._extend(grp, name, data)

    def _write_str(self, grp: Any, name: str, col: list, rows_before: int) -> None:
        import h5py

        data = np.array(["" if v is None else str(v) for v in col], dtype=object)
        if name not in grp:
            grp.create_dataset(name, shape=(rows_before,), maxshape=(None,), chunks=(256,), dtype=h5py.string_dtype())
        self._extend(grp, name, data)

    def _write_array(self, grp: Any, name: str, col: list, rows_before: int, sample: Any, kind: str) -> None:
        # A field absent from a message is written as zeros of its row shape (a channel whose fields vary,
        # like an arm's `command` switching between EE and joint targets, keeps its columns aligned).
        blank = np.zeros(grp[name].shape[1:], grp[name].dtype) if sample is None else np.zeros_like(sample)
        arr = np.stack([np.asarray(v) if v is not None else blank for v in col])
        if name not in grp:
            opts = {"compression": "lzf"} if kind == "raw_image" else {}
            grp.create_dataset(  # rows before the field's first message: zeros
                name,
                shape=(rows_before, *arr.shape[1:]),
                maxshape=(None, *arr.shape[1:]),
                dtype=arr.dtype,
                chunks=(max(1, min(256, 2**20 // max(1, arr[0].nbytes))), *arr.shape[1:]),
                **opts,
            )
            if kind == "raw_image":
                grp[name].attrs["encoding"] = "raw"
        self._extend(grp, name, arr)

    def _kind(self, sample: Any) -> str:
        if is_image(sample):
            return "jpeg" if self.image_encoding == "jpeg" else "raw_image"
        if isinstance(sample, str):
            return "str"
        if isinstance(sample, (list, tuple)) and sample and isinstance(sample[0], str):
            return "str"
        return "array"

    @staticmethod
    def _extend(grp, name: str, data: np.ndarray) -> None:
        if name not in grp:
            grp.create_dataset(
                name,
                shape=(0, *data.shape[1:]),
                maxshape=(None, *data.shape[1:]),
                dtype=data.dtype,
                chunks=(max(1, min(4096, 2**20 // max(1, data[0:1].nbytes))), *data.shape[1:]),
            )
        ds = grp[name]
        old = ds.shape[0]
        ds.resize(old + len(data), axis=0)
        if ds.dtype.kind == "O" and h5py_check_vlen(ds):
            # h5py would broadcast a batch of equal-length byte arrays as 2-D; write rows one by one.
            for i, row in enumerate(data):
                ds[old + i] = row
        else:
            ds[old:] = data

    def close(self, attrs: dict) -> Path:
        self.flush()
        for k, v in attrs.items():
            self.file.attrs[k] = v
        self.file.close()
        os.replace(self.partial_path, self.final_path)
        return self.final_path


@dataclass
class RecorderParams:
    output_dir: str = path_writable("data/episodes")
    image_encoding: str = one_of(("jpeg", "raw"), "jpeg")  # raw: lzf-compressed uint8
    jpeg_quality: int = in_range(1, 100, 90)
    task: str = ""  # task text stored with each episode (overrides the episode event's)
    episode_input: str = "episode"  # input carrying task/episode events; unconnected: one episode per run
    max_episodes: int = non_negative(0)  # end the graph after this many closed episodes (0: never)
    first_index: int = non_negative(
        0
    )  # lowest episode number (above those in a remote output dir whose files are not local)
    flush_s: float = positive(1.0)  # wall seconds between file flushes (bounds what a crash can lose)
    reorder_s: float = non_negative(0.1)  # graph-clock window for routing late messages into the right episode
    progress: bool = False  # a live status line on stderr
    # bound on the writer's backlog, in seconds of writing at its measured rate: at most half the teardown budget
    backlog_s: float = in_range(0, TEARDOWN_S / 2, 3.0, min_open=True)
    backlog_mb: int = in_range(1, None, 1024)  # and in memory
    # A message with a non-empty `fault` field (an arm's state in mode "fault", docs/contracts.md) ends the open
    # episode with the outcome "fault", that message included; False records through faults.
    stop_on_fault: bool = True
    # free space on the output's disk kept beyond what the next flush writes; below it the recording stops,
    # the open episode closed as far as it was written
    min_free_mb: float = non_negative(100.0)


class DiskFull(RuntimeError):
    """The output's disk has no room for the next flush; the open episode was closed."""


class Recorder(Node):
    """Records every input channel into HDF5 episode files (see module docs)."""

    Params = RecorderParams
    any_inputs = True

    @classmethod
    def declare_inputs(cls, params: RecorderParams) -> dict[str, Input]:
        return {params.episode_input: Input(delivery="queue", required=False)}

    def setup(self) -> None:
        p = self.params
        self.out_dir = Path(p.output_dir).expanduser()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.next_index = max(p.first_index, next_episode_index(self.out_dir))
        self.channel_of = {port: sub.topic for port, sub in self._subs.items()}
        self.data_ports = [port for port in self._subs if port != p.episode_input]
        self._pending: list = []  # heap of (timestamp_ns, order, port, msg) awaiting routing
        self._order = 0
        self._commands: queue.Queue = queue.Queue()
        self._writer_error: BaseException | None = None
        self.backlog_max = 0
        self.backlog_max_mb = 0.0
        self.counts.update(outside_episode=0, late=0, backpressure_waits=0, backpressure_ms=0)
        self._backlog = threading.Condition()
        self._backlog_bytes = 0  # received, not yet written to the file (the writer's buffers included)
        self._write_rate = 50e6  # bytes/s, measured by the writer on every flush (this only seeds the bound)
        self._watermark = -(2**63)  # everything stamped before this has been routed
        self.episodes: list[dict] = []  # closed episodes: index, path, outcome, duration_s, frames
        self._open: dict | None = None
        self._last_seq: dict[str, int] = {}
        self._closed = 0
        self._last_progress = 0.0
        self._writer = threading.Thread(target=self._write_loop, name=f"{self.name}:writer", daemon=True)
        self._writer.start()
        graph = self._runtime.graph if self._runtime is not None else None
        self._graph_text = graph.text if graph else ""
        self._params_json = json.dumps(
            {n.name: {"type": n.type_name, "rate": n.rate, "params": _jsonable(n.params)} for n in graph.nodes}
            if graph
            else {},
            default=str,
        )
        self._rates = {}
        if graph:
            for n in graph.nodes:
                for o in n.outputs:
                    self._rates[f"{n.name}/{o}"] = n.rate
        if not self.connected(p.episode_input):
            self._start_episode(self.now_ns(), {"index": None, "seed": -1, "task": p.task})

    # ---- node thread ----------------------------------------------------------------------------
    def step(self) -> None:
        if isinstance(self._writer_error, DiskFull):
            raise RuntimeError(str(self._writer_error)) from None
        if self._writer_error is not None:
            raise RuntimeError(f"episode writer failed: {self._writer_error}") from self._writer_error
        for port in self._subs:
            for msg in self.read_all(port):
                heapq.heappush(self._pending, (msg.timestamp_ns, self._order, port, msg))
                self._order += 1
        self._route(self.now_ns() - int(self.params.reorder_s * 1e9))
        backlog = self._commands.qsize()
        self.backlog_max = max(self.backlog_max, backlog)
        if self.params.progress and time.monotonic() - self._last_progress > 1.0:
            self._last_progress = time.monotonic()
            print("\r" + self.status_line(), end="", file=sys.stderr, flush=True)

    def _route(self, until_ns: int | None) -> None:
        ep_port = self.params.episode_input
        while self._pending and (until_ns is None or self._pending[0][0] <= until_ns):
            t, _, port, msg = heapq.heappop(self._pending)
            if t < self._watermark:  # its reorder window has passed: messages stamped after it went first
                self.counts["late"] += 1
            if port == ep_port:
                self._on_event(t, msg)
                continue
            # A sequence gap belongs to the episode that receives the message after it.
            prev = self._last_seq.get(port)
            self._last_seq[port] = msg.seq
            if self._open is None or t < self._open["t0"]:
                self.counts["outside_episode"] += 1
                continue
            ch = self.channel_of[port]
            if prev is not None and msg.seq > prev + 1:
                self._open["gaps"][ch] = self._open["gaps"].get(ch, 0) + msg.seq - prev - 1
            self._open["frames"][ch] = self._open["frames"].get(ch, 0) + 1
            self._put_data(ch, msg)
            if self.params.stop_on_fault and _fault_of(msg):
                log.warning(
                    "[%s] %s reports a fault (%s): episode %d ends with outcome fault",
                    self.name,
                    ch,
                    _fault_of(msg),
                    self._open["index"],
                )
                self._end_episode(t, "fault", {})
        if until_ns is not None:
            self._watermark = max(self._watermark, until_ns)

    def _put_data(self, ch: str, msg: Message) -> None:
        size = 64 + sum(v.nbytes for v in msg.fields.values() if isinstance(v, np.ndarray))
        with self._backlog:
            limit = self._backlog_limit()
            if self._backlog_bytes + size > limit and self._backlog_bytes > 0:
                t0 = time.monotonic()
                self.counts["backpressure_waits"] += 1
                while self._backlog_bytes + size > limit and self._backlog_bytes > 0:
                    if self._writer_error is not None or not self._writer.is_alive():
                        raise RuntimeError(f"episode writer failed: {self._writer_error}")
                    self._backlog.wait(0.05)
                self.counts["backpressure_ms"] += round((time.monotonic() - t0) * 1e3)
            self._backlog_bytes += size
            self.backlog_max_mb = max(self.backlog_max_mb, self._backlog_bytes / 2**20)
        self._commands.put(("data", ch, msg, size))

    def _backlog_limit(self) -> float:
        return min(self.params.backlog_mb * 2**20, self._write_rate * self.params.backlog_s)

    def _on_event(self, t: int, msg: Message) -> None:
        event = msg.get("event")
        if event == "start":
            if self._open is not None:
                self._end_episode(t, "aborted", {})
            self._start_episode(t, msg.fields)
        elif event in ("end", "discard"):
            if self._open is None:
                return
            outcome = "discarded" if event == "discard" else msg.get("outcome", "success")
            if outcome not in OUTCOMES:
                outcome = "failure"
            self._end_episode(t, outcome, msg.fields)

    def _start_episode(self, t: int, fields: dict) -> None:
        index = self.next_index
        self.next_index += 1
        task = self.params.task or fields.get("task") or ""
        attrs = {
            "format": EPISODE_FORMAT,
            "robotflow_version": package_version("robotflow"),
            "lerobot_version": package_version("lerobot"),
            "graph_yaml": self._graph_text,
            "params_json": self._params_json,
            "task": str(task),
            "episode_index": index,
            "seed": int(fields.get("seed", -1) if fields.get("seed") is not None else -1),
            "start_time_unix_ns": time.time_ns(),
            "start_timestamp_ns": t,
            "rates_json": json.dumps(
                {self.channel_of[p]: self._rates.get(self.channel_of[p]) for p in self.data_ports}
            ),
        }
        self._open = {"index": index, "t0": t, "frames": {}, "gaps": {}, "attrs": attrs}
        self._commands.put(("open", self.out_dir / episode_name(index), attrs, 0))

    def _end_episode(self, t: int, outcome: str, fields: dict) -> None:
        ep = self._open
        self._open = None
        duration = float(fields.get("duration_s") or (t - ep["t0"]) / 1e9)
        counts = {}
        for p in self.data_ports:
            ch = self.channel_of[p]
            counts[ch] = {"received": ep["frames"].get(ch, 0), "gaps": ep["gaps"].get(ch, 0)}
        label = _label(fields.get("label"))
        attrs = {
            "outcome": outcome,
            "label": label,
            "duration_s": duration,
            "end_timestamp_ns": t,
            "counts_json": json.dumps(counts),
        }
        info = {
            "index": ep["index"],
            "path": str(self.out_dir / episode_name(ep["index"])),
            "outcome": outcome,
            "label": label,
            "duration_s": duration,
            "frames": dict(ep["frames"]),
            "gaps": sum(c["gaps"] for c in counts.values()),
        }
        self._commands.put(("close", attrs, info, 0))
        self._closed += 1
        if self.params.max_episodes and self._closed >= self.params.max_episodes:
            self.request_stop(f"{self.params.max_episodes} episodes recorded")

    def report(self) -> dict:
        return {
            "episodes": list(getattr(self, "episodes", [])),
            "backlog_max": getattr(self, "backlog_max", 0),
            "backlog_max_mb": round(getattr(self, "backlog_max_mb", 0.0), 1),
            **self.counts,
        }

    def status_line(self) -> str:
        ep = self._open
        if ep is None:
            return (
                f"[{self.name}] waiting for an episode | closed {len(self.episodes)} | backlog {self._commands.qsize()}"
            )
        dur = (self.now_ns() - ep["t0"]) / 1e9
        frames = " ".join(f"{ch}={n}" for ch, n in ep["frames"].items())
        drops = sum(ep["gaps"].values())
        return (
            f"[{self.name}] episode {ep['index']} {dur:6.1f}s | {frames} | drops {drops} "
            f"| backlog {self._commands.qsize()}"
        )

    def teardown(self) -> None:
        try:
            if hasattr(self, "_pending"):
                for port in self._subs:
                    for msg in self.read_all(port):
                        heapq.heappush(self._pending, (msg.timestamp_ns, self._order, port, msg))
                        self._order += 1
                self._route(None)
                if self._open is not None:
                    failed = self._runtime is not None and self._runtime._failure is not None
                    whole_run = not self.connected(self.params.episode_input)
                    self._end_episode(self.now_ns(), "success" if whole_run and not failed else "aborted", {})
        finally:
            if hasattr(self, "_writer"):
                self._commands.put(("stop", None, None, 0))
                # The backlog holds at most backlog_s of writing, so this ends well inside the scheduler's wait.
                self._writer.join(timeout=TEARDOWN_S - 1)
                if self._writer.is_alive():
                    log.error(
                        "[%s] the writer did not finish within %g s; the open episode stays *.partial "
                        "(robotflow recover turns it into an aborted episode)",
                        self.name,
                        TEARDOWN_S - 1,
                    )
                if self.params.progress:
                    print(file=sys.stderr)

    # ---- writer thread --------------------------------------------------------------------------
    def _written(self, nbytes: int, seconds: float) -> None:
        """The writer put `nbytes` of backlog into the file in `seconds`: shrink the backlog, update the rate."""
        with self._backlog:
            self._backlog_bytes -= nbytes
            if nbytes > 2**20 and seconds > 0:  # small flushes say little about the rate
                self._write_rate = 0.7 * self._write_rate + 0.3 * nbytes / seconds
            self._backlog.notify_all()

    def _write_loop(self) -> None:
        writer: EpisodeWriter | None = None
        last_flush = time.monotonic()
        unwritten = 0  # backlog bytes appended to the writer's buffers since its last flush
        while True:
            try:
                cmd = self._commands.get(timeout=0.2)
            except queue.Empty:
                cmd = None
            try:
                if cmd is not None:
                    kind, a, b, size = cmd
                    if kind == "open":
                        if writer is not None:  # cannot happen: start closes first; keep the data anyway
                            writer.close({"outcome": "aborted"})
                        self._check_room(None, 0)
                        writer = EpisodeWriter(a, b, self.params.image_encoding, self.params.jpeg_quality)
                    elif kind == "data":
                        unwritten += size
                        if writer is not None:
                            writer.append(a, b)
                    elif kind == "close" and writer is not None:
                        self._check_room(writer, unwritten)
                        t0 = time.monotonic()
                        writer.close(a)
                        self._written(unwritten, time.monotonic() - t0)
                        unwritten = 0
                        writer = None
                        b["closed_monotonic_ns"] = time.monotonic_ns()
                        b["end_timestamp_ns"] = a["end_timestamp_ns"]
                        self.episodes.append(b)
                    elif kind == "stop":
                        if writer is not None:
                            self._check_room(writer, unwritten)
                            writer.close({"outcome": "aborted"})
                        return
                # Flush on time (what a crash can lose), or early when half the backlog waits in the buffers.
                if unwritten and (
                    time.monotonic() - last_flush >= self.params.flush_s or 2 * unwritten >= self._backlog_limit()
                ):
                    t0 = time.monotonic()
                    if writer is not None:
                        self._check_room(writer, unwritten)
                        writer.flush()
                    last_flush = time.monotonic()
                    self._written(unwritten, last_flush - t0)
                    unwritten = 0
            except DiskFull as e:
                if writer is not None:
                    writer.drop_pending()
                    attrs = {"outcome": "aborted", "end_reason": "disk full", "duration_s": writer.written_span_s()}
                    writer.close({**attrs, "counts_json": json.dumps(writer.written_counts())})
                self._writer_error = e  # the node thread fails the run with this line
                return
            except BaseException as e:  # noqa: BLE001 - surfaced on the node thread, which stops the graph
                self._writer_error = e
                log.error("episode writer failed: %s", e)
                return

    def _check_room(self, writer: EpisodeWriter | None, pending: int) -> None:
        """DiskFull unless the output's disk has `pending` bytes (the next write, before encoding: an upper
        bound) plus `min_free_mb` free."""
        free = shutil.disk_usage(self.out_dir).free
        reserve = self.params.min_free_mb * 2**20
        if free >= pending + reserve:
            return
        where = f"episode {writer.final_path.name} closed as far as it was written (aborted)" if writer else ""
        raise DiskFull(
            f"recording stopped: {free / 2**20:.2f} MB free on {self.out_dir}, below the next write "
            f"({pending / 2**20:.2f} MB) plus min_free_mb ({self.params.min_free_mb:g}); "
            + (where + "; " if where else "")
            + "free some space and record again"
        )


def _fault_of(msg: Message) -> str:
    """The fault a message reports ('' when none): an arm's state carries `fault`, a string, every tick."""
    fault = msg.fields.get("fault")
    return fault if isinstance(fault, str) else ""


def _label(value: Any) -> str:
    """The operator's label of an episode end event as stored ('' when none, or when it is not one of LABELS)."""
    label = "" if value is None else str(value)
    if label and label not in LABELS:
        log.warning("episode end label %r is not one of %s; stored as no label", label, ", ".join(LABELS))
        return ""
    return label


def h5py_check_vlen(ds) -> bool:
    import h5py

    return h5py.check_vlen_dtype(ds.dtype) is not None and h5py.check_string_dtype(ds.dtype) is None


def _jsonable(params: Any) -> Any:
    if dataclasses.is_dataclass(params):
        return dataclasses.asdict(params)
    return str(params)
