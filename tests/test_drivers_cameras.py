"""realsense.camera (fake pyrealsense2) and opencv.camera (real OpenCV on a PNG sequence) in real graphs."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from fakes import install

from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import run_graph


def camera_graph(node_type: str, params: dict, rate: float = 60):
    doc = {
        "clock": "wall",
        "nodes": [
            {"name": "cam", "type": node_type, "rate": rate, "params": params},
            # queue delivery: the sink gets every frame, so counts can be compared one for one
            {
                "name": "sink",
                "type": "testdrv.collect",
                "rate": 50,
                "inputs": {"frame": {"source": "cam/frame", "delivery": "queue"}},
            },
        ],
    }
    return parse_graph(json.dumps(doc), "<camera-test>")


# ---- RealSense --------------------------------------------------------------------------------------


def test_realsense_publishes_fresh_rgb_frames_copied_once(monkeypatch):
    rs = install(monkeypatch, "pyrealsense2")
    # 192x144x3 bytes is above pyzmq's copy threshold (64 KiB), so inproc delivery is zero-copy and the
    # reader's array would be the pooled buffer itself if the driver did not copy.
    params = {"serial": "222222222222", "width": 192, "height": 144, "fps": 30}
    result, sched = run_graph(camera_graph("realsense.camera", params), duration_s=0.7)
    assert result.ok, result
    pipe = rs._pipelines[0]
    assert pipe._config._serial == "222222222222"
    assert pipe._config._streams == [(rs.stream.color, 192, 144, rs.format.rgb8, 30)]
    assert pipe._stopped, "teardown must stop the pipeline"

    msgs = sched.nodes["sink"].messages["frame"]
    assert len(msgs) >= 8
    reds = []
    for m in msgs:
        img = m["image"]
        assert img.dtype == np.uint8 and img.shape == (144, 192, 3)
        assert (img[..., 1] == 100).all() and (img[..., 2] == 200).all()  # RGB order as the device sent it
        assert not np.shares_memory(img, pipe._pool)  # copied out of librealsense's pooled buffer
        reds.append(int(img[0, 0, 0]))
        assert (img[..., 0] == reds[-1]).all()  # one whole frame, not a mix of two
    assert reds == sorted(set(reds)), "each device frame is published once, in order"
    # Every node's last step ends before any teardown, so the sink's final read sees the last frame too.
    rep = sched.reports["cam"]
    assert rep["frames"] == len(msgs) == result.stats["channels"]["cam/frame"]["sent"]
    assert result.stats["channels"]["cam/frame"]["inputs"]["sink.frame"]["unread"] == 0
    # Timestamps come from the runtime clock and increase.
    ts = [m.timestamp_ns for m in msgs]
    assert ts == sorted(ts)


def test_realsense_first_device_when_no_serial(monkeypatch):
    rs = install(monkeypatch, "pyrealsense2")
    result, _ = run_graph(camera_graph("realsense.camera", {"width": 32, "height": 24}), duration_s=0.3)
    assert result.ok, result
    assert rs._pipelines[0]._config._serial == "111111111111"


def test_realsense_unknown_serial_lists_connected(monkeypatch):
    install(monkeypatch, "pyrealsense2")
    result, _ = run_graph(camera_graph("realsense.camera", {"serial": "999"}), duration_s=2)
    assert not result.ok and result.failed_node == "cam"
    assert "'999' not connected" in result.error and "111111111111, 222222222222" in result.error


def test_realsense_no_camera(monkeypatch):
    rs = install(monkeypatch, "pyrealsense2")
    rs._devices.clear()
    result, _ = run_graph(camera_graph("realsense.camera", {}), duration_s=2)
    assert not result.ok and result.failed_node == "cam" and "no RealSense camera found" in result.error


def test_realsense_stalled_stream_fails(monkeypatch):
    rs = install(monkeypatch, "pyrealsense2")
    rs._frozen = True
    result, _ = run_graph(
        camera_graph("realsense.camera", {"width": 32, "height": 24, "timeout_s": 0.2, "reconnect_s": 0}), duration_s=3
    )
    assert not result.ok and result.failed_node == "cam" and "no frame for 0.2 s" in result.error
    assert rs._pipelines[0]._stopped


def test_missing_pyrealsense2_gives_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)
    result, _ = run_graph(camera_graph("realsense.camera", {}), duration_s=2)
    assert not result.ok and result.failed_node == "cam"
    assert "pip install pyrealsense2" in result.error and "libusb-1.0-0" in result.error
    assert "\n" not in result.error


# ---- OpenCV -----------------------------------------------------------------------------------------


@pytest.fixture
def png_sequence(tmp_path):
    cv2 = pytest.importorskip("cv2")
    for i in range(5):
        bgr = np.zeros((30, 40, 3), np.uint8)
        bgr[...] = (10 * i, 50, 200)  # B, G, R as OpenCV stores it
        assert cv2.imwrite(str(tmp_path / f"f_{i:03d}.png"), bgr)
    return str(tmp_path / "f_%03d.png")


def test_opencv_camera_converts_bgr_to_rgb_and_resizes(png_sequence):
    params = {"source": png_sequence, "width": 20, "height": 15, "fps": 30.0}
    result, sched = run_graph(camera_graph("opencv.camera", params, rate=50), duration_s=5)
    assert result.ok and result.reason.startswith("cam: end of"), result
    msgs = sched.nodes["sink"].messages["frame"]
    assert len(msgs) == 5
    for i, m in enumerate(msgs):
        img = m["image"]
        assert img.dtype == np.uint8 and img.shape == (15, 20, 3)
        assert tuple(img[7, 10]) == (200, 50, 10 * i)  # R, G, B
    assert sched.reports["cam"]["frames"] == 5


def test_opencv_camera_missing_source(tmp_path):
    result, _ = run_graph(camera_graph("opencv.camera", {"source": str(tmp_path / "nope.mp4")}), duration_s=2)
    assert not result.ok and result.failed_node == "cam" and "cannot open" in result.error


def test_missing_cv2_gives_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    result, _ = run_graph(camera_graph("opencv.camera", {"source": 0}), duration_s=2)
    assert not result.ok and "pip install opencv-python-headless" in result.error and "\n" not in result.error
