"""Zero-copy channels over ZeroMQ.

A channel is one node output (`node/output`). The publisher owns an XPUB socket bound to the channel's
endpoint (`inproc://` inside a process, `ipc://` or `tcp://` across processes); each consuming input owns
a SUB socket connected to it, all in the process-wide ZeroMQ context (inproc connects only within one).

A message is multipart: frame 0 is a msgpack header `[topic, seq, timestamp_ns, {name: inline value},
[[name, dtype, shape, handed], ...]]`, then one frame per array that is not handed over, in header order.
Arrays under 64 KiB (`zmq.COPY_THRESHOLD`) are copied: for a joint-state vector a copy is cheaper than
sharing. Larger ones are never copied. Over ipc/tcp they go as `copy=False` frames. Inside a process
(inproc) the publisher hands the array object itself to its readers: it keeps it by sequence number until
every reader has taken it, or has seen the message as lost, while ZeroMQ carries the header (order, queue
bounds, losses). This is zero-copy without pyzmq's zero-copy frames, whose release goes through a
garbage-collector thread that cost 10-20 µs a message here and took the GIL from the reader. Either way
the reader's array shares memory with the one the sender emitted, and received arrays are read-only.

XPUB is used instead of PUB so the publisher can count subscriptions and the scheduler can wait until
every subscriber is connected before the first message: ZeroMQ would otherwise drop messages sent
before a subscription arrives ("slow joiner"). After that, a message can only be lost to a full queue
(the high-water mark), and per-publisher sequence numbers, starting at 0, make every such loss visible
as a gap, including losses before a reader's first message.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import zmq
from zmq.backend import zmq_poll

_ZERO_COPY_BYTES = zmq.COPY_THRESHOLD
# Plain ints: pyzmq's enum flags cost microseconds per `&` and per call on the per-message path.
_POLLIN, _SNDMORE = int(zmq.POLLIN), int(zmq.SNDMORE)
_packb = msgpack.Packer(use_bin_type=True).pack
_inproc_publishers: dict[str, Publisher] = {}  # by endpoint: where inproc readers take handed-over arrays
_dtypes: dict[str, np.dtype] = {}  # header dtype strings seen so far; np.dtype(str) costs ~1 µs a field


class Message:
    """One received message. Arrays in `fields` are read-only views of the sender's buffers."""

    __slots__ = ("topic", "seq", "timestamp_ns", "fields")

    def __init__(self, topic: str, seq: int, timestamp_ns: int, fields: dict[str, Any]):
        self.topic = topic
        self.seq = seq
        self.timestamp_ns = timestamp_ns
        self.fields = fields

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def __repr__(self) -> str:
        return f"Message({self.topic!r}, seq={self.seq}, t={self.timestamp_ns}, fields={list(self.fields)})"


def encode(topic: str, seq: int, timestamp_ns: int, fields: dict[str, Any], handed: list | None = None) -> list:
    """The multipart frames of a message. With `handed`, large arrays go there instead of into frames."""
    inline: dict[str, Any] = {}
    specs: list = []
    payloads: list = [None]
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            if not value.flags.c_contiguous:
                value = np.ascontiguousarray(value)
            hand = handed is not None and value.nbytes >= _ZERO_COPY_BYTES
            specs.append((name, value.dtype.str, value.shape, hand))
            (handed if hand else payloads).append(value)
        elif isinstance(value, np.generic):
            inline[name] = value.item()
        elif isinstance(value, (list, tuple)):
            inline[name] = [v.item() if isinstance(v, np.generic) else v for v in value]
        else:
            inline[name] = value
    payloads[0] = _packb((topic, seq, timestamp_ns, inline, specs))
    return payloads


SEND_HWM = 128  # a publisher's send-side queue per reader, in messages (0: unbounded)


class Publisher:
    """Sends messages on one channel, numbered from 0. Used by one thread at a time (the owning node's).

    The send-side queue per reader is small (`hwm`); the reader's own bound (`queue_size`) sits on top of
    it. A stalled reader therefore holds at most hwm + queue_size messages, never unbounded memory.
    """

    def __init__(self, topic: str, endpoint: str, hwm: int = SEND_HWM):
        self.topic = topic
        self.endpoint = endpoint
        self.sent = 0  # messages sent, the `sent` of the channel's accounting
        self._sock = zmq.Context.instance().socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        self._sock.bind(endpoint)
        self.subscribers = 0
        # Arrays handed to inproc readers, by seq: [arrays, readers yet to take them]. Bounded like a
        # ZeroMQ queue: a stalled reader finds the oldest gone and counts those messages as dropped.
        self._handed: dict[int, list] = {}
        self._handed_max = 2 * hwm if hwm else sys.maxsize  # hwm 0: ZeroMQ's queues are unbounded too
        self._lock = threading.Lock()
        if endpoint.startswith("inproc://"):
            _inproc_publishers[endpoint] = self

    def wait_for_subscribers(self, expected: int, timeout_s: float) -> bool:
        """Block until `expected` subscriptions have arrived (so no early message is lost)."""
        deadline = time.monotonic() + timeout_s
        while self.subscribers < expected:
            if not self._sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                if time.monotonic() >= deadline:
                    return False
                continue
            flag = self._sock.recv()[:1]  # XPUB: b"\x01" + topic on a subscription, b"\x00" when one ends
            self.subscribers += (flag == b"\x01") - (flag == b"\x00")
        return True

    def send(self, timestamp_ns: int, fields: dict[str, Any]) -> int:
        handed: list | None = [] if self.subscribers and self.endpoint in _inproc_publishers else None
        frames = encode(self.topic, self.sent, timestamp_ns, fields, handed)
        if handed:
            with self._lock:
                self._handed[self.sent] = [handed, self.subscribers]
                if len(self._handed) > self._handed_max:
                    del self._handed[next(iter(self._handed))]
        sock, last = self._sock, len(frames) - 1
        sock.send(frames[0], _SNDMORE if last else 0)
        for i in range(1, last + 1):
            sock.send(frames[i], _SNDMORE if i < last else 0, copy=frames[i].nbytes < _ZERO_COPY_BYTES)
        self.sent += 1
        return self.sent - 1

    def take(self, seq: int, lost_from: int) -> list | None:
        """A reader takes message `seq`'s handed-over arrays (None if evicted) and lets go of lost ones."""
        with self._lock:
            for s in range(max(lost_from, seq - self._handed_max), seq + 1):
                entry = self._handed.get(s)
                if entry is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self._handed[s]
            return entry[0] if entry is not None else None

    def close(self) -> None:
        if _inproc_publishers.get(self.endpoint) is self:
            del _inproc_publishers[self.endpoint]
        self._handed.clear()
        self._sock.close(linger=0)


@dataclass
class InputStats:
    """One reader's counts. sent = received + dropped + unread, where unread (computed by the scheduler,
    which knows `sent`) is what was still queued, or lost after the last received message, at stop."""

    received: int = 0  # messages taken off the socket
    skipped: int = 0  # `latest`: older messages superseded by a newer one before the node read
    dropped: int = 0  # sequence gaps: messages lost to a full queue (counted, never silent)
    last_seq: int = -1


class Subscriber:
    """Receives one channel for one node input, with `latest` or `queue` delivery."""

    def __init__(self, topic: str, endpoint: str, delivery: str = "latest", queue_size: int = 256):
        if delivery not in ("latest", "queue"):
            raise ValueError(f"delivery must be 'latest' or 'queue', not {delivery!r}")
        self.topic = topic
        self.endpoint = endpoint
        self.delivery = delivery
        self.stats = InputStats()
        self._sock = zmq.Context.instance().socket(zmq.SUB)
        # `latest` readers are drained after every step, so this only has to hold one reader period.
        self._sock.setsockopt(zmq.RCVHWM, queue_size if delivery == "queue" else 128)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(endpoint)
        self._poll_list = [(self._sock, _POLLIN)]  # for zmq_poll itself: zmq.Poller adds microseconds a call
        self._latest: Message | None = None
        self._pending: Message | None = None

    @property
    def socket(self) -> zmq.Socket:
        return self._sock

    def wait(self, timeout_ms: int) -> bool:
        """Block until a message is queued (True) or the timeout passes (False)."""
        return bool(zmq_poll(self._poll_list, timeout_ms))

    def _recv_nowait(self) -> Message | None:
        # A zero-timeout poll instead of a NOBLOCK recv: raising zmq.Again on every empty read costs 3x more.
        if not zmq_poll(self._poll_list, 0):
            return None
        sock = self._sock
        topic, seq, ts, fields, specs = msgpack.unpackb(sock.recv())
        st = self.stats
        handed = None
        for name, dtype, shape, hand in specs:
            if hand:  # the sender's own array object, from its publisher in this process
                if handed is None:
                    pub = _inproc_publishers.get(self.endpoint)
                    arrays = pub.take(seq, st.last_seq + 1) if pub is not None else None
                    if arrays is None:  # evicted while this reader stalled: lost, and counted as such
                        while sock.get(zmq.RCVMORE):
                            sock.recv()
                        st.dropped += seq - st.last_seq
                        st.last_seq = seq
                        return self._recv_nowait()
                    handed = iter(arrays)
                arr = next(handed).view()
                arr.flags.writeable = False
                fields[name] = arr
                continue
            dt = _dtypes.get(dtype)
            if dt is None:
                dt = _dtypes[dtype] = np.dtype(dtype)
            nbytes = dt.itemsize
            for n in shape:
                nbytes *= n
            # The sender's rule: a large part stays in ZeroMQ's buffer (zero-copy), a small one is copied out.
            arr = np.frombuffer(sock.recv(copy=False).buffer if nbytes >= _ZERO_COPY_BYTES else sock.recv(), dt)
            arr.flags.writeable = False  # received arrays are read-only, whatever the transport
            fields[name] = arr.reshape(shape)
        st.received += 1
        st.dropped += seq - st.last_seq - 1  # from seq 0 on: a loss before the first message counts too
        st.last_seq = seq
        return Message(topic, seq, ts, fields)

    def drain(self) -> None:
        """`latest` delivery: take everything queued, keep only the newest (older ones count as skipped).

        The scheduler calls this after every step of the reading node, so a `latest` input never holds
        more than one reader period of messages: ZeroMQ's publisher drops the *newest* message when a
        queue is full, which would leave a slow reader looking at stale data.
        """
        while (msg := self._recv_nowait()) is not None:
            if self._pending is not None:
                self.stats.skipped += 1
            self._pending = msg

    def read(self) -> Message | None:
        """`latest` delivery: the newest message (the last one delivered if nothing new arrived)."""
        self.drain()
        if self._pending is not None:
            self._latest, self._pending = self._pending, None
        return self._latest

    def read_new(self) -> Message | None:
        """Like read(), but None when nothing arrived since the last call."""
        self.drain()
        return None if self._pending is None else self.read()

    def read_all(self) -> list[Message]:
        """`queue` delivery: every message received since the last call, in order."""
        out = [] if self._pending is None else [self._pending]  # a `latest` input's drained message
        self._pending = None
        while (msg := self._recv_nowait()) is not None:
            out.append(msg)
        if out:
            self._latest = out[-1]
        return out

    def close(self) -> None:
        self._sock.close(linger=0)
