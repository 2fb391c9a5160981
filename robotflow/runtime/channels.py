"""Zero-copy channels over ZeroMQ.

A channel is one node output (`node/output`). The publisher owns an XPUB socket bound to the channel's
endpoint (`inproc://` inside a process, `ipc://` or `tcp://` across processes); each consuming input owns
a SUB socket connected to it.

A message is multipart: frame 0 is a msgpack header (topic, seq, timestamp_ns, and per field either an
inline scalar or the dtype/shape of a payload frame); frames 1..n are array buffers sent with
`copy=False`. Over inproc, ZeroMQ hands the receiver the sender's buffer itself, so the receiver's
`np.frombuffer` view shares memory with the array the sender emitted: a 640x480 frame is never copied.
Received arrays are read-only. (pyzmq still copies frames below `zmq.COPY_THRESHOLD`, 64 KiB: for a
joint-state vector a copy is cheaper than tracking a shared buffer; images and point clouds are above it.)

XPUB is used instead of PUB so the publisher can count subscriptions and the scheduler can wait until
every subscriber is connected before the first message: ZeroMQ would otherwise drop messages sent
before a subscription arrives ("slow joiner"). After that, a message can only be lost to a full queue
(the high-water mark), and per-publisher sequence numbers make every such loss visible as a gap.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

_context: zmq.Context | None = None
_context_lock = threading.Lock()


def context() -> zmq.Context:
    """The process-wide ZeroMQ context (inproc endpoints only connect within one context)."""
    global _context
    with _context_lock:
        if _context is None or _context.closed:
            _context = zmq.Context(io_threads=1)
        return _context


class Message:
    """One received message. Arrays in `fields` are read-only views of the sender's buffers."""

    __slots__ = ("topic", "seq", "timestamp_ns", "fields", "_frames")

    def __init__(self, topic: str, seq: int, timestamp_ns: int, fields: dict[str, Any], frames=None):
        self.topic = topic
        self.seq = seq
        self.timestamp_ns = timestamp_ns
        self.fields = fields
        self._frames = frames  # keeps the zmq frames (and so the buffers) alive

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def __repr__(self) -> str:
        return f"Message({self.topic!r}, seq={self.seq}, t={self.timestamp_ns}, fields={list(self.fields)})"


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode(topic: str, seq: int, timestamp_ns: int, fields: dict[str, Any]) -> list:
    """Build the multipart frames for a message; arrays become zero-copy payload frames."""
    header_fields: dict[str, Any] = {}
    payloads: list = []
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            if not value.flags.c_contiguous:
                value = np.ascontiguousarray(value)
            header_fields[name] = {"d": value.dtype.str, "s": list(value.shape), "i": len(payloads)}
            payloads.append(value)
        else:
            value = _scalar(value)
            if isinstance(value, (list, tuple)):
                value = [_scalar(v) for v in value]
            header_fields[name] = {"v": value}
    header = msgpack.packb({"t": topic, "q": seq, "ns": timestamp_ns, "f": header_fields}, use_bin_type=True)
    return [header, *payloads]


def decode(frames: list) -> Message:
    """Turn received frames (zmq.Frame or bytes) back into a Message without copying payloads."""
    head = msgpack.unpackb(frames[0].bytes if hasattr(frames[0], "bytes") else frames[0], raw=False)
    fields: dict[str, Any] = {}
    for name, spec in head["f"].items():
        if "v" in spec:
            fields[name] = spec["v"]
        else:
            frame = frames[1 + spec["i"]]
            buf = frame.buffer if hasattr(frame, "buffer") else frame
            arr = np.frombuffer(buf, dtype=np.dtype(spec["d"])).reshape(spec["s"])
            if arr.flags.writeable:  # bytes from a copying transport are writable; keep the contract
                arr.flags.writeable = False
            fields[name] = arr
    return Message(head["t"], head["q"], head["ns"], fields, frames)


@dataclass
class ChannelStats:
    sent: int = 0
    bytes: int = 0


class Publisher:
    """Sends messages on one channel. Used by exactly one thread at a time (the owning node's).

    The send-side queue per reader is small (`hwm`); the reader's own bound (`queue_size`) sits on top of
    it. A stalled reader therefore holds at most hwm + queue_size messages, never unbounded memory.
    """

    def __init__(self, topic: str, endpoint: str, hwm: int = 128):
        self.topic = topic
        self.endpoint = endpoint
        self.stats = ChannelStats()
        self._seq = 0
        self._sock = context().socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        self._sock.bind(endpoint)
        self.subscribers = 0

    def wait_for_subscribers(self, expected: int, timeout_s: float) -> bool:
        """Block until `expected` subscriptions have arrived (so no early message is lost)."""
        deadline = time.monotonic() + timeout_s
        while self.subscribers < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._sock.poll(int(remaining * 1000) + 1):
                if time.monotonic() >= deadline:
                    return False
                continue
            msg = self._sock.recv()
            if msg[:1] == b"\x01":
                self.subscribers += 1
            elif msg[:1] == b"\x00":
                self.subscribers -= 1
        return True

    def send(self, timestamp_ns: int, fields: dict[str, Any]) -> int:
        frames = encode(self.topic, self._seq, timestamp_ns, fields)
        self._sock.send_multipart(frames, copy=False)
        self.stats.sent += 1
        self.stats.bytes += sum(f.nbytes if isinstance(f, np.ndarray) else len(f) for f in frames)
        self._seq += 1
        return self._seq - 1

    def close(self) -> None:
        self._sock.close(linger=0)


@dataclass
class InputStats:
    received: int = 0  # messages taken off the socket
    delivered: int = 0  # messages handed to the node
    skipped: int = 0  # `latest`: older messages superseded by a newer one before the node read
    dropped: int = 0  # sequence gaps: messages lost to a full queue (counted, never silent)
    last_seq: int = -1
    gaps: list = field(default_factory=list)


class Subscriber:
    """Receives one channel for one node input, with `latest` or `queue` delivery."""

    def __init__(self, topic: str, endpoint: str, delivery: str = "latest", queue_size: int = 256):
        if delivery not in ("latest", "queue"):
            raise ValueError(f"delivery must be 'latest' or 'queue', not {delivery!r}")
        self.topic = topic
        self.endpoint = endpoint
        self.delivery = delivery
        self.stats = InputStats()
        self._sock = context().socket(zmq.SUB)
        # `latest` readers are drained after every step, so this only has to hold one reader period.
        self._sock.setsockopt(zmq.RCVHWM, queue_size if delivery == "queue" else 128)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(endpoint)
        self._latest: Message | None = None
        self._pending: Message | None = None

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def _recv_nowait(self) -> Message | None:
        try:
            frames = self._sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        msg = decode(frames)
        st = self.stats
        st.received += 1
        if st.last_seq >= 0 and msg.seq != st.last_seq + 1:
            lost = msg.seq - st.last_seq - 1
            if lost > 0:
                st.dropped += lost
                if len(st.gaps) < 1000:
                    st.gaps.append((st.last_seq, msg.seq))
        st.last_seq = msg.seq
        return msg

    def drain(self) -> None:
        """`latest` delivery: take everything queued, keep only the newest (older ones count as skipped).

        The scheduler calls this after every step of the reading node, so a `latest` input never holds
        more than one reader period of messages: ZeroMQ's publisher drops the *newest* message when a
        queue is full, which would leave a slow reader looking at stale data.
        """
        while True:
            msg = self._recv_nowait()
            if msg is None:
                return
            if self._pending is not None:
                self.stats.skipped += 1
            self._pending = msg

    def read(self) -> Message | None:
        """`latest` delivery: the newest message (the last one delivered if nothing new arrived)."""
        self.drain()
        if self._pending is not None:
            self._latest, self._pending = self._pending, None
            self.stats.delivered += 1
        return self._latest

    def read_new(self) -> Message | None:
        """Like read(), but None when nothing arrived since the last call."""
        self.drain()
        if self._pending is None:
            return None
        return self.read()

    def read_all(self) -> list[Message]:
        """`queue` delivery: every message received since the last call, in order."""
        out = []
        while True:
            msg = self._recv_nowait()
            if msg is None:
                break
            out.append(msg)
        self.stats.delivered += len(out)
        if out:
            self._latest = out[-1]
        return out

    def close(self) -> None:
        self._sock.close(linger=0)
