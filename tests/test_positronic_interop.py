"""Interop with Positronic's published packages, both directions, on loopback.

Their clients (`InferenceClient`, `RemotePolicy`) of 0.2.1 and 0.4.1 run as subprocesses from the side venvs
`make peers` installs (`.venv-positronic-VERSION`), against `robotflow serve`; robotflow's client runs
against their 0.4.1 stub server (`python -m positronic.offboard.stub`). No Positronic code is imported here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lerobot")

from test_policy_node import save_checkpoint  # also registers testpolicy.arm / .gripper
from test_serve import GRAPH, SETS, ServeProcess, free_port, invoke
from websockets.exceptions import InvalidStatus

from robotflow.wire.client import RemoteSession
from robotflow.wire.protocol import V2, actions_from_wire

ROOT = Path(__file__).resolve().parents[1]
PEER = Path(__file__).with_name("positronic_peer.py")


def peer_python(version: str) -> Path:
    python = ROOT / f".venv-positronic-{version}" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python.parent.parent.name} is absent: `make peers` installs positronic=={version} there")
    return python


def run_peer(version: str, mode: str, port: int, token: str | None = None) -> dict:
    cmd = [str(peer_python(version)), str(PEER), mode, "127.0.0.1", str(port), *([token] if token else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"positronic {version} {mode} printed nothing:\n{proc.stderr[-3000:]}"
    out = json.loads(lines[-1])
    assert "error" not in out, f"positronic {version} {mode}: {out['error']}\n{out.get('trace', '')}"
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    save_checkpoint(root / "checkpoints" / "000001" / "pretrained_model")
    # No token: Positronic 0.2.1's client sends no Authorization header (0.4.1's does; test_serve covers auth).
    srv = ServeProcess("--checkpoints-dir", str(root), "--device", "cpu")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def peer_runs(server) -> dict:
    """Each version's client and RemotePolicy against the server, in one process per version."""
    return {version: run_peer(version, "both", server.port) for version in ("0.2.1", "0.4.1")}


def test_positronic_021_client_and_policy_against_robotflow_serve(peer_runs):
    """Version 1: their 0.2.1 client ignores the declared version, sends bare observations, and gets the
    whole chunk of stamped cartesian_pos actions (no validity marker: their harness reads every row)."""
    out = peer_runs["0.2.1"]["client"]
    assert out["n"] == 10 and out["command_types"] == ["cartesian_pos"]
    assert out["keys"] == ["robot_command", "target_grip", "timestamp"]
    assert {"action_fps", "image_sizes", "local_stack"} <= set(out["meta"])
    out = peer_runs["0.2.1"]["policy"]
    assert out["n"] == 10 and out["command_types"] == ["cartesian_pos"]


def test_positronic_041_client_against_robotflow_serve(peer_runs):
    """Version 2 as their InferenceClient negotiates it: session id, typed commands, the timing block,
    end_session acknowledged (their close raises otherwise), and the keepalive route."""
    out = peer_runs["0.4.1"]["client"]
    assert out["protocol_version"] == V2
    assert out["n"] == 10 and out["command_types"] == ["CartesianPosition"]
    assert out["keys"] == ["robot_command", "target_grip"]
    assert out["timing"] == ["decode_ms", "infer_ms", "queued_ms", "served_ms"]
    assert out["keepalive"] is None
    assert {"local_stack", "compress_images", "action_fps"} <= set(out["meta"])


def test_positronic_041_remote_policy_runs_against_robotflow_serve(peer_runs):
    """Their RemotePolicy builds the declared client stack (chunked_schedule) and emits our commands."""
    out = peer_runs["0.4.1"]["policy"]
    assert out["command_steps"] > 0
    assert out["first"] == {"robot_command": "CartesianPosition", "target_grip": "float"}
    assert "local_stack" in out["server_meta"]


class StubServer:
    """Positronic 0.4.1's stub model server (empty commands), from its side venv; with `token`, gated on it
    the way their servers are (the AUTH_TOKEN environment variable: `Authorization: Bearer` required)."""

    def __init__(self, token: str | None = None):
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        cmd = [str(peer_python("0.4.1")), "-m", "positronic.offboard.stub"]
        cmd += ["--websocket.served_address.host=127.0.0.1", f"--websocket.served_address.port={self.port}"]
        env = {k: v for k, v in os.environ.items() if k != "AUTH_TOKEN"}
        if token:
            env["AUTH_TOKEN"] = token
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        ready = threading.Event()

        def drain() -> None:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if "Uvicorn running" in line or "Application startup complete" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        end = time.monotonic() + 60
        while time.monotonic() < end and self.proc.poll() is None:
            if ready.wait(0.2):
                break
            try:  # uvicorn's banner may not reach a pipe: a connect answers as well
                RemoteSession(self.url, token=token, open_timeout=1.0).close()
                break
            except Exception:
                continue
        assert self.proc.poll() is None, "positronic stub did not start:\n" + "\n".join(self.lines[-20:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def stub():
    srv = StubServer()
    yield srv
    srv.stop()


def test_robotflow_session_against_positronic_041_server(stub):
    """robotflow's client follows their declared version 2: the envelope with the session id, JPEG images
    (their server sets compress_images), the timing block and the acknowledged end of the session."""
    with RemoteSession(stub.url) as s:
        assert s.version == V2 and s.session_id
        assert s.meta["compress_images"] is True and "local_stack" in s.meta
        obs = {
            "robot_state.q": np.zeros(7),
            "robot_state.ee_pose": np.array([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0]),
            "grip": 0.0,
            "image.wrist": np.zeros((48, 64, 3), dtype=np.uint8),
        }
        result = s.infer(obs)
        assert result == [{}]  # their stub model answers one empty command set
        assert {"served_ms", "decode_ms", "infer_ms"} <= set(s.timing)
        assert len(actions_from_wire(result, fps=s.meta["action_fps"])) == 0
        s.end()  # raises unless the server acknowledges


def test_models_endpoint_absent_is_no_obstacle(stub):
    """Their server has no GET /api/v1/models; policy.remote and `rollout --server` never ask for it."""
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{stub.port}/api/v1/models", timeout=10)
    assert e.value.code == 404
    with RemoteSession(stub.url) as s:
        assert s.statuses[-1] == "ready"


# ---- the bearer token, both directions -------------------------------------------------------------

TOKEN = "interop-s3cret"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    save_checkpoint(root / "checkpoints" / "000001" / "pretrained_model")
    srv = ServeProcess("--checkpoints-dir", str(root), "--device", "cpu", "--token", TOKEN)
    yield srv
    srv.stop()


def test_positronic_041_with_the_token_is_served(token_server):
    """Their InferenceClient and RemotePolicy send `Authorization: Bearer <token>` (the header their
    `authed_remote` builds from AUTH_TOKEN) on the upgrade and on the keepalive call: `robotflow serve
    --token` accepts both."""
    out = run_peer("0.4.1", "both", token_server.port, TOKEN)
    assert out["client"]["protocol_version"] == V2 and out["client"]["command_types"] == ["CartesianPosition"]
    assert out["client"]["keepalive"] is None
    assert out["policy"]["command_steps"] > 0


def test_positronic_041_without_the_token_is_refused(token_server):
    """Without the header, or with a wrong token, their client reads our refusals as theirs: the upgrade
    answers 403 and the keepalive call 401, both `forbidden` to their wire; no session starts."""

    def sessions() -> int:  # the server's line for each session it starts: "session N from PEER: model M"
        return sum(": model " in line for line in token_server.lines)

    before = sessions()
    out = run_peer("0.4.1", "refused", token_server.port, "not-" + TOKEN)
    for who in ("none", "wrong"):
        session, keepalive = out[f"{who}_new_session"], out[f"{who}_keepalive"]
        assert session.get("refusal") == "forbidden" and "403" in session["message"], session
        assert keepalive.get("refusal") == "forbidden" and "401" in keepalive["message"], keepalive
    assert "refused: missing or wrong bearer token" in token_server.wait_for_line("refused: missing")
    assert sessions() == before


@pytest.fixture(scope="module")
def token_stub():
    srv = StubServer(token=TOKEN)
    yield srv
    srv.stop()


def test_robotflow_session_with_the_token_against_positronic_041_server(token_stub):
    """Their server gated on AUTH_TOKEN: robotflow's client sends the bearer token and is served; without
    it, or with a wrong one, their server refuses the upgrade (403)."""
    with RemoteSession(token_stub.url, token=TOKEN) as s:
        assert s.version == V2 and s.session_id
        assert s.infer({"robot_state.ee_pose": np.zeros(7), "grip": 0.0}) == [{}]
    for token in (None, "not-" + TOKEN):
        with pytest.raises(InvalidStatus) as e:
            RemoteSession(token_stub.url, token=token)
        assert e.value.response.status_code == 403


REMOTE_GRAPH = """
nodes:
  - {{name: arm, type: testpolicy.arm, rate: 30}}
  - {{name: gripper, type: testpolicy.gripper, rate: 30}}
  - {{name: wrist_camera, type: test.frames, rate: 15, params: {{width: 64, height: 48}}}}
  - {{name: front_camera, type: test.frames, rate: 15, params: {{width: 64, height: 48}}}}
  - name: policy
    type: policy.remote
    rate: 15
    params: {{server: "{url}", codec: ee, request_timeout_s: 10.0{token}}}
    inputs: {{arm_state: arm/state, gripper_state: gripper/state, wrist: wrist_camera/frame, front: front_camera/frame}}
"""


def run_remote_graph(url: str, token: str | None, seconds: float, monkeypatch) -> tuple[object, object]:
    from robotflow.runtime.graph import parse_graph
    from robotflow.runtime.scheduler import Scheduler

    monkeypatch.delenv("ROBOTFLOW_TOKEN", raising=False)
    graph = REMOTE_GRAPH.format(url=url, token=f", token: {token}" if token else "")
    sched = Scheduler(parse_graph(graph), duration_s=seconds)
    return sched, sched.run()


def test_policy_remote_sends_the_token_to_positronic_041_server(token_stub, monkeypatch):
    """`policy.remote` with `token` opens its session on their gated server and asks for chunks (the stub
    answers none, so the node holds); without it the graph stops at setup with one line naming the 403."""
    sched, result = run_remote_graph(token_stub.url, TOKEN, 3.0, monkeypatch)
    assert result.ok, result.error
    assert sched.nodes["policy"].counters["requests"] >= 1
    sched, result = run_remote_graph(token_stub.url, None, 3.0, monkeypatch)
    assert not result.ok and "cannot open a session" in str(result.error) and "403" in str(result.error)
    assert "\n" not in str(result.error).strip()


@pytest.mark.slow  # a simulated episode: 15 s on a quiet machine, minutes on a loaded one
def test_scored_sim_rollout_through_positronic_041_server(stub, tmp_path):
    """`rollout --server` against their server (no models route, version 2): the episode runs and is scored.
    Their stub answers no command, so policy.remote holds the arm (counted as refused answers) and the
    episode times out as a failure instead of moving on an answer it cannot execute."""
    summary = tmp_path / "s.json"
    out = invoke(
        "rollout", "--server", stub.url, "--no-record", "--summary", summary, "--graph", GRAPH, "--episodes", 1, *SETS
    )
    assert "success rate:" in out
    result = json.loads(summary.read_text())
    assert [e["seed"] for e in result["episodes"]] == [1000] and result["server"] == stub.url


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
