"""`teleop.scripted`: the scripted expert (robotflow/drivers/sim/expert.py) as a teleop node, sim only.

It stands in for a human at a teleop device: it emits the same channels (`ee_target` with an absolute EE
pose, `grip` with a normalised width, `takeover`), so a graph records its demonstrations exactly like a
person's. It plans from the privileged object poses of `sim.task` (`task/objects`).

`drive` says when it has the arm, which matters in a policy graph with a `control.arbiter`:
- `always`: from each episode's start (demonstrations); it plans at the start.
- `window`: from `takeover_at_s` into each episode for `takeover_for_s`, then it hands back (the scripted
  take-over test).
- `stall`: when the policy stalls: the measured EE has moved less than `stall_m` over the last `stall_s`, or
  the episode has run `give_up_s` without success. It then keeps the arm until the episode ends (a scripted
  DAgger operator).
A take-over re-plans from the running episode: from where the arm is, with the object in the hand or not.
"""

from __future__ import annotations

from collections import deque
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
    # How close (m) the EE must be to the grasp/release pose before the gripper acts (waits at most 1.5 s): above
    # the arm's steady-state tracking error, or every grasp waits out the bound (franka twin graphs: 0.012).
    grasp_tol_m: float = positive(0.004)
    drive: Literal["always", "window", "stall"] = "always"  # when it has the arm (module docs)
    takeover_at_s: float = non_negative(3.0)  # window: seconds into the episode when it takes over
    takeover_for_s: float = positive(2.0)  # window: how long it keeps the arm
    stall_s: float = positive(3.0)  # stall: the window over which the EE must move ...
    stall_m: float = positive(0.01)  # ... at least this far (m), else it takes over
    give_up_s: float = positive(12.0)  # stall: it also takes over once an episode has run this long


class ScriptedTeleop(TeleopDeviceNode):
    """Scripted expert teleop: plans from `task/objects`, emits `ee_target` + `grip` + `takeover`."""

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
        self._engaged = False
        self._trail: deque[tuple[float, np.ndarray]] = deque()  # (t, EE position) over the last stall_s
        self.takeovers = 0

    def step(self) -> None:
        for msg in self.read_all("episode"):
            if msg["event"] == "start":
                task = self.params.task or str(msg["task"])
                p = self.params
                self.expert = self._expert_cls(task, p.noise, p.speed, self._down, p.grasp_tol_m)
                self._episode = (msg.timestamp_ns, int(msg["seed"]))
            else:
                self._episode = None
            self._engaged = False
            self._trail.clear()
        if self._episode is None or self.expert is None:
            self.emit_takeover(False)
            return
        state, objects = self.read("state"), self.read("objects")
        # Act only on observations made after the reset: the arm state of the same instant may still show
        # the previous episode's pose.
        fresh = (
            objects is not None
            and state is not None
            and objects.timestamp_ns >= self._episode[0]
            and state.timestamp_ns > self._episode[0]
        )
        if not fresh:
            self.emit_takeover(self._engaged)
            return
        now_s = self.now_ns() * 1e-9
        ee = np.asarray(state["ee_pose"], float)
        poses = dict(zip(str(objects["names"]).split(","), np.asarray(objects["poses"], float)))
        self._update_engagement(now_s, ee, poses)
        self.emit_takeover(self._engaged)
        if self._engaged:
            target, width = self.expert.act(now_s, ee, poses)
            self.emit_target(target, width)

    def _update_engagement(self, now_s: float, ee: np.ndarray, poses: dict[str, np.ndarray]) -> None:
        """Take the arm (planning from now) or hand it back, as `drive` says."""
        assert self._episode is not None and self.expert is not None
        p = self.params
        t = now_s - self._episode[0] * 1e-9  # seconds into the episode
        if p.drive == "always":
            wanted = True
        elif p.drive == "window":
            wanted = p.takeover_at_s <= t < p.takeover_at_s + p.takeover_for_s
        else:
            wanted = self._engaged or t >= p.give_up_s or self._stalled(now_s, ee[:3])
        if wanted and not self._engaged:
            command = self.policy_command()
            # Taking over a running episode (anything but `always` at the start): plan from the arm's state.
            width = None if p.drive == "always" else (command[1] if command is not None else 1.0)
            self.expert.reset()
            self.expert.plan(poses, ee, now_s, self._episode[1], takeover_width=width)
            self.takeovers += int(p.drive != "always")
        self._engaged = wanted

    def _stalled(self, now_s: float, pos: np.ndarray) -> bool:
        """Whether the EE has moved less than stall_m over the last stall_s (a full window observed)."""
        self._trail.append((now_s, pos.copy()))
        while self._trail and now_s - self._trail[0][0] > self.params.stall_s:
            self._trail.popleft()
        if now_s - self._trail[0][0] < 0.9 * self.params.stall_s:
            return False
        pts = np.array([q for _, q in self._trail])
        return float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0))) < self.params.stall_m

    def report(self) -> dict | None:
        return {"takeovers": self.takeovers} if self.params.drive != "always" else None
