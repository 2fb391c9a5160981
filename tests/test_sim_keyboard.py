"""Keyboard teleop key -> command mapping, without a terminal."""

import numpy as np

from robotflow.drivers.teleop_keyboard import HELP, KEYMAP, KeyboardTeleop
from robotflow.geometry import rotation_angle

HOME = np.array([0.55, 0.0, 0.48, 0.0, 0.70710678, 0.70710678, 0.0])


def test_moves_and_yaw():
    kb = KeyboardTeleop(step_m=0.01, yaw_step_rad=np.radians(5))
    assert kb.press("w") is None and not kb.ready  # no pose yet: movement keys wait for the arm state
    kb.init_from(HOME)
    assert np.allclose(kb.target(), HOME)
    for k in "wwaarf":
        kb.press(k)
    assert np.allclose(kb.target()[:3], HOME[:3] + [0.02, 0.02, 0.0])
    kb.press("s")
    kb.press("d")
    kb.press("f")
    assert np.allclose(kb.target()[:3], HOME[:3] + [0.01, 0.01, -0.01])
    kb.press("q")
    kb.press("q")
    assert np.isclose(np.degrees(rotation_angle(kb.target()[3:], HOME[3:])), 10.0)
    kb.press("e")
    assert np.isclose(np.degrees(rotation_angle(kb.target()[3:], HOME[3:])), 5.0)
    assert kb.target()[3] >= 0  # w >= 0 convention


def test_gripper_and_episode_keys():
    kb = KeyboardTeleop()
    assert kb.grip == 1.0
    kb.press("c")
    assert kb.grip == 0.0
    kb.press(" ")
    assert kb.grip == 1.0
    kb.press(" ")
    assert kb.grip == 0.0
    kb.press("o")
    assert kb.grip == 1.0
    assert kb.press("m") is None  # nothing to stop yet
    assert kb.press("n") == "start"
    assert kb.press("n") is None
    assert kb.press("m") == "stop"
    assert kb.press("n") == "start"
    assert kb.press("x") == "discard"
    assert kb.press("?") is None


def test_workspace_clamp_and_help():
    kb = KeyboardTeleop(step_m=0.1)
    kb.init_from(HOME)
    for _ in range(20):
        kb.press("f")
    assert kb.target()[2] >= 0.01  # never into the table
    assert all(k.strip() == "" or k in HELP for k in KEYMAP)


def test_keyboard_node_in_a_graph_without_a_terminal():
    """Without a TTY the node reads no keys, starts from the arm's pose and holds it (a delayed cycle)."""
    import robotflow.drivers.sim.nodes  # noqa: F401
    import robotflow.drivers.teleop_keyboard  # noqa: F401
    from robotflow.drivers.sim.scene import HOME_QPOS
    from robotflow.runtime.graph import parse_graph
    from robotflow.runtime.scheduler import run_graph

    text = """
nodes:
  - {name: world, type: sim.world, rate: 500, params: {task: pick_place}}
  - {name: arm, type: sim.arm, rate: 100, inputs: {ee_target: teleop/ee_target}}
  - {name: gripper, type: sim.gripper, rate: 100, inputs: {target: teleop/grip}}
  - {name: teleop, type: teleop.keyboard, rate: 50, inputs: {state: arm/state}}
  - {name: sink, type: test.sink, rate: 50, inputs: {t: teleop/ee_target, g: teleop/grip}}
"""
    result, sched = run_graph(parse_graph(text), duration_s=0.4)
    assert result.ok, result
    sink = sched.nodes["sink"]
    assert sink.received["t"] > 10
    target = np.asarray(sink.last["t"]["ee_pose"])
    sim = sched.nodes["world"].sim
    assert np.linalg.norm(target[:3] - sim.ee_pose()[:3]) < 1e-3
    assert np.max(np.abs(sim.arm_qpos() - HOME_QPOS)) < 2e-3
    assert float(sink.last["g"]["width"]) == 1.0


def test_t_toggles_the_takeover_from_the_policy_without_a_jump_and_b_fails(monkeypatch):
    """With an arbiter's `control`: until `t` the target and grip follow the policy; `t` takes over from its
    last command (the keys move on from there), `t` again hands back; `b` ends the episode labelled failure."""
    from teleop_takeover import COMMAND_B, check_failure, check_takeover, nodes_yaml

    from robotflow.drivers.teleop_keyboard import KeyboardTeleopNode
    from robotflow.runtime.graph import parse_graph
    from robotflow.runtime.scheduler import run_graph

    pending = [(0.1, "n"), (0.4, "w"), (0.6, "t"), (0.7, "ww"), (1.0, "t"), (1.2, "b")]  # seconds, keys

    def typed(node) -> str:  # the keys typed by now, in place of the terminal
        node.t0 = getattr(node, "t0", node.now_ns())
        keys = ""
        while pending and pending[0][0] <= (node.now_ns() - node.t0) * 1e-9:
            keys += pending.pop(0)[1]
        return keys

    monkeypatch.setattr(KeyboardTeleopNode, "_read_keys", typed)
    result, sched = run_graph(parse_graph("nodes:\n" + nodes_yaml("teleop.keyboard")), duration_s=1.5)
    assert result.ok, result
    log = sched.nodes["log"].messages
    engaged = check_takeover(log)  # the `w` at 0.4 s, while the policy drove, moved nothing
    assert np.allclose(engaged[-1][:3] - COMMAND_B[:3], [0.02, 0, 0])
    assert not log["takeover"][-1]["active"] and np.allclose(log["t"][-1]["ee_pose"], COMMAND_B)  # handed back
    check_failure(log)
