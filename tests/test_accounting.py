"""Accounting holds everywhere: per reader, sent = received + dropped + unread, in one process, across a
process group and over tcp, under overload; the recorder's own counts are in the stats and its backlog is
bounded without losing the last episode."""

import socket

import h5py
import numpy as np
import pytest

from robotflow.recording.reader import EpisodeFile
from robotflow.runtime.channels import Publisher, Subscriber
from robotflow.runtime.graph import GraphError, parse_graph
from robotflow.runtime.node import Node, register
from robotflow.runtime.scheduler import Scheduler


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(text: str, duration_s: float):
    sched = Scheduler(parse_graph(text, "accounting.yaml"), duration_s=duration_s)
    res = sched.run()
    assert res.ok, res
    return res, sched


def _assert_books_balance(stats: dict) -> None:
    for ch, c in stats["channels"].items():
        assert c["sent"] is not None, f"{ch}: sent unknown"
        for reader, i in c["inputs"].items():
            assert i["unread"] is not None and i["unread"] >= 0, (ch, reader, i)
            assert c["sent"] == i["received"] + i["dropped"] + i["unread"], (ch, reader, c["sent"], i)


def test_loss_before_a_readers_first_message_is_counted():
    pub = Publisher("a/b", "inproc://acct-first")
    for i in range(5):  # nobody subscribed yet: ZeroMQ drops these
        pub.send(i, {"v": i})
    sub = Subscriber("a/b", "inproc://acct-first", "queue")
    assert pub.wait_for_subscribers(1, 5.0)
    pub.send(5, {"v": 5})
    assert sub.socket.poll(2000)
    (msg,) = sub.read_all()
    assert msg.seq == 5 and sub.stats.dropped == 5 and sub.stats.received == 1
    pub.close()
    sub.close()


OVERLOAD = """
clock: wall
{channels}
nodes:
  - {{name: src, type: test.counter, rate: 2000}}
  - {{name: fast, type: test.sink, rate: 100, inputs: {{c: {{source: src/count, delivery: latest}}}}}}
  - name: slow
    type: test.sink
    rate: 4
    {process}
    inputs: {{c: {{source: src/count, delivery: queue, queue_size: 8}}}}
"""


@pytest.mark.parametrize("where", ["in-process", "process-group", "tcp"])
def test_books_balance_under_overload(where):
    text = OVERLOAD.format(
        channels=f"channels: {{src/count: 'tcp://127.0.0.1:{_free_port()}'}}" if where == "tcp" else "",
        process="process: readers" if where == "process-group" else "",
    )
    res, _ = _run(text, duration_s=1.5)
    _assert_books_balance(res.stats)
    chan = res.stats["channels"]["src/count"]
    assert chan["sent"] > 300
    slow, fast = chan["inputs"]["slow.c"], chan["inputs"]["fast.c"]
    if where != "in-process":  # ipc and tcp: kernel socket buffers hold seconds of small messages, unread at stop
        assert slow["dropped"] + slow["unread"] > chan["sent"] / 2
    else:
        assert slow["dropped"] > 0, "a 4 Hz reader with a small queue must overflow here, and count it"
    assert slow["delivery"] == "queue" and fast["delivery"] == "latest"
    assert fast["skipped"] > 0, "a 100 Hz `latest` reader of a 2 kHz stream skips (and counts) older values"
    assert "slow" in res.stats["nodes"], "a process group's node stats come back to the parent"


@register("t.stale")
class Stale(Node):
    """Emits messages stamped 0.5 s in the past: they reach the recorder after its reorder window."""

    outputs = ("out",)

    def step(self):
        pub = self._pubs["out"]
        pub.send(self.now_ns() - 500_000_000, {"v": np.arange(3.0)})


def test_recorder_counts_outside_episode_and_late_messages_in_the_stats(tmp_path):
    res, sched = _run(
        f"""
clock: wall
nodes:
  - {{name: task, type: test.episodes, rate: 100, params: {{episodes: 2, length_s: 0.4, gap_s: 0.3}}}}
  - {{name: src, type: test.counter, rate: 200}}
  - {{name: stale, type: t.stale, rate: 50}}
  - name: rec
    type: record.hdf5
    rate: 50
    params: {{output_dir: "{tmp_path}", reorder_s: 0.05}}
    inputs:
      episode: task/episode
      src: {{source: src/count, delivery: queue}}
      stale: {{source: stale/out, delivery: queue}}
""",
        duration_s=10,
    )
    _assert_books_balance(res.stats)
    counts = res.stats["nodes"]["rec"]["counts"]
    assert counts["outside_episode"] > 0, "counter messages between and around episodes are counted"
    assert counts["late"] > 0, "messages stamped 0.5 s back arrive after a 50 ms reorder window"
    assert sched.reports["rec"]["late"] == counts["late"]
    episodes = sched.reports["rec"]["episodes"]
    assert len(episodes) == 2
    # Every message the recorder received is either in an episode file or counted as outside one.
    received = sum(
        i["received"] for ch in ("src/count", "stale/out") for i in res.stats["channels"][ch]["inputs"].values()
    )
    written = 0
    for ep in episodes:
        with EpisodeFile(ep["path"]) as f:
            written += sum(len(f.timestamps(ch)) for ch in ("src/count", "stale/out") if f.has_channel(ch))
    assert written == sum(sum(ep["frames"].values()) for ep in episodes)
    assert received == written + counts["outside_episode"]


def test_bounded_backlog_applies_measured_backpressure_and_a_clean_stop_keeps_the_episode(tmp_path):
    res, sched = _run(
        f"""
clock: wall
nodes:
  - {{name: cam, type: test.frames, rate: 100, params: {{width: 640, height: 480}}}}
  - name: rec
    type: record.hdf5
    rate: 50
    params: {{output_dir: "{tmp_path}", image_encoding: raw, backlog_mb: 2}}
    inputs: {{cam: {{source: cam/frame, delivery: queue, queue_size: 16}}}}
""",
        duration_s=1.5,
    )
    _assert_books_balance(res.stats)
    counts = res.stats["nodes"]["rec"]["counts"]
    rep = sched.reports["rec"]
    assert counts["backpressure_waits"] > 0 and counts["backpressure_ms"] > 0, counts
    assert rep["backlog_max_mb"] <= 2 + 1, "the backlog never exceeds its bound (plus the message that waited)"
    # The whole-run episode is closed, not left partial, and holds every message routed into it.
    assert not list(tmp_path.glob("*.partial"))
    (ep,) = rep["episodes"]
    assert ep["outcome"] == "success"
    with h5py.File(ep["path"]) as f:
        assert f.attrs["outcome"] == "success"
        assert f["channels/cam/frame/image"].shape[0] == ep["frames"]["cam/frame"] > 0
    received = res.stats["channels"]["cam/frame"]["inputs"]["rec.cam"]["received"]
    assert received == ep["frames"]["cam/frame"] + counts["outside_episode"]


def test_backlog_bound_must_fit_the_teardown_budget(tmp_path):
    # Refused when the graph is validated, before any node starts.
    with pytest.raises(
        GraphError, match=r"x.yaml:5: param 'backlog_s' of node 'rec' \(record.hdf5\) must be in \(0, 5\]"
    ):
        parse_graph(
            f"""
clock: wall
nodes:
  - {{name: c, type: test.counter, rate: 10}}
  - {{name: rec, type: record.hdf5, rate: 10, params: {{output_dir: "{tmp_path}", backlog_s: 60}}, inputs: {{c: c/count}}}}
""",
            "x.yaml",
        )
