"""`policy.remote` in a wall-clock graph: asynchronous chunks from a real server, and what happens when the
server goes away and comes back (the node holds, reconnects with backoff, resumes, and reports it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("lerobot")

import uvicorn
from test_policy_node import save_checkpoint
from test_serve import free_port

from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import Scheduler
from robotflow.serving.server import InferenceServer, ServeConfig

GRAPH = """
nodes:
  - {{name: arm, type: testpolicy.arm, rate: 30}}
  - {{name: gripper, type: testpolicy.gripper, rate: 30}}
  - {{name: wrist_camera, type: test.frames, rate: 15, params: {{width: 64, height: 48}}}}
  - {{name: front_camera, type: test.frames, rate: 15, params: {{width: 64, height: 48}}}}
  - name: policy
    type: policy.remote
    rate: 15
    params: {{server: "ws://127.0.0.1:{port}", codec: ee, request_timeout_s: 5.0}}
    inputs: {{arm_state: arm/state, gripper_state: gripper/state, wrist: wrist_camera/frame, front: front_camera/frame}}
  - name: sink
    type: test.sink
    rate: 15
    inputs: {{target: policy/ee_target, grip: policy/grip}}
"""


class ThreadServer:
    """The real server app under uvicorn on a thread of this process (so it can be stopped and restarted fast)."""

    def __init__(self, run_dir: Path, port: int):
        self.inference = InferenceServer(ServeConfig(str(run_dir), port=port, device="cpu"))
        self.inference.load_default()
        self.server = uvicorn.Server(uvicorn.Config(self.inference.app, host="127.0.0.1", port=port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        end = time.monotonic() + 30
        while not self.server.started and time.monotonic() < end:
            time.sleep(0.02)
        assert self.server.started

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    save_checkpoint(root / "checkpoints" / "000001" / "pretrained_model")
    return root


def test_remote_node_survives_a_server_restart(run_dir):
    port = free_port()
    server = ThreadServer(run_dir, port)
    sched = Scheduler(parse_graph(GRAPH.format(port=port)), duration_s=60.0)  # stopped below once resumed
    done: dict = {}
    runner = threading.Thread(target=lambda: done.setdefault("result", sched.run()))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and getattr(sched.nodes.get("sink"), "received", {}).get("target", 0) < 5:
            time.sleep(0.05)
        assert sched.nodes["sink"].received.get("target", 0) >= 5, "the policy acted while the server was up"
        server.stop()
        policy = sched.nodes["policy"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and policy.counters["connection_losses"] == 0:
            time.sleep(0.05)
        assert policy.counters["connection_losses"] == 1
        held_at = sched.nodes["sink"].received["target"]
        server = ThreadServer(run_dir, port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and policy.counters["reconnects"] == 0:
            time.sleep(0.05)
        assert policy.counters["reconnects"] == 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sched.nodes["sink"].received["target"] < held_at + 5:
            time.sleep(0.05)
        assert sched.nodes["sink"].received["target"] >= held_at + 5, "acting again after reconnecting"
    finally:
        sched.stop("test done")
        runner.join(60)
        server.stop()
    result = done["result"]
    assert result.ok, result.error
    report = policy.report()["remote"]
    assert report["held_ticks"] > 0 and report["connection_losses"] == 1 and report["reconnects"] == 1
