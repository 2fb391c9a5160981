"""A fake `pyspacemouse` (2.x) for tests without a SpaceMouse.

It defines only what robotflow.drivers.teleop_spacemouse uses, under the real names and with the real
parameter names (tests/test_teleop_spacemouse.py checks them against the installed pyspacemouse). Like the
real device, each `read()` consumes at most one queued HID report and stamps the state's `t` only when it
processed one; an unplugged device raises easyhid's HIDException from `read()`. Test hooks start with `_`.
"""

import time
from dataclasses import dataclass, field
from enum import Enum

from easyhid import HIDException


class AxisConvention(str, Enum):  # noqa: UP042 - the real pyspacemouse class
    LEGACY = "legacy"
    HID = "hid"
    HID_Z_UP = "hid_z_up"
    ROS = "ros"
    UNITY = "unity"


class ButtonState(list):
    def __int__(self) -> int:
        return sum((b << i) for (i, b) in enumerate(reversed(self)))


@dataclass
class SpaceMouseState:
    t: float = -1.0
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    buttons: ButtonState = field(default_factory=lambda: ButtonState([]))


class SpaceMouseDevice:
    def __init__(self, info, device=None) -> None:
        self._info = info  # the fake's DeviceInfo is the device name
        self._device = device  # the fake HID device: a _Puck
        self._state = SpaceMouseState(buttons=ButtonState([0, 0]))

    @property
    def name(self) -> str:
        return self._info

    @property
    def connected(self) -> bool:
        return self._device is not None

    def open(self) -> None:
        self._device._opened += 1

    def close(self) -> None:
        self._device = None

    def read(self) -> SpaceMouseState:
        if not self.connected:
            return self._state
        puck = self._device
        if not puck._plugged:
            raise HIDException("Failed to read from HID device: -1")
        if puck._reports:
            report = puck._reports.pop(0)
            for k, v in report.items():
                if k == "buttons":
                    self._state.buttons = ButtonState(v)
                else:
                    setattr(self._state, k, float(v))
            self._state.t = time.perf_counter()
        return self._state


class _Puck:
    """One fake HID device: queued reports, plugged or not."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._plugged = True
        self._reports: list[dict] = []
        self._opened = 0


_PUCKS: list[_Puck] = []
_ACCESS = True  # False: the device is there but the user may not open /dev/hidraw* (no udev rule)


def _plug(name: str = "SpaceMouse Compact") -> _Puck:
    puck = _Puck(name)
    _PUCKS.append(puck)
    return puck


def _report(**fields) -> None:
    """Queue one HID report on the first plugged device (fields: x, y, z, roll, pitch, yaw, buttons)."""
    for p in _PUCKS:
        if p._plugged:
            p._reports.append(fields)
            return


def _unplug() -> None:
    for p in _PUCKS:
        p._plugged = False
    _PUCKS.clear()


def get_connected_devices() -> list[str]:
    return [p.name for p in _PUCKS if p._plugged]


def open(  # noqa: A001 - pyspacemouse's own name
    callback=None,
    dof_callback=None,
    dof_callbacks=None,
    button_callback=None,
    button_callbacks=None,
    nonblocking: bool = True,
    device: str | None = None,
    device_index: int = 0,
    device_spec=None,
    axis_convention: AxisConvention | None = None,
) -> SpaceMouseDevice:
    known = ("SpaceMouse Compact", "SpaceMouse Pro", "SpaceMouse Wireless", "SpaceNavigator")
    if device is None:
        connected = get_connected_devices()
        if not connected:
            raise RuntimeError("No connected or supported devices found.")
        device = connected[0]
    if device not in known:
        raise ValueError(f"Unknown device: '{device}'. Available: {list(known)}")
    found = [p for p in _PUCKS if p._plugged and p.name == device]
    if not found:
        raise RuntimeError(f"Device '{device}' not found.")
    if not _ACCESS:
        raise RuntimeError("Failed to open device")
    mouse = SpaceMouseDevice(device, found[min(device_index, len(found) - 1)])
    mouse.open()
    return mouse
