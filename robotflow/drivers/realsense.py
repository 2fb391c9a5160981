"""`realsense.camera`: an Intel RealSense color stream through pyrealsense2 (`pip install pyrealsense2`).

The node polls the pipeline without blocking and publishes each new color frame once. The frame's pixels
are copied out of librealsense's buffer exactly once: the buffer belongs to librealsense's frame pool and
is reused after the frame is released, so it cannot be handed downstream as it is. From there on the
array travels zero-copy to every reader. Timestamps come from the runtime clock at emit (node.emit), like
every other channel, so cameras and the arm share one time base in recordings.

Give the node a `rate:` at or above the camera's fps (e.g. 60 for 30 fps): a poll that finds nothing new
emits nothing, and device frames skipped between polls are counted (report()) rather than lost silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from robotflow.drivers.base import CameraNode
from robotflow.runtime.params import positive

log = logging.getLogger("robotflow")


def import_realsense():
    """pyrealsense2, imported on first use so graphs without a RealSense never need it."""
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        raise RuntimeError(
            f"realsense.camera needs pyrealsense2: pip install pyrealsense2; it also needs "
            f"libusb (Debian/Ubuntu: apt-get install libusb-1.0-0) [{e}]"
        ) from None
    return rs


@dataclass
class RealSenseParams:
    # Device serial number (rs-enumerate-devices -s); empty: the first camera found. Quote it in YAML and
    # --set ("035322250383"): unquoted digits parse as a number and a leading zero is lost.
    serial: str | int = ""
    width: int = positive(640)
    height: int = positive(480)
    fps: int = positive(30)  # a mode the camera supports at this resolution (6, 15, 30, 60)
    timeout_s: float = positive(2.0)  # fail when no new frame arrives for this long (unplugged, USB2 bandwidth)

    def __post_init__(self) -> None:
        self.serial = str(self.serial)


class RealSenseCameraNode(CameraNode):
    """An Intel RealSense color camera: `frame` {image: (height, width, 3) uint8 RGB}."""

    Params = RealSenseParams

    def setup(self) -> None:
        p = self.params
        rs = self.rs = import_realsense()
        self.pipeline = None
        self.counts = {"frames": 0, "device_frames_skipped": 0}
        self._last_number: int | None = None
        serials = [dev.get_info(rs.camera_info.serial_number) for dev in rs.context().query_devices()]
        if not serials:
            raise RuntimeError(
                "no RealSense camera found; check the USB3 cable and the udev rules "
                "(librealsense's 99-realsense-libusb.rules)"
            )
        serial = p.serial or serials[0]
        if serial not in serials:
            raise RuntimeError(
                f"RealSense {serial!r} not connected (connected: {', '.join(serials)}); "
                f"set params.serial of node {self.name!r}, quoted"
            )
        self.serial = serial
        config = rs.config()
        config.enable_device(serial)
        config.enable_stream(rs.stream.color, p.width, p.height, rs.format.rgb8, p.fps)
        pipeline = rs.pipeline()
        try:
            pipeline.start(config)
        except RuntimeError as e:
            raise RuntimeError(
                f"RealSense {serial}: cannot start color {p.width}x{p.height} RGB8 at {p.fps} fps: "
                f"{e}; pick a mode the camera lists (rs-enumerate-devices)"
            ) from None
        self.pipeline = pipeline
        self._last_frame_t = time.monotonic()
        self.log("RealSense %s streaming %dx%d at %d fps", serial, p.width, p.height, p.fps)

    def step(self) -> None:
        p = self.params
        frames = self.pipeline.poll_for_frames()
        color = frames.get_color_frame() if frames else None
        if not color or color.get_frame_number() == self._last_number:
            if time.monotonic() - self._last_frame_t > p.timeout_s:
                raise RuntimeError(
                    f"RealSense {self.serial}: no frame for {p.timeout_s:g} s "
                    f"(unplugged, or a USB2 port without the bandwidth)"
                )
            return
        number = color.get_frame_number()
        if self._last_number is not None and number > self._last_number + 1:
            self.counts["device_frames_skipped"] += number - self._last_number - 1
        self._last_number = number
        self._last_frame_t = time.monotonic()
        # The one copy: out of librealsense's pooled buffer into an array this node owns and never touches
        # again after emitting it.
        image = np.array(np.asanyarray(color.get_data()), dtype=np.uint8, copy=True)
        if image.shape != (p.height, p.width, 3):
            raise RuntimeError(
                f"RealSense {self.serial}: got a frame of shape {image.shape}, expected {(p.height, p.width, 3)}"
            )
        self.counts["frames"] += 1
        self.emit_frame(image)

    def teardown(self) -> None:
        if getattr(self, "pipeline", None) is not None:
            try:
                self.pipeline.stop()
            except RuntimeError as e:
                log.warning("[%s] pipeline.stop(): %s", self.name, e)
            self.pipeline = None

    def report(self) -> dict | None:
        return dict(self.counts) if hasattr(self, "counts") else None
