"""The safety layer (robotflow/safety.py) in the command paths of franka.arm (fake franky whose motions take
time) and sim.arm (real MuJoCo), and the hardware-first shutdown of the scheduler."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import yaml
from fakes import FAKES_DIR, install

from robotflow.drivers import franka as drv
from robotflow.geometry import panda_fk, quat_z_axis, rotation_angle
from robotflow.runtime.channels import Message
from robotflow.runtime.clock import VirtualClock
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Node, register
from robotflow.runtime.scheduler import run_graph
from robotflow.safety import ArmSafety, ArmSafetyParams, GripperSafety

HOST = "10.0.0.2"
N_COMMANDS = 10_000
FAKES_ROOT = FAKES_DIR.parents[1]


def test_panda_fk_matches_franka_ready_pose():
    pose = panda_fk(np.array(drv.READY_JOINTS))
    np.testing.assert_allclose(pose[:3], [0.3069, 0.0, 0.4869], atol=2e-4)  # O_T_EE with the Franka Hand
    np.testing.assert_allclose(quat_z_axis(pose[3:]), [0, 0, -1], atol=1e-9)  # pointing down


# ---- 10,000 random commands ---------------------------------------------------------------------------


def random_commands(rng: np.random.Generator, n: int, lo: np.ndarray, hi: np.ndarray, block: int = 2500):
    """(port, value, valid_shape_and_finite) triples: EE and joint targets in blocks (a mode switch waits for
    the arm to stop), with NaN, inf, huge jumps, out-of-box poses, joints beyond their limits, wrong shapes."""
    out = []
    for k in range(n):
        port = "ee_target" if (k // block) % 2 == 0 else "joint_target"
        size = 7
        if port == "ee_target":
            v = np.concatenate([rng.uniform(-1.0, 2.0, 3), rng.normal(size=4)])
            if rng.random() < 0.3:  # near the box, pointing about down: most of these are forwarded
                v[:3] = rng.uniform([0.2, -0.5, 0.0], [0.8, 0.5, 0.6])
                v[3:] = [0.0, 1.0, 0.0, 0.0] + rng.normal(scale=0.3, size=4)
            if rng.random() < 0.05:
                v[:3] *= 1e6  # a huge jump
        else:
            v = rng.uniform(lo - 1.0, hi + 1.0)
            if rng.random() < 0.4:
                v = np.clip(np.array(drv.READY_JOINTS) + rng.normal(scale=0.3, size=7), lo - 0.2, hi + 0.2)
        valid = True
        r = rng.random()
        if r < 0.08:
            v[rng.integers(size)] = np.nan
            valid = False
        elif r < 0.12:
            v[rng.integers(size)] = rng.choice([np.inf, -np.inf])
            valid = False
        elif r < 0.16:
            v = rng.normal(size=int(rng.choice([0, 3, 6, 8, 14])))
            valid = False
        out.append((port, v, valid))
    return out


class Harness:
    """Drives a node's step() directly with one command per tick: no channels, so 10,000 ticks take seconds.
    Records, for each tick, the measured state the node published and the command it sent."""

    def __init__(self, node: Node, clock: VirtualClock, period_ns: int):
        self.node, self.clock, self.period_ns = node, clock, period_ns
        self.inbox: dict[str, Message] = {}
        self.emitted: list[tuple[str, dict]] = []
        node._clock = clock
        node.read_new = lambda port: self.inbox.pop(port, None)
        node.read = lambda port: None
        node.emit = lambda output, **fields: self.emitted.append((output, fields))

    def tick(self, port: str | None = None, value=None) -> tuple[dict, dict | None]:
        self.clock.advance_to(self.clock.now_ns() + self.period_ns)
        if port is not None:
            field = "ee_pose" if port == "ee_target" else "joint_pos"
            self.inbox[port] = Message(port, 0, self.clock.now_ns(), {field: value})
        self.emitted.clear()
        self.node.step()
        state = next(f for o, f in self.emitted if o == "state")
        command = next((f for o, f in self.emitted if o == "command"), None)
        return state, command


def check_sent(safety: ArmSafety, p: ArmSafetyParams, measured_pose, measured_q, sent_pose, sent_q=None) -> None:
    """What reached the robot: inside the box and the cone, within one step of the measured state.

    EE targets are always inside both. The one exception is joint targets while the arm itself is outside
    (joint motion is not straight in Cartesian space): then a step may not go farther out than the arm is.
    And when the arm is outside the box, a step into it is allowed to exceed max_step by that distance.
    """
    box_here, cone_here = safety._excess(measured_pose)
    box, cone = safety._excess(sent_pose)
    if sent_q is None:
        assert box == 0.0 and cone <= 1e-9, sent_pose
    else:
        assert box <= box_here + 1e-9 and cone <= cone_here + 1e-9, (sent_pose, measured_pose)
        assert np.all(np.abs(sent_q - measured_q) <= p.max_joint_step_rad + 1e-12)
        assert np.all(sent_q >= safety.q_lo - 1e-12) and np.all(sent_q <= safety.q_hi + 1e-12)
    assert np.linalg.norm(sent_pose[:3] - measured_pose[:3]) <= p.max_step_m + box_here + 1e-9
    assert np.degrees(rotation_angle(sent_pose[3:], measured_pose[3:])) <= p.max_step_deg + np.degrees(cone_here) + 1e-6


def test_random_commands_through_the_layer_into_the_fake_franka(monkeypatch):
    franky = install(monkeypatch, "franky")
    params = drv.FrankaArmParams(host=HOST, dynamics_factor=1.0)
    node = drv.FrankaArmNode("arm", params)
    node.setup()
    robot = franky.Robot._instances[0]
    h = Harness(node, VirtualClock(), 10_000_000)
    safety = node.safety
    cmds = random_commands(np.random.default_rng(0), N_COMMANDS, safety.q_lo, safety.q_hi)
    sent = 0
    for port, value, _ in cmds:
        n_moves = len(robot._moves)
        state, command = h.tick(port, value)
        new = [m for m in robot._moves[n_moves:] if isinstance(m, (franky.CartesianMotion, franky.JointMotion))]
        for m in new:
            sent += 1
            if isinstance(m, franky.CartesianMotion):
                pose = drv.pose_from_affine(m.target.pose.end_effector_pose)
                check_sent(safety, params, state["ee_pose"], state["joint_pos"], pose)
            else:
                q = m.target.position
                check_sent(safety, params, panda_fk(state["joint_pos"]), state["joint_pos"], panda_fk(q), q)
    node.stop_hardware()
    node.teardown()
    invalid = sum(not valid for _, _, valid in cmds)
    rep = node.report()["safety"]
    assert rep["commands"] == N_COMMANDS
    by = rep["rejected_by"]
    assert by.get("non_finite", 0) + by.get("shape", 0) == invalid  # every malformed command counted
    assert rep["rejected"] == invalid + by.get("workspace", 0)
    assert rep["clamped"] > 1000 and rep["step_limited"] > 1000 and rep["timeouts"] == 0
    assert sent > 2000  # plenty of commands did reach the robot, all checked above
    assert not robot.is_in_control


@pytest.fixture(scope="module")
def sim_arm():
    from robotflow.drivers.sim.nodes import ArmParams, SimArmNode, SimWorldNode, WorldParams

    world = SimWorldNode("world", WorldParams())

    class Runtime:
        def peer(self, name):
            return world

    def make(**kw):
        world.sim.reset_robot()
        arm = SimArmNode("arm", ArmParams(**kw))
        arm._runtime = Runtime()
        return world, arm

    return make


def test_random_commands_through_the_layer_into_sim_arm(sim_arm):
    world, arm = sim_arm(ik_iterations=1)  # one IK iteration and one physics step per tick: a fast test
    arm.setup()
    sim, safety, params = world.sim, arm.safety, arm.params
    clock = VirtualClock()
    h = Harness(arm, clock, 2_000_000)
    cmds = random_commands(np.random.default_rng(1), N_COMMANDS, safety.q_lo, safety.q_hi)
    controller = arm.controller
    forwarded = 0
    for port, value, _ in cmds:
        sim.step_to(clock.now_ns() * 1e-9)
        before = controller.target
        measured_pose, measured_q = sim.ee_pose(), sim.arm_qpos()
        h.tick(port, value)
        target = controller.target
        if target is None or target is before:
            continue
        forwarded += 1
        if controller.mode == "ee":
            check_sent(safety, params, measured_pose, measured_q, target)
        else:
            check_sent(safety, params, arm._fk(measured_q), measured_q, arm._fk(target), target)
    invalid = sum(not valid for _, _, valid in cmds)
    rep = arm.report()["safety"]
    by = rep["rejected_by"]
    assert rep["commands"] == N_COMMANDS
    assert by.get("non_finite", 0) + by.get("shape", 0) == invalid
    assert rep["rejected"] == invalid + by.get("workspace", 0)
    assert forwarded > 5000 and rep["clamped"] > 1000 and rep["step_limited"] > 1000
    assert np.all(np.isfinite(sim.data.qpos))


def test_joint_homing_from_the_box_ceiling_gets_home():
    """From the workspace box's ceiling, the straight joint step toward home rises out of the box: the layer used to
    find no safe step and keep the arm there for good (franky-sim's homing timed out). Each tick here sends what
    the layer allows, and the arm is at the target where it would go; it must get home, never leaving the box."""
    lo, hi = drv.JOINT_LIMITS["fr3"]
    params = drv.FrankaArmParams(host=HOST, workspace_min=[0.25, -0.35, 0.02], workspace_max=[0.75, 0.35, 0.45])
    safety = ArmSafety(params, (lo + drv.JOINT_LIMIT_MARGIN, hi - drv.JOINT_LIMIT_MARGIN), panda_fk)
    home = np.array([0.0, -0.3, 0.0, -2.3, 0.0, 2.0, 0.785])
    # Found by homing random in-box starts: the step toward home from here leaves the box at z 0.45.
    q = home + np.array([0.006, -0.405, -0.165, -0.181, 0.301, -0.019, 0.472])
    assert panda_fk(q)[2] == pytest.approx(0.45, abs=2e-3)
    assert safety.command_joints(home, 0)
    for tick in range(2000):
        mode, q_next = safety.tick(panda_fk(q), q, tick)
        assert mode == "joints"
        assert safety._excess(panda_fk(q_next))[0] <= safety._excess(panda_fk(q))[0] + 1e-12
        if np.array_equal(q_next, q):
            break
        q = q_next
    np.testing.assert_allclose(q, home, atol=1e-9)


def test_gripper_layer_rejects_and_clamps():
    g = GripperSafety()
    assert g.command(0.3) == 0.3 and g.command(np.float32(1.5)) == 1.0 and g.command(-2) == 0.0
    for bad in (np.nan, np.inf, [0.1, 0.2], "open", None, np.zeros((1, 1, 2))):
        assert g.command(bad) is None
    assert g.report() == {"commands": 9, "rejected": 6, "clamped": 2}


def test_sim_gripper_never_forwards_nan(sim_arm):
    from robotflow.drivers.sim.nodes import GripperParams, SimGripperNode

    world, _ = sim_arm()
    grip = SimGripperNode("gripper", GripperParams())
    grip._runtime = type("R", (), {"peer": lambda self, name: world})()
    grip.setup()
    h = Harness(grip, VirtualClock(), 10_000_000)
    for w in (0.2, np.nan, np.inf, 0.7):
        h.inbox["target"] = Message("t", 0, h.clock.now_ns() + 10_000_000, {"width": w})
        h.tick()
        assert np.isfinite(grip.controller.target)
    assert grip.controller.target == 0.7 and grip.report()["safety"]["rejected"] == 2


def test_gripper_force_and_speed_bounded():
    from robotflow.runtime.graph import GraphError

    for params in ({"force": 150.0}, {"speed": 0.5}):
        doc = {"nodes": [{"name": "g", "type": "franka.gripper", "rate": 10, "params": {"host": HOST, **params}}]}
        with pytest.raises(GraphError, match="Franka Hand"):
            parse_graph(yaml.safe_dump(doc))


# ---- the watchdog --------------------------------------------------------------------------------------


def test_stalled_commands_hold_the_sim_arm_within_timeout_plus_one_tick(sim_arm):
    world, arm = sim_arm(command_timeout_s=0.3)
    arm.setup()
    clock = VirtualClock()
    h = Harness(arm, clock, 10_000_000)  # 100 Hz
    target = world.sim.ee_pose() + np.array([0.05, 0.0, -0.05, 0, 0, 0, 0])
    for _ in range(20):
        world.sim.step_to(clock.now_ns() * 1e-9)
        h.tick("ee_target", target)
    last_command_ns = clock.now_ns()
    held_at = None
    for _ in range(100):  # the policy stalls: nothing arrives for 1 s
        world.sim.step_to(clock.now_ns() * 1e-9)
        h.tick()
        if arm.controller.mode == "hold":
            held_at = clock.now_ns()
            break
    assert held_at is not None
    assert 0.3e9 < held_at - last_command_ns <= 0.3e9 + 10_000_000  # command_timeout_s + one tick
    assert arm.report()["safety"]["timeouts"] == 1
    q_held = arm.controller.q_cmd.copy()
    for _ in range(30):
        world.sim.step_to(clock.now_ns() * 1e-9)
        h.tick()
    np.testing.assert_array_equal(arm.controller.q_cmd, q_held)  # holds; no timeout reported again
    assert arm.report()["safety"]["timeouts"] == 1
    h.tick("ee_target", target)  # a fresh command resumes
    assert arm.controller.mode == "ee"


@dataclass
class BurstParams:
    ticks: int = 10  # emit this many targets, then go silent (a stalled policy)
    fail_after: int | None = None  # raise on this tick instead (a failing node)


@register("testsafety.burst")
class Burst(Node):
    Params = BurstParams
    outputs = ("ee_target",)

    def setup(self) -> None:
        self.k = 0
        self.sent_ns: list[float] = []
        self.raised_at: float | None = None

    def step(self) -> None:
        self.k += 1
        p = self.params
        if p.fail_after is not None and self.k >= p.fail_after:
            self.raised_at = time.monotonic()
            raise RuntimeError("policy crashed")
        if self.k <= p.ticks:
            x = 0.4 + 0.01 * self.k
            self.emit("ee_target", ee_pose=np.array([x, 0.0, 0.38, 0.0, 1.0, 0.0, 0.0]))
            self.sent_ns.append(time.monotonic())


@register("testsafety.slow_teardown")
class SlowTeardown(Node):
    def setup(self) -> None:
        self.teardown_started: float | None = None

    def teardown(self) -> None:
        self.teardown_started = time.monotonic()
        time.sleep(0.3)


def franka_graph(burst: dict, arm: dict | None = None, extra: list | None = None) -> object:
    doc = {
        "clock": "wall",
        "nodes": [
            {
                "name": "arm",
                "type": "franka.arm",
                "rate": 100,
                "params": {"host": HOST, **(arm or {})},
                "inputs": {"ee_target": "policy/ee_target"},
            },
            {"name": "policy", "type": "testsafety.burst", "rate": 20, "params": burst},
            *(extra or []),
        ],
    }
    return parse_graph(yaml.safe_dump(doc, sort_keys=False), "<safety-test>")


def test_stalled_policy_stops_and_holds_the_franka(monkeypatch):
    franky = install(monkeypatch, "franky")
    result, sched = run_graph(franka_graph({"ticks": 10}, {"command_timeout_s": 0.2}), duration_s=1.5)
    assert result.ok, result
    robot = franky.Robot._instances[0]
    kinds = [type(m).__name__ for m in robot._moves]
    i = kinds.index("CartesianStopMotion")
    assert set(kinds[:i]) == {"CartesianMotion"} and i == len(kinds) - 1, kinds  # held; nothing after it
    # The stop came after command_timeout_s without a fresh command, not before.
    assert robot._move_times[i] - sched.nodes["policy"].sent_ns[-1] > 0.2
    rep = sched.reports["arm"]
    assert rep["holds"] == 1 and rep["safety"]["timeouts"] == 1


# ---- hardware-first shutdown ---------------------------------------------------------------------------


def test_node_failure_reaches_robot_stop_within_100_ms(monkeypatch):
    franky = install(monkeypatch, "franky")
    slow = {"name": "slow", "type": "testsafety.slow_teardown", "rate": 10}
    result, sched = run_graph(franka_graph({"ticks": 100, "fail_after": 8}, extra=[slow]), duration_s=10)
    assert not result.ok and result.failed_node == "policy" and "policy crashed" in result.error
    robot = franky.Robot._instances[0]
    raised_at = sched.nodes["policy"].raised_at
    # Both times on the fake's clock (time.monotonic): the failure reached robot.stop() within 100 ms ...
    assert robot._stop_calls >= 1 and robot._stop_times[0] - raised_at < 0.1
    # ... before any other node's teardown (the slow one started last, so it is torn down first).
    assert robot._stop_times[0] < sched.nodes["slow"].teardown_started
    assert not robot.is_in_control and robot._speed() == (0.0, 0.0)


def test_failed_stop_exits_non_zero_naming_the_arm(monkeypatch):
    franky = install(monkeypatch, "franky")

    def broken_stop(self):
        raise franky.NetworkException("libfranka: Connection lost")

    monkeypatch.setattr(franky.Robot, "stop", broken_stop)
    result, _ = run_graph(franka_graph({"ticks": 5}), duration_s=0.5)
    assert not result.ok and result.exit_code != 0 and result.failed_node == "arm"
    assert "could not stop" in result.error and "Connection lost" in result.error


def test_ctrl_c_aborts_a_blocking_homing(monkeypatch):
    franky = install(monkeypatch, "franky")
    far_home = [1.5, -0.3, 0.0, -2.0, 0.0, 1.8, 0.785]  # ~1.5 rad of joint 1 at 10 %: about 7 s
    graph = franka_graph({"ticks": 5}, {"home_on_start": True, "home_joints": far_home})
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    result, _ = run_graph(graph, duration_s=30)
    assert result.signal == signal.SIGINT and result.failed_node is None, result
    assert time.monotonic() - t0 < 4.0  # not the 7 s homing
    robot = franky.Robot._instances[0]
    assert robot._stop_calls >= 1 and not robot.is_in_control
    assert robot.current_joint_state.position[0] < 1.0  # stopped on the way


def test_franka_policy_graph_validates():
    from robotflow.runtime.graph import load_graph

    spec = load_graph(FAKES_ROOT / "graphs" / "franka_stack_cubes_policy.yaml")
    arm = spec.node("arm").params
    assert spec.clock == "wall" and spec.node("policy").process == "inference"
    assert arm.command_timeout_s == 0.3 and arm.max_step_m == 0.03 and not arm.auto_recover
    assert spec.node("policy").inputs["episode"].source == "teleop/episode"
    assert spec.node("arm").inputs["ee_target"].source == "policy/ee_target"


def test_exit_table_lists_the_safety_counts(monkeypatch):
    from robotflow.runtime.scheduler import run_graph
    from robotflow.safety import format_safety

    install(monkeypatch, "franky")
    _, sched = run_graph(franka_graph({"ticks": 5}, {"command_timeout_s": 0.2}), duration_s=0.8)
    line = next(ln for ln in format_safety(sched.reports).splitlines() if ln.startswith("safety arm:"))
    assert "commands 5" in line and "rejected 0" in line and "timeouts 1" in line
