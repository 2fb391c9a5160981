"""`teleop.spacemouse`: drive the arm with a 3Dconnexion SpaceMouse through `pyspacemouse` (hidapi).

The puck is a 6-DoF velocity device: each tick its deflection (past a deadband) is scaled to a linear and
angular velocity in the robot's base frame and integrated into the absolute EE target at the node rate.
Reports are read without blocking and drained every tick, so the newest deflection is used.

Safety: the device only reports while it moves, so a wireless puck that drops out mid-motion would leave
its last deflection standing. A deflection older than `stale_s` therefore counts as rest. A read error
(unplugged) stops the node from emitting `ee_target`/`grip` (the arm holds) and it reconnects every second.

Take-over and fail (a graph with a `control.arbiter`): the common pucks have two buttons and both are taken
(gripper, episodes), so by default moving the puck is the take-over: a deflection past the deadband claims
the arm at once (reaching for the puck is what an operator does when the policy goes wrong), and
`takeover_release_s` at rest hands it back. A larger puck's spare button can be a held take-over instead
(`takeover_button`). Fail is a chord of the two buttons: hold the episode button and click the grip button
(the gripper does not toggle), so no timing rule of a single button has to tell it from stop or discard.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from robotflow.drivers.teleop_base import ButtonEdges, TeleopNode, deadband
from robotflow.runtime.params import ParamError, in_range, non_negative, positive

UDEV_FIX = (
    'add a udev rule so your user can read it: echo \'KERNEL=="hidraw*", ATTRS{idVendor}=="256f", MODE="0666"\' '
    "| sudo tee /etc/udev/rules.d/99-spacemouse.rules && sudo udevadm control --reload-rules && sudo udevadm trigger "
    "(older Logitech-made pucks: idVendor 046d), then replug it"
)

# User frame of pyspacemouse's HID_Z_UP convention (x right, y away from the user, z up) -> robot base frame
# for a user standing behind the robot, looking along its +x: forward = +x, right = -y, up = +z.
USER_TO_BASE = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])

HELP = """SpaceMouse teleop:
  push/pull/slide the puck  move the gripper (forward = away from you, as seen from behind the robot)
  twist/tilt the puck       rotate the gripper
  button {grip}              toggle the gripper (open/close)
  button {episode}              start an episode / stop it (keep, success); hold {hold:g} s: discard it
  hold {episode}, click {grip}      end the episode as a failure
  {takeover}"""


@dataclass
class SpaceMouseParams:
    device: str = ""  # pyspacemouse device name (e.g. "SpaceMouse Compact"); empty: the first one connected
    max_speed: float = positive(0.15)  # EE speed at full deflection (m/s)
    max_rot_speed_deg: float = non_negative(60.0)  # EE rotation speed at full twist (deg/s); 0 = translation only
    deadband: float = in_range(0, 1, 0.1)  # fraction of full deflection ignored around rest (stops drift)
    frame_yaw_deg: float = 0.0  # where the user stands: 0 = behind the robot; 90 = on its left side, ...
    grip_button: int = 0  # toggles the gripper
    episode_button: int = 1  # short press: start/stop an episode; hold `discard_hold_s`: discard it
    discard_hold_s: float = positive(1.0)
    stale_s: float = positive(0.25)  # a deflection not reported again within this time counts as rest
    # -1: moving the puck past the deadband takes the arm over from the policy, `takeover_release_s` at rest
    # hands it back; else a spare button of a larger puck (SpaceMouse Pro, Enterprise), held to take over.
    takeover_button: int = in_range(-1, None, -1)
    takeover_release_s: float = positive(1.0)
    task: str = ""  # written into episode events

    def __post_init__(self) -> None:
        if self.takeover_button in (self.grip_button, self.episode_button):
            raise ParamError(
                "takeover_button", f"must be -1 (the puck's motion) or a third button, not {self.takeover_button}"
            )


class SpaceMouseTeleopNode(TeleopNode):
    """3Dconnexion SpaceMouse teleop (6-DoF velocity); needs `arm/state` to start from the current pose."""

    Params = SpaceMouseParams

    def setup(self) -> None:
        super().setup()
        p = self.params
        yaw = np.radians(p.frame_yaw_deg)
        rot = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        self._to_base = rot @ USER_TO_BASE
        self.buttons = ButtonEdges()
        self._episode_done = False  # the held episode button already failed or discarded: its release does nothing
        self._moved_ns: int | None = None  # when the puck last moved past the deadband
        self._last_ns: int | None = None
        self._report_t = -1.0  # pyspacemouse's state.t of the newest report
        self._report_ns = 0  # our clock when it arrived
        self._retry_ns = 0
        self.lost_count = 0
        self.device = self._open()
        if self.device is None:
            raise RuntimeError(self._missing_message())
        takeover = (
            f"hold button {p.takeover_button} to take over from the policy"
            if p.takeover_button >= 0
            else f"moving the puck takes over from the policy; {p.takeover_release_s:g} s at rest hands it back"
        )
        print(
            HELP.format(grip=p.grip_button, episode=p.episode_button, hold=p.discard_hold_s, takeover=takeover),
            file=sys.stderr,
        )

    def _pyspacemouse(self):
        try:
            import pyspacemouse
        except OSError as e:  # easyhid dlopens hidapi at import
            raise RuntimeError(
                f"pyspacemouse cannot load the hidapi library ({e}); install Debian's libhidapi-hidraw0 "
                "(`make install` does, as root)"
            ) from None
        return pyspacemouse

    def _missing_message(self) -> str:
        name = repr(self.params.device) if self.params.device else "supported SpaceMouse"
        return f"teleop.spacemouse: no {name} could be opened through hidapi; plug it in and {UDEV_FIX}"

    def _open(self):
        """Open the device, or None when it is absent or cannot be opened (no permission)."""
        psm = self._pyspacemouse()
        try:
            dev = psm.open(
                device=self.params.device or None,
                nonblocking=True,
                axis_convention=psm.AxisConvention.HID_Z_UP,
            )
        except (RuntimeError, ValueError, OSError) as e:
            if isinstance(e, ValueError) and "Unknown device" in str(e):
                raise RuntimeError(f"teleop.spacemouse: {e}") from None  # a typo in `device`: not transient
            return None
        self.tell("opened %s", dev.name)
        self._report_t = dev.read().t
        self._report_ns = self.now_ns()
        return dev

    def _read(self):
        """Drain the queued HID reports; returns the newest state, or None when the device is gone."""
        state = None
        try:
            for _ in range(64):  # one report per read; a tick at 100 Hz sees a handful at most
                state = self.device.read()
                if state.t == self._report_t:
                    break
                self._report_t = state.t
                self._report_ns = self.now_ns()
        except Exception as e:  # noqa: BLE001 - whatever hidapi raises for a lost device, the arm must hold
            self.tell("SpaceMouse lost (%s): holding the arm, reconnecting", e)
            self.lost_count += 1
            try:
                self.device.close()
            except Exception:  # noqa: BLE001 - already gone
                pass
            self.device = None
            self.buttons.clear()
            return None
        return state

    def step(self) -> None:
        now = self.now_ns()
        dt = 0.0 if self._last_ns is None else min((now - self._last_ns) * 1e-9, 0.05)
        self._last_ns = now
        if self.device is None:
            if now < self._retry_ns:
                return
            self._retry_ns = now + 1_000_000_000
            self.device = self._open()
            if self.device is None:
                return
            self._last_ns = now
            dt = 0.0
        state = self._read()
        if state is None:
            return
        if not self.sync_target():
            return
        p = self.params
        if (now - self._report_ns) * 1e-9 > p.stale_s:
            lin = ang = np.zeros(3)
        else:
            lin = deadband(np.array([state.x, state.y, state.z]), p.deadband)
            ang = deadband(np.array([state.roll, state.pitch, state.yaw]), p.deadband)
        lin = self._to_base @ np.clip(lin, -1, 1) * p.max_speed
        ang = self._to_base @ np.clip(ang, -1, 1) * np.radians(p.max_rot_speed_deg)
        engaged = self._engaged(state, lin, ang, now)
        if not self.follow_control(engaged):
            self.target.integrate(lin, ang, dt)
        self._buttons(state, now * 1e-9)
        self.emit_target(self.target.pose(), self.grip)
        self.emit_takeover(engaged)

    def _engaged(self, state, lin: np.ndarray, ang: np.ndarray, now_ns: int) -> bool:
        """Whether the operator has the arm: the held `takeover_button`, or puck motion within the last
        `takeover_release_s`."""
        p = self.params
        if p.takeover_button >= 0:
            return p.takeover_button < len(state.buttons) and bool(state.buttons[p.takeover_button])
        if np.any(lin) or np.any(ang):
            self._moved_ns = now_ns
        return self._moved_ns is not None and (now_ns - self._moved_ns) * 1e-9 < p.takeover_release_s

    def _buttons(self, state, now_s: float) -> None:
        p = self.params
        pressed = {b: bool(state.buttons[b]) for b in (p.grip_button, p.episode_button) if b < len(state.buttons)}
        presses, releases = self.buttons.update(pressed, now_s)
        if p.grip_button in presses and pressed.get(p.episode_button):  # the chord: fail
            if not self._episode_done:
                self._episode_done = True
                self.episode("fail")
        elif p.grip_button in presses:
            self.grip = 0.0 if self.grip > 0.5 else 1.0
        if not self._episode_done and self.buttons.held_s(p.episode_button, now_s) >= p.discard_hold_s:
            self._episode_done = True
            self.episode("discard")
        for b, _ in releases:
            if b == p.episode_button:
                if not self._episode_done:
                    self.episode("toggle")
                self._episode_done = False

    def report(self) -> dict | None:
        return {"lost": getattr(self, "lost_count", 0)}

    def teardown(self) -> None:
        dev = getattr(self, "device", None)
        if dev is not None:
            dev.close()
            self.device = None
