"""A fake `pygame` (2.x) joystick for tests without a gamepad.

It defines only what robotflow.drivers.teleop_gamepad uses, under pygame's real names and with the
parameter names of pygame's own signatures (tests/test_teleop_gamepad.py checks them against the installed
pygame). Like SDL, plugging and unplugging a pad posts JOYDEVICEADDED / JOYDEVICEREMOVED events, and a
Joystick object of an unplugged pad raises `pygame.error`. Test hooks start with `_`.
"""

from __future__ import annotations

import builtins

JOYDEVICEADDED = 1541
JOYDEVICEREMOVED = 1542


class error(builtins.RuntimeError):  # noqa: N801 - pygame's own name
    pass


class _Event:
    def __init__(self, type: int, **attrs) -> None:  # noqa: A002 - pygame's attribute name
        self.type = type
        self.__dict__.update(attrs)


class _Pad:
    """One fake device: an Xbox-style layout (6 axes, 11 buttons) as SDL2 reports it on Linux."""

    def __init__(self, name: str, instance_id: int) -> None:
        self.name = name
        self.instance_id = instance_id
        self.axes = [0.0, 0.0, -1.0, 0.0, 0.0, -1.0]  # triggers rest at -1
        self.buttons = [0] * 11
        self.plugged = True


_PADS: list[_Pad] = []
_EVENTS: list[_Event] = []
_NEXT_ID = [0]
_STATE = {"display": False, "joystick": False}


def _plug(name: str = "Xbox Wireless Controller") -> _Pad:
    pad = _Pad(name, _NEXT_ID[0])
    _NEXT_ID[0] += 1
    _PADS.append(pad)
    _EVENTS.append(_Event(JOYDEVICEADDED, device_index=len(_PADS) - 1, guid="fake"))
    return pad


def _unplug(pad: _Pad) -> None:
    pad.plugged = False
    _PADS.remove(pad)
    _EVENTS.append(_Event(JOYDEVICEREMOVED, instance_id=pad.instance_id))


class display:  # noqa: N801 - pygame's module name
    @staticmethod
    def init() -> None:
        _STATE["display"] = True

    @staticmethod
    def quit() -> None:
        _STATE["display"] = False


class event:  # noqa: N801 - pygame's module name
    @staticmethod
    def get(eventtype=None, pump=True, exclude=None) -> list:
        if not _STATE["display"]:
            raise error("video system not initialized")
        out = list(_EVENTS)
        _EVENTS.clear()
        return out


class _JoystickType:
    def __init__(self, pad: _Pad) -> None:
        self._pad = pad

    def _live(self) -> _Pad:
        if not self._pad.plugged:
            raise error("Joystick not initialized")
        return self._pad

    def init(self) -> None:
        pass

    def quit(self) -> None:
        pass

    def get_name(self) -> str:
        return self._live().name

    def get_instance_id(self) -> int:
        return self._pad.instance_id

    def get_numaxes(self) -> int:
        return len(self._live().axes)

    def get_numbuttons(self) -> int:
        return len(self._live().buttons)

    def get_axis(self, axis_number: int) -> float:
        return float(self._live().axes[axis_number])

    def get_button(self, button: int) -> bool:
        return bool(self._live().buttons[button])


class joystick:  # noqa: N801 - pygame's module name
    JoystickType = _JoystickType

    @staticmethod
    def init() -> None:
        _STATE["joystick"] = True

    @staticmethod
    def quit() -> None:
        _STATE["joystick"] = False

    @staticmethod
    def get_init() -> bool:
        return _STATE["joystick"]

    @staticmethod
    def get_count() -> int:
        if not _STATE["joystick"]:
            raise error("joystick system not initialized")
        return len(_PADS)

    @staticmethod
    def Joystick(id: int) -> _JoystickType:  # noqa: N802, A002 - pygame's own names
        if not _STATE["joystick"]:
            raise error("joystick system not initialized")
        if id >= len(_PADS):
            raise error("Invalid joystick device number")
        return _JoystickType(_PADS[id])
