"""`opencv.camera`: any camera (or video file, or image sequence) OpenCV's VideoCapture can open.

OpenCV delivers BGR; the BGR -> RGB conversion writes a fresh array, which is the only copy a frame
gets before it travels zero-copy to its readers. `cap.read()` blocks until the camera's next frame, so
set the node's `rate:` to the camera's fps.

A live camera that stops delivering (`read()` returns False: unplugged, a USB reset) is reopened after
`timeout_s` with backoff, for up to `reconnect_s` (CameraNode.watch_stream); meanwhile the node emits nothing.

On Linux, OpenCV's V4L2 backend waits in `select()` up to OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT seconds (10 by default,
read once per process at the first capture) for each frame of a stalled camera, and it ignores
CAP_PROP_READ_TIMEOUT_MSEC: the node's thread would sit in `read()` for 10 s before it could see the stall. The
node sets that variable to `timeout_s` (whole seconds, at least 1) before its first capture, unless it is already
set: the first camera node of a process decides it for all.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

from robotflow.drivers.base import CameraNode
from robotflow.runtime.params import non_negative, positive

log = logging.getLogger("robotflow")


def import_cv2():
    try:
        import cv2
    except ImportError as e:
        raise RuntimeError(f"opencv.camera needs OpenCV: pip install opencv-python-headless [{e}]") from None
    return cv2


V4L_SELECT_TIMEOUT = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"


def v4l_select_timeout_s(timeout_s: float) -> int:
    """OpenCV's V4L2 frame wait for a node that calls a camera stalled after `timeout_s` (whole seconds, >= 1)."""
    return max(1, math.ceil(timeout_s))


@dataclass
class OpenCVCameraParams:
    # Device index (0 = /dev/video0), or a path/URL: a video file, an image sequence ("frames/%04d.png"),
    # an RTSP/HTTP stream.
    source: int | str = 0
    width: int = positive(640)  # requested from the device; frames of another size are resized to this
    height: int = positive(480)
    fps: float = positive(30.0)  # requested from the device
    loop: bool = False  # files: restart at the end instead of ending the graph
    timeout_s: float = positive(2.0)  # a live camera that delivers nothing for this long is reopened ...
    reconnect_s: float = non_negative(10.0)  # ... for up to this long before it is an error (0: fail at once)


class OpenCVCameraNode(CameraNode):
    """A camera through cv2.VideoCapture: `frame` {image: (height, width, 3) uint8 RGB}."""

    Params = OpenCVCameraParams

    def setup(self) -> None:
        p = self.params
        os.environ.setdefault(V4L_SELECT_TIMEOUT, str(v4l_select_timeout_s(p.timeout_s)))
        self.cv2 = import_cv2()
        self.cap = None
        src = p.source
        self._is_file = isinstance(src, str) and not src.startswith(("rtsp://", "http://", "https://", "/dev/"))
        self.cap = self._open()
        self._resize_logged = False
        self.frames = 0
        self.start_watch(p.timeout_s, p.reconnect_s)

    def _open(self):
        p, cv2, src = self.params, self.cv2, self.params.source
        cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            raise RuntimeError(
                f"OpenCV cannot open {src!r}"
                + (
                    "; check `ls /dev/video*` and that no other program holds the camera"
                    if not self._is_file
                    else "; check the path"
                )
            )
        if not self._is_file:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, p.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, p.height)
            cap.set(cv2.CAP_PROP_FPS, p.fps)
        return cap

    def _reopen(self) -> None:
        """Release the device and open it again (RuntimeError while it is not back)."""
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        self.cap = self._open()

    def step(self) -> None:
        p, cv2 = self.params, self.cv2
        ok, bgr = self.cap.read() if self.cap is not None else (False, None)
        if not ok:
            if self._is_file:
                if p.loop and self.frames:
                    self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    return
                self.request_stop(f"end of {p.source}")
                return
            self.watch_stream(f"OpenCV camera {p.source!r}", "unplugged, or held by another program", self._reopen)
            return
        self.frame_arrived(f"OpenCV camera {p.source!r}")
        if bgr.shape[:2] != (p.height, p.width):
            if not self._resize_logged:
                self.log("source delivers %dx%d, resizing to %dx%d", bgr.shape[1], bgr.shape[0], p.width, p.height)
                self._resize_logged = True
            bgr = cv2.resize(bgr, (p.width, p.height), interpolation=cv2.INTER_AREA)
        if bgr.ndim == 2:
            image = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        else:
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # a fresh array: the frame's one copy
        self.frames += 1
        self.emit_frame(image)

    def teardown(self) -> None:
        if getattr(self, "cap", None) is not None:
            self.cap.release()
            self.cap = None

    def report(self) -> dict | None:
        return {"frames": self.frames, **self.stream_counts} if hasattr(self, "stream_counts") else None
