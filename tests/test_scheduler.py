"""Scheduler: periodic and triggered nodes, safe shutdown, virtual time, process groups, stats."""

import threading
import time
from dataclasses import dataclass

import numpy as np

from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Input, Node, register
from robotflow.runtime.scheduler import Scheduler

EVENTS: list = []


@dataclass
class TickParams:
    fail_after: int = 0


@register("t.tick")
class Tick(Node):
    """Records lifecycle events and the time of each step."""

    Params = TickParams
    outputs = ("out",)

    def setup(self):
        EVENTS.append(("setup", self.name, threading.current_thread().name))
        self.steps = []
        self.thread_name = threading.current_thread().name

    def step(self):
        self.steps.append(time.monotonic())
        if self.params.fail_after and len(self.steps) >= self.params.fail_after:
            self.failed_at = time.monotonic()
            raise ValueError("gripper lost contact")
        self.emit("out", value=len(self.steps), t=self.now_ns())

    def teardown(self):
        EVENTS.append(("teardown", self.name, threading.current_thread().name))


@dataclass
class SimParams:
    seed: int = 0


@register("t.vsim")
class VirtualSim(Node):
    """Owns simulated time: a seeded random walk."""

    Params = SimParams
    outputs = ("state",)
    virtual_clock = True

    def setup(self):
        self.rng = np.random.default_rng(self.params.seed)
        self.x = np.zeros(3)

    def step(self):
        self.x = self.x + self.rng.standard_normal(3)
        self.emit("state", x=self.x.copy())


@register("t.vctrl")
class VirtualController(Node):
    """Reads the sim's latest state at its own rate and records what it saw and when."""

    inputs = {"state": Input()}
    outputs = ("cmd",)

    def setup(self):
        self.seen = []

    def step(self):
        m = self.read("state")
        if m is not None:
            self.seen.append((self.now_ns(), m.timestamp_ns, m["x"].tolist()))
            self.emit("cmd", u=-m["x"])


def _run(text, **kw):
    g = parse_graph(text, "test.yaml")
    s = Scheduler(g, **kw)
    return s.run(), s


def test_periodic_and_triggered_nodes_and_channel_stats():
    res, s = _run(
        """
nodes:
  - {name: src, type: test.counter, rate: 200}
  - {name: inc, type: test.relay, inputs: {x: src/count}}
  - {name: sink, type: test.sink, rate: 100, inputs: {y: {source: inc/y, delivery: queue}, c: {source: src/count, delivery: latest}}}
""",
        duration_s=1.0,
    )
    assert res.ok and res.exit_code == 0, res
    sink = s.nodes["sink"]
    src_ticks = res.stats["nodes"]["src"]["ticks"]
    assert 50 <= src_ticks <= 260  # a loaded machine skips (and counts) ticks
    vals = [m for m in sink.seqs["y"]]
    assert vals == list(range(len(vals))), "queue delivery: every relayed message, in order"
    # The relay reads `latest`: under load it may skip counts (counted), so value - 1 >= its own seq.
    assert sink.last["y"].seq + 1 <= sink.last["y"]["value"] <= src_ticks
    ch = res.stats["channels"]["inc/y"]["inputs"]["sink.y"]
    assert ch["dropped"] == 0
    assert ch["received"] + ch["unread"] == res.stats["channels"]["inc/y"]["sent"]
    latest = res.stats["channels"]["src/count"]["inputs"]["sink.c"]
    assert latest["skipped"] > 0, "a 100 Hz reader of a 200 Hz stream skips (and counts) older values"


def test_node_failure_stops_everything_quickly_and_tears_down_in_reverse():
    EVENTS.clear()
    res, s = _run(
        """
nodes:
  - {name: a, type: t.tick, rate: 200}
  - {name: b, type: t.tick, rate: 100, params: {fail_after: 20}}
  - {name: c, type: t.tick, rate: 500}
""",
        duration_s=10,
    )
    assert not res.ok and res.exit_code == 1
    assert res.failed_node == "b" and res.error == "ValueError: gripper lost contact"
    failed_at = s.nodes["b"].failed_at
    for other in ("a", "c"):
        assert s.nodes[other].steps[-1] - failed_at < 0.1, "every node stops within 100 ms"
    setups = [e[1] for e in EVENTS if e[0] == "setup"]
    teardowns = [e[1] for e in EVENTS if e[0] == "teardown"]
    assert setups == ["a", "b", "c"] and teardowns == ["c", "b", "a"]
    for _kind, name, thread in EVENTS:
        assert thread == f"node:{name}", "setup and teardown run in the node's own thread"


def test_failure_in_setup_stops_before_later_nodes_start():
    EVENTS.clear()
    res, _ = _run("""
nodes:
  - {name: a, type: t.tick, rate: 100}
  - {name: bad, type: test.fail, rate: 10, params: {in_setup: true, message: "camera not found"}}
  - {name: c, type: t.tick, rate: 100}
""")
    assert res.failed_node == "bad" and "camera not found" in res.error
    assert [e[1] for e in EVENTS] == ["a", "a"], "c never started; a was torn down"


def test_request_stop_ends_the_graph_normally():
    res, s = _run("nodes:\n  - {name: n, type: test.counter, rate: 500, params: {stop_after: 50}}\n")
    assert res.ok and "counted 50" in res.reason
    assert res.stats["nodes"]["n"]["ticks"] == 50


VIRTUAL = """
nodes:
  - {name: world, type: t.vsim, rate: 500, params: {seed: 7}}
  - {name: ctrl, type: t.vctrl, rate: 30, inputs: {state: world/state}}
  - {name: log, type: test.sink, rate: 15, inputs: {cmd: {source: ctrl/cmd, delivery: queue}}}
"""


def test_virtual_time_is_deterministic_single_threaded_and_stamped_by_the_clock():
    g = parse_graph(VIRTUAL, "v.yaml")
    assert g.clock == "virtual"
    runs = []
    for _ in range(5):  # ZeroMQ's queue bookkeeping runs on wall time: a bounded queue dropped 1 run in ~30
        s = Scheduler(g, duration_s=2.0)
        res = s.run()
        assert res.ok and "simulated time" in res.reason
        runs.append(s)
    a, *others = (r.nodes["ctrl"].seen for r in runs)
    assert all(b == a for b in others) and len(a) == 61, "same seed, same outputs, 30 Hz over 2 s of virtual time"
    for now, stamp, _ in a:
        assert stamp <= now and now - stamp < 2_000_000, "the controller sees the sim's state of this instant"
    assert a[1][0] == round(1e9 / 30)
    assert runs[0].nodes["log"].received["cmd"] == 61
    assert runs[0].nodes["world"].steps if hasattr(runs[0].nodes["world"], "steps") else True


PROC = """
nodes:
  - {name: src, type: test.counter, rate: 200, params: {stop_after: 100}}
  - name: remote
    type: test.echo
    process: worker
    params: {fail_at: FAIL}
    inputs: {x: {source: src/count, delivery: queue}}
  - {name: sink, type: test.sink, rate: 100, inputs: {e: {source: remote/echo, delivery: queue}}}
"""


def test_process_group_runs_over_ipc():
    res, s = _run(PROC.replace("FAIL", "0"), duration_s=20)
    assert res.ok, res
    time.sleep(0)
    sink = s.nodes["sink"]
    assert sink.received.get("e", 0) >= 90, sink.received
    assert sink.seqs["e"] == list(range(len(sink.seqs["e"])))
    assert "remote" in res.stats["nodes"], "stats of the other process are merged"


def test_failure_in_process_group_names_the_node():
    res, _ = _run(PROC.replace("FAIL", "30"), duration_s=20)
    assert not res.ok and res.failed_node == "remote" and "value 30 out of range" in res.error


@dataclass
class SlowTeardownParams:
    seconds: float = 3.0
    record: str = ""  # file the teardown's end time (time.time()) is written to


@register("t.slow_teardown")
class SlowTeardown(Node):
    """A node whose teardown takes a while (a robot twin waiting for its clients to let go)."""

    Params = SlowTeardownParams

    def step(self):
        pass

    def teardown(self):
        time.sleep(self.params.seconds)
        with open(self.params.record, "w") as f:
            f.write(str(time.time()))


@register("t.teardown_clock")
class TeardownClock(Node):
    def step(self):
        pass

    def teardown(self):
        self.torn_down_at = time.time()


def test_a_process_groups_stop_request_reaches_the_parent_before_its_teardown(tmp_path):
    """The main group stops as soon as a node in a process group ends the run, not after that group's teardown:
    the Franka twin's world (in a group) keeps serving while franka.arm (in the main group) stops the robot."""
    record = tmp_path / "child_teardown_end"
    doc = f"""
clock: wall
nodes:
  - {{name: clock, type: t.teardown_clock, rate: 50}}
  - {{name: ender, type: test.counter, rate: 100, process: twin, params: {{stop_after: 20}}}}
  - {{name: slow, type: t.slow_teardown, rate: 10, process: twin, params: {{seconds: 3.0, record: "{record}"}}}}
"""
    res, s = _run(doc, duration_s=30)
    assert res.ok, res
    child_done = float(record.read_text())
    assert s.nodes["clock"].torn_down_at < child_done - 1.5
