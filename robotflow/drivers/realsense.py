"""`realsense.camera`: an Intel RealSense color stream through pyrealsense2 (`pip install pyrealsense2`).

The node polls the pipeline without blocking and publishes each new color frame once. The frame's pixels
are copied out of librealsense's buffer exactly once: the buffer belongs to librealsense's frame pool and
is reused after the frame is released, so it cannot be handed downstream as it is. From there on the
array travels zero-copy to every reader. Timestamps come from the runtime clock at emit (node.emit), like
every other channel, so cameras and the arm share one time base in recordings.

Give the node a `rate:` at or above the camera's fps (e.g. 60 for 30 fps): a poll that finds nothing new
emits nothing, and device frames skipped between polls are counted (report()) rather than lost silently.

A camera that stops delivering (unplugged, a USB reset) is reopened: after `timeout_s` without a frame the
node restarts its pipeline as soon as the device is listed again, with backoff, for up to `reconnect_s`
(CameraNode.watch_stream); meanwhile it emits nothing, so readers see the last frame age.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from robotflow.drivers.base import CameraNode
from robotflow.runtime.params import non_negative, positive

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
    timeout_s: float = positive(2.0)  # no new frame for this long (unplugged, USB2 bandwidth): reopen the camera
    reconnect_s: float = non_negative(10.0)  # ... and keep trying this long before failing (0: fail at timeout_s)

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
        try:
            self.pipeline = self._start_pipeline()
        except RuntimeError as e:
            raise RuntimeError(
                f"RealSense {serial}: cannot start color {p.width}x{p.height} RGB8 at {p.fps} fps: "
                f"{e}; pick a mode the camera lists (rs-enumerate-devices)"
            ) from None
        self.start_watch(p.timeout_s, p.reconnect_s)
        self.log("RealSense %s streaming %dx%d at %d fps", serial, p.width, p.height, p.fps)

    def _start_pipeline(self):
        p, rs = self.params, self.rs
        config = rs.config()
        config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, p.width, p.height, rs.format.rgb8, p.fps)
        pipeline = rs.pipeline()
        pipeline.start(config)
        return pipeline

    def _reopen(self) -> None:
        """Restart the pipeline once the device is listed again (a replugged camera needs a new one);
        RuntimeError while it is not back."""
        serials = [dev.get_info(self.rs.camera_info.serial_number) for dev in self.rs.context().query_devices()]
        if self.serial not in serials:
            raise RuntimeError(f"RealSense {self.serial} is not connected")
        self._stop_pipeline()
        self.pipeline = self._start_pipeline()
        self._last_number = None  # a new pipeline numbers its frames afresh

    def _stop_pipeline(self) -> None:
        if self.pipeline is not None:
            try:
                self.pipeline.stop()
            except RuntimeError as e:  # the device is gone already
                log.warning("[%s] pipeline.stop(): %s", self.name, e)
            self.pipeline = None

    def step(self) -> None:
        p = self.params
        try:
            frames = self.pipeline.poll_for_frames() if self.pipeline is not None else None
        except RuntimeError:  # librealsense raises on a device that went away: the same as no frame
            frames = None
        color = frames.get_color_frame() if frames else None
        if not color or color.get_frame_number() == self._last_number:
            self.watch_stream(
                f"RealSense {self.serial}", "unplugged, or a USB2 port without the bandwidth", self._reopen
            )
            return
        number = color.get_frame_number()
        if self._last_number is not None and number > self._last_number + 1:
            self.counts["device_frames_skipped"] += number - self._last_number - 1
        self._last_number = number
        self.frame_arrived(f"RealSense {self.serial}")
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
            self._stop_pipeline()

    def report(self) -> dict | None:
        return {**self.counts, **self.stream_counts} if hasattr(self, "stream_counts") else None
