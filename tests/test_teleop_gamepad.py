"""teleop.gamepad on the fake pygame (checked against the installed pygame): a scripted hand drives the
simulated arm with the sticks, presses grip and episode buttons, unplugs the pad (the arm holds), plugs it back."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field

import numpy as np
from fakes import install, load

from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Node, register
from robotflow.runtime.scheduler import run_graph

NAMESPACES = ("display", "event", "joystick")


def doc_params(func) -> list[list[str]]:
    """Parameter names of each signature line pygame's C functions document (`get(eventtype=None) -> ...`)."""
    out = []
    for line in (func.__doc__ or "").splitlines():
        m = re.match(r"^\s*\w+\((.*)\)\s*->", line)
        if m:
            out.append([p.split("=")[0].strip() for p in m.group(1).split(",") if p.strip()])
    return out


def fake_params(func) -> list[str]:
    import inspect

    return [p for p in inspect.signature(func).parameters if p != "self"]


def test_fake_follows_the_installed_pygame():
    import os
    import warnings

    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import pygame as real

    fake = load("pygame")
    assert fake.JOYDEVICEADDED == real.JOYDEVICEADDED and fake.JOYDEVICEREMOVED == real.JOYDEVICEREMOVED
    assert issubclass(real.error, RuntimeError) and issubclass(fake.error, RuntimeError)
    checked = 0
    for ns in NAMESPACES:
        for name, func in vars(getattr(fake, ns)).items():
            if name.startswith("_") or name == "JoystickType":
                continue
            real_func = getattr(getattr(real, ns), name)  # exists in the real module
            assert fake_params(func.__func__ if hasattr(func, "__func__") else func) in doc_params(real_func), (
                ns,
                name,
            )
            checked += 1
    for name, func in vars(fake._JoystickType).items():
        if name.startswith("_"):
            continue
        assert fake_params(func) in doc_params(getattr(real.joystick.JoystickType, name)), name
        checked += 1
    assert checked >= 14
    assert doc_params(real.joystick.JoystickType.get_axis) == [["axis_number"]]  # the parser reads real docs


@dataclass
class HandParams:
    # Each entry: {"t": [t0, t1], and one of: "axes": {index: value} (held in [t0, t1), then centred),
    # "buttons": [index, ...] (held in [t0, t1)), "unplug": true, "plug": true}.
    script: list = field(default_factory=list)


@register("testteleop.gamepad_hand")
class Hand(Node):
    """A person at the pad, on the graph's clock: sets the fake pad's sticks and buttons from a script."""

    Params = HandParams

    def setup(self) -> None:
        self.fake = sys.modules["pygame"]
        self.done: set[int] = set()
        self.released: set[int] = set()

    def pad(self):
        return self.fake._PADS[0] if self.fake._PADS else None

    def step(self) -> None:
        if not hasattr(self, "t0"):
            self.t0 = self.now_ns() * 1e-9  # script times are from the first tick (wall clocks start anywhere)
        now = self.now_ns() * 1e-9 - self.t0
        for i, e in enumerate(self.params.script):
            t0, t1 = e["t"]
            if now < t0 or i in self.released:
                continue
            pad = self.pad()
            if "unplug" in e:
                if pad is not None:
                    self.fake._unplug(pad)
                self.released.add(i)
            elif "plug" in e:
                self.fake._plug()
                self.released.add(i)
            elif pad is None:
                continue
            elif now < t1:
                for k, v in e.get("axes", {}).items():
                    pad.axes[int(k)] = float(v)
                for b in e.get("buttons", []):
                    pad.buttons[b] = 1
            else:
                for k in e.get("axes", {}):
                    pad.axes[int(k)] = 0.0
                for b in e.get("buttons", []):
                    pad.buttons[b] = 0
                self.released.add(i)


GRAPH = """
nodes:
  - {name: world, type: sim.world, rate: 500, params: {task: pick_place, visual_cell: 0}}
  - {name: arm, type: sim.arm, rate: 100, inputs: {ee_target: teleop/ee_target}}
  - {name: gripper, type: sim.gripper, rate: 100, inputs: {target: teleop/grip}}
  - name: task
    type: sim.task
    rate: 50
    params: {task: pick_place, episodes: 5, timeout_s: 30}
    inputs: {control: teleop/episode}
  - {name: hand, type: testteleop.gamepad_hand, rate: 100, params: {script: SCRIPT}}
  - name: teleop
    type: teleop.gamepad
    rate: 100
    params: {max_speed: 0.1, max_yaw_speed_deg: 45, deadband: 0.1}
    inputs: {state: arm/state, task_episode: task/episode}
  - name: log
    type: testdrv.collect
    rate: 100
    inputs:
      t: {source: teleop/ee_target, delivery: queue}
      g: {source: teleop/grip, delivery: queue}
      e: {source: teleop/episode, delivery: queue}
      arm: {source: arm/state, delivery: queue}
"""


def run(monkeypatch, script, duration_s, plugged=True):
    fake = install(monkeypatch, "pygame")
    if plugged:
        fake._plug()
    return fake, run_graph(parse_graph(GRAPH.replace("SCRIPT", json.dumps(script))), duration_s=duration_s)


def test_scripted_motion_buttons_and_unplug_on_the_sim_arm(monkeypatch, capsys):
    script = [
        {"t": [0.3, 1.3], "axes": {"1": -1.0}},  # left stick pushed away: +x at 0.1 m/s for 1 s
        {"t": [1.4, 1.9], "axes": {"4": -0.55}},  # right stick half away: +z, (0.55-0.1)/0.9 * 0.1 * 0.5 s
        {"t": [1.4, 1.9], "axes": {"3": -1.0}},  # right stick left: yaw left 45 deg/s for 0.5 s
        {"t": [2.0, 2.1], "buttons": [0]},  # A: close the gripper
        {"t": [2.2, 2.3], "axes": {"0": -1.0}, "buttons": [4]},  # left, in precision mode (0.25x)
        {"t": [2.6, 2.7], "buttons": [6]},  # Back: stop the episode (keep)
        {"t": [3.5, 3.5], "unplug": True},
        {"t": [4.2, 4.2], "plug": True},
        {"t": [4.5, 4.6], "buttons": [3]},  # Y: discard
    ]
    fake, (result, sched) = run(monkeypatch, script, 5.0)
    assert result.ok, result
    assert "button 7" in capsys.readouterr().err  # the button map is shown at start
    log, task = sched.nodes["log"].messages, sched.nodes["task"]
    targets = [(m.timestamp_ns * 1e-9, np.asarray(m["ee_pose"])) for m in log["t"]]
    arm = [(m.timestamp_ns * 1e-9, np.asarray(m["ee_pose"])) for m in log["arm"]]
    start = targets[0][1]

    def at(series, t):
        return [p for ts, p in series if ts <= t][-1]

    from robotflow.geometry import rotation_angle

    assert np.allclose(at(targets, 1.35)[:3] - start[:3], [0.1, 0, 0], atol=0.002)
    assert np.allclose(at(targets, 1.95)[:3] - start[:3], [0.1, 0, 0.025], atol=0.002)
    assert np.isclose(np.degrees(rotation_angle(at(targets, 1.95)[3:], start[3:])), 22.5, atol=0.6)
    assert np.allclose(at(targets, 2.35)[:3] - at(targets, 2.15)[:3], [0, 0.1 * 0.25 * 0.1, 0], atol=0.001)
    assert np.linalg.norm(at(arm, 2.2)[:3] - at(targets, 1.95)[:3]) < 0.01  # the sim arm followed
    assert float(log["g"][0]["width"]) == 1.0 and float(log["g"][-1]["width"]) == 0.0
    ends = [(m["index"], m["outcome"]) for m in log["e"] if m["event"] == "end"]
    assert ends == [(0, "success"), (1, "discarded")]
    assert [(r["index"], r["outcome"]) for r in task.results] == [(0, "aborted"), (1, "discarded")]
    # Unplugged at 3.5 s: no targets until SDL reports it back, the arm holds, the target does not jump.
    assert [ts for ts, _ in targets if 3.52 < ts < 4.2] == []
    held = np.array([p[:3] for ts, p in arm if 3.6 < ts < 4.2])
    assert np.ptp(held, axis=0).max() < 0.002
    resumed = [(ts, p) for ts, p in targets if ts >= 4.2]
    assert resumed and resumed[0][0] < 4.25 and np.allclose(resumed[0][1], at(targets, 3.5))
    assert sched.nodes["teleop"].report() == {"lost": 1}


def test_missing_pad_names_the_fix(monkeypatch):
    _, (result, _) = run(monkeypatch, [], 0.3, plugged=False)
    assert not result.ok and result.failed_node == "teleop"
    assert "no gamepad found" in result.error and "input" in result.error and "\n" not in result.error


def test_real_pygame_headless_without_a_pad():
    """Real pygame/SDL with the dummy video driver: no pad on this machine -> the one-line fix, no window."""
    text = """
nodes:
  - {name: world, type: sim.world, rate: 500, params: {task: pick_place, visual_cell: 0}}
  - {name: arm, type: sim.arm, rate: 100, inputs: {ee_target: teleop/ee_target}}
  - {name: teleop, type: teleop.gamepad, rate: 100, inputs: {state: arm/state}}
"""
    result, _ = run_graph(parse_graph(text), duration_s=0.2)
    assert not result.ok and result.failed_node == "teleop" and "no gamepad found" in result.error, result


def test_sim_graph_file_runs_with_the_gamepad(monkeypatch):
    from fakes import FAKES_DIR

    from robotflow.runtime.graph import load_graph

    fake = install(monkeypatch, "pygame")
    fake._plug()
    sets = ["world.realtime=false", "world.visual_cell=0", "wrist_camera.width=64", "wrist_camera.height=48"]
    sets += ["front_camera.width=64", "front_camera.height=48"]
    spec = load_graph(FAKES_DIR.parents[1] / "graphs" / "sim_stack_cubes_gamepad.yaml", sets)
    result, sched = run_graph(spec, duration_s=0.5)
    assert result.ok, result
    assert result.stats["channels"]["teleop/ee_target"]["sent"] > 20


def test_gamepad_on_the_franka_graph(monkeypatch, tmp_path):
    """graphs/franka_stack_cubes.yaml with its keyboard swapped for the gamepad, on the franky fake."""
    import yaml
    from fakes import FAKES_DIR

    from robotflow.runtime.graph import load_graph

    franky = install(monkeypatch, "franky")
    install(monkeypatch, "pyrealsense2")
    install(monkeypatch, "pygame")._plug()
    doc = yaml.safe_load((FAKES_DIR.parents[1] / "graphs" / "franka_stack_cubes.yaml").read_text())
    doc["nodes"] = [n for n in doc["nodes"] if n["name"] != "teleop"] + [
        {
            "name": "hand",
            "type": "testteleop.gamepad_hand",
            "rate": 100,
            "params": {"script": [{"t": [0.2, 0.7], "axes": {"4": -1.0}}]},
        },
        {
            "name": "teleop",
            "type": "teleop.gamepad",
            "rate": 100,
            "params": {"max_speed": 0.1},
            "inputs": {"state": "arm/state"},
        },
    ]
    path = tmp_path / "franka_stack_cubes_gamepad.yaml"
    path.write_text(yaml.safe_dump(doc))
    sets = ["wrist_camera.serial=111111111111", "front_camera.serial=222222222222"]
    sets += [f"{c}.{k}={v}" for c in ("wrist_camera", "front_camera") for k, v in (("width", 64), ("height", 48))]
    result, sched = run_graph(load_graph(path, sets), duration_s=1.5)
    assert result.ok, result
    cart = [m for m in franky.Robot._instances[0]._moves if isinstance(m, franky.CartesianMotion)]
    zs = np.array([m.target.pose.end_effector_pose.translation[2] for m in cart])
    assert np.isclose(zs[0], 0.4)  # starts where the arm is
    assert 0.03 < zs.max() - zs[0] < 0.07  # right stick up for 0.5 s at 0.1 m/s (wall-clock ticks: loose)


def test_rb_takes_over_from_the_policy_without_a_jump_and_x_fails_the_episode(monkeypatch):
    """With an arbiter's `control`: released, the target follows the policy (the stick is ignored); RB held
    takes over from the policy's last command; X ends the episode labelled failure."""
    from teleop_takeover import COMMAND_B, check_failure, check_takeover, nodes_yaml

    script = [
        {"t": [0.1, 0.2], "buttons": [7]},  # Start
        {"t": [0.35, 0.5], "axes": {"1": -1.0}},  # the stick while the policy drives: ignored
        {"t": [0.6, 1.1], "buttons": [5]},  # RB held: take over ...
        {"t": [0.7, 0.9], "axes": {"1": -1.0}},  # ... and drive +x at 0.1 m/s for 0.2 s
        {"t": [1.2, 1.3], "buttons": [2]},  # X: fail
    ]
    hand = f"  - {{name: hand, type: testteleop.gamepad_hand, rate: 100, params: {{script: {json.dumps(script)}}}}}\n"
    install(monkeypatch, "pygame")._plug()
    graph = "nodes:\n" + hand + nodes_yaml("teleop.gamepad", "{max_speed: 0.1, deadband: 0.1}")
    result, sched = run_graph(parse_graph(graph), duration_s=1.5)
    assert result.ok, result
    log = sched.nodes["log"].messages
    engaged = check_takeover(log)
    assert np.allclose(engaged[-1][:3] - COMMAND_B[:3], [0.02, 0, 0], atol=0.002)
    assert not log["takeover"][-1]["active"] and np.allclose(log["t"][-1]["ee_pose"], COMMAND_B)  # handed back
    check_failure(log)


def test_two_actions_on_one_button_is_a_param_error():
    import pytest

    from robotflow.drivers.teleop_gamepad import GamepadParams
    from robotflow.runtime.params import ParamError

    with pytest.raises(ParamError, match="'button_takeover' is button 4, which `button_slow` already uses"):
        GamepadParams(button_takeover=4)
