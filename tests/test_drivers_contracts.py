"""The device contracts of robotflow/drivers/base.py, checked on the nodes that implement them: one command
precedence rule for both arms (franka.arm against the fake franky, sim.arm in MuJoCo), and every driver
node deriving from its device's base class."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import install

from robotflow.drivers.base import ArmNode, CameraNode, GripperNode, TeleopDeviceNode
from robotflow.runtime.channels import Message
from robotflow.runtime.clock import VirtualClock

HOST = "10.0.0.2"
PERIOD_NS = 10_000_000


@pytest.fixture(scope="module")
def sim_world():
    from robotflow.drivers.sim.nodes import SimWorldNode, WorldParams

    return SimWorldNode("world", WorldParams())


def franka_arm(monkeypatch, _world) -> ArmNode:
    from robotflow.drivers import franka

    install(monkeypatch, "franky")
    return franka.FrankaArmNode("arm", franka.FrankaArmParams(host=HOST))


def sim_arm(_monkeypatch, world) -> ArmNode:
    from robotflow.drivers.sim.nodes import ArmParams, SimArmNode

    class Runtime:
        def peer(self, name):
            return world

    world.sim.reset_robot()
    arm = SimArmNode("arm", ArmParams())
    arm._runtime = Runtime()
    return arm


class Harness:
    """Calls an arm's step() with chosen messages in its inputs, and collects what it emits."""

    def __init__(self, node: ArmNode):
        self.node, self.clock = node, VirtualClock()
        self.inbox: dict[str, Message] = {}
        self.emitted: dict[str, dict] = {}
        node._clock = self.clock
        node.read_new = lambda port: self.inbox.pop(port, None)
        node.read = lambda port: None
        node.emit = lambda output, **fields: self.emitted.__setitem__(output, fields)

    def tick(self, **messages: tuple[int, dict]) -> dict[str, dict]:
        self.clock.advance_to(self.clock.now_ns() + PERIOD_NS)
        for port, (stamp, fields) in messages.items():
            self.inbox[port] = Message(port, 0, stamp, fields)
        self.emitted = {}
        self.node.step()
        return self.emitted


# (stamp of ee_target, stamp of joint_target) relative to the tick, whether the EE target is valid, the winner
CASES = {
    "same_stamp_ee_wins": (0, 0, True, "ee"),
    "newer_joints_win": (-1_000, 0, True, "joints"),
    "newer_ee_wins": (0, -1_000, True, "ee"),
    "rejected_winner_no_fallback": (0, 0, False, None),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("make_arm", [franka_arm, sim_arm], ids=["franka.arm", "sim.arm"])
def test_arm_command_precedence_is_one_rule(make_arm, case, monkeypatch, sim_world):
    ee_offset, joint_offset, ee_valid, winner = CASES[case]
    arm = make_arm(monkeypatch, sim_world)
    arm.setup()
    try:
        h = Harness(arm)
        state = h.tick()["state"]
        shapes = {k: np.shape(v) for k, v in state.items() if k not in ("mode", "fault")}
        assert shapes == {"joint_pos": (7,), "joint_vel": (7,), "ee_pose": (7,)}
        assert (state["mode"], state["fault"]) == ("idle", "")  # the arm's status, on every state
        assert "command" not in h.emitted  # no target yet: nothing echoed
        ee = np.asarray(state["ee_pose"], float) + np.array([0.01, 0, 0, 0, 0, 0, 0])
        if not ee_valid:
            ee[0] = np.nan
        q = np.asarray(state["joint_pos"], float) + np.array([0.05, 0, 0, 0, 0, 0, 0])
        now = h.clock.now_ns() + PERIOD_NS
        out = h.tick(
            ee_target=(now + ee_offset, {"ee_pose": ee}),
            joint_target=(now + joint_offset, {"joint_pos": q}),
        )
        counts = arm.safety.report()
        assert counts["commands"] == 1  # the other target was dropped, not validated
        assert arm.safety.mode == winner
        if winner is None:
            assert counts["rejected"] == 1 and "command" not in out  # never the older joint target instead
        else:
            assert (out["state"]["mode"], out["state"]["fault"]) == ("move", "")
            assert out["command"]["mode"] == winner
            sent = out["command"]["ee_pose" if winner == "ee" else "joint_pos"]
            np.testing.assert_allclose(sent, ee if winner == "ee" else q, atol=1e-9)
    finally:
        arm.stop_hardware()
        arm.teardown()


def test_every_driver_node_implements_its_device_contract():
    from robotflow.drivers.franka import FrankaArmNode, FrankaGripperNode
    from robotflow.drivers.opencv_camera import OpenCVCameraNode
    from robotflow.drivers.realsense import RealSenseCameraNode
    from robotflow.drivers.sim.nodes import SimArmNode, SimCameraNode, SimGripperNode
    from robotflow.drivers.teleop_gamepad import GamepadTeleopNode
    from robotflow.drivers.teleop_keyboard import KeyboardTeleopNode
    from robotflow.drivers.teleop_scripted import ScriptedTeleop
    from robotflow.drivers.teleop_spacemouse import SpaceMouseTeleopNode
    from robotflow.drivers.teleop_webxr import WebXRTeleopNode

    contracts = {
        ArmNode: (SimArmNode, FrankaArmNode),
        GripperNode: (SimGripperNode, FrankaGripperNode),
        CameraNode: (SimCameraNode, RealSenseCameraNode, OpenCVCameraNode),
        TeleopDeviceNode: (
            KeyboardTeleopNode,
            GamepadTeleopNode,
            SpaceMouseTeleopNode,
            WebXRTeleopNode,
            ScriptedTeleop,
        ),
    }
    for base, classes in contracts.items():
        for cls in classes:
            assert issubclass(cls, base), (cls, base)
            assert set(base.outputs) <= set(cls.outputs), cls
            assert set(base.inputs) <= set(cls.inputs), cls
    assert SimArmNode.inputs == FrankaArmNode.inputs and SimGripperNode.inputs == FrankaGripperNode.inputs
