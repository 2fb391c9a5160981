"""Simulation nodes: `sim.world`, `sim.arm`, `sim.gripper`, `sim.camera`, `sim.task`.

Why sharing one MuJoCo model/data between nodes is safe: `sim.world` sets `virtual_clock = True`, so the
scheduler runs every node of the graph in one thread, in the graph's fixed order, at the virtual instants
their rates call for. Physics stepping (world), command application (arm, gripper), rendering (cameras)
and resets (task) therefore never run concurrently: each node sees the state the world stepped to at the
current virtual instant, and the same seed gives the same run. The other sim nodes reach the world with
`self.peer(params.world)`; the world builds its model on first access, so their setup does not depend
on the start order.

Commands are stamped by the runtime clock. After the task resets the robot, the arm and gripper ignore
commands stamped before they saw the reset, so a stale target from the previous episode never drags the
arm back. Every command passes the same safety layer as on the Franka (robotflow/safety.py), so
simulated runs exercise it; the sim's defaults bound the scene's workspace and leave the scripted
expert's motion untouched (its targets lead the arm by at most ~6 cm and ~11 deg).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import mujoco
import numpy as np

from robotflow.drivers.base import ArmNode, CameraNode, GripperNode
from robotflow.geometry import pose_from_pos_mat
from robotflow.runtime.node import Input, Node
from robotflow.runtime.params import in_range, non_negative, one_of, positive
from robotflow.safety import ArmSafetyParams

from .render import OffscreenCamera
from .scene import CAMERAS, TASKS
from .tasks import TaskRunner
from .world import ArmController, GripperController, SimWorld


@dataclass
class WorldParams:
    task: str = one_of(TASKS, "stack_cubes")  # which scene to build (must match sim.task)
    timestep: float = positive(0.002)  # physics step (s); give the node `rate: 1/timestep`
    realtime: bool = False  # pace virtual time to the wall clock (for a person watching or teleoperating)
    viewer: bool = False  # open MuJoCo's passive viewer when a display exists
    visual_cell: float = non_negative(
        0.004
    )  # visual meshes simplified to this grid (m) for CPU rendering; 0 = original


class SimWorldNode(Node):
    """Owns the MuJoCo model and data and steps physics up to the runtime's virtual time each tick."""

    Params = WorldParams
    outputs = ()
    virtual_clock = True

    def __init__(self, name: str, params: WorldParams):
        super().__init__(name, params)
        self._sim: SimWorld | None = None
        self._viewer = None
        self._t0_ns: int | None = None

    @property
    def sim(self) -> SimWorld:
        """The world, built on first access (peers may set up before this node)."""
        if self._sim is None:
            self._sim = SimWorld(self.params.task, self.params.timestep, self.params.visual_cell)
        return self._sim

    def paces_virtual_time(self) -> bool:
        return bool(self.params.realtime)

    def setup(self) -> None:
        _ = self.sim  # builds the world now, in setup, not on the first tick
        if self.params.viewer:
            if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                self.log("viewer requested but no display found; running headless")
            else:
                import mujoco.viewer

                self._viewer = mujoco.viewer.launch_passive(self.sim.model, self.sim.data)
                self._next_sync = 0.0

    def step(self) -> None:
        now = self.now_ns()
        if self._t0_ns is None:
            self._t0_ns = now
            self._wall0 = time.perf_counter()
        self.sim.step_to((now - self._t0_ns) * 1e-9)
        self._wall_last = time.perf_counter()
        if self._viewer is not None and self.sim.time >= self._next_sync:
            if not self._viewer.is_running():
                self.request_stop("viewer closed")
                return
            self._viewer.sync()
            self._next_sync = self.sim.time + 1 / 60

    def report(self) -> dict | None:
        """Simulated vs wall time of the run (the real-time factor includes every node of the graph)."""
        if self._t0_ns is None or self._sim is None:
            return None
        wall = self._wall_last - self._wall0
        return {
            "sim_time_s": round(self._sim.time, 4),
            "wall_s": round(wall, 4),
            "real_time_factor": round(self._sim.time / wall, 3) if wall > 0 else None,
        }

    def teardown(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None


class _WorldUser(Node):
    """A node that drives the shared world; tracks resets so stale commands are dropped."""

    def _attach(self) -> SimWorld:
        world = self.peer(self.params.world)
        if not isinstance(world, SimWorldNode):
            raise TypeError(f"{self.name}: node {self.params.world!r} is not a sim.world")
        self.world_node = world
        self._seen_reset = world.sim.reset_count
        self._valid_after_ns = -1
        return world.sim

    def _check_reset(self) -> bool:
        if self.world_node.sim.reset_count != self._seen_reset:
            self._seen_reset = self.world_node.sim.reset_count
            self._valid_after_ns = self.now_ns()
            return True
        return False


@dataclass(kw_only=True)
class ArmParams(ArmSafetyParams):
    """The simulated arm's params; the safety limits come from ArmSafetyParams, with the sim scene's box."""

    world: str = "world"  # the sim.world node
    ik_iterations: int = in_range(1, None, 3)  # damped least-squares iterations per tick
    speed_scale: float = in_range(
        0, 1, 0.5, min_open=True
    )  # fraction of the Panda's joint speed limits commands may use
    workspace_min: list[float] = field(default_factory=lambda: [0.2, -0.45, 0.005])
    workspace_max: list[float] = field(default_factory=lambda: [0.8, 0.45, 0.65])
    max_tilt_deg: float = 60.0
    max_step_m: float = 0.1
    max_step_deg: float = 30.0


class SimArmNode(_WorldUser, ArmNode):
    """The simulated Panda: absolute EE targets (differential IK) or joint targets -> position servos,
    through the safety layer (box, tilt cone, step per tick, command watchdog). Ports, precedence and
    safety: `ArmNode` (robotflow/drivers/base.py)."""

    Params = ArmParams

    def setup(self) -> None:
        sim = self._attach()
        self.sim = sim
        self.controller = ArmController(sim, self.params.ik_iterations, self.params.speed_scale)
        self._fk_data = mujoco.MjData(sim.model)  # scratch: checking a joint target never touches the world
        self.init_safety((self.controller.ik.lo, self.controller.ik.hi), self._fk)
        self._last_ns: int | None = None

    def _fk(self, q: np.ndarray) -> np.ndarray:
        d, sim = self._fk_data, self.sim
        d.qpos[sim.arm_qadr] = q
        mujoco.mj_kinematics(sim.model, d)
        return pose_from_pos_mat(d.site_xpos[sim.ee_site], d.site_xmat[sim.ee_site])

    def step(self) -> None:
        now = self.now_ns()
        dt = 0.0 if self._last_ns is None else (now - self._last_ns) * 1e-9
        self._last_ns = now
        sim = self.sim
        if self._check_reset():
            self.controller.reset()
            self.safety.reset()
            self.reset_mode()
        self.take_command(now, not_before_ns=self._valid_after_ns)
        self.apply_safety_tick(sim.ee_pose(), sim.arm_qpos(), now)
        self.controller.update(dt)
        # The simulated arm has no faults of its own: its mode is idle, move or hold.
        self.emit_state(sim.arm_qpos(), sim.arm_qvel(), sim.ee_pose(), mode=self.arm_mode, fault=self.arm_fault)
        self.emit_command(self.controller.mode, self.controller.target)

    def apply_ee(self, target: np.ndarray) -> None:
        self.controller.set_ee_target(target)

    def apply_joints(self, target: np.ndarray) -> None:
        self.controller.set_joint_target(target)

    def hold(self) -> None:
        self.controller.hold()


@dataclass
class GripperParams:
    world: str = "world"


class SimGripperNode(_WorldUser, GripperNode):
    """The simulated gripper (Robotiq 2F-85 of the gym-hil Panda): width 0 = closed .. 1 = open. Ports and
    safety: `GripperNode` (robotflow/drivers/base.py)."""

    Params = GripperParams

    def setup(self) -> None:
        self.sim = self._attach()
        self.controller = GripperController(self.sim)
        self.init_safety()
        self._commanded = False

    def step(self) -> None:
        if self._check_reset():
            self.controller.reset()
            self._commanded = False
        width = self.take_target(not_before_ns=self._valid_after_ns)
        if width is not None:
            self.controller.set_target(width)
            self._commanded = True
        self.emit_state(self.sim.gripper_width())
        if self._commanded:
            self.emit_command(self.controller.target)


@dataclass
class CameraParams:
    world: str = "world"
    camera: str = one_of(CAMERAS, "front")  # a camera of the scene
    width: int = positive(320)
    height: int = positive(240)
    fps: float = positive(15.0)  # frames per second; give the node the same `rate:` (faster rates are decimated)


class SimCameraNode(_WorldUser, CameraNode):
    """Renders a scene camera offscreen (EGL or OSMesa, chosen automatically) into RGB uint8 frames."""

    Params = CameraParams

    def setup(self) -> None:
        sim = self._attach()
        self.sim = sim
        self.camera = OffscreenCamera(sim.model, self.params.camera, self.params.width, self.params.height)
        self._period_ns = int(round(1e9 / self.params.fps))
        self._next_ns: int | None = None
        self.render_ms: list[float] = []

    def step(self) -> None:
        now = self.now_ns()
        last, self._last_tick_ns = getattr(self, "_last_tick_ns", None), now
        if last is not None and now - last > 1.5 * self._period_ns and not getattr(self, "_warned", False):
            self._warned = True  # the graph's `rate:` is below fps: frames come at the node rate
            self.log(
                "ticked every %.1f ms but fps=%g asks for %.1f ms; set `rate: %g` in the graph",
                (now - last) / 1e6,
                self.params.fps,
                self._period_ns / 1e6,
                self.params.fps,
            )
        if self._next_ns is not None and now < self._next_ns - self._period_ns // 10:
            return
        self._next_ns = now + self._period_ns if self._next_ns is None else self._next_ns + self._period_ns
        t0 = time.perf_counter()
        image = self.camera.render(self.scene_data())  # a new array every time: receivers hold views of it
        self.render_ms.append((time.perf_counter() - t0) * 1e3)
        self.emit_frame(image)

    def scene_data(self) -> mujoco.MjData:
        """The data to render now (the Franka twin renders a copy taken under its world's lock)."""
        return self.sim.data

    def report(self) -> dict | None:
        if not getattr(self, "render_ms", None):
            return None
        ms = np.asarray(self.render_ms)
        return {
            "frames": len(ms),
            "backend": self.camera.backend,
            "render_ms_p50": round(float(np.percentile(ms, 50)), 2),
            "render_ms_p99": round(float(np.percentile(ms, 99)), 2),
        }

    def teardown(self) -> None:
        cam = getattr(self, "camera", None)
        if cam is not None:
            cam.close()


@dataclass
class TaskParams:
    world: str = "world"
    task: str = one_of(TASKS, "stack_cubes")
    seed: int = non_negative(0)  # episode k is randomised with seed + k
    episodes: int = in_range(1, None, 1)  # stop the graph after this many (non-discarded) episodes
    timeout_s: float = positive(20.0)  # an episode not solved by then is a failure
    hold_s: float = non_negative(1.0)  # the goal must hold this long (objects resting, robot not touching)


def emit_episode_events(node: Node, events: list[dict]) -> None:
    """Publish a task runner's episode events on `episode`, logging each episode's end."""
    for ev in events:
        node.emit("episode", **ev)
        if ev["event"] == "end":
            node.log("episode %d (seed %d): %s after %.2f s", ev["index"], ev["seed"], ev["outcome"], ev["duration_s"])


def operator_label(node: Node) -> str | None:
    """The label of an episode end the operator sent on the task's `control` input this tick, or None.

    Devices label their ends (teleop_base.LABEL_OF_BUTTON); an end without a label keeps the older rule:
    `discarded` discards, anything else stops the episode."""
    label = None
    for msg in node.read_all("control"):
        if msg["event"] == "end":
            label = msg.get("label") or ("discarded" if msg["outcome"] == "discarded" else "success")
    return label


def stop_after_last_episode(node: Node, runner: TaskRunner) -> bool:
    """Once the runner is done, end the graph one tick after the last `end` event, so the nodes after the task
    (recorder, teleop) receive it. True when the stop was requested this tick."""
    if not runner.done:
        return False
    if getattr(node, "_stop_next", False):
        node.request_stop("done")
        return True
    node._stop_next = True
    return False


def runner_results(runner: TaskRunner | None) -> list[dict]:
    """The per-episode results of a task runner (none before its setup)."""
    return [r.as_dict() for r in runner.results] if runner is not None else []


def task_report(task: str, results: list[dict]) -> dict:
    """A task node's report: episodes scored (discarded ones left out), success rate, per-episode results."""
    n = len([r for r in results if r["outcome"] != "discarded"])
    return {
        "task": task,
        "episodes": n,
        "success_rate": (sum(r["success"] for r in results) / n) if n else None,
        "results": results,
    }


class SimTaskNode(_WorldUser):
    """Episode cycle of a simulated task: reset + randomise, success check, timeout, `episode` events.

    `results` lists every finished episode as {index, seed, success, outcome, duration_s} for the CLI's
    summary. The optional `control` input takes episode events from a teleop device: an `end` with
    outcome `discarded` discards the episode, any other `end` stops it (success if the goal holds now).
    """

    Params = TaskParams
    inputs = {"control": Input(delivery="queue", delayed=True, required=False)}
    outputs = ("episode", "objects")

    def setup(self) -> None:
        sim = self._attach()
        p = self.params
        self.runner = TaskRunner(sim, p.task, p.seed, p.episodes, p.timeout_s, p.hold_s)
        self._stop_next = False

    @property
    def results(self) -> list[dict]:
        return runner_results(getattr(self, "runner", None))

    def report(self) -> dict | None:
        return task_report(self.params.task, self.results)

    def step(self) -> None:
        label = operator_label(self)
        t = self.now_ns() * 1e-9
        emit_episode_events(self, self.runner.update(t, label))
        if stop_after_last_episode(self, self.runner):
            return
        names, poses = self.runner.objects()
        self.emit("objects", names=names, poses=poses)
