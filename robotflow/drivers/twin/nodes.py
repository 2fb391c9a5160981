"""Franka twin nodes: `twin.world`, `twin.camera`, `twin.task`.

The twin stands in for the robot cell, not for the robot's drivers: a twin graph is a hardware graph
(graphs/franka_*.yaml) with the same `franka.arm` and `franka.gripper`, which reach franky-sim only through
franky-control on a loopback address, as they reach a real Franka over the network. Only the cameras and the
task (objects, episode starts, scoring) are the twin's.

Give `twin.world` and `twin.task` one `process:` group of their own: they share the world through `peer()`
(which reaches nodes of the same process only), and there the world's 1 kHz loop (a thread of the world node;
MuJoCo's data is shared under `TwinWorld.lock`) never competes for the GIL with the graph's control loop (arm,
gripper, teleop or policy), as a robot's controller has its own computer. `twin.camera` renders in another
group, from the positions `twin.world` publishes.

Episode reset: the arm is never teleported. Between episodes `twin.task` sends the home joints to the arm's
`joint_target` input, as an operator would drive it home, and places the objects only once the arm is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from robotflow.drivers.sim.nodes import (
    SimCameraNode,
    emit_episode_events,
    operator_label,
    runner_results,
    stop_after_last_episode,
    task_report,
)
from robotflow.drivers.sim.render import OffscreenCamera
from robotflow.drivers.sim.tasks import TaskRunner
from robotflow.network import is_loopback
from robotflow.runtime.node import Input, Node
from robotflow.runtime.params import in_range

from .world import TWIN_TASKS, TwinWorld, compile_scene

# A home for the twin's cell: flange down, EE at (0.46, 0, 0.36) m, inside the hardware graphs' workspace box
# (Franka's "ready" pose has the EE at z 0.49, above their 0.45 ceiling, so a joint target there is rejected).
TWIN_HOME = [0.0, -0.3, 0.0, -2.3, 0.0, 2.0, 0.785]


@dataclass
class TwinWorldParams:
    host: str = "127.0.0.1"  # loopback address the libfranka servers bind (franka.arm/gripper `host`)
    task: str = "stack_cubes"  # the scene's objects: must match twin.task
    # The joints the robot is powered up at (franky-sim starts there): home, as a robot left ready.
    initial_joints: list[float] = field(default_factory=lambda: list(TWIN_HOME))
    # SCHED_FIFO priority of the world's 1 kHz loop (root or CAP_SYS_NICE; otherwise a warning), 0: normal.
    loop_priority: int = in_range(0, 99, 80)


class TwinWorldNode(Node):
    """Hosts franky-sim's world and its libfranka servers; each tick checks that the 1 kHz loop still runs and
    publishes `scene` (`qpos`: MuJoCo's positions of the robot and the objects) for the twin's cameras."""

    Params = TwinWorldParams
    outputs = ("scene",)

    def __init__(self, name: str, params: TwinWorldParams):
        super().__init__(name, params)
        if not is_loopback(params.host):
            raise ValueError(f"twin.world {name!r}: host {params.host!r} is not a loopback address; use 127.x.y.z")
        if params.task not in TWIN_TASKS:
            raise ValueError(
                f"twin.world {name!r}: unknown task {params.task!r}; choose one of {', '.join(TWIN_TASKS)}"
            )
        self._world: TwinWorld | None = None

    @property
    def world(self) -> TwinWorld:
        """The world, built and serving on first access (the twin's cameras and task may set up first)."""
        if self._world is None:
            p = self.params
            self._world = TwinWorld(p.task, p.host, p.initial_joints, p.loop_priority)
            self._world.start()
            self.log("franky-sim serving on %s", self.params.host)
        return self._world

    def setup(self) -> None:
        _ = self.world

    def step(self) -> None:
        world = self.world
        if not world.alive:
            raise RuntimeError("the twin's 1 kHz loop stopped")
        with world.lock:
            qpos = world.qpos()
        self.emit("scene", qpos=qpos)

    def report(self) -> dict | None:
        return self._world.report() if self._world is not None else None

    def teardown(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None


def _twin_world(node: Node, name: str) -> TwinWorld:
    peer = node.peer(name)
    if not isinstance(peer, TwinWorldNode):
        raise TypeError(f"{node.name}: node {name!r} is not a twin.world (put the twin's nodes in one process group)")
    return peer.world


@dataclass
class TwinCameraParams:
    task: str = "stack_cubes"  # the world's task: the camera compiles the same scene
    camera: str = "front"  # a camera of the scene: front | wrist
    width: int = 320
    height: int = 240
    fps: float = 15.0  # frames per second; give the node the same `rate:`


class TwinCameraNode(SimCameraNode):
    """Renders a camera of the twin's scene from the world's `scene` positions, in a process of its own: on
    CPUs a frame takes tens of ms, which in the world's process starved franky's 1 kHz loop of the GIL (libfranka
    then gave up: "UDP receive: Timeout")."""

    Params = TwinCameraParams
    inputs = {"scene": Input()}

    def setup(self) -> None:
        model = compile_scene(self.params.task)
        self._data = mujoco.MjData(model)
        self._model = model
        self.camera = OffscreenCamera(model, self.params.camera, self.params.width, self.params.height)
        self._period_ns = int(round(1e9 / self.params.fps))
        self._next_ns: int | None = None
        self.render_ms: list[float] = []

    def step(self) -> None:
        if self.read("scene") is not None:  # nothing to show before the world's first positions
            super().step()

    def scene_data(self) -> mujoco.MjData:
        self._data.qpos[:] = self.read("scene")["qpos"]
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_camlight(self._model, self._data)  # cameras and lights on moving bodies
        return self._data


@dataclass
class TwinTaskParams:
    world: str = "world"
    task: str = "stack_cubes"
    seed: int = 0  # episode k is randomised with seed + k
    episodes: int = 1  # stop the graph after this many (non-discarded) episodes
    timeout_s: float = 20.0  # an episode not solved by then is a failure
    hold_s: float = 1.0  # the goal must hold this long (objects resting, robot not touching)
    home_joints: list[float] = field(default_factory=lambda: list(TWIN_HOME))  # where each episode starts
    home_tol_rad: float = 0.02  # the arm is home when every joint is this close ...
    home_settle_s: float = 0.3  # ... for this long
    home_timeout_s: float = 20.0  # the arm not home by then fails the run (a stuck or unwired arm)


class TwinTaskNode(Node):
    """The sim task's episode cycle (drivers/sim/tasks.py: placement by seed, success, timeout) on the twin,
    with the arm driven home through franky before each episode.

    Outputs: `episode` and `objects` as `sim.task`'s, and `home` (`joint_pos`), wired to the arm's
    `joint_target`, sent every tick between episodes. Input `state`: the arm's state (home or not yet).
    """

    Params = TwinTaskParams
    inputs = {"state": Input(), "control": Input(delivery="queue", delayed=True, required=False)}
    outputs = ("episode", "objects", "home")

    def setup(self) -> None:
        p = self.params
        self.twin = _twin_world(self, p.world)
        with self.twin.lock:
            self.runner = TaskRunner(self.twin, p.task, p.seed, p.episodes, p.timeout_s, p.hold_s)
        self._home = np.asarray(p.home_joints, float)
        self._homed = False
        self._home_since: float | None = None
        self._homing_from: float | None = None
        self._homing_start_q: np.ndarray | None = None
        self._stop_next = False
        self.homing_s: list[float] = []

    @property
    def results(self) -> list[dict]:
        return runner_results(getattr(self, "runner", None))

    def report(self) -> dict | None:
        homing = getattr(self, "homing_s", None)
        return {
            **task_report(self.params.task, self.results),
            "homing_s_max": round(max(homing), 2) if homing else None,
        }

    def _drive_home(self, t: float) -> None:
        """Send the home joints; mark the arm homed once every joint has stayed within tolerance."""
        p = self.params
        state = self.read("state")
        if self._homing_from is None:
            self._homing_from = t
            # Where homing began, for the timeout's message (an arm that moved away from home, or never moved).
            self._homing_start_q = None if state is None else np.asarray(state["joint_pos"], float).copy()
        near = state is not None and np.max(np.abs(np.asarray(state["joint_pos"]) - self._home)) < p.home_tol_rad
        if not near:
            # Sent only while the arm is away: franky planning a joint motion of almost no length failed with
            # "Motion planner failed with error code -111" on franky-sim.
            self.emit("home", joint_pos=self._home.copy())
            self._home_since = None
        elif self._home_since is None:
            self._home_since = t
        elif t - self._home_since >= p.home_settle_s:
            self._homed, self._home_since = True, None
            self.homing_s.append(t - self._homing_from)
            self._homing_from = None
        if not self._homed and t - self._homing_from > p.home_timeout_s:
            where = "no arm state received"
            if state is not None:
                err = np.abs(np.asarray(state["joint_pos"]) - self._home)
                j = int(np.argmax(err))
                where = f"joint {j + 1} {float(err[j]):.3f} rad away, arm mode {state.get('mode')}"
                if self._homing_start_q is not None:
                    where += f"; {abs(self._homing_start_q[j] - self._home[j]):.3f} rad away when homing began"
            raise RuntimeError(
                f"the arm did not reach the home joints within {p.home_timeout_s:g} s ({where}); wire "
                f"`{self.name}/home` to the arm's joint_target and check the arm's workspace box contains the home pose"
            )

    def step(self) -> None:
        label = operator_label(self)
        t = self.now_ns() * 1e-9
        if not self.runner.active and not self.runner.done and not self._homed:
            self._drive_home(t)
        # Never end one episode and start the next in the same update: the arm must go home in between (with
        # ready=self._homed alone, still True from the last homing, every other episode started where the last
        # one ended, and the wrist wound up until a homing timed out).
        ready = self._homed and not self.runner.active
        with self.twin.lock:
            events = self.runner.update(t, label, ready=ready)
            names, poses = self.runner.objects()
        emit_episode_events(self, events)
        if any(ev["event"] == "end" for ev in events):
            self._homed = False  # the next episode starts from home again
        if stop_after_last_episode(self, self.runner):
            return
        self.emit("objects", names=names, poses=poses)
