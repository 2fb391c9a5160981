"""teleop.spacemouse on the fake pyspacemouse (checked against the installed one): a scripted hand drives the
simulated arm, presses the grip and episode buttons, unplugs the puck (the arm holds) and plugs it back."""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field, fields

import numpy as np
from fakes import install, load

from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Node, register
from robotflow.runtime.scheduler import run_graph


def test_fake_follows_the_installed_pyspacemouse():
    import pyspacemouse as real

    fake = load("pyspacemouse")
    for name in (
        "open",
        "get_connected_devices",
        "SpaceMouseDevice",
        "SpaceMouseState",
        "AxisConvention",
        "ButtonState",
    ):
        assert hasattr(real, name), name
        assert isinstance(getattr(fake, name), type) == isinstance(getattr(real, name), type), name
    # The node calls open() by keyword: the fake takes exactly the real parameters, in the real order.
    real_params = [(p.name, p.default) for p in inspect.signature(real.open).parameters.values()]
    fake_params = [(p.name, p.default) for p in inspect.signature(fake.open).parameters.values()]
    assert fake_params == real_params
    assert [f.name for f in fields(fake.SpaceMouseState)] == [f.name for f in fields(real.SpaceMouseState)]
    assert {m.name for m in fake.AxisConvention} == {m.name for m in real.AxisConvention}
    for member in ("read", "close", "open", "name", "connected"):
        assert hasattr(real.SpaceMouseDevice, member), member
        assert isinstance(inspect.getattr_static(fake.SpaceMouseDevice, member), property) == isinstance(
            inspect.getattr_static(real.SpaceMouseDevice, member), property
        ), member
    # Like the real device, a read without a new report keeps the state's timestamp.
    puck = fake._plug()
    dev = fake.open(device=None, nonblocking=True, axis_convention=fake.AxisConvention.HID_Z_UP)
    t0 = dev.read().t
    assert dev.read().t == t0
    fake._report(x=0.5)
    s = dev.read()
    assert s.t != t0 and s.x == 0.5
    assert puck._opened == 1


@dataclass
class HandParams:
    # Each entry: {"t": [t0, t1], and one of: "axes": {x, y, z, roll, pitch, yaw} (reported every tick in
    # [t0, t1), then a rest report), "buttons": [..] (pressed in [t0, t1)), "unplug": true, "plug": true}.
    script: list = field(default_factory=list)


@register("testteleop.spacemouse_hand")
class Hand(Node):
    """A person at the puck, on the graph's clock: drives the fake pyspacemouse from a script."""

    Params = HandParams

    def setup(self) -> None:
        self.fake = sys.modules["pyspacemouse"]
        self.done: set[int] = set()
        self.released: set[int] = set()

    def step(self) -> None:
        if not hasattr(self, "t0"):
            self.t0 = self.now_ns() * 1e-9  # script times are from the first tick (wall clocks start anywhere)
        now = self.now_ns() * 1e-9 - self.t0
        for i, e in enumerate(self.params.script):
            t0, t1 = e["t"]
            if now < t0:
                continue
            if "unplug" in e and i not in self.done:
                self.fake._unplug()
            elif "plug" in e and i not in self.done:
                self.fake._plug()
            elif "axes" in e and now < t1:
                self.fake._report(**e["axes"])
            elif "axes" in e and i not in self.released and not e.get("drop"):  # drop: the link dies, no rest report
                self.released.add(i)
                self.fake._report(x=0, y=0, z=0, roll=0, pitch=0, yaw=0)
            elif "buttons" in e and i not in self.done:
                self.fake._report(buttons=e["buttons"])
            elif "buttons" in e and now >= t1 and i not in self.released:
                self.released.add(i)
                self.fake._report(buttons=[0, 0])
            self.done.add(i)


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
  - {name: hand, type: testteleop.spacemouse_hand, rate: 100, params: {script: SCRIPT}}
  - name: teleop
    type: teleop.spacemouse
    rate: 100
    params: {max_speed: 0.1, max_rot_speed_deg: 0, deadband: 0.1}
    inputs: {state: arm/state, task_episode: task/episode}
  - name: log
    type: testdrv.collect
    rate: 100
    inputs:
      t: {source: teleop/ee_target, delivery: queue}
      g: {source: teleop/grip, delivery: queue}
      e: {source: teleop/episode, delivery: queue}
      task: {source: task/episode, delivery: queue}
      arm: {source: arm/state, delivery: queue}
"""


def run(monkeypatch, script, duration_s, plugged=True):
    import json

    fake = install(monkeypatch, "pyspacemouse")
    if plugged:
        fake._plug()
    return fake, run_graph(parse_graph(GRAPH.replace("SCRIPT", json.dumps(script))), duration_s=duration_s)


def test_scripted_motion_buttons_and_unplug_on_the_sim_arm(monkeypatch):
    script = [
        {"t": [0.3, 1.3], "axes": {"y": 1.0}},  # pushed away from the user: +x at 0.1 m/s for 1 s
        {"t": [1.4, 1.9], "axes": {"z": 0.55}},  # lifted halfway (past the deadband: 0.5): +z 0.025 m
        {"t": [2.2, 2.3], "buttons": [1, 0]},  # grip button: close
        {"t": [2.6, 2.7], "buttons": [0, 1]},  # short press of the episode button: stop (keep)
        {"t": [3.0, 3.4], "axes": {"x": -1.0}},  # slid left: +y for 0.4 s
        {"t": [3.5, 3.5], "unplug": True},
        {"t": [3.5, 3.9], "axes": {"y": 1.0}},  # pushing an unplugged puck moves nothing
        {"t": [4.2, 4.2], "plug": True},
        {"t": [5.5, 6.7], "buttons": [0, 1]},  # held 1.2 s: discard
    ]
    fake, (result, sched) = run(monkeypatch, script, 7.0)
    assert result.ok, result
    log, task = sched.nodes["log"].messages, sched.nodes["task"]
    targets = [(m.timestamp_ns * 1e-9, np.asarray(m["ee_pose"])) for m in log["t"]]
    start = targets[0][1]

    def target_at(t):
        return [p for ts, p in targets if ts <= t][-1]

    # 1 s of full forward, then lifted: the EE target integrated the velocities at the node rate.
    assert np.allclose(target_at(1.35)[:3] - start[:3], [0.1, 0, 0], atol=0.002)
    assert np.allclose(target_at(2.0)[:3] - start[:3], [0.1, 0, 0.025], atol=0.002)
    assert np.allclose(target_at(2.0)[3:], start[3:])  # rotation off: orientation kept
    arm = [(m.timestamp_ns * 1e-9, np.asarray(m["ee_pose"])) for m in log["arm"]]
    arm_at = lambda t: [p for ts, p in arm if ts <= t][-1]  # noqa: E731
    assert np.linalg.norm(arm_at(2.1)[:3] - target_at(2.0)[:3]) < 0.01  # the sim arm followed
    assert [float(m["width"]) for m in log["g"]][-1] == 0.0 and float(log["g"][0]["width"]) == 1.0
    # The episode button stopped episode 0; the task ended it and reset the robot for episode 1.
    ends = [m for m in log["e"] if m["event"] == "end"]
    assert [(m["index"], m["outcome"]) for m in ends] == [(0, "success"), (1, "discarded")]
    assert [(r["index"], r["outcome"]) for r in task.results] == [(0, "aborted"), (1, "discarded")]
    # After the reset the target restarts from the arm's home pose, then moves +y.
    after_reset = target_at(2.95)
    assert np.allclose(target_at(3.45)[:3] - after_reset[:3], [0, 0.04, 0], atol=0.002)
    # Unplugged at 3.5 s: no targets until it is back (retried every second), and the arm held still.
    gap = [ts for ts, _ in targets if 3.52 < ts < 4.2]
    assert gap == []
    held = np.array([p[:3] for ts, p in arm if 3.6 < ts < 4.2])
    assert np.ptp(held, axis=0).max() < 0.002
    resumed = [(ts, p) for ts, p in targets if ts >= 4.2]
    assert resumed and resumed[0][0] < 4.7
    assert np.allclose(resumed[0][1], target_at(3.5), atol=1e-9)  # continues where it was: no jump
    assert sched.nodes["teleop"].report() == {"lost": 1}


def test_stale_deflection_counts_as_rest(monkeypatch):
    """A wireless puck that drops out mid-push leaves its last report standing: it must not drive the arm."""
    fake, (result, sched) = run(monkeypatch, [{"t": [0.5, 0.51], "axes": {"y": 1.0}, "drop": True}], 2.0)
    assert result.ok, result
    targets = [np.asarray(m["ee_pose"]) for m in sched.nodes["log"].messages["t"]]
    moved = targets[-1][0] - targets[0][0]
    assert 0.0 < moved <= 0.1 * (0.25 + 0.03)  # at most stale_s (0.25 s) of motion, not 1.5 s


def test_missing_device_names_the_udev_fix(monkeypatch):
    fake, (result, _) = run(monkeypatch, [], 0.5, plugged=False)
    assert not result.ok and result.failed_node == "teleop"
    assert "udev" in result.error and "99-spacemouse.rules" in result.error and "\n" not in result.error
    fake._plug()
    fake._ACCESS = False  # present, but /dev/hidraw* is not readable
    result, _ = run_graph(parse_graph(GRAPH.replace("SCRIPT", "[]")), duration_s=0.5)
    assert not result.ok and "udev" in result.error


def test_unknown_device_name_is_a_config_error(monkeypatch):
    fake = install(monkeypatch, "pyspacemouse")
    fake._plug()
    text = GRAPH.replace("SCRIPT", "[]").replace("max_rot_speed_deg: 0,", "max_rot_speed_deg: 0, device: SpaceMous,")
    result, _ = run_graph(parse_graph(text), duration_s=0.5)
    assert not result.ok and "Unknown device: 'SpaceMous'" in result.error


def test_real_pyspacemouse_without_a_device():
    """The real library over Debian's hidapi: no puck on this machine -> the node's one-line fix."""
    text = """
nodes:
  - {name: world, type: sim.world, rate: 500, params: {task: pick_place, visual_cell: 0}}
  - {name: arm, type: sim.arm, rate: 100, inputs: {ee_target: teleop/ee_target}}
  - {name: teleop, type: teleop.spacemouse, rate: 100, inputs: {state: arm/state}}
"""
    result, _ = run_graph(parse_graph(text), duration_s=0.2)
    assert not result.ok and result.failed_node == "teleop" and "udev" in result.error, result


def test_spacemouse_on_the_franka_graph(monkeypatch, tmp_path):
    """graphs/franka_stack_cubes.yaml with its keyboard swapped for the SpaceMouse, on the franky fake."""
    import yaml
    from fakes import FAKES_DIR

    from robotflow.runtime.graph import load_graph

    franky = install(monkeypatch, "franky")
    install(monkeypatch, "pyrealsense2")
    fake = install(monkeypatch, "pyspacemouse")
    fake._plug()
    doc = yaml.safe_load((FAKES_DIR.parents[1] / "graphs" / "franka_stack_cubes.yaml").read_text())
    nodes = [n for n in doc["nodes"] if n["name"] != "teleop"]
    nodes.append(
        {
            "name": "hand",
            "type": "testteleop.spacemouse_hand",
            "rate": 100,
            "params": {"script": [{"t": [0.2, 0.7], "axes": {"y": 1.0}}]},
        }
    )
    nodes.append(
        {
            "name": "teleop",
            "type": "teleop.spacemouse",
            "rate": 100,
            "params": {"max_speed": 0.1},
            "inputs": {"state": "arm/state"},
        }
    )
    doc["nodes"] = nodes
    path = tmp_path / "franka_stack_cubes_spacemouse.yaml"
    path.write_text(yaml.safe_dump(doc))
    sets = ["wrist_camera.serial=111111111111", "front_camera.serial=222222222222"]
    sets += [f"{c}.{k}={v}" for c in ("wrist_camera", "front_camera") for k, v in (("width", 64), ("height", 48))]
    result, sched = run_graph(load_graph(path, sets), duration_s=1.5)
    assert result.ok, result
    cart = [m for m in franky.Robot._instances[0]._moves if isinstance(m, franky.CartesianMotion)]
    xs = np.array([m.target.pose.end_effector_pose.translation[0] for m in cart])
    assert np.isclose(xs[0], 0.4)  # starts where the arm is
    assert 0.03 < xs.max() - xs[0] < 0.07  # 0.5 s forward at 0.1 m/s (wall-clock ticks: loose)


def test_sim_graph_file_runs_with_the_spacemouse(monkeypatch):
    from fakes import FAKES_DIR

    from robotflow.runtime.graph import load_graph

    fake = install(monkeypatch, "pyspacemouse")
    fake._plug()
    sets = ["world.realtime=false", "world.visual_cell=0", "wrist_camera.width=64", "wrist_camera.height=48"]
    sets += ["front_camera.width=64", "front_camera.height=48"]
    spec = load_graph(FAKES_DIR.parents[1] / "graphs" / "sim_stack_cubes_spacemouse.yaml", sets)
    result, sched = run_graph(spec, duration_s=0.5)
    assert result.ok, result
    assert result.stats["channels"]["teleop/ee_target"]["sent"] > 20


def test_recording_a_sim_demonstration_with_the_spacemouse(monkeypatch, tmp_path):
    """`robotflow record`'s recorder on the SpaceMouse sim graph: episodes come from the sim task (seeded), and
    the puck's episode button ends one; the episode file is written with that outcome."""
    from fakes import FAKES_DIR

    from robotflow.recording.graph_transform import with_recorder
    from robotflow.recording.reader import EpisodeFile
    from robotflow.runtime.graph import NodeDef, load_graph

    fake = install(monkeypatch, "pyspacemouse")
    fake._plug()
    sets = ["world.realtime=false", "world.visual_cell=0", "wrist_camera.width=64", "wrist_camera.height=48"]
    sets += ["front_camera.width=64", "front_camera.height=48", "task.episodes=1"]
    graph = load_graph(FAKES_DIR.parents[1] / "graphs" / "sim_stack_cubes_spacemouse.yaml", sets)
    spec, name = with_recorder(graph, {"output_dir": str(tmp_path), "task": "stack"})
    assert spec.node(name).inputs["episode"].source == "task/episode"  # the sim task, not the device's control
    script = [{"t": [0.2, 0.6], "axes": {"y": 1.0}}, {"t": [0.8, 0.9], "buttons": [0, 1]}]
    spec = spec.add_node(NodeDef("hand", "testteleop.spacemouse_hand", params={"script": script}, rate=100))
    result, sched = run_graph(spec, duration_s=5.0)
    assert result.ok, result
    files = sorted(tmp_path.glob("episode_*.h5"))
    assert len(files) == 1
    with EpisodeFile(files[0]) as ep:
        assert ep.info.outcome == "aborted" and 0.8 < ep.info.duration_s < 1.2 and ep.info.seed == 0


def test_moving_the_puck_takes_over_from_the_policy_and_the_chord_fails_the_episode(monkeypatch):
    """With an arbiter's `control`: at rest the target follows the policy; moving the puck takes over from
    the policy's last command, `takeover_release_s` at rest hands back; episode button + grip button: fail."""
    import json

    from teleop_takeover import COMMAND_B, check_failure, check_takeover, nodes_yaml

    script = [
        {"t": [0.1, 0.2], "buttons": [0, 1]},  # short press of the episode button: start
        {"t": [0.6, 0.8], "axes": {"y": 1.0}},  # pushed away: take over, +x at 0.1 m/s for 0.2 s
        {"t": [1.2, 1.4], "buttons": [0, 1]},  # hold the episode button ...
        {"t": [1.25, 1.3], "buttons": [1, 1]},  # ... and click the grip button: fail
    ]
    hand = (
        f"  - {{name: hand, type: testteleop.spacemouse_hand, rate: 100, params: {{script: {json.dumps(script)}}}}}\n"
    )
    install(monkeypatch, "pyspacemouse")._plug()
    params = "{max_speed: 0.1, max_rot_speed_deg: 0, deadband: 0.1, takeover_release_s: 0.3}"
    result, sched = run_graph(parse_graph("nodes:\n" + hand + nodes_yaml("teleop.spacemouse", params)), duration_s=1.6)
    assert result.ok, result
    log = sched.nodes["log"].messages
    engaged = check_takeover(log)
    assert np.allclose(engaged[-1][:3] - COMMAND_B[:3], [0.02, 0, 0], atol=0.002)
    on = [m.timestamp_ns * 1e-9 for m in log["takeover"] if m["active"]]
    assert 0.25 < on[-1] - on[0] < 0.55  # 0.2 s of motion, then 0.3 s at rest
    assert not log["takeover"][-1]["active"] and np.allclose(log["t"][-1]["ee_pose"], COMMAND_B)  # handed back
    check_failure(log)


def test_takeover_button_must_be_a_third_button():
    import pytest

    from robotflow.drivers.teleop_spacemouse import SpaceMouseParams
    from robotflow.runtime.params import ParamError

    with pytest.raises(ParamError, match="takeover_button"):
        SpaceMouseParams(takeover_button=1)
    assert SpaceMouseParams(takeover_button=2).takeover_button == 2
