"""Channels: zero-copy inproc, the same API over ipc and tcp, delivery modes, gap accounting."""

import multiprocessing
import socket

import numpy as np
import pytest

from robotflow.runtime.channels import Publisher, Subscriber


def _pair(endpoint, delivery="latest", queue_size=256, topic="cam/frame"):
    pub = Publisher(topic, endpoint)
    sub = Subscriber(topic, endpoint, delivery, queue_size)
    assert pub.wait_for_subscribers(1, 5.0)
    return pub, sub


def _recv(sub, timeout_ms=2000):
    assert sub.socket.poll(timeout_ms)
    return sub.read_all() if sub.delivery == "queue" else sub.read()


def test_inproc_image_is_not_copied_and_is_read_only():
    pub, sub = _pair("inproc://test-zero-copy")
    img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    pub.send(123, {"image": img, "exposure": 0.5, "name": "front"})
    msg = _recv(sub)
    assert msg.topic == "cam/frame" and msg.seq == 0 and msg.timestamp_ns == 123
    assert msg["exposure"] == 0.5 and msg["name"] == "front"
    assert msg["image"].shape == (480, 640, 3) and msg["image"].dtype == np.uint8
    assert np.shares_memory(msg["image"], img), "inproc delivery must hand over the sender's buffer"
    assert not msg["image"].flags.writeable
    with pytest.raises(ValueError):
        msg["image"][0, 0, 0] = 1
    pub.close()
    sub.close()


def test_header_roundtrip_keeps_dtype_shape_and_scalars():
    pub, sub = _pair("inproc://test-header", "queue", topic="a/b")
    fields = {"q": np.arange(7, dtype=np.float32), "m": np.eye(3)[:, :2], "n": np.int64(4), "s": "x", "l": [1, 2]}
    pub.send(77, fields)
    (msg,) = _recv(sub)
    assert msg.topic == "a/b" and msg.seq == 0 and msg.timestamp_ns == 77
    np.testing.assert_array_equal(msg["q"], fields["q"])
    assert msg["q"].dtype == np.float32
    np.testing.assert_array_equal(msg["m"], fields["m"])  # non-contiguous input made contiguous
    assert msg["n"] == 4 and msg["s"] == "x" and msg["l"] == [1, 2]
    assert not msg["q"].flags.writeable, "small arrays are copied out of ZeroMQ, and read-only too"
    pub.close()
    sub.close()


def test_latest_delivery_counts_skipped_messages():
    pub, sub = _pair("inproc://test-latest")
    for i in range(5):
        pub.send(i, {"v": i})
    msg = _recv(sub)
    assert msg["v"] == 4
    assert sub.stats.skipped == 4 and sub.stats.dropped == 0 and sub.stats.received == 5
    assert sub.read()["v"] == 4, "latest keeps returning the newest value"
    assert sub.read_new() is None, "read_new reports nothing new"
    pub.close()
    sub.close()


def test_queue_delivery_gives_every_message_in_order():
    pub, sub = _pair("inproc://test-queue", "queue")
    for i in range(100):
        pub.send(i, {"v": np.full(1000, i)})
    got = []
    while len(got) < 100:
        got += _recv(sub)
    assert [m["v"][0] for m in got] == list(range(100))
    assert sub.stats.dropped == 0 and sub.stats.skipped == 0
    pub.close()
    sub.close()


def test_queue_overflow_is_counted_as_dropped_never_silent():
    pub, sub = _pair("inproc://test-overflow", "queue", queue_size=10)
    sent = 2000
    for i in range(sent):
        pub.send(i, {"v": i})
    got = []
    while sub.socket.poll(200):
        got += sub.read_all()
    assert len(got) < sent, "the bounded queue must have overflowed in this test"
    pub.send(sent, {"v": sent})  # a loss shows as a gap when the next message arrives
    got += _recv(sub)
    assert got[-1].seq == sent
    assert len(got) + sub.stats.dropped == sent + 1, "every lost message is counted"
    assert sub.stats.dropped > 0
    pub.close()
    sub.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _remote_sender(endpoint, n):
    import numpy as np

    from robotflow.runtime.channels import Publisher

    pub = Publisher("remote/frame", endpoint)
    assert pub.wait_for_subscribers(1, 20.0)
    for i in range(n):
        pub.send(1000 + i, {"image": np.full((48, 64, 3), i, np.uint8), "i": i})
    import time

    time.sleep(0.5)
    pub.close()


@pytest.mark.parametrize("kind", ["ipc", "tcp"])
def test_same_api_across_processes(kind, tmp_path):
    endpoint = f"ipc://{tmp_path}/chan" if kind == "ipc" else f"tcp://127.0.0.1:{_free_port()}"
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_remote_sender, args=(endpoint, 20))
    p.start()
    sub = Subscriber("remote/frame", endpoint, "queue")
    got = []
    while len(got) < 20 and sub.socket.poll(20000):
        got += sub.read_all()
    p.join(20)
    assert p.exitcode == 0
    assert [m["i"] for m in got] == list(range(20))
    assert got[5]["image"].shape == (48, 64, 3) and int(got[5]["image"][0, 0, 0]) == 5
    assert got[0].timestamp_ns == 1000 and not got[0]["image"].flags.writeable
    sub.close()


def test_inproc_hand_over_releases_arrays_once_every_reader_has_them():
    pub = Publisher("cam/frame", "inproc://test-handover")
    a = Subscriber("cam/frame", "inproc://test-handover", "queue")
    b = Subscriber("cam/frame", "inproc://test-handover", "latest")
    assert pub.wait_for_subscribers(2, 5.0)
    img = np.zeros((480, 640, 3), np.uint8)
    for i in range(3):
        pub.send(i, {"image": img, "i": i})
    assert len(pub._handed) == 3, "held until both readers have taken them"
    got = _recv(a)
    assert [m["i"] for m in got] == [0, 1, 2] and all(np.shares_memory(m["image"], img) for m in got)
    assert _recv(b)["i"] == 2 and b.stats.skipped == 2
    assert not pub._handed, "every reader took every message: the publisher holds nothing"
    pub.close()
    a.close()
    b.close()


def test_stalled_inproc_reader_bounds_held_arrays_and_counts_what_it_lost():
    pub = Publisher("cam/frame", "inproc://test-stalled", hwm=8)
    sub = Subscriber("cam/frame", "inproc://test-stalled", "queue", queue_size=64)
    assert pub.wait_for_subscribers(1, 5.0)
    img = np.zeros((256, 256, 3), np.uint8)
    for i in range(200):  # the reader stalls: ZeroMQ keeps the oldest, the publisher at most 2 * hwm arrays
        pub.send(i, {"image": img})
    assert len(pub._handed) == 16
    got = []
    while sub.socket.poll(200):
        got += sub.read_all()
    pub.send(200, {"image": img})  # losses show when the next message arrives
    got += _recv(sub)
    assert got[-1].seq == 200 and all(np.shares_memory(m["image"], img) for m in got)
    assert len(got) + sub.stats.dropped == 201, "messages whose arrays were let go are counted as dropped"
    assert not pub._handed
    pub.close()
    sub.close()
