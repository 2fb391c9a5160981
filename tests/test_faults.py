"""Faults of the robot, injected: the arm's status on every sample, stop-on-fault, a robot connection that drops.

- Fast, on the fake franky (tests/fakes/franky.py, which follows franky-control 2.0's errors and what it does
  when the robot falls silent, measured against franky-sim): the `mode`/`fault` fields of the arm's state, a
  reflex that holds the arm and ends the recorded episode with the outcome `fault`, `auto_recover`, a lost
  connection, and the recorder's `stop_on_fault` on its own.
- With franky-sim in its own process (benchmarks/_franky_sim.py) and the real franky-control: the server is
  SIGKILLed mid-motion during a recording graph, as a cable is pulled. The fault is reported within libfranka's
  receive timeout, the episode ends with `fault`, the finished one is intact, and the run ends with one line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from fakes import install

from benchmarks._franky_sim import franky_sim_server
from robotflow.drivers.base import ARM_MODES
from robotflow.recording.reader import EpisodeFile
from robotflow.recording.summary import summarize_episodes
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Input, Node, register
from robotflow.runtime.scheduler import run_graph
from robotflow.scripts.common import exit_for

HOST = "10.0.0.2"
DOWN = [0.0, 1.0, 0.0, 0.0]  # flange pointing down (wxyz)


# ---- test nodes ---------------------------------------------------------------------------------------


@dataclass
class SwayParams:
    amplitude_m: float = 0.03  # sine on y around the first measured EE position
    period_s: float = 2.0
    stall_after_s: float = 0.0  # stop sending then (0: never): the watchdog holds the arm
    pull_plug_after_s: float = 0.0  # the fake robot falls silent then (0: never)


@register("faults.sway")
class Sway(Node):
    """Streams EE targets swaying around where the arm started; on the fake it can also pull the plug."""

    Params = SwayParams
    inputs = {"state": Input()}
    outputs = ("ee_target",)

    def setup(self) -> None:
        self.t0: float | None = None
        self.origin: np.ndarray | None = None
        self.unplugged_at: float | None = None

    def step(self) -> None:
        p = self.params
        msg = self.read("state")
        if msg is None:
            return
        now = time.monotonic()
        if self.t0 is None:
            self.t0, self.origin = now, np.array(msg["ee_pose"][:3], dtype=np.float64)
        t = now - self.t0
        if p.pull_plug_after_s and t >= p.pull_plug_after_s and self.unplugged_at is None:
            import franky  # the fake, installed by the test

            franky.Robot._instances[-1]._lose_connection()
            self.unplugged_at = now
        if p.stall_after_s and t >= p.stall_after_s:
            return
        pos = self.origin + np.array([0.0, p.amplitude_m * np.sin(2 * np.pi * t / p.period_s), 0.0])
        self.emit("ee_target", ee_pose=np.concatenate([pos, DOWN]))


@dataclass
class KillParams:
    pid: int = 0  # the franky-sim server's process
    after_s: float = 4.0  # graph-clock seconds after the start


@register("faults.kill_robot")
class KillRobot(Node):
    """SIGKILLs the robot's server process once, `after_s` into the run, and notes when (time.monotonic())."""

    Params = KillParams

    def setup(self) -> None:
        self.t0: int | None = None
        self.killed_at: float | None = None

    def step(self) -> None:
        now = self.now_ns()
        self.t0 = now if self.t0 is None else self.t0
        if self.killed_at is None and now - self.t0 >= self.params.after_s * 1e9:
            import os
            import signal

            os.kill(self.params.pid, signal.SIGKILL)
            self.killed_at = time.monotonic()


@register("faults.states")
class States(Node):
    """Every arm state, with the time it arrived (time.monotonic())."""

    inputs = {"state": Input(delivery="queue", queue_size=4096)}

    def setup(self) -> None:
        self.rows: list[tuple[float, str, str]] = []

    def step(self) -> None:
        for m in self.read_all("state"):
            self.rows.append((time.monotonic(), m["mode"], m["fault"]))

    def teardown(self) -> None:
        self.step()

    def first(self, mode: str) -> float | None:
        return next((t for t, m, _ in self.rows if m == mode), None)


@dataclass
class FaultyParams:
    fault_at: int = 10  # the tick that reports a fault
    clear_after: int = 3  # ticks later it is "" again


@register("faults.faulty")
class Faulty(Node):
    """Publishes an arm-like state whose `fault` field is set for a few ticks (the recorder's own test)."""

    Params = FaultyParams
    outputs = ("state",)

    def setup(self) -> None:
        self.k = 0

    def step(self) -> None:
        p = self.params
        faulted = p.fault_at <= self.k < p.fault_at + p.clear_after
        self.emit("state", joint_pos=np.full(7, float(self.k)), mode="fault" if faulted else "move",
                  fault="injected" if faulted else "")  # fmt: skip
        self.k += 1


# ---- graphs -------------------------------------------------------------------------------------------


def recording_graph(out: Path, host: str, arm: dict, sway: dict, episodes: dict, extra: list | None = None) -> str:
    doc = {
        "clock": "wall",
        "nodes": [
            {"name": "arm", "type": "franka.arm", "rate": 100, "params": {"host": host, **arm},
             "inputs": {"ee_target": "sway/ee_target"}},
            {"name": "sway", "type": "faults.sway", "rate": 50, "params": sway, "inputs": {"state": "arm/state"}},
            {"name": "log", "type": "faults.states", "rate": 50, "inputs": {"state": "arm/state"}},
            {"name": "task", "type": "test.episodes", "rate": 100, "params": episodes},
            {"name": "rec", "type": "record.hdf5", "rate": 50, "params": {"output_dir": str(out)},
             "inputs": {"episode": "task/episode", "arm_state": {"source": "arm/state", "delivery": "queue"}}},
            *(extra or []),
        ],
    }  # fmt: skip
    return parse_graph(yaml.safe_dump(doc, sort_keys=False), "<faults>")


def episodes(out: Path, channel: str = "arm/state") -> list[tuple[str, list[str], list[str]]]:
    """(outcome, modes, faults) of each finished episode file, in order."""
    rows = []
    for path in sorted(out.glob("episode_*.h5")):
        with EpisodeFile(path) as ep:
            rows.append((ep.info.outcome, list(ep.field(channel, "mode")), list(ep.field(channel, "fault"))))
    return rows


def can_use_sched_fifo() -> bool:
    """Whether this process may raise a thread to SCHED_FIFO (root or CAP_SYS_NICE)."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        return False
    os.sched_setscheduler(0, policy, param)
    return True


def one_line_exit(result, capsys) -> str:
    """What `robotflow record|run` prints for this result (robotflow/scripts/common.py), checked to be one line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        exit_for(result)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---- the fake: status fields, reflexes, a lost connection ------------------------------------------------


def test_every_state_carries_the_arm_mode_and_fault(monkeypatch, tmp_path):
    """idle before the first target, move while following, hold after the watchdog; never a fault here. The
    recorder stores both fields on every sample (strings, beside the arrays a codec reads)."""
    franky = install(monkeypatch, "franky")
    g = recording_graph(tmp_path, HOST, {"command_timeout_s": 0.2}, {"stall_after_s": 0.6},
                        {"episodes": 1, "length_s": 1.4})  # fmt: skip
    result, sched = run_graph(g, duration_s=20)
    assert result.ok, result
    modes = [m for _, m, _ in sched.nodes["log"].rows]
    assert set(modes) <= set(ARM_MODES) and all(f == "" for _, _, f in sched.nodes["log"].rows)
    # In order: idle (maybe none: the first target comes on the first tick), then move, then hold.
    seen = [m for i, m in enumerate(modes) if i == 0 or modes[i - 1] != m]
    assert seen[-2:] == ["move", "hold"], seen
    [(outcome, rec_modes, rec_faults)] = episodes(tmp_path)
    assert outcome == "success" and "move" in rec_modes and "hold" in rec_modes and set(rec_faults) == {""}
    assert sched.reports["arm"]["faults"] == 0
    # franky's control loops start at SCHED_FIFO where the process may (FrankaArmParams.control_thread_priority):
    # a starved 1 kHz loop aborts streamed motions with planner errors (docs/hardware.md).
    robot = franky.Robot._instances[0]
    if can_use_sched_fifo():
        assert robot._loop_policies and set(robot._loop_policies) == {os.SCHED_FIFO}, robot._loop_policies
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # no thread of the test's is left raised


def test_a_reflex_holds_the_arm_ends_the_episode_with_fault_and_stops_in_one_line(monkeypatch, tmp_path, capsys):
    """A reflex raised by the running motion: no command after it, the state of that tick carries it, the
    recorded episode ends with outcome fault (the one before it untouched), and the run ends in one line."""
    franky = install(monkeypatch, "franky")
    # ~3.5 s in at 50 targets/s, in the second episode (2.7-5.2 s) for any rate from 34 to 64 targets/s.
    franky.Robot._reflex_after_moves = 175
    g = recording_graph(tmp_path, HOST, {}, {}, {"episodes": 5, "length_s": 2.5, "gap_s": 0.2})
    result, sched = run_graph(g, duration_s=20)
    assert not result.ok and result.failed_node == "arm", result
    err = one_line_exit(result, capsys)
    assert HOST in err and "reflex" in err and "auto_recover" in err and "Check for obstacles" in err
    robot = franky.Robot._instances[0]
    assert len(robot._moves) == 175, "a command reached the arm after the reflex"
    assert robot._stop_calls == 1 and not robot.is_in_control  # stop_hardware's robot.stop()
    # The robot keeps the reflex (franky 2.0's API) until recover_from_errors: recover_on_start on the next run.
    assert robot.has_errors and robot.state.robot_mode == franky.RobotMode.Reflex
    assert robot.state.last_motion_errors.cartesian_reflex and "cartesian_reflex" in repr(robot.state.current_errors)
    states = sched.nodes["log"].rows
    assert states[-1][1] == "fault" and "cartesian_reflex" in states[-1][2]
    (o0, m0, f0), (o1, m1, f1) = episodes(tmp_path)
    assert o0 == "success" and "fault" not in m0 and set(f0) == {""}
    assert o1 == "fault" and m1[-1] == "fault" and "cartesian_reflex" in f1[-1] and m1.count("fault") == 1
    assert not list(tmp_path.glob("*.partial"))
    summary = summarize_episodes(tmp_path)
    assert summary["outcomes"] == {"success": 1, "fault": 1} and summary["metrics"]["faults"] == 1


def test_auto_recover_reports_the_fault_then_holds_and_records_on(monkeypatch, tmp_path):
    """auto_recover: the faulted tick is published and ends its episode; the robot recovers, the arm holds until
    the next fresh target moves it again, and the next episode records normally."""
    franky = install(monkeypatch, "franky")
    franky.Robot._reflex_after_moves = 30  # ~0.6 s in at 50 targets/s: the first episode (0-2 s) down to 15/s
    g = recording_graph(tmp_path, HOST, {"auto_recover": True}, {}, {"episodes": 2, "length_s": 2.0, "gap_s": 0.2})
    result, sched = run_graph(g, duration_s=20)
    assert result.ok, result
    modes = [m for _, m, _ in sched.nodes["log"].rows]
    i = modes.index("fault")
    # Recovered: held until a fresh target, which may come in the very next tick.
    assert modes.count("fault") == 1 and modes[i + 1] in ("hold", "move") and "move" in modes[i + 1 :]
    assert sched.reports["arm"]["recoveries"] == 1 and sched.reports["arm"]["faults"] == 1
    assert franky.Robot._instances[0]._recovered == 2  # on start, and after the reflex
    (o0, m0, _), (o1, m1, f1) = episodes(tmp_path)
    assert o0 == "fault" and m0[-1] == "fault"
    assert o1 == "success" and "fault" not in m1 and set(f1) == {""}


def test_auto_recover_that_fails_stops_the_graph(monkeypatch, tmp_path):
    franky = install(monkeypatch, "franky")
    franky.Robot._reflex_after_moves = 30
    franky.Robot._recover_fails = True
    g = recording_graph(tmp_path, HOST, {"auto_recover": True, "recover_on_start": False}, {},
                        {"episodes": 2, "length_s": 3.0})  # fmt: skip
    result, sched = run_graph(g, duration_s=20)
    assert not result.ok and result.failed_node == "arm" and "reflex" in result.error, result
    assert sched.reports["arm"]["recoveries"] == 0 and episodes(tmp_path)[-1][0] == "fault"


def test_a_lost_connection_stops_the_graph_without_touching_the_robot(monkeypatch, tmp_path, capsys):
    """The fake robot falls silent mid-motion: libfranka's receive timeout (shortened here) reports it, the last
    measured state goes out with the fault, the episode ends with fault, no stop is sent down a dead link (it
    would raise, and turn the run's error into 'could not stop'), and the run ends in one line."""
    franky = install(monkeypatch, "franky")
    franky.Robot._network_timeout_s = 0.3
    # Unplugged at 2.6 s, reported by ~3.2 s: in the second episode (2.2-4.2 s) with a second to spare.
    g = recording_graph(tmp_path, HOST, {}, {"pull_plug_after_s": 2.6}, {"episodes": 5, "length_s": 2.0, "gap_s": 0.2})
    result, sched = run_graph(g, duration_s=20)
    assert not result.ok and result.failed_node == "arm", result
    err = one_line_exit(result, capsys)
    assert f"lost the connection to the Franka at {HOST}" in err and "NetworkException" in err
    assert "restart the graph" in err and "could not stop" not in err
    robot = franky.Robot._instances[0]
    assert robot._stop_calls == 0
    with pytest.raises(RuntimeError, match="Net Exception"):  # and it stays silent
        _ = robot.state
    unplugged, faulted = sched.nodes["sway"].unplugged_at, sched.nodes["log"].first("fault")
    # The timeout during the motion; if the motion ended between two reads, a state read's timeout on top.
    assert 0.3 <= faulted - unplugged < 2 * 0.3 + 1.0, faulted - unplugged
    (o0, m0, _), (o1, m1, f1) = episodes(tmp_path)
    assert o0 == "success" and "fault" not in m0
    assert o1 == "fault" and m1[-1] == "fault" and "NetworkException" in f1[-1]


@pytest.mark.parametrize("stop_on_fault", [True, False])
def test_the_recorder_ends_an_episode_on_a_fault_unless_told_not_to(tmp_path, stop_on_fault):
    doc = {
        "clock": "wall",
        "nodes": [
            {"name": "arm", "type": "faults.faulty", "rate": 50, "params": {"fault_at": 20}},
            {"name": "task", "type": "test.episodes", "rate": 100, "params": {"episodes": 1, "length_s": 1.0}},
            {"name": "rec", "type": "record.hdf5", "rate": 50,
             "params": {"output_dir": str(tmp_path), "stop_on_fault": stop_on_fault},
             "inputs": {"episode": "task/episode", "s": {"source": "arm/state", "delivery": "queue"}}},
        ],
    }  # fmt: skip
    result, _ = run_graph(parse_graph(yaml.safe_dump(doc, sort_keys=False), "<rec>"), duration_s=20)
    assert result.ok, result
    [(outcome, modes, faults)] = episodes(tmp_path)
    if stop_on_fault:
        assert outcome == "fault" and modes[-1] == "fault" and faults.count("injected") == 1
    else:
        assert outcome == "success" and faults.count("injected") == 3 and modes[-1] == "move"


def test_emit_state_requires_the_mode_and_a_consistent_fault():
    from robotflow.drivers.base import ArmNode

    node = ArmNode("arm", None)
    node.emit = lambda *a, **k: None
    q = np.zeros(7)
    with pytest.raises(TypeError):
        node.emit_state(q, q, np.zeros(7))  # no mode: an arm cannot forget it
    with pytest.raises(ValueError, match="not one of"):
        node.emit_state(q, q, np.zeros(7), mode="busy", fault="")
    with pytest.raises(ValueError, match="a fault goes with mode 'fault'"):
        node.emit_state(q, q, np.zeros(7), mode="move", fault="oops")
    with pytest.raises(ValueError, match="a fault goes with mode 'fault'"):
        node.emit_state(q, q, np.zeros(7), mode="fault", fault="")


# ---- franky-sim: the robot's server killed mid-motion ----------------------------------------------------

FRANKY_SIM_ARM = {
    "realtime_kernel": False,
    "robot_model": "fr3",
    "home_on_start": True,
    "dynamics_factor": 0.2,
    "workspace_min": [0.2, -0.5, 0.1],
    "workspace_max": [0.8, 0.5, 0.7],
}
# In the second episode (4.2-8.2 s): reported by ~6 s (libfranka's 1 s timeout; 2 s if the motion ends between two
# reads and a state read times out too), with two seconds to spare.
KILL_AFTER_S = 5.0


def test_franky_sim_killed_mid_motion_ends_the_episode_with_fault(tmp_path, capsys):
    """The real franky-control against franky-sim, SIGKILLed while the arm follows the sway: franka.arm reports
    the fault within libfranka's 1 s receive timeout plus a tick, the recorded episode ends with fault, the one
    before it is intact, and the run ends with one line naming the robot and the fix."""
    with franky_sim_server() as server:
        kill = {"name": "kill", "type": "faults.kill_robot", "rate": 100,
                "params": {"pid": server.process.pid, "after_s": KILL_AFTER_S}}  # fmt: skip
        g = recording_graph(tmp_path, server.host, FRANKY_SIM_ARM, {"amplitude_m": 0.03, "period_s": 4.0},
                            {"episodes": 3, "length_s": 4.0, "gap_s": 0.2}, [kill])  # fmt: skip
        result, sched = run_graph(g, duration_s=40)
        ended = time.monotonic()
        assert server.process.poll() is not None  # it was killed, not stopped
    killed_at, log = sched.nodes["kill"].killed_at, sched.nodes["log"]
    assert killed_at is not None, result
    faulted = log.first("fault")
    assert faulted is not None, result
    latency = faulted - killed_at
    with capsys.disabled():
        print(f"\nrobot connection drop: fault reported {latency * 1e3:.0f} ms after the kill")
    assert 0.5 < latency < 3.0, latency  # libfranka's 1 s timeout, with a generous margin for a loaded machine
    moving = [m for t, m, _ in log.rows if t < killed_at][-10:]
    assert moving == ["move"] * 10, moving  # it was mid-motion
    assert not result.ok and result.failed_node == "arm", result
    err = one_line_exit(result, capsys)
    assert f"lost the connection to the Franka at {server.host}" in err and "restart the graph" in err, err
    assert "could not stop" not in err
    (o0, m0, f0), (o1, m1, f1) = episodes(tmp_path)
    assert o0 == "success" and set(m0) <= {"idle", "move"} and set(f0) == {""}
    with EpisodeFile(tmp_path / "episode_000000.h5") as ep:  # the finished episode is whole: 4 s of 100 Hz states
        assert ep.info.outcome == "success" and len(ep.timestamps("arm/state")) > 300
        assert np.all(np.isfinite(ep.field("arm/state", "ee_pose")))
        assert np.all(np.diff(ep.seq("arm/state")) == 1)
    assert o1 == "fault" and m1[-1] == "fault" and "NetworkException" in f1[-1]
    assert not list(tmp_path.glob("*.partial"))
    assert summarize_episodes(tmp_path)["metrics"]["faults"] == 1
    assert ended - faulted < 15  # the graph stopped (teardown included), it did not hang on the dead link
