"""`control.arbiter`: one command stream to the arm from a policy and a person who can take over from it.

A policy graph that lets an operator intervene puts the arbiter between the command sources and the arm and
gripper, so the safety layer (robotflow/safety.py) sees one stream:

    policy/ee_target, policy/grip  ->  arbiter  ->  arm/ee_target, gripper/target
    teleop/ee_target, teleop/grip, teleop/takeover  ->  arbiter/control  ->  teleop/control, policy/control

- While the device's `takeover` is active (the operator holds its take-over button or clutch) the person's
  commands are forwarded; otherwise the policy's. The policy keeps running while the person drives, but its
  actions are not forwarded.
- Every tick the arbiter publishes `control` {`source`: "policy" | "human", `ee_pose` (7,) and `width`: the
  last command forwarded, `interventions`: take-overs so far in this episode, `human_s`: seconds under human
  control in this episode}. The recorder keeps it, so every episode says who was in control at each tick; the
  device follows `ee_pose`/`width` while the policy drives, so a take-over starts where the arm is headed; the
  policy node drops its queued actions when control comes back, so it re-plans from the current state.
- A switch of source never jumps: after it, each forwarded EE target moves at most `handover_step_m` and
  `handover_step_deg` from the previous forwarded one until it has caught up with the new source (the arm's
  own step limit is the second line). The gripper switches at once: closing on or releasing an object is the
  new source's decision.
- Only fresh messages are forwarded, never a repeat: when the source in control goes quiet (the device is
  lost while engaged, the policy stalls) the arm's command watchdog holds the arm. A lost device does not hand
  the arm back to the policy: only the device's own release does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robotflow.geometry import pose_toward
from robotflow.runtime.node import Input, Node
from robotflow.runtime.params import positive

SOURCES = ("policy", "human")


@dataclass
class ArbiterParams:
    handover_step_m: float = positive(0.01)  # after a switch: how far each forwarded EE target may move (m)
    handover_step_deg: float = positive(3.0)  # ... and turn (degrees), until it reaches the new source's target


class ArbiterNode(Node):
    """Forwards the policy's or the operator's commands (see the module docs)."""

    Params = ArbiterParams
    inputs = {
        "policy_ee": Input(delivery="queue", queue_size=16),
        "policy_grip": Input(delivery="queue", queue_size=16),
        "human_ee": Input(delivery="queue", queue_size=16),
        "human_grip": Input(delivery="queue", queue_size=16),
        "takeover": Input(),
        "episode": Input(delivery="queue", required=False),
    }
    outputs = ("ee_target", "grip", "control")

    def setup(self) -> None:
        self.counts = {"interventions": 0, "handbacks": 0, "forwarded": 0, "ramped": 0, "dropped_stale": 0}
        self._ee: np.ndarray | None = None  # the last EE target forwarded
        self._width: float | None = None
        self._reset_episode()

    def _reset_episode(self) -> None:
        self.source = "policy"
        self.interventions = 0
        self.human_s = 0.0
        self._switched_ns = -1  # commands stamped before the last switch belong to the previous source
        self._catching_up = False
        self._last_tick_ns: int | None = None

    def step(self) -> None:
        now = self.now_ns()
        for msg in self.read_all("episode"):
            if msg["event"] == "start":
                self._reset_episode()
        if self.source == "human" and self._last_tick_ns is not None:
            self.human_s += (now - self._last_tick_ns) * 1e-9
        self._last_tick_ns = now
        self._follow_takeover()
        self._forward_ee()
        self._forward_grip()
        fields = {"source": self.source, "interventions": self.interventions, "human_s": self.human_s}
        if self._ee is not None:
            fields["ee_pose"] = self._ee.copy()
        if self._width is not None:
            fields["width"] = self._width
        self.emit("control", **fields)

    def _follow_takeover(self) -> None:
        msg = self.read("takeover")
        wanted = "human" if msg is not None and bool(msg["active"]) else "policy"
        if wanted == self.source:
            return
        self.source = wanted
        self._switched_ns = msg.timestamp_ns if msg is not None else self.now_ns()
        self._catching_up = self._ee is not None
        if wanted == "human":
            self.interventions += 1
            self.counts["interventions"] += 1
        else:
            self.counts["handbacks"] += 1
        self.log("control: %s (take-overs this episode: %d)", wanted, self.interventions)

    def _fresh(self, kind: str):
        """The newest `kind` ("ee" or "grip") command of the source in control sent since the last switch, or
        None. The other source's commands are read and dropped, so nothing queues up for a later switch."""
        for other in SOURCES:
            if other != self.source:
                self.read_all(f"{other}_{kind}")
        latest = None
        for msg in self.read_all(f"{self.source}_{kind}"):
            if msg.timestamp_ns < self._switched_ns:
                self.counts["dropped_stale"] += 1
            else:
                latest = msg
        return latest

    def _forward_ee(self) -> None:
        msg = self._fresh("ee")
        if msg is None:
            return
        target = np.asarray(msg["ee_pose"], float)
        if target.shape != (7,) or not np.all(np.isfinite(target)):
            return  # the arm's safety layer rejects and counts it too; the arbiter never ramps toward it
        if self._catching_up and self._ee is not None:
            p = self.params
            target, limited = pose_toward(self._ee, target, p.handover_step_m, np.radians(p.handover_step_deg))
            self._catching_up = limited
            self.counts["ramped"] += int(limited)
        self._ee = target
        self.counts["forwarded"] += 1
        self.emit("ee_target", ee_pose=target.copy())

    def _forward_grip(self) -> None:
        msg = self._fresh("grip")
        if msg is not None:
            self._width = float(msg["width"])
            self.emit("grip", width=self._width)

    def report(self) -> dict | None:
        return {**self.counts, "source": self.source}
