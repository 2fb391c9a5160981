"""Fault injection on the I/O paths: cameras, the inference server, the disk.

Each test injects one fault into a running graph or command and asserts a safe state (the arm held, the graph
stopped with one clear line) and no lost data (recorded episodes intact, frames neither lost nor repeated).
The faults come through the device SDKs as the real ones show them: the fake pyrealsense2's camera leaves the
bus and comes back (tests/fakes/pyrealsense2.py), OpenCV's `VideoCapture.read()` returns `(False, None)`, the
server process gets SIGKILL, a write past RLIMIT_FSIZE fails with EFBIG.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import install

from robotflow.recording.reader import EpisodeFile
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import Scheduler, run_graph

pytest.importorskip("lerobot")

from test_policy_node import save_checkpoint  # noqa: E402
from test_serve import free_port  # noqa: E402
from test_serve_remote_node import ThreadServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WRIST, FRONT = "111111111111", "222222222222"
COMMAND_TIMEOUT_S = 0.3  # the arm's watchdog
MAX_AGE_S = 0.25  # the policy's max_observation_age_s


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    save_checkpoint(root / "checkpoints" / "000001" / "pretrained_model")
    return root


def policy_graph(port: int, out_dir: Path | None = None) -> str:
    """A Franka policy graph as graphs/franka_stack_cubes_policy.yaml, on the franky and pyrealsense2 fakes,
    with policy.remote at a server on loopback, and a recorder when `out_dir` is given."""
    doc = {
        "clock": "wall",
        "nodes": [
            {
                "name": "arm",
                "type": "franka.arm",
                "rate": 100,
                "params": {"host": "172.16.0.2", "command_timeout_s": COMMAND_TIMEOUT_S},
                "inputs": {"ee_target": "policy/ee_target"},
            },
            {"name": "gripper", "type": "franka.gripper", "rate": 30, "params": {"host": "172.16.0.2"}},
            *(
                {
                    "name": f"{cam}_camera",
                    "type": "realsense.camera",
                    "rate": 60,
                    "params": {"serial": serial, "width": 64, "height": 48, "fps": 30, "timeout_s": 0.3},
                }
                for cam, serial in (("wrist", WRIST), ("front", FRONT))
            ),
            {
                "name": "policy",
                "type": "policy.remote",
                "rate": 15,
                "params": {
                    "server": f"ws://127.0.0.1:{port}",
                    "codec": "ee",
                    "request_timeout_s": 2.0,
                    "max_observation_age_s": MAX_AGE_S,
                },
                "inputs": {
                    "arm_state": "arm/state",
                    "gripper_state": "gripper/state",
                    "wrist": "wrist_camera/frame",
                    "front": "front_camera/frame",
                },
            },
        ],
    }
    if out_dir is not None:
        doc["nodes"].append(
            {
                "name": "recorder",
                "type": "record.hdf5",
                "rate": 50,
                "params": {"output_dir": str(out_dir), "image_encoding": "raw"},  # exact pixels: the frame counter
                "inputs": {
                    "wrist": {"source": "wrist_camera/frame", "delivery": "queue"},
                    "front": {"source": "front_camera/frame", "delivery": "queue"},
                    "arm": {"source": "arm/state", "delivery": "queue"},
                    "target": {"source": "policy/ee_target", "delivery": "queue"},
                },
            }
        )
    return json.dumps(doc)


def wait_for(cond, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def targets_and_holds(robot) -> tuple[list[float], list[float]]:
    """Times (time.monotonic()) of the fake robot's target motions and of its stop motions (the watchdog's
    holds), from franky's own move() log."""
    targets, holds = [], []
    for motion, t in zip(list(robot._moves), list(robot._move_times), strict=False):
        (holds if type(motion).__name__.endswith("StopMotion") else targets).append(t)
    return targets, holds


class RunningGraph:
    """A Scheduler on a thread, stopped at the end of the block."""

    def __init__(self, text: str):
        self.sched = Scheduler(parse_graph(text, "<faults>"), duration_s=120.0)
        self.done: dict = {}
        self.thread = threading.Thread(target=lambda: self.done.setdefault("result", self.sched.run()))

    def __enter__(self):
        self.thread.start()
        return self.sched

    def __exit__(self, *exc):
        self.sched.stop("test done")
        self.thread.join(60)
        assert not self.thread.is_alive()

    @property
    def result(self):
        return self.done["result"]


# ---- cameras ------------------------------------------------------------------------------------------


def test_camera_unplugged_mid_episode_holds_the_arm_and_resumes_when_it_is_back(monkeypatch, run_dir, tmp_path):
    """The wrist RealSense leaves the bus mid-episode for 1.5 s: the policy stops acting on the stale frame,
    the arm's watchdog holds, the node restarts its pipeline when the camera is listed again, and the policy
    carries on. The recording keeps every frame either side (none repeated, none lost) and shows the gap."""
    franky = install(monkeypatch, "franky")
    rs = install(monkeypatch, "pyrealsense2")
    port = free_port()
    server = ThreadServer(run_dir, port)
    out = tmp_path / "eps"
    graph = RunningGraph(policy_graph(port, out))
    try:
        with graph as sched:
            wait_for(lambda: franky.Robot._instances, 20, "the arm to connect")
            robot = franky.Robot._instances[0]
            wait_for(lambda: len(targets_and_holds(robot)[0]) >= 10, 30, "the policy to drive the arm")
            cam, policy = sched.nodes["wrist_camera"], sched.nodes["policy"]
            t_unplug = time.monotonic()
            rs._unplug(WRIST)
            wait_for(lambda: targets_and_holds(robot)[1], 10, "the watchdog to hold the arm")
            time.sleep(1.5)
            targets, holds = targets_and_holds(robot)
            last_target = max(t for t in targets if t < holds[-1])
            n_held = len(targets)
            assert policy.counts["stale_observations"] > 0
            assert cam.stream_counts["stalls"] == 1 and cam.stream_counts["reconnects"] == 0
            t_plug = time.monotonic()
            rs._plug(WRIST)
            wait_for(lambda: cam.stream_counts["reconnects"] == 1, 10, "the camera to be reopened")
            wait_for(lambda: len(targets_and_holds(robot)[0]) >= n_held + 10, 20, "the policy to drive again")
            t_resumed = targets_and_holds(robot)[0][n_held]
            assert not [t for t in targets_and_holds(robot)[0] if last_target < t < t_plug]
    finally:
        server.stop()
    assert graph.result.ok, graph.result.error
    (episode,) = sorted(out.glob("episode_*.h5"))
    with EpisodeFile(episode) as ep:
        stamps = ep.timestamps("wrist_camera/frame") / 1e9
        seqs = ep.seq("wrist_camera/frame")
        reds = ep.images("wrist_camera/frame", np.arange(len(stamps)))[:, 0, 0, 0]
        front = ep.timestamps("front_camera/frame") / 1e9
        commands = ep.timestamps("policy/ee_target") / 1e9
    # The policy's last command went out within the frame-age limit (plus a camera frame and a policy tick),
    # the watchdog held within its budget of that, and the arm was sent nothing more until the camera was back.
    last_command = commands[commands < t_plug].max()
    to_last, to_hold = last_command - t_unplug, holds[-1] - last_command
    print(
        f"camera unplugged: last policy command {to_last * 1e3:.0f} ms after, arm held {to_hold * 1e3:.0f} ms "
        f"after that; driving again {t_resumed - t_plug:.2f} s after the camera was back"
    )
    assert to_last < MAX_AGE_S + 1 / 30 + 1 / 15 + 0.3
    assert COMMAND_TIMEOUT_S - 0.05 < to_hold < COMMAND_TIMEOUT_S + 0.3
    assert np.all(np.diff(seqs) == 1), "no frame lost between the camera and the recording"
    gaps = np.diff(stamps)
    assert gaps.max() > 1.4 and np.sum(gaps > 0.5) == 1, "one gap, where the camera was away"
    assert np.diff(front).max() < 0.5, "the other camera went on recording"
    # The fake paints its frame counter into red; a new pipeline counts from 0 again, so within each side of
    # the gap the counter only moves on: no stale frame was recorded twice.
    cut = int(np.argmax(gaps)) + 1
    for part in (reds[:cut], reds[cut:]):
        steps = np.diff(part.astype(int)) % 256
        assert np.all((steps > 0) & (steps < 10)), "every recorded frame is a new one"


class FakeCapture:
    """cv2.VideoCapture for a live camera that can be unplugged: as OpenCV's V4L2 backend, `read()` returns
    `(False, None)` once the device is gone, and a new VideoCapture of it is not opened until it is back."""

    plugged = True
    opened: list = []

    def __init__(self, source, api_preference=None):
        self._open = FakeCapture.plugged
        # What OpenCV's V4L2 backend would read for its per-frame select() wait, at the first capture.
        self.select_timeout = os.environ.get("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT")
        self._n = 0
        self._t = time.monotonic()
        FakeCapture.opened.append(self)

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self._open

    def set(self, prop_id, value):
        return True

    def read(self, image=None):
        time.sleep(max(0.0, self._t + 1 / 30 - time.monotonic()))
        self._t = time.monotonic()
        if not (self._open and FakeCapture.plugged):
            self._open = self._open and FakeCapture.plugged
            return False, None
        self._n += 1
        return True, np.full((48, 64, 3), self._n % 256, np.uint8)

    def release(self):
        self._open = False


def test_opencv_camera_that_stops_delivering_is_reopened_and_fails_cleanly_when_gone(monkeypatch):
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    monkeypatch.setattr(FakeCapture, "opened", [])
    monkeypatch.delenv("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", raising=False)
    graph = {
        "clock": "wall",
        "nodes": [
            {
                "name": "cam",
                "type": "opencv.camera",
                "rate": 30,
                "params": {"source": "/dev/video0", "width": 64, "height": 48, "timeout_s": 0.2, "reconnect_s": 1.0},
            },
            {"name": "sink", "type": "test.sink", "rate": 30, "inputs": {"frame": "cam/frame"}},
        ],
    }
    text = json.dumps(graph)

    def unplug_for(seconds: float | None):
        time.sleep(0.5)
        FakeCapture.plugged = False
        if seconds is not None:
            time.sleep(seconds)
            FakeCapture.plugged = True

    # Away for 0.6 s: inside timeout_s + reconnect_s, so the node reopens the device and goes on.
    monkeypatch.setattr(FakeCapture, "plugged", True)
    fault = threading.Thread(target=unplug_for, args=(0.6,))
    fault.start()
    result, sched = run_graph(parse_graph(text, "<cv>"), duration_s=2.5)
    fault.join()
    assert result.ok, result.error
    counts = sched.nodes["cam"].report()
    assert counts["stalls"] == 1 and counts["reconnects"] >= 1 and len(FakeCapture.opened) >= 2
    # A stalled V4L2 read gives up after 1 s (timeout_s 0.2, in whole seconds), not OpenCV's default 10 s.
    assert FakeCapture.opened[0].select_timeout == "1"
    assert counts["frames"] > 20  # about 1.9 s of 30 fps either side of the gap (fewer under load)

    # Away for good: the node fails after timeout_s + reconnect_s with one line, which stops the graph.
    fault = threading.Thread(target=unplug_for, args=(None,))
    fault.start()
    result, sched = run_graph(parse_graph(text, "<cv>"), duration_s=8)
    fault.join()
    assert not result.ok and result.failed_node == "cam"
    assert "no frame for 1.2 s" in result.error and "reopen attempt(s) failed" in result.error
    assert "\n" not in result.error


# ---- disk ---------------------------------------------------------------------------------------------

DISK_GRAPH = """
nodes:
  - {name: task, type: test.episodes, rate: 100, params: {episodes: 3, length_s: 1.0, gap_s: 0.1}}
  - {name: cam, type: test.frames, rate: 30, params: {width: 64, height: 48}}
  - {name: arm, type: test.counter, rate: 200}
  - name: recorder
    type: record.hdf5
    rate: 50
    params: {flush_s: 0.25, min_free_mb: 0.1}
    inputs:
      episode: {source: task/episode, delivery: queue}
      cam: {source: cam/frame, delivery: queue}
      arm: {source: arm/count, delivery: queue}
"""


def user_namespaces() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not user_namespaces(), reason="needs `unshare -rm` (user namespaces) to mount a small tmpfs")
def test_disk_fills_during_recording(tmp_path):
    """`robotflow record` onto a 700 kB tmpfs (mounted in a user namespace), room for two of its three
    episodes: the first two are intact, the third is closed as far as it was written (aborted, readable),
    and the run ends with one line saying what happened and what to do."""
    graph = tmp_path / "g.yaml"
    graph.write_text(DISK_GRAPH)
    disk, saved = tmp_path / "disk", tmp_path / "saved"
    disk.mkdir()
    record = [sys.executable, "-m", "robotflow.scripts.cli", "record", str(graph), "--episodes", "3"]
    script = (
        f"mount -t tmpfs -o size=700k tmpfs {disk} && "
        f"{shlex.join([*record, '--output-dir', str(disk / 'eps')])} >{tmp_path}/out 2>{tmp_path}/err; "
        f"echo $? >{tmp_path}/rc; cp -a {disk}/eps {saved}"
    )
    subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, check=True, timeout=120)
    rc, err = int((tmp_path / "rc").read_text()), (tmp_path / "err").read_text()
    assert rc != 0
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "recording stopped" in errors[0] and "free some space" in errors[0]
    assert sorted(p.name for p in saved.iterdir()) == [f"episode_00000{i}.h5" for i in range(3)]
    for i in range(2):
        with EpisodeFile(saved / f"episode_00000{i}.h5") as ep:
            assert ep.info.outcome == "success"
            assert len(ep.timestamps("cam/frame")) >= 25 and np.all(np.diff(ep.seq("cam/frame")) == 1)
    with EpisodeFile(saved / "episode_000002.h5") as ep:
        assert ep.info.outcome == "aborted" and ep.attr("end_reason") == "disk full"
        seq = ep.seq("arm/count")
        assert len(seq) > 0 and np.all(np.diff(seq) == 1), "what was written is the episode's start, whole"
    info = subprocess.run(
        [sys.executable, "-m", "robotflow.scripts.cli", "info", str(saved)], cwd=ROOT, capture_output=True, text=True
    )
    assert info.returncode == 0 and "aborted 1, success 2" in info.stdout, info.stdout + info.stderr


# ---- convert and append killed ------------------------------------------------------------------------


def test_a_killed_append_or_convert_is_cleaned_up_and_the_dataset_put_back(tmp_path):
    """What SIGKILL can leave beside a dataset (tests/test_faults_kill.py kills real runs): the work dir of a
    convert (a half-built dataset) and of an append killed between its two renames (the output path gone, the
    old dataset in `previous`). The next run removes the first and renames the dataset back from the second;
    the work dir of a process still running is left alone."""
    from robotflow.codecs.export import clear_interrupted

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    out = tmp_path / "ds"
    appended = tmp_path / f".ds.append-{dead.pid}-x1"
    (appended / "previous" / "meta").mkdir(parents=True)
    (appended / "previous" / "meta" / "info.json").write_text("{}")
    (appended / "merged" / "meta").mkdir(parents=True)
    converted = tmp_path / f".ds.convert-{dead.pid}-x2"
    (converted / "dataset" / "data").mkdir(parents=True)
    live = tmp_path / f".ds.convert-{os.getpid()}-x3"
    live.mkdir()
    other = tmp_path / f".other.convert-{dead.pid}-x4"
    other.mkdir()
    clear_interrupted(out)
    assert (out / "meta" / "info.json").read_text() == "{}", "the dataset is back where it was"
    assert not appended.exists() and not converted.exists()
    assert live.exists() and other.exists()


def test_recover_leaves_a_partial_that_a_live_recording_holds(tmp_path):
    """`robotflow recover` beside a recording still running (or one whose process is still dying after a
    kill): HDF5's file lock says the partial is in use, and it is left in place, not moved aside as damaged."""
    from robotflow.recording.recover import recover_partials

    partial = tmp_path / "episode_000000.h5.partial"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import h5py, sys, time; f = h5py.File({str(partial)!r}, 'w'); f.flush(); "
            "print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        (result,) = recover_partials(tmp_path)
        assert result.in_use and not result.ok and partial.exists()
        assert not (tmp_path / "unrecoverable").exists()
    finally:
        holder.kill()
        holder.wait()
