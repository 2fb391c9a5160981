"""A fake `pyrealsense2` (2.5x) for tests without a camera.

Only what robotflow.drivers.realsense uses, under the real names and with the real parameter names
(tests/test_drivers_fakes.py checks them against the installed pyrealsense2). Frames are produced on the
wall clock at the configured fps into one pooled buffer that is overwritten for every frame, as
librealsense reuses its frame pool; a driver that does not copy would publish a changing buffer.
Test hooks start with `_`.
"""

from __future__ import annotations

import time

import numpy as np

_devices: list[str] = ["111111111111", "222222222222"]  # serial numbers of the connected cameras
_pipelines: list = []
_frozen = False  # test hook: cameras stop delivering frames
_plugged_in: dict[str, int] = {}  # serial -> times it was plugged back in (_unplug/_plug)


def _unplug(serial: str) -> None:
    """Test hook: the camera disappears from the USB bus. As with librealsense, it is no longer listed, its
    running pipeline delivers nothing from now on, and a new pipeline for it cannot start."""
    _devices.remove(serial)


def _plug(serial: str) -> None:
    """Test hook: the camera is back on the bus (listed again). A pipeline started before the unplug stays
    dead: as with librealsense, only a new (restarted) pipeline streams from it."""
    _devices.append(serial)
    _plugged_in[serial] = _plugged_in.get(serial, 0) + 1


class stream:  # noqa: N801 - pyrealsense2's enum names are lower case
    def __init__(self, value):
        self._value = value


stream.color = stream("color")
stream.depth = stream("depth")


class format:  # noqa: N801,A001
    def __init__(self, value):
        self._value = value


format.rgb8 = format("rgb8")
format.bgr8 = format("bgr8")


class camera_info:  # noqa: N801
    def __init__(self, value):
        self._value = value


camera_info.serial_number = camera_info("serial_number")
camera_info.name = camera_info("name")


class device:  # noqa: N801
    def __init__(self, serial):
        self._serial = serial

    def get_info(self, info):
        return self._serial if info is camera_info.serial_number else "Intel RealSense D435 (fake)"


class context:  # noqa: N801
    def query_devices(self):
        return [device(s) for s in _devices]


class config:  # noqa: N801
    def __init__(self):
        self._serial = None
        self._streams: list = []

    def enable_device(self, serial):
        self._serial = serial

    def enable_stream(self, stream_type, width, height, format, framerate):  # noqa: A002
        self._streams.append((stream_type, width, height, format, framerate))


class video_frame:  # noqa: N801
    def __init__(self, buffer=None, number=0):
        self._buffer = buffer
        self._number = number

    def __bool__(self):
        return self._buffer is not None

    def get_data(self):
        return self._buffer

    def get_frame_number(self):
        return self._number

    def get_width(self):
        return self._buffer.shape[1]

    def get_height(self):
        return self._buffer.shape[0]


class composite_frame:  # noqa: N801
    def __init__(self, color=None):
        self._color = color

    def __bool__(self):
        return self._color is not None

    def size(self):
        return 0 if self._color is None else 1

    def get_color_frame(self, index=0):
        return self._color if self._color is not None else video_frame()


class pipeline:  # noqa: N801
    def __init__(self):
        self._config = None
        self._started = False
        self._stopped = False
        self._pool = None
        self._t0 = 0.0
        self._delivered = -1
        self._buffers_handed_out = 0
        _pipelines.append(self)

    def start(self, config):
        if self._started:
            raise RuntimeError("start() cannot be called before stop()")
        if config._serial is not None and config._serial not in _devices:
            raise RuntimeError("No device connected")
        if not _devices:
            raise RuntimeError("No device connected")
        self._serial = config._serial if config._serial is not None else _devices[0]
        self._plug_count = _plugged_in.get(self._serial, 0)
        ((_, w, h, fmt, fps),) = [s for s in config._streams if s[0] is stream.color]
        self._config = config
        self._fps = fps
        self._pool = np.zeros((h, w, 3), np.uint8)
        self._t0 = time.monotonic()
        self._started = True

    def stop(self):
        if not self._started:
            raise RuntimeError("stop() cannot be called before start()")
        self._started = False
        self._stopped = True

    def poll_for_frames(self):
        if not self._started:
            raise RuntimeError("poll_for_frames() cannot be called before start()")
        n = int((time.monotonic() - self._t0) * self._fps)
        gone = self._serial not in _devices or _plugged_in.get(self._serial, 0) != self._plug_count
        if _frozen or gone or n <= self._delivered:
            return composite_frame()
        self._delivered = n
        # rgb8: R counts frames, G and B are fixed, so tests can check channel order and freshness.
        self._pool[..., 0] = n % 256
        self._pool[..., 1] = 100
        self._pool[..., 2] = 200
        self._buffers_handed_out += 1
        return composite_frame(video_frame(self._pool, n))
