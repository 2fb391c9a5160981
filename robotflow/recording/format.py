"""The episode file format (`robotflow.episode/1`): names, constants and the image encoding both sides share.

The writer (`writer.py`, the `record.hdf5` node) and the reader (`reader.py`) import everything they must agree
on from here; docs/contracts.md describes the layout of a file.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

EPISODE_FORMAT = "robotflow.episode/1"
# `fault`: the arm reported an error (reflex, lost connection) and the episode ended there, the arm held.
OUTCOMES = ("success", "failure", "aborted", "discarded", "fault")
# What an operator can label an episode with (a device's buttons, the WebXR page, `robotflow episodes label`).
LABELS = ("success", "failure", "discarded")


def package_version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def is_image(value: Any) -> bool:
    return (
        isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[-1] in (1, 3, 4)
    )


def encode_jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """A standard JPEG (any decoder returns RGB) as a uint8 array."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.shape[-1] == 3 else rgb
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.reshape(-1)


def episode_name(index: int) -> str:
    return f"episode_{index:06d}.h5"


def next_episode_index(directory: Path) -> int:
    """One past the highest episode index in the directory (finished or partial), so sessions append."""
    best = -1
    for p in directory.glob("episode_*.h5*"):
        stem = p.name.split(".")[0]
        try:
            best = max(best, int(stem.split("_")[1]))
        except (IndexError, ValueError):
            continue
    return best + 1


def decode_jpeg(data: np.ndarray | bytes) -> np.ndarray:
    """Decode one JPEG buffer to an RGB ``uint8`` ``(H, W, 3)`` array.

    OpenCV (installed with LeRobot as opencv-python-headless; the encoder uses it too) is about twice as
    fast as Pillow here.
    """
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data, np.uint8)
    if buf.size == 0:
        # The recorder writes an empty row when a message on an image channel lacked the image.
        raise ValueError("empty image buffer")
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        bgr = None
    if bgr is None:
        raise ValueError("not a decodable JPEG buffer")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
