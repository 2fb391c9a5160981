"""`teleop.scripted`: the scripted expert (robotflow/drivers/sim/expert.py) as a teleop node, sim only.

It stands in for a human at a teleop device: it emits the same channels (`ee_target` with an absolute EE
pose, `grip` with a normalised width), so a graph records its demonstrations exactly like a person's. It
plans from the privileged object poses of `sim.task` (`task/objects`) at each episode start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from robotflow.drivers.base import TeleopDeviceNode
from robotflow.runtime.node import Input
from robotflow.runtime.params import non_negative, positive


@dataclass
class ScriptedTeleopParams:
    task: str = ""  # empty: take the task from the `episode` events
    noise: float = non_negative(0.0)  # 0 = the same plan every time; 1 = a few mm / cm of per-episode variation
    speed: float = positive(0.25)  # EE travel speed (m/s)
    robot: Literal["sim", "franka"] = "sim"  # whose EE frame the targets are in: sim.arm's or franka.arm's


class ScriptedTeleop(TeleopDeviceNode):
    """Scripted expert teleop: plans from `task/objects` at each episode start, emits `ee_target` + `grip`."""

    Params = ScriptedTeleopParams
    inputs = {**TeleopDeviceNode.inputs, "objects": Input(), "episode": Input(delivery="queue")}

    def setup(self) -> None:
        # Imported here, not at the top: the expert reads the MuJoCo scene (drivers.sim pulls in mujoco),
        # and a hardware graph must be able to import every teleop module without it.
        from robotflow.drivers.sim.expert import DOWN, FRANKA_DOWN, ScriptedExpert

        self._expert_cls = ScriptedExpert
        self._down = FRANKA_DOWN if self.params.robot == "franka" else DOWN
        self.expert: ScriptedExpert | None = None
        self._episode: tuple[int, int] | None = None  # (start timestamp_ns, seed) of the running episode

    def step(self) -> None:
        for msg in self.read_all("episode"):
            if msg["event"] == "start":
                task = self.params.task or str(msg["task"])
                self.expert = self._expert_cls(task, self.params.noise, self.params.speed, self._down)
                self._episode = (msg.timestamp_ns, int(msg["seed"]))
            else:
                self._episode = None
        if self._episode is None or self.expert is None:
            return
        state = self.read("state")
        now_s = self.now_ns() * 1e-9
        if not self.expert.planned:
            objects = self.read("objects")
            # Plan only from observations made after the reset: the arm state of the same instant may
            # still show the previous episode's pose.
            if (
                objects is None
                or state is None
                or objects.timestamp_ns < self._episode[0]
                or state.timestamp_ns <= self._episode[0]
            ):
                return
            names = str(objects["names"]).split(",")
            poses = np.asarray(objects["poses"], float)
            self.expert.plan(dict(zip(names, poses)), np.asarray(state["ee_pose"], float), now_s, self._episode[1])
        objects = self.read("objects")
        poses = None
        if objects is not None:
            poses = dict(zip(str(objects["names"]).split(","), np.asarray(objects["poses"], float)))
        target, width = self.expert.act(now_s, None if state is None else np.asarray(state["ee_pose"], float), poses)
        self.emit_target(target, width)
