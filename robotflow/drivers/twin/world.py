"""The Franka twin's world: franky-sim's MuJoCo FR3 with the task's objects and cameras, served over libfranka.

`TwinWorld` is free of runtime code. It builds franky-sim's `MujocoSimulator` with one robot, adds the task's
objects (the same cubes as the `sim` task: drivers/sim/scene.py) and the `front` and `wrist` cameras to its
worldbody before start, and runs franky-sim's `SimulationServer` on a loopback address in a thread of its own,
one physics step per millisecond of wall time, as the robot's controller does. `franka.arm` and `franka.gripper`
reach it only through franky-control, as they reach a real robot.

Everything that touches MuJoCo's data from another thread (placing objects, reading their poses, copying the
data for a camera) holds `lock`, which the server loop holds for each step. The object API (`object_pose`,
`set_object_pose`, `touching_robot`, ...) matches `drivers.sim.world.SimWorld`'s, so the sim task's episode
rules (drivers/sim/tasks.py) score the twin unchanged.

Frames: franky-sim's ground plane (z = 0) is the table top and the robot base frame is the world frame, as in
the sim scene, so object poses need no conversion.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import mujoco
import numpy as np
from franky_sim import SimulationServer
from franky_sim.mujoco_simulator import MujocoSimulator

from robotflow.drivers.sim.scene import CUBE_HALF, CUBE_MASS, TABLE_TOP, TASK_OBJECTS, ObjectSpec
from robotflow.drivers.sim.world import SceneObjects, robot_geoms_of
from robotflow.runtime.scheduler import set_realtime_priority

STEP_S = 0.001  # franky-sim's physics step and libfranka's state period
# Behind the wall clock by more than this, the loop gives up catching up (a stalled machine): the robot
# runs slower for a moment instead of replaying a burst of state packets.
MAX_BACKLOG_S = 0.02
RELEASE_TIMEOUT_S = 8.0  # how long closing waits for franky's clients to disconnect (within TEARDOWN_S)
ROBOT_PREFIX = "robot0_"  # franky-sim's name prefix for the first robot's bodies and joints
TWIN_TASKS = ("stack_cubes",)  # tasks whose objects the twin can build (cubes only: no mocap bin)


@dataclass
class LoopStats:
    """How well the server loop kept franky's 1 kHz on the wall clock."""

    steps: int = 0
    late_steps: int = 0  # steps started more than one period after their slot
    resyncs: int = 0  # times the loop dropped its backlog (more than MAX_BACKLOG_S behind)
    step_ms_max: float = 0.0

    def as_dict(self, wall_s: float) -> dict:
        return {
            "steps": self.steps,
            "late_steps": self.late_steps,
            "resyncs": self.resyncs,
            "step_ms_max": round(self.step_ms_max, 3),
            "real_time_factor": round(self.steps * STEP_S / wall_s, 3) if wall_s > 0 else None,
        }


def _add_cube(worldbody: ET.Element, obj: ObjectSpec, x: float) -> None:
    body = ET.SubElement(worldbody, "body", name=obj.name, pos=f"{x} 0 {TABLE_TOP + CUBE_HALF}")
    ET.SubElement(body, "freejoint", name=obj.name)
    ET.SubElement(
        body,
        "geom",
        name=obj.name,
        type="box",
        size=" ".join([str(CUBE_HALF)] * 3),
        mass=str(CUBE_MASS),
        rgba=" ".join(map(str, obj.rgba)),
        friction="1 0.01 0.001",
    )


def _add_cameras(sim: MujocoSimulator) -> None:
    # front: the sim scene's camera, across the table looking back at the robot (drivers/sim/scene.py).
    ET.SubElement(sim.worldbody, "camera", name="front", pos="1.1 0 0.6", xyaxes="0 1 0 -0.581 0 0.814", fovy="45")
    # wrist: on the Franka Hand, off the fingers' plane of motion, tilted toward the pads.
    hand = next(b for b in sim.worldbody.iter("body") if b.get("name") == f"{ROBOT_PREFIX}hand")
    ET.SubElement(hand, "camera", name="wrist", pos="0.07 0 0.02", xyaxes="0 1 0 0.958 0 0.287", fovy="70")


def build_scene(task: str, initial_joints: list[float] | None = None) -> MujocoSimulator:
    """franky-sim's simulator with one FR3 and the task's objects and cameras (not started)."""
    if task not in TWIN_TASKS:
        raise ValueError(f"the twin has no scene for task {task!r}; choose one of {', '.join(TWIN_TASKS)}")
    sim = MujocoSimulator(enable_visualization=False)
    sim.add_robot(**({"initial_q": tuple(initial_joints)} if initial_joints else {}))
    # A grasped cube must not creep out of the pads: the sim scene's contact settings (drivers/sim/scene.py).
    option = sim.scene.find("option")
    option.set("cone", "elliptic")
    option.set("impratio", "10")
    option.set("noslip_iterations", "5")
    # Rendering on CPUs, as the sim scene's: franky-sim's 8x multisampling and 4096 px shadows took 0.5 s a frame.
    quality = sim.scene.find("visual").find("quality")
    quality.set("shadowsize", "0")
    quality.set("offsamples", "0")
    for light in sim.worldbody.iter("light"):
        light.set("castshadow", "false")
    for k, obj in enumerate(TASK_OBJECTS[task]):
        _add_cube(sim.worldbody, obj, 0.45 + 0.1 * k)
    _add_cameras(sim)
    return sim


def compile_scene(task: str) -> mujoco.MjModel:
    """The twin's model for rendering in another process: the same bodies, meshes and cameras as the world's."""
    return mujoco.MjModel.from_xml_string(ET.tostring(build_scene(task).scene, encoding="unicode"))


class TwinWorld(SceneObjects):
    """franky-sim's FR3 in the task's scene, served over libfranka on `host` while running."""

    def __init__(self, task: str, host: str, initial_joints: list[float] | None = None, loop_priority: int = 0):
        self.task, self.host = task, host
        self.loop_priority = loop_priority
        self.objects = TASK_OBJECTS[task]
        self.lock = threading.Lock()
        self.stats = LoopStats()
        self._sim = build_scene(task, initial_joints)
        self._sim.init()
        self._server = SimulationServer(self._sim, hostname_candidates=[host])
        self._thread: threading.Thread | None = None
        self._running = False
        self._wall0 = 0.0

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Build the model, bind the libfranka servers on `host` and start the 1 kHz loop."""
        self._server.init()  # binds the robot and gripper servers, then compiles and starts the simulation
        m = self.model
        self.object_body = {o.name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, o.name) for o in self.objects}
        self.robot_geoms = robot_geoms_of(m, mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"{ROBOT_PREFIX}base"))
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="twin-1kHz", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        # A robot's controller has a computer of its own; on a shared machine SCHED_FIFO stands in for it: at
        # normal priority a core-saturating job beside the twin (a torch benchmark) starved this loop until
        # libfranka dropped the connection mid-recording.
        if self.loop_priority > 0:
            set_realtime_priority("twin.world", self.loop_priority)
        # franky-sim's own loop sleeps 1 ms minus each step's duration, so every sleep's overshoot slows the
        # robot's clock; this one keeps an absolute schedule (slot k at wall0 + k ms).
        self._wall0 = next_t = time.perf_counter()
        st = self.stats
        while self._running:
            now = time.perf_counter()
            if now < next_t:
                time.sleep(next_t - now)
            elif now - next_t > MAX_BACKLOG_S:
                st.resyncs += 1
                next_t = now
            elif now - next_t > STEP_S:
                st.late_steps += 1
            t0 = time.perf_counter()
            with self.lock:
                self._server.run_once(realtime=False)
            st.step_ms_max = max(st.step_ms_max, (time.perf_counter() - t0) * 1e3)
            st.steps += 1
            next_t += STEP_S

    def report(self) -> dict:
        return self.stats.as_dict(time.perf_counter() - self._wall0 if self._wall0 else 0.0)

    def clients_connected(self) -> bool:
        """Whether a libfranka client (franka.arm's robot, franka.gripper's hand) is still connected."""
        servers = [*self._server.robot_servers, *(r.gripper_server for r in self._sim.robots if r.gripper_server)]
        return any(s.tcp_connected for s in servers)

    def close(self, release_timeout_s: float = RELEASE_TIMEOUT_S) -> None:
        """Stop serving. The robot stays up until its clients let go (bounded): the graph's arm stops it and
        disconnects after this process group may have been told to end, as a real robot outlives the graph."""
        deadline = time.monotonic() + release_timeout_s
        while self.alive and self.clients_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._server.cleanup()  # closes the libfranka sockets
        if self._sim.is_initialized and not self._sim.is_cleaned_up:
            self._sim.cleanup()

    # ---- MuJoCo state (callers hold `lock`) ---------------------------------------------------------
    @property
    def model(self) -> mujoco.MjModel:
        return self._sim.model

    @property
    def data(self) -> mujoco.MjData:
        return self._sim.data

    def qpos(self) -> np.ndarray:
        """A copy of the whole MuJoCo state's positions (robot and objects), for the cameras to render."""
        return self.data.qpos.copy()

    def forward(self) -> None:
        mujoco.mj_forward(self.model, self.data)

    def reset_robot(self) -> None:
        """The twin never moves its robot by hand: franky controls it, and the task homes it through franky."""
