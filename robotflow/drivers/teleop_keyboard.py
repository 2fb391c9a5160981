"""`teleop.keyboard`: drive the arm from a terminal keyboard.

Each key press moves the absolute EE target by a fixed step (x/y/z, yaw), opens or closes the gripper, or
starts/stops/fails/discards an episode. stdin is read without blocking in cbreak mode (termios/tty) and
restored on teardown. The key -> command logic is the pure `KeyboardTeleop` class, testable without a terminal.

Take-over (a graph with a `control.arbiter`): a terminal delivers key presses but no key releases, so no key
can be held as a dead-man switch: `t` toggles the take-over instead. While it is off and the policy drives,
the target and grip follow the policy's command, so the next `t` starts where the arm is headed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np

from robotflow.drivers.teleop_base import WORKSPACE_HI, WORKSPACE_LO, TeleopNode
from robotflow.geometry import canonical_quat, quat_mul, yaw_quat
from robotflow.runtime.params import non_negative, positive

# key: (action, argument). Movements are in the robot base frame.
KEYMAP: dict[str, tuple[str, object]] = {
    "w": ("move", (1, 0, 0)),
    "s": ("move", (-1, 0, 0)),
    "a": ("move", (0, 1, 0)),
    "d": ("move", (0, -1, 0)),
    "r": ("move", (0, 0, 1)),
    "f": ("move", (0, 0, -1)),
    "q": ("yaw", 1),
    "e": ("yaw", -1),
    "o": ("grip", 1.0),
    "c": ("grip", 0.0),
    " ": ("grip", "toggle"),
    "n": ("episode", "start"),
    "m": ("episode", "stop"),
    "b": ("episode", "fail"),  # `f` moves down
    "x": ("episode", "discard"),
    "t": ("takeover", "toggle"),
}
HELP = """keyboard teleop keys:
  w/s  +x/-x (forward/back)     a/d  +y/-y (left/right)     r/f  up/down
  q/e  yaw left/right           o/c  open/close gripper     space  toggle gripper
  n    start episode            m    stop episode (keep, success)
  b    end episode as a failure x    discard episode
  t    take over from the policy / hand back (with a control.arbiter in the graph)"""


@dataclass
class KeyboardTeleop:
    """Key presses -> absolute EE target, gripper width and episode events."""

    step_m: float = 0.01
    yaw_step_rad: float = np.radians(5.0)
    pos: np.ndarray | None = None
    base_quat: np.ndarray | None = None
    yaw: float = 0.0
    grip: float = 1.0
    recording: bool = False
    takeover: bool = False  # the operator has claimed the arm from the policy (`t` toggles it)
    events: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.pos is not None

    def init_from(self, ee_pose: np.ndarray) -> None:
        """Start from the arm's current pose so the first command does not move it."""
        self.pos = np.asarray(ee_pose[:3], float).copy()
        self.base_quat = canonical_quat(ee_pose[3:7])
        self.yaw = 0.0

    def target(self) -> np.ndarray:
        return np.concatenate([self.pos, canonical_quat(quat_mul(yaw_quat(self.yaw), self.base_quat))])

    def press(self, key: str) -> str | None:
        """Apply one key; returns an episode event (`start`, `stop`, `fail`, `discard`) or None."""
        action = KEYMAP.get(key.lower())
        if action is None:
            return None
        kind, arg = action
        if kind == "episode":
            if arg == "start" and not self.recording:
                self.recording = True
                return "start"
            if arg in ("stop", "fail", "discard") and self.recording:
                self.recording = False
                return arg
            return None
        if kind == "takeover":
            self.takeover = not self.takeover
            return None
        if kind == "grip":
            self.grip = (0.0 if self.grip > 0.5 else 1.0) if arg == "toggle" else float(arg)
            return None
        if not self.ready:
            return None
        if kind == "move":
            self.pos = np.clip(self.pos + self.step_m * np.asarray(arg, float), WORKSPACE_LO, WORKSPACE_HI)
        elif kind == "yaw":
            self.yaw = float(np.clip(self.yaw + self.yaw_step_rad * int(arg), -np.pi / 2, np.pi / 2))
        return None


@dataclass
class KeyboardParams:
    step_m: float = positive(0.01)  # EE step per key press (m)
    yaw_step_deg: float = non_negative(5.0)  # yaw step per key press (degrees)
    task: str = ""  # written into episode events


class KeyboardTeleopNode(TeleopNode):
    """Terminal keyboard teleop (see HELP for the keys); needs `arm/state` to start from the current pose."""

    Params = KeyboardParams

    def setup(self) -> None:
        super().setup()
        self.keys = KeyboardTeleop(self.params.step_m, np.radians(self.params.yaw_step_deg))
        self._fd: int | None = None
        self._saved = None
        if sys.stdin is not None and sys.stdin.isatty():
            import termios
            import tty

            self._fd = sys.stdin.fileno()
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)  # keys arrive one by one, no echo; Ctrl-C still works
        else:
            self.log("stdin is not a terminal: keyboard teleop receives no keys")
        print(HELP, file=sys.stderr, flush=True)

    def _read_keys(self) -> str:
        if self._fd is None:
            return ""
        import select

        chunks = []
        while select.select([self._fd], [], [], 0)[0]:
            data = os.read(self._fd, 64)
            if not data:
                break
            chunks.append(data.decode(errors="ignore"))
        return "".join(chunks)

    def handle(self, keys: str) -> None:
        """Apply key presses and emit what they produce (used by step; callable from tests)."""
        for k in keys:
            was = self.keys.takeover
            ev = self.keys.press(k)
            if self.keys.takeover != was:
                self.tell("take-over %s", "on: you drive" if self.keys.takeover else "off: the policy drives")
            if ev is not None:
                self.emit_episode(ev)
                self.tell("episode %d: %s", self._index, ev)

    def step(self) -> None:
        for msg in self.read_all("task_episode"):
            if msg["event"] == "start":
                self.keys.pos = None  # the robot was reset: start again from its new pose
                self.keys.recording = False
                self._reset_ns = msg.timestamp_ns
        if not self.keys.ready:
            state = self.read("state")
            if state is None or state.timestamp_ns <= self._reset_ns:
                return
            self.keys.init_from(np.asarray(state["ee_pose"], float))
        self.handle(self._read_keys())
        # After the keys: while the policy drives they move nothing, and the tick `t` takes over the target
        # is still the policy's last command.
        cmd = None if self.keys.takeover else self.policy_command()
        if cmd is not None:
            self.keys.init_from(cmd[0])
            self.keys.grip = cmd[1]
        self.emit_target(self.keys.target(), self.keys.grip)
        self.emit_takeover(self.keys.takeover)

    def teardown(self) -> None:
        if self._fd is not None and self._saved is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None
