"""`teleop.gamepad`: drive the arm with a gamepad through pygame's joystick module (SDL2).

pygame is the library LeRobot's own gamepad teleop uses, it is already installed with gym-hil, and SDL reads
evdev devices with no window: the node sets SDL_VIDEODRIVER=dummy so it runs headless. The sticks are
velocities (past a deadband) integrated into the absolute EE target at the node rate, like the SpaceMouse.

The default map is SDL2's layout of an Xbox-style pad on Linux (axes 0/1 left stick, 3/4 right stick;
buttons A=0 B=1 X=2 Y=3 LB=4 RB=5 Back=6 Start=7); every index is a param. It is printed at start.
Unplugging the pad (SDL's JOYDEVICEREMOVED) stops `ee_target`/`grip` (the arm holds) until it is back.

Take-over (a graph with a `control.arbiter`): RB is a dead-man switch. While it is held the operator drives
(`takeover` True); released, the target follows the policy's command, so the next press starts where the
arm is headed. X ends the episode labelled failure.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from robotflow.drivers.teleop_base import ButtonEdges, TeleopNode, deadband
from robotflow.runtime.params import ParamError, in_range, non_negative, positive

PERMISSION_FIX = (
    "plug it in (check `ls /dev/input/js*`); your user needs read access to /dev/input/event*: "
    "`sudo usermod -aG input $USER`, then log in again"
)

BUTTONS = (
    "button_grip",
    "button_fail",
    "button_discard",
    "button_slow",
    "button_stop",
    "button_start",
    "button_takeover",
)


@dataclass
class GamepadParams:
    index: int = non_negative(0)  # which pad, when several are plugged in
    max_speed: float = positive(0.15)  # EE speed at full stick (m/s)
    max_yaw_speed_deg: float = non_negative(60.0)  # EE yaw speed at full stick (deg/s)
    deadband: float = in_range(0, 1, 0.15)  # fraction of stick travel ignored around centre (sticks rarely rest at 0)
    slow_factor: float = positive(0.25)  # speed multiplier while the precision button is held
    axis_forward: int = 1  # left stick vertical: pushed away = forward (+x)
    axis_left: int = 0  # left stick horizontal: pushed left = +y
    axis_up: int = 4  # right stick vertical: pushed away = up (+z)
    axis_yaw: int = 3  # right stick horizontal: pushed left = yaw left
    button_grip: int = 0  # A: toggle the gripper
    button_fail: int = 2  # X: end the episode labelled failure
    button_discard: int = 3  # Y: discard the episode
    button_slow: int = 4  # LB (held): precision mode
    button_stop: int = 6  # Back: stop the episode (keep it)
    button_start: int = 7  # Start: start an episode
    button_takeover: int = 5  # RB (held): take the arm over from the policy (a dead-man switch)
    task: str = ""  # written into episode events

    def __post_init__(self) -> None:
        seen: dict[int, str] = {}
        for name in BUTTONS:
            b = getattr(self, name)
            if b in seen:
                raise ParamError(name, f"is button {b}, which `{seen[b]}` already uses: give each a different button")
            seen[b] = name


HELP = """gamepad teleop ({name}):
  left stick      forward/back, left/right      right stick  up/down (vertical), yaw (horizontal)
  button {grip:<2}       toggle the gripper             button {slow:<2}    hold for precision ({slow_factor:g}x speed)
  button {start:<2}       start an episode               button {stop:<2}    stop the episode (keep, success)
  button {fail:<2}       end the episode as a failure   button {discard:<2}    discard the episode
  button {takeover:<2}       hold to take over from the policy (released: the policy drives)"""


class GamepadTeleopNode(TeleopNode):
    """Gamepad teleop (pygame/SDL2 joystick); needs `arm/state` to start from the current pose."""

    Params = GamepadParams

    def setup(self) -> None:
        super().setup()
        # Headless: SDL's event queue needs a video driver, and without a focused window SDL would
        # otherwise drop joystick events.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        with warnings.catch_warnings():  # pygame 2.6 imports setuptools' deprecated pkg_resources
            warnings.simplefilter("ignore", UserWarning)
            import pygame

        self.pygame = pygame
        pygame.display.init()
        pygame.joystick.init()
        self.buttons = ButtonEdges()
        self._last_ns: int | None = None
        self.lost_count = 0
        self.pad = None
        if not self._open():
            n = pygame.joystick.get_count()
            found = f"only {n} pad(s) found" if n else "no gamepad found"
            raise RuntimeError(f"teleop.gamepad: {found} for index {self.params.index}; {PERMISSION_FIX}")
        p = self.params
        print(
            HELP.format(
                name=self.pad.get_name(),
                grip=p.button_grip,
                slow=p.button_slow,
                slow_factor=p.slow_factor,
                start=p.button_start,
                stop=p.button_stop,
                discard=p.button_discard,
                fail=p.button_fail,
                takeover=p.button_takeover,
            ),
            file=sys.stderr,
        )

    def _open(self) -> bool:
        pg = self.pygame
        if pg.joystick.get_count() <= self.params.index:
            return False
        pad = pg.joystick.Joystick(self.params.index)
        pad.init()
        need_axes = max(self.params.axis_forward, self.params.axis_left, self.params.axis_up, self.params.axis_yaw)
        if pad.get_numaxes() <= need_axes:
            raise RuntimeError(
                f"teleop.gamepad: {pad.get_name()!r} has {pad.get_numaxes()} axes but the map uses axis {need_axes}; "
                "set axis_forward/axis_left/axis_up/axis_yaw"
            )
        self.pad = pad
        self._instance = pad.get_instance_id()
        self.tell("opened %s", pad.get_name())
        return True

    def _poll(self) -> bool:
        """Handle hot-plug events; False while the pad is gone."""
        pg = self.pygame
        for ev in pg.event.get():
            if ev.type == pg.JOYDEVICEREMOVED and self.pad is not None and ev.instance_id == self._instance:
                self.tell("gamepad lost: holding the arm until it is plugged in again")
                self.lost_count += 1
                self.pad = None
                self.buttons.clear()
            elif ev.type == pg.JOYDEVICEADDED and self.pad is None:
                self._open()
        return self.pad is not None

    def _axis(self, i: int) -> float:
        return float(self.pad.get_axis(i))

    def step(self) -> None:
        now = self.now_ns()
        dt = 0.0 if self._last_ns is None else min((now - self._last_ns) * 1e-9, 0.05)
        self._last_ns = now
        if not self._poll() or not self.sync_target():
            return
        p = self.params
        pg = self.pygame
        try:
            sticks = np.array([self._axis(p.axis_forward), self._axis(p.axis_left), self._axis(p.axis_up)])
            yaw = self._axis(p.axis_yaw)
            pressed = {
                b: bool(self.pad.get_button(b))
                for b in (getattr(p, name) for name in BUTTONS)
                if b < self.pad.get_numbuttons()
            }
        except pg.error as e:  # the pad went away between the event poll and the read
            self.tell("gamepad read failed (%s): holding the arm", e)
            self.lost_count += 1
            self.pad = None
            return
        # SDL: stick pushed away or left reads negative.
        lin = -deadband(sticks, p.deadband) * p.max_speed
        yaw_rate = -float(deadband(np.array([yaw]), p.deadband)[0]) * np.radians(p.max_yaw_speed_deg)
        scale = p.slow_factor if pressed.get(p.button_slow) else 1.0
        engaged = bool(pressed.get(p.button_takeover))
        if not self.follow_control(engaged):
            self.target.integrate(scale * lin, np.array([0.0, 0.0, scale * yaw_rate]), dt)
        presses, _ = self.buttons.update(pressed, now * 1e-9)
        if p.button_grip in presses:
            self.grip = 0.0 if self.grip > 0.5 else 1.0
        if p.button_start in presses:
            self.episode("start")
        if p.button_stop in presses:
            self.episode("stop")
        if p.button_fail in presses:
            self.episode("fail")
        if p.button_discard in presses:
            self.episode("discard")
        self.emit_target(self.target.pose(), self.grip)
        self.emit_takeover(engaged)

    def report(self) -> dict | None:
        return {"lost": getattr(self, "lost_count", 0)}

    def teardown(self) -> None:
        pg = getattr(self, "pygame", None)
        if pg is None:
            return
        if self.pad is not None:
            self.pad.quit()
            self.pad = None
        pg.joystick.quit()
        pg.display.quit()
