"""What every human teleop device node shares: the target it drives, episode buttons, and device loss.

`teleop.spacemouse`, `teleop.gamepad` and `teleop.webxr` emit exactly what `teleop.keyboard` emits
(`ee_target` with an absolute EE pose, `grip` with a normalised width, `episode` start/end events), so a
graph swaps one device for another by changing the node's type and params.

- The target starts from the arm's measured pose (`state`), so connecting a device never moves the arm,
  and starts again from it after the sim task resets the robot (`task_episode`).
- While the device is lost (unplugged, page closed, no pose for a while) the node emits nothing on
  `ee_target` and `grip`: the arm keeps (or its watchdog holds) its last target. On reconnection the
  target continues from where it was, never from the device's new reading.
- Take-over (a graph with a `control.arbiter`): every tick it is alive the device emits `takeover`, True
  while the operator holds its take-over button or clutch. While it is False and the arbiter's `control`
  says the policy drives, the target and grip follow the policy's command (`follow_control`), so taking
  over starts exactly where the arm is headed. Without an arbiter nothing changes: the device drives.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from robotflow.drivers.base import TeleopDeviceNode
from robotflow.geometry import canonical_quat, quat_from_rotvec, quat_mul
from robotflow.runtime.node import Input

# The operator's label of an episode ended by each episode button (robotflow.recording.format.LABELS).
LABEL_OF_BUTTON = {"stop": "success", "fail": "failure", "discard": "discarded"}

WORKSPACE_LO = np.array([0.2, -0.5, 0.01])  # teleop targets stay in a box above the table (m)
WORKSPACE_HI = np.array([0.8, 0.5, 0.6])


def deadband(value: np.ndarray, band: float) -> np.ndarray:
    """Zero inside +-band, rescaled outside so the output still spans 0..1 without a step at the edge."""
    value = np.asarray(value, float)
    if band <= 0:
        return value
    mag = np.clip((np.abs(value) - band) / (1.0 - band), 0.0, None)
    return np.sign(value) * mag


@dataclass
class EETarget:
    """An absolute EE target pose that velocity devices integrate into, clamped to the workspace box."""

    pos: np.ndarray
    quat: np.ndarray  # w, x, y, z

    @classmethod
    def from_pose(cls, ee_pose: np.ndarray) -> EETarget:
        ee_pose = np.asarray(ee_pose, float)
        return cls(np.clip(ee_pose[:3], WORKSPACE_LO, WORKSPACE_HI), canonical_quat(ee_pose[3:7]))

    def integrate(self, lin_vel: np.ndarray, ang_vel: np.ndarray, dt: float) -> None:
        """Move by a base-frame linear (m/s) and angular (rad/s, rotation vector) velocity for dt seconds."""
        self.pos = np.clip(self.pos + np.asarray(lin_vel, float) * dt, WORKSPACE_LO, WORKSPACE_HI)
        ang = np.asarray(ang_vel, float)
        if np.any(ang):
            self.quat = canonical_quat(quat_mul(quat_from_rotvec(ang * dt), self.quat))

    def set(self, pos: np.ndarray, quat: np.ndarray) -> None:
        self.pos = np.clip(np.asarray(pos, float), WORKSPACE_LO, WORKSPACE_HI)
        self.quat = canonical_quat(quat)

    def pose(self) -> np.ndarray:
        return np.concatenate([self.pos, self.quat])


class EpisodeButtons:
    """Start / stop / fail / discard from device buttons, with the keyboard's rules: start only when idle;
    stop (keep it, labelled success), fail (keep it, labelled failure) or discard only while recording."""

    def __init__(self) -> None:
        self.recording = False

    def request(self, action: str) -> str | None:
        """`start`, `stop`, `fail`, `discard` or `toggle` (start when idle, stop when recording) -> the event
        or None."""
        if action == "toggle":
            action = "stop" if self.recording else "start"
        if action == "start" and not self.recording:
            self.recording = True
            return "start"
        if action in ("stop", "fail", "discard") and self.recording:
            self.recording = False
            return action
        return None


class ButtonEdges:
    """Press/release edges and hold durations of numbered buttons, from polled states."""

    def __init__(self) -> None:
        self._down: dict[int, float] = {}  # button -> time (s) it went down

    def update(self, pressed: dict[int, bool], now_s: float) -> tuple[list[int], list[tuple[int, float]]]:
        """Returns (buttons pressed now, [(button released now, seconds it was held)])."""
        presses, releases = [], []
        for b, down in pressed.items():
            if down and b not in self._down:
                self._down[b] = now_s
                presses.append(b)
            elif not down and b in self._down:
                releases.append((b, now_s - self._down.pop(b)))
        return presses, releases

    def held_s(self, button: int, now_s: float) -> float:
        t = self._down.get(button)
        return 0.0 if t is None else now_s - t

    def clear(self) -> None:
        self._down.clear()


class TeleopNode(TeleopDeviceNode):
    """Base of the human device nodes: target initialisation from the arm, reset handling, episode events."""

    # state: the arm's measured pose, where the target starts. task_episode (optional): the sim task's
    # events; after its reset the target restarts from the arm.
    inputs = {**TeleopDeviceNode.inputs, "task_episode": Input(delivery="queue", required=False)}
    outputs = (*TeleopDeviceNode.outputs, "episode")

    def setup(self) -> None:
        self.target: EETarget | None = None
        self.grip = 1.0
        self.episodes = EpisodeButtons()
        self._index = -1
        self._start_ns = 0
        self._reset_ns = -1
        self._following = False  # the target followed the policy's command last tick

    def sync_target(self) -> bool:
        """Follow sim resets and start the target from the arm's pose; False until there is a target."""
        for msg in self.read_all("task_episode"):
            if msg["event"] == "start":
                self.target = None  # the robot was reset: start again from its new pose
                self.episodes.recording = True  # the sim task records from its start: the button stops it
                self._index = int(msg["index"])
                self._start_ns = msg.timestamp_ns
                self._reset_ns = msg.timestamp_ns
                self.on_reset()
        if self.target is None:
            state = self.read("state")
            if state is None or state.timestamp_ns <= self._reset_ns:
                return False
            self.target = EETarget.from_pose(state["ee_pose"])
        return True

    def follow_control(self, engaged: bool) -> bool:
        """While the operator has not taken over and the policy drives, set the target and grip to the
        policy's command. Returns True when the device's own motion must not move the target this tick:
        it followed the policy, or this is the tick the take-over starts (its first target is then exactly
        the policy's last command, whatever the stick or puck already reads). Call after `sync_target`."""
        was_following = self._following
        cmd = None if engaged else self.policy_command()
        self._following = cmd is not None
        if cmd is not None:
            self.target = EETarget.from_pose(cmd[0])
            self.grip = cmd[1]
            return True
        return was_following

    def tell(self, message: str, *args) -> None:
        """What the person at the device must see (device lost or back, episodes), whatever the log level."""
        print(f"[{self.name}] " + (message % args if args else message), file=sys.stderr, flush=True)

    def on_reset(self) -> None:
        """Called when the sim task reset the robot (the target restarts from the arm)."""

    def episode(self, action: str) -> None:
        """Apply an episode button (`start`, `stop`, `fail`, `discard`, `toggle`) and emit the event it produces."""
        ev = self.episodes.request(action)
        if ev is not None:
            self.emit_episode(ev)
            self.tell("episode %d: %s", self._index, ev)

    def emit_episode(self, ev: str) -> None:
        """Emit the `episode` event for `start`, `stop`, `fail` or `discard` (the task node's event fields).

        An end carries the operator's `label` (success, failure or discarded): on hardware it is the outcome;
        in sim the task's scorer decides the outcome and the label is kept beside it."""
        now = self.now_ns()
        task = getattr(self.params, "task", "")
        if ev == "start":
            self._index += 1
            self._start_ns = now
            self.emit(
                "episode", event="start", index=self._index, seed=-1, outcome="", label="", duration_s=0.0, task=task
            )
        else:
            label = LABEL_OF_BUTTON[ev]
            self.emit(
                "episode",
                event="end",
                index=self._index,
                seed=-1,
                outcome=label,
                label=label,
                duration_s=(now - self._start_ns) * 1e-9,
                task=task,
            )
