"""franka.arm and franka.gripper in real robotflow graphs, against the fake franky (tests/fakes/franky.py).

The quaternion helpers are also checked against the real franky's Affine, which needs no robot.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml
from fakes import install

from robotflow.drivers import franka as drv
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import run_graph

HOST = "10.0.0.2"


def yaw_wxyz(a: float) -> list[float]:
    return [float(np.cos(a / 2)), 0.0, 0.0, float(np.sin(a / 2))]


def rotmat_wxyz(q) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def arm_graph(steps, arm_params=None, hold=5, port="ee_target", rate_script=20, duration=None):
    params = {"host": HOST, **(arm_params or {})}
    doc = {
        "clock": "wall",
        "nodes": [
            {
                "name": "arm",
                "type": "franka.arm",
                "rate": 100,
                "params": params,
                "inputs": {"ee_target": "script/ee_target", "joint_target": "script/joint_target"},
            },
            {"name": "script", "type": "testdrv.script", "rate": rate_script, "params": {"steps": steps, "hold": hold}},
            {
                "name": "sink",
                "type": "testdrv.collect",
                "rate": 50,
                "inputs": {"state": "arm/state", "command": "arm/command"},
            },
        ],
    }
    return parse_graph(yaml.safe_dump(doc, sort_keys=False), "<franka-test>")


def repeat(entry, n=4):
    return [entry] * n


# ---- conventions ------------------------------------------------------------------------------------


def test_quaternion_helpers_round_trip_and_sign():
    q = np.array([0.3, -0.5, 0.2, 0.7])
    q = q / np.linalg.norm(q)
    xyzw = drv.quat_xyzw_from_wxyz(q)
    np.testing.assert_allclose(xyzw, [q[1], q[2], q[3], q[0]])
    np.testing.assert_allclose(drv.quat_wxyz_from_xyzw(xyzw), q)
    # The same rotation with w < 0 comes back with w >= 0 (contracts.md), and unit length.
    np.testing.assert_allclose(drv.quat_wxyz_from_xyzw(-2 * xyzw), q)
    with pytest.raises(ValueError):
        drv.quat_xyzw_from_wxyz([0, 0, 0, 0])


def test_pose_conversion_matches_real_franky_affine():
    franky = pytest.importorskip("franky")  # the real SDK: Affine works without a robot
    q = np.array([0.9, 0.1, -0.3, 0.2])
    q /= np.linalg.norm(q)
    pose = np.concatenate([[0.5, -0.1, 0.3], q])
    affine = drv.affine_from_pose(franky, pose)
    m = np.asarray(affine.matrix)
    np.testing.assert_allclose(m[:3, 3], pose[:3])
    np.testing.assert_allclose(m[:3, :3], rotmat_wxyz(q), atol=1e-12)  # franky read our wxyz correctly
    np.testing.assert_allclose(drv.pose_from_affine(affine), pose, atol=1e-12)
    # An Affine built by franky itself from a matrix comes back as the same wxyz.
    back = drv.pose_from_affine(franky.Affine(m))
    np.testing.assert_allclose(back, pose, atol=1e-12)


# ---- arm --------------------------------------------------------------------------------------------


def down_yaw_wxyz(a: float) -> list[float]:
    """The flange pointing down (180 deg about x), then yawed by a about the base z axis."""
    c, s = np.cos(a / 2), np.sin(a / 2)
    return [0.0, float(c), float(s), 0.0]  # yaw(a) * [0, 1, 0, 0]


def test_arm_publishes_state_and_applies_converted_targets(monkeypatch):
    franky = install(monkeypatch, "franky")
    yaw = 0.2
    t1 = [0.42, 0.02, 0.38] + down_yaw_wxyz(yaw)  # within one step of the start pose
    t2 = [1.50, 0.00, -0.20] + [-c for c in down_yaw_wxyz(yaw)]  # outside the box, and w <= 0
    graph = arm_graph(
        repeat({"ee_target": {"ee_pose": t1}}) + repeat({"ee_target": {"ee_pose": t2}}),
        {"dynamics_factor": [0.1, 0.2, 0.3], "torque_threshold": 15.0, "force_threshold": 25.0},
    )
    result, sched = run_graph(graph, duration_s=10)
    assert result.ok, result
    robot = franky.Robot._instances[0]
    assert robot.fci_hostname == HOST
    assert robot._recovered == 1
    rdf = robot.relative_dynamics_factor
    assert (rdf.velocity, rdf.acceleration, rdf.jerk) == (0.1, 0.2, 0.3)
    assert robot._collision == (15.0, 25.0)

    motions = [m for m in robot._moves if isinstance(m, franky.CartesianMotion)]
    assert all(not m.return_when_finished and m.reference_type is franky.ReferenceType.Absolute for m in motions)
    a1 = motions[0].target.pose.end_effector_pose
    np.testing.assert_allclose(a1.translation, t1[:3])
    want_xyzw = [t1[4], t1[5], t1[6], t1[3]]
    np.testing.assert_allclose(a1.quaternion, want_xyzw, atol=1e-12)
    # t2 is approached a step at a time, toward its box-clamped position [0.8, 0, 0.01], never outside.
    later = [m.target.pose.end_effector_pose for m in motions[1:]]
    assert len(later) >= 2
    for aff in later:
        assert np.all(aff.translation >= [0.2, -0.5, 0.01]) and np.all(aff.translation <= [0.8, 0.5, 0.6])
        assert abs(np.dot(aff.quaternion, want_xyzw)) == pytest.approx(1.0)  # the same rotation
    steps = np.diff([aff.translation for aff in later], axis=0)
    assert np.all(steps @ np.array([0.4, 0.0, -0.39]) >= -1e-9)  # always toward the clamped t2

    sink = sched.nodes["sink"]
    states = sink.messages["state"]
    assert len(states) > 10
    last = states[-1]
    for key in ("joint_pos", "joint_vel", "ee_pose"):
        assert last[key].dtype == np.float64 and last[key].shape == ((7,))
    assert all(m["ee_pose"][3] >= 0 for m in states)
    cmds = sink.messages["command"]
    assert cmds and all(c["mode"] == "ee" for c in cmds)
    rep = sched.reports["arm"]
    assert rep["targets"] >= 3 and rep["unchanged"] >= 1
    assert rep["safety"]["clamped"] >= 1 and rep["safety"]["step_limited"] >= 1 and rep["safety"]["rejected"] == 0

    # Shutdown: the arm was stopped first (robot.stop()); nothing left in control.
    assert robot._stop_calls == 1 and not robot.is_in_control


def test_arm_joint_targets_clamped_checked_by_fk_and_mode_switch_stops_first(monkeypatch):
    franky = install(monkeypatch, "franky")
    q1 = [0.1, -0.5, 0.0, -2.0, 0.0, 1.6, 0.7]  # EE at [0.405, 0.041, 0.559], pointing down
    q_high = [0.1, -0.5, 0.0, -2.0, 0.0, 1.6, 3.5]  # joint 7 beyond its limit: clamped
    q_bad = [0.1, -0.5, 0.0, 0.5, 0.0, 1.6, 0.7]  # joint 4 clamped, then the arm points up out of the box
    ee = [0.4, 0.0, 0.35] + down_yaw_wxyz(0.0)
    steps = (
        repeat({"joint_target": {"joint_pos": q1}}, 10)
        + repeat({"joint_target": {"joint_pos": q_high}})
        + repeat({"joint_target": {"joint_pos": q_bad}})
        + repeat({"ee_target": {"ee_pose": ee}})
    )
    result, sched = run_graph(arm_graph(steps, {"home_on_start": True, "dynamics_factor": 1.0}), duration_s=10)
    assert result.ok, result
    robot = franky.Robot._instances[0]
    kinds = [type(m).__name__ for m in robot._moves]
    np.testing.assert_allclose(robot._moves[0].target.position, drv.READY_JOINTS)  # homing (blocking)
    first_cart = kinds.index("CartesianMotion")
    assert kinds[first_cart - 1] == "JointStopMotion" and set(kinds[1 : first_cart - 1]) == {"JointMotion"}, kinds
    lo, hi = drv.JOINT_LIMITS["panda"]
    for m in robot._moves[1 : first_cart - 1]:
        q = m.target.position
        assert np.all(q >= lo + drv.JOINT_LIMIT_MARGIN - 1e-12) and np.all(q <= hi - drv.JOINT_LIMIT_MARGIN + 1e-12)
    assert max(m.target.position[6] for m in robot._moves[1 : first_cart - 1]) > 0.8  # on its way to clamped q_high
    rep = sched.reports["arm"]
    assert rep["mode_switches"] == 1
    assert rep["safety"]["clamped"] >= 1 and rep["safety"]["rejected_by"] == {"workspace": 4}
    cmds = sched.nodes["sink"].messages["command"]
    assert {c["mode"] for c in cmds} == {"joints", "ee"}


def test_arm_impedance_updates_one_tracking_motion(monkeypatch):
    franky = install(monkeypatch, "franky")
    t1 = [0.42, 0.02, 0.38] + down_yaw_wxyz(0.0)
    t2 = [0.45, 0.03, 0.36] + down_yaw_wxyz(0.2)
    steps = repeat({"ee_target": {"ee_pose": t1}}) + repeat({"ee_target": {"ee_pose": t2}})
    graph = arm_graph(steps, {"control": "impedance", "translational_stiffness": 800.0, "dynamics_factor": 1.0})
    result, sched = run_graph(graph, duration_s=10)
    assert result.ok, result
    robot = franky.Robot._instances[0]
    kinds = [type(m).__name__ for m in robot._moves]
    assert kinds == ["CartesianImpedanceTrackingMotion"], kinds  # one motion, its reference updated in place
    motion = robot._moves[0]
    assert motion._stiffness == (800.0, 50.0)
    ref = motion.get_reference().target
    np.testing.assert_allclose(ref.translation, t2[:3])
    np.testing.assert_allclose(ref.quaternion, [t2[4], t2[5], t2[6], t2[3]], atol=1e-12)
    states = sched.nodes["sink"].messages["state"]
    np.testing.assert_allclose(states[-1]["ee_pose"], t2, atol=1e-9)  # the arm got there, in time


def test_reflex_stops_graph_naming_the_arm(monkeypatch):
    franky = install(monkeypatch, "franky")
    franky.Robot._reflex_after_moves = 2
    ee = [[0.4, 0.0, 0.38, 0, 1, 0, 0], [0.42, 0.0, 0.38, 0, 1, 0, 0], [0.44, 0.0, 0.38, 0, 1, 0, 0]]
    steps = [s for e in ee for s in repeat({"ee_target": {"ee_pose": e}})]
    result, sched = run_graph(arm_graph(steps, hold=50), duration_s=10)
    assert not result.ok
    assert result.failed_node == "arm"
    assert "reflex" in result.error and "ControlException" in result.error
    robot = franky.Robot._instances[0]
    assert not robot.is_in_control  # no motion left running after teardown
    assert robot.has_errors


def test_auto_recover_clears_a_reflex_and_goes_on(monkeypatch):
    franky = install(monkeypatch, "franky")
    franky.Robot._reflex_after_moves = 2
    ee = [[0.4, 0.0, 0.38, 0, 1, 0, 0], [0.42, 0.0, 0.38, 0, 1, 0, 0], [0.44, 0.0, 0.38, 0, 1, 0, 0]]
    steps = [s for e in ee for s in repeat({"ee_target": {"ee_pose": e}})]
    result, sched = run_graph(arm_graph(steps, {"auto_recover": True}), duration_s=10)
    assert result.ok, result
    robot = franky.Robot._instances[0]
    assert sched.reports["arm"]["recoveries"] == 1
    assert robot._recovered == 2  # on start, and after the reflex
    franky.Robot._reflex_after_moves = None


def test_invalid_targets_are_rejected_and_counted_never_sent(monkeypatch):
    franky = install(monkeypatch, "franky")
    steps = (
        repeat({"ee_target": {"ee_pose": [0.4, 0.0, float("nan"), 0, 1, 0, 0]}})
        + repeat({"ee_target": {"ee_pose": [0.4, 0.0, 0.3, float("inf"), 1, 0, 0]}})
        + repeat({"ee_target": {"ee_pose": [0.4, 0.0, 0.3]}})
        + repeat({"joint_target": {"joint_pos": [0.0] * 6}})
    )
    result, sched = run_graph(arm_graph(steps, hold=0), duration_s=10)
    assert result.ok, result  # rejected, not fatal: the arm holds
    robot = franky.Robot._instances[0]
    assert not [m for m in robot._moves if not type(m).__name__.endswith("StopMotion")]
    safety = sched.reports["arm"]["safety"]
    assert safety["rejected"] == safety["commands"] == 16
    assert safety["rejected_by"] == {"non_finite": 8, "shape": 8}


def test_connection_failure_is_actionable(monkeypatch):
    franky = install(monkeypatch, "franky")
    franky.Robot._refuse_connection = True
    result, _ = run_graph(arm_graph(repeat({"ee_target": {"ee_pose": [0.4, 0, 0.3, 1, 0, 0, 0]}})), duration_s=5)
    assert not result.ok and result.failed_node == "arm"
    assert HOST in result.error and "FCI" in result.error


@pytest.mark.parametrize("node_type", ["franka.arm", "franka.gripper"])
def test_missing_franky_gives_one_line_error(monkeypatch, node_type):
    monkeypatch.setitem(sys.modules, "franky", None)  # `import franky` raises ImportError
    doc = {"nodes": [{"name": "dev", "type": node_type, "rate": 10, "params": {"host": HOST}}]}
    result, _ = run_graph(parse_graph(json.dumps(doc)), duration_s=5)
    assert not result.ok and result.failed_node == "dev"
    assert "pip install franky-control" in result.error and "\n" not in result.error


def test_bad_params_are_refused_before_start():
    from robotflow.runtime.graph import GraphError

    doc = {
        "nodes": [{"name": "arm", "type": "franka.arm", "rate": 10, "params": {"host": HOST, "dynamics_factor": 1.5}}]
    }
    with pytest.raises(GraphError, match="dynamics_factor"):
        parse_graph(json.dumps(doc))
    doc["nodes"][0]["params"] = {"dynamics_factor": 0.1}
    with pytest.raises(GraphError, match="missing required param 'host'"):
        parse_graph(json.dumps(doc))


# ---- gripper ----------------------------------------------------------------------------------------


def gripper_graph(widths, params=None, hold=5):
    steps = [{"grip": {"width": w}} for w in widths]
    doc = {
        "clock": "wall",
        "nodes": [
            {
                "name": "gripper",
                "type": "franka.gripper",
                "rate": 100,
                "params": {"host": HOST, **(params or {})},
                "inputs": {"target": "script/grip"},
            },
            {"name": "script", "type": "testdrv.script", "rate": 20, "params": {"steps": steps, "hold": hold}},
            {
                "name": "sink",
                "type": "testdrv.collect",
                "rate": 50,
                "inputs": {"state": "gripper/state", "command": "gripper/command"},
            },
        ],
    }
    return parse_graph(yaml.safe_dump(doc, sort_keys=False), "<gripper-test>")


def test_gripper_binary_hysteresis_and_normalisation(monkeypatch):
    franky = install(monkeypatch, "franky")
    widths = [1.0] * 3 + [0.45] * 3 + [0.1] * 3 + [0.2, 0.5, 0.3] + [0.9] * 3
    result, sched = run_graph(gripper_graph(widths, {"speed": 0.05, "force": 30.0}), duration_s=10)
    assert result.ok, result
    g = franky.Gripper._instances[0]
    assert [c[0] for c in g._commands] == ["open", "grasp", "open"], g._commands
    grasp = g._commands[1]
    assert grasp[1:4] == (0.0, 0.05, 30.0) and grasp[5] == pytest.approx(0.08)  # any object size
    states = sched.nodes["sink"].messages["state"]
    ws = [m["width"] for m in states]
    assert all(0.0 <= w <= 1.0 for w in ws)
    assert any(w == pytest.approx(0.03 / 0.08) for w in ws)  # holding the 3 cm cube
    assert ws[-1] == pytest.approx(1.0)
    cmds = [m["width"] for m in sched.nodes["sink"].messages["command"]]
    assert cmds[0] == 1.0 and 0.0 in cmds and cmds[-1] == 1.0


def test_gripper_continuous_deadband(monkeypatch):
    franky = install(monkeypatch, "franky")
    widths = [0.5] * 3 + [0.52] * 3 + [0.7] * 3 + [1.4] * 3
    result, _ = run_graph(gripper_graph(widths, {"binary": False, "deadband": 0.05}), duration_s=10)
    assert result.ok, result
    g = franky.Gripper._instances[0]
    moves = [c for c in g._commands if c[0] == "move"]
    assert [round(c[1], 6) for c in moves] == [0.04, 0.056, 0.08], g._commands  # metres; 1.4 clipped to 1


def test_gripper_waits_for_running_command_instead_of_queueing(monkeypatch):
    franky = install(monkeypatch, "franky")
    franky.Gripper._hold_commands = True
    node = drv.FrankaGripperNode("gripper", drv.FrankaGripperParams(host=HOST))
    node.setup()
    node._issue(node._decide(0.0))
    assert node._decide(1.0) == ("open", 1.0)
    assert node._check_future() is False  # the grasp is still running
    franky.Gripper._instances[0]._finish()
    assert node._check_future() is True
    assert node._decide(0.9) is None and node._decide(0.5) is None  # hysteresis band: no new command
    node.teardown()
