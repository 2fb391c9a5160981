"""`robotflow serve` as a real subprocess on loopback, driven by a real WebSocket client (Protocol v1)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import pytest

pytest.importorskip("lerobot")

from click.testing import CliRunner
from test_policy_node import save_checkpoint
from websockets.exceptions import ConnectionClosed, InvalidStatus

from robotflow.recording.reader import EpisodeFile
from robotflow.scripts.cli import main
from robotflow.wire.client import RemoteSession, ServerError, list_models
from robotflow.wire.protocol import actions_from_wire, pack, unpack

TOKEN = "s3cret-token"
H, W = 48, 64  # the test checkpoints' image size (tests/test_policy_chunking.py)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`robotflow serve` in a subprocess; its output lines are collected for assertions."""

    def __init__(self, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "robotflow.scripts.cli", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(120) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("robotflow serve did not start:\n" + "\n".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "serving" in line and "ws://" in line:
                self._ready.set()
        self._ready.set()

    def wait_for_line(self, text: str, timeout: float = 30.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} in:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    for step in (1, 2):
        save_checkpoint(root / "checkpoints" / f"{step:06d}" / "pretrained_model")
    return root


@pytest.fixture(scope="module")
def server(run_dir):
    srv = ServeProcess(
        "--checkpoints-dir", str(run_dir), "--token", TOKEN, "--max-message-mb", "0.5", "--device", "cpu"
    )
    yield srv
    srv.stop()


def observation(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "robot_state.q": rng.standard_normal(7),
        "robot_state.dq": np.zeros(7),
        "robot_state.ee_pose": np.array([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0]),
        "grip": 0.7,
        "image.wrist": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "image.front": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "task": "stack the cubes",
    }


def session(server, model=None, **kw) -> RemoteSession:
    return RemoteSession(server.url, model, token=TOKEN, **kw)


def test_models_list_and_auth(server):
    assert list_models(server.url, token=TOKEN) == ["1", "2"]
    with pytest.raises(urllib.error.HTTPError) as e:
        list_models(server.url)
    assert e.value.code == 401
    with pytest.raises(InvalidStatus) as e:
        RemoteSession(server.url)  # no token: the handshake itself is refused
    assert e.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        RemoteSession(server.url, token="wrong")
    assert "refused: missing or wrong bearer token" in server.wait_for_line("refused: missing")


def test_chunk_result_matches_in_process_inference(server, run_dir):
    """The result is the whole chunk, decoded, stamped i/fps, and equal to the same forward pass in-process."""
    import torch
    from lerobot.policies.utils import prepare_observation_for_inference

    from robotflow.codecs import codec_from_spec
    from robotflow.policies.loading import load_policy
    from robotflow.wire.protocol import channels_from_observation

    obs = observation(1)
    with session(server) as s:
        assert s.statuses == ["ready"]
        meta = s.meta
        assert meta["checkpoint_id"] == "2" and meta["type"] == "act" and meta["codec"] == "eepose_absolute"
        assert meta["image_sizes"] == [W, H] and meta["action_fps"] == 15.0 and meta["chunk_size"] == 10
        result = s.infer(obs)
    assert len(result) == 10
    assert s.version == 2 and {"served_ms", "infer_ms"} <= set(s.timing)
    assert all(
        a["robot_command"]["type"] == "cartesian_pos" and a["robot_command"]["pose"].shape == (12,) for a in result
    )
    chunk = actions_from_wire(result, fps=meta["action_fps"])  # version 2 rows are spaced at action_fps
    assert chunk.stamps.tolist() == pytest.approx([i / 15 for i in range(10)])
    poses, grips = chunk.targets, chunk.grips

    loaded = load_policy(run_dir, step=2, device="cpu")
    codec = codec_from_spec(loaded.codec_spec)
    latest, _ = channels_from_observation(obs, codec)
    frame = codec.encode_live(latest)
    with torch.inference_mode():
        batch = loaded.preprocessor(prepare_observation_for_inference(frame, "cpu", None, None))
        chunk = loaded.postprocessor(loaded.policy.predict_action_chunk(batch))[0].numpy()
    expected = [codec.decode(a) for a in chunk]
    np.testing.assert_allclose(poses, np.stack([e["ee_pose"] for e in expected]), atol=1e-5)
    np.testing.assert_allclose(grips, [e["width"] for e in expected], atol=1e-5)


def test_bad_requests_get_errors_and_the_session_goes_on(server):
    obs = observation(2)
    with session(server) as s:
        bad = {
            "missing key": pack({k: v for k, v in obs.items() if k != "robot_state.ee_pose"}),
            "malformed": b"\xc1\xff\x00 not msgpack",
            "unknown dtype": msgpack.packb(
                {
                    **{k: v for k, v in obs.items() if not isinstance(v, np.ndarray)},
                    "robot_state.ee_pose": {b"__ndarray__": True, b"data": b"\0" * 16, b"dtype": "|O", b"shape": [2]},
                }
            ),
            "bad shape": pack({**obs, "robot_state.ee_pose": np.zeros(3)}),
            "wrong image": pack({**obs, "image.front": np.zeros((H, W), np.float32)}),
            "oversize": pack({**obs, "padding": np.zeros(700_000, np.uint8)}),
        }
        replies = {name: s.infer_raw(payload) for name, payload in bad.items()}
        s._ws.send("a text frame")
        replies["text"] = unpack(s._ws.recv(timeout=30))
        for name, reply in replies.items():
            assert set(reply) == {"error"}, (name, reply)
        assert "robot_state.ee_pose" in replies["missing key"]["error"]
        assert "malformed msgpack" in replies["malformed"]["error"]
        assert "dtype" in replies["unknown dtype"]["error"]
        assert "7 values" in replies["bad shape"]["error"]
        assert "uint8" in replies["wrong image"]["error"]
        assert "over the server's limit" in replies["oversize"]["error"]
        assert "binary" in replies["text"]["error"]
        assert len(s.infer(obs)) == 10  # still serving this session
    assert list_models(server.url, token=TOKEN) == ["1", "2"]  # and the server is alive


def test_unknown_model_is_refused_with_1008(server):
    with pytest.raises(ServerError, match="unknown model 'nope'; available: 1, 2"):
        session(server, "nope")
    from websockets.sync.client import connect

    with connect(f"{server.url}/api/v1/session/nope", additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert unpack(ws.recv(timeout=30))["status"] == "error"
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=30)
        assert e.value.rcvd.code == 1008


def test_two_concurrent_sessions(server):
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with session(server) as s:
                results[i] = [len(s.infer(observation(10 * i + k))) for k in range(3)]
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert results == {0: [10, 10, 10], 1: [10, 10, 10]}


def test_switching_models_waits_for_active_sessions(server):
    first = session(server, "2")
    statuses: list[str] = []
    got: dict = {}

    def open_other() -> None:
        got["session"] = session(server, "1", on_status=lambda status, _msg: statuses.append(status))

    t = threading.Thread(target=open_other)
    t.start()
    server.wait_for_line("waiting for 1 active session(s) on model 2")
    assert len(first.infer(observation(3))) == 10  # the active session is unaffected
    first.close()
    t.join(120)
    other = got["session"]
    try:
        assert statuses[0] == "waiting" and "loading" in statuses and other.statuses[-1] == "ready"
        assert other.meta["checkpoint_id"] == "1"
        assert len(other.infer(observation(4))) == 10
    finally:
        other.close()


def test_non_loopback_bind_needs_a_token(run_dir, monkeypatch):
    monkeypatch.delenv("ROBOTFLOW_TOKEN", raising=False)
    r = CliRunner().invoke(main, ["serve", "--checkpoints-dir", str(run_dir), "--host", "0.0.0.0"])
    assert r.exit_code != 0 and "refusing to bind 0.0.0.0 without a token" in r.output
    r = CliRunner().invoke(main, ["serve", "--checkpoints-dir", str(run_dir / "missing")])
    assert r.exit_code != 0 and "does not exist" in r.output
    r = CliRunner().invoke(main, ["serve", "--checkpoints-dir", str(run_dir), "--checkpoint", "7"])
    assert r.exit_code != 0 and "--checkpoint 7: no such checkpoint; available: 1, 2" in r.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        r = CliRunner().invoke(main, ["serve", "--checkpoints-dir", str(run_dir), "--port", port])
    assert r.exit_code != 0 and f"cannot serve on 127.0.0.1:{port}: Address already in use" in r.output


# ---- robotflow rollout --server ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "graphs/sim_stack_cubes_policy.yaml"
SETS = [
    "--set",
    "task.timeout_s=1.0",
    *[f"--set={cam}.{k}={v}" for cam in ("wrist_camera", "front_camera") for k, v in (("width", 64), ("height", 48))],
]


def invoke(*args: object) -> str:
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def targets(rec: Path) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    out = []
    for f in sorted(rec.glob("episode_*.h5")):
        with EpisodeFile(f) as ep:
            out.append(
                (
                    {"seed": ep.attr("seed"), "outcome": ep.attr("outcome")},
                    ep.field("policy/ee_target", "ee_pose"),
                    ep.field("policy/grip", "width"),
                )
            )
    return out


def test_remote_rollout_equals_in_process_rollout(server, run_dir, tmp_path, monkeypatch):
    """`robotflow rollout --server` (policy.remote in the simulated stack graph) against the in-process
    rollout of the same checkpoint on the same seeds."""
    import json

    monkeypatch.setenv("ROBOTFLOW_TOKEN", TOKEN)  # the rollout's --token default
    local, remote = tmp_path / "local", tmp_path / "remote"
    args = ("--graph", GRAPH, "--episodes", 2, *SETS)
    invoke("rollout", "--checkpoints-dir", run_dir, "--output-dir", local, "--summary", tmp_path / "l.json", *args)
    out = invoke("rollout", "--server", server.url, "--output-dir", remote, "--summary", tmp_path / "r.json", *args)
    assert "rolling out the policy served at ws://127.0.0.1" in out and "success rate:" in out

    lsum, rsum = json.loads((tmp_path / "l.json").read_text()), json.loads((tmp_path / "r.json").read_text())
    assert [e["seed"] for e in rsum["episodes"]] == [1000, 1001]
    assert rsum["episodes"] == lsum["episodes"]
    assert rsum["server"] == server.url and rsum["codec"] == "eepose_absolute"
    a, b = targets(local), targets(remote)
    assert len(a) == len(b) == 2
    for (ma, pa, ga), (mb, pb, gb) in zip(a, b, strict=True):
        assert ma == mb
        assert len(pa) == len(pb) >= 12, "the policy acted every tick of the 1 s episode"
        # Same weights, same pixels, same chunk cadence. The first chunk comes from the same observation and
        # agrees to float rounding. The wire carries poses as rotation matrices (Positronic's format), so
        # later targets carry ~1e-16 of conversion error back through the simulated arm, which MuJoCo
        # amplifies a little by the next observation: they agree closely, not bitwise.
        np.testing.assert_allclose(pb[:10], pa[:10], atol=1e-6)
        np.testing.assert_allclose(gb[:10], ga[:10], atol=1e-6)
        np.testing.assert_allclose(pb, pa, atol=1e-2)
        np.testing.assert_allclose(gb, ga, atol=1e-2)


def test_remote_rollout_refuses_bad_arguments(tmp_path):
    r = CliRunner().invoke(main, ["rollout", "--server", "http://x:1", "--no-record"])
    assert r.exit_code != 0 and "use ws://HOST:PORT" in r.output
    r = CliRunner().invoke(main, ["rollout", "--server", "ws://127.0.0.1:9", "--checkpoints-dir", str(tmp_path)])
    assert r.exit_code != 0 and "give one or the other" in r.output
    r = CliRunner().invoke(main, ["rollout", "--server", "ws://127.0.0.1:9"])
    assert r.exit_code != 0 and "--output-dir" in r.output
    # Nothing listens there: the policy node fails setup with one line naming the server.
    r = CliRunner().invoke(main, ["rollout", "--server", "ws://127.0.0.1:9", "--no-record", "--episodes", "1", *SETS])
    assert r.exit_code != 0 and "cannot open a session on ws://127.0.0.1:9" in r.output


# ---- wire format (no server) ---------------------------------------------------------------------


def test_wire_format_is_positronics():
    """Arrays travel as maps with binary keys and the dtype's `str`, as Positronic's serialization writes them;
    text keys (another client's) decode too; poses are translation + row-major rotation matrix."""
    from robotflow.geometry import quat_to_matrix
    from robotflow.wire.protocol import pose_from_wire, pose_to_wire

    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = msgpack.unpackb(pack({"a": arr, "s": np.float32(0.5)}), raw=False)
    assert raw["a"] == {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": "<f4", b"shape": [2, 3]}
    assert raw["s"] == {b"__npgeneric__": True, b"data": 0.5, b"dtype": "<f4"}
    back = unpack(msgpack.packb({"a": {"__ndarray__": True, "data": arr.tobytes(), "dtype": "<f4", "shape": [2, 3]}}))
    np.testing.assert_array_equal(back["a"], arr)
    q = np.array([0.9, 0.1, -0.3, 0.2])
    q /= np.linalg.norm(q)
    pose = np.array([0.4, -0.1, 0.3, *q])
    wire = pose_to_wire(pose)
    np.testing.assert_allclose(wire[3:].reshape(3, 3), quat_to_matrix(q), atol=1e-12)
    np.testing.assert_allclose(pose_from_wire(wire), pose, atol=1e-12)


def test_chunks_are_laid_onto_ticks_by_timestamp():
    from robotflow.policies.remote import chunk_to_ticks

    poses = np.arange(4)[:, None] * np.ones((4, 7))
    grips = np.arange(4, dtype=np.float64)
    # A 30 Hz server seen from a 15 Hz graph: every other action; a 7.5 Hz one: each held for two ticks.
    fast = chunk_to_ticks(poses, grips, np.arange(4) / 30, fps=15, horizon_s=None)
    assert fast[:, -1].tolist() == [0.0, 2.0]
    slow = chunk_to_ticks(poses, grips, np.arange(4) / 7.5, fps=15, horizon_s=None)
    assert slow[:, -1].tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert chunk_to_ticks(poses, grips, np.arange(4) / 15, fps=15, horizon_s=2 / 15)[:, -1].tolist() == [0, 1]


def test_a_diffusion_checkpoint_is_served_with_its_observation_history(tmp_path):
    """Any policy type `policy.lerobot` loads: diffusion keeps an observation queue, per session."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from robotflow.codecs import get_codec, write_checkpoint_spec
    from robotflow.serving.server import ServedModel
    from robotflow.wire.protocol import channels_from_observation

    feats = {
        "observation.state": PolicyFeature(FeatureType.STATE, (8,)),
        "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, H, W)),
    }
    cfg = DiffusionConfig(
        input_features=feats,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (8,))},
        crop_shape=None,
        down_dims=(16, 32),
        diffusion_step_embed_dim=16,
        n_groups=4,
        spatial_softmax_num_keypoints=8,
        num_inference_steps=3,
        horizon=8,
        n_action_steps=4,
        device="cpu",
    )
    torch.manual_seed(0)
    stats = {
        "observation.images.wrist": {"mean": torch.full((3, 1, 1), 0.45), "std": torch.full((3, 1, 1), 0.25)},
        "action": {"min": -torch.ones(8), "max": torch.ones(8)},
        "observation.state": {"min": -torch.ones(8), "max": torch.ones(8)},
    }
    model_dir = tmp_path / "checkpoints" / "000005" / "pretrained_model"
    DiffusionPolicy(cfg).save_pretrained(model_dir)
    for proc in make_pre_post_processors(cfg, dataset_stats=stats):
        proc.save_pretrained(model_dir)
    write_checkpoint_spec(model_dir, get_codec("ee", image_size=(H, W), cameras={"wrist": "wrist_camera/frame"}))

    model = ServedModel("5", model_dir, "cpu", None)
    model.warmup()
    assert model.meta["type"] == "diffusion" and model.meta["chunk_size"] == 4
    codec, a, b = model.new_codec(), model.new_state(), model.new_state()
    latest, _ = channels_from_observation({**observation(5), "image.wrist": observation(5)["image.wrist"]}, codec)
    for _ in range(3):  # two sessions, each with its own observation queue
        chunk, a = model.predict(codec.encode_live(latest), a)
        assert chunk.shape == (4, 8) and np.isfinite(chunk).all()
    _, b = model.predict(codec.encode_live(latest), b)
    assert len(a["observation.state"]) == 2 and len(b["observation.state"]) == 2  # n_obs_steps, filled per session
    assert a is not b


def test_a_run_in_object_storage_serves_the_chosen_checkpoint(tmp_path, monkeypatch):
    """`--checkpoints-dir s3://...`: the catalog resolves the URL as the policy nodes do, downloading only
    the checkpoint served (the newest, or `--checkpoint STEP`)."""
    from s3_server import BUCKET, s3_server

    from robotflow.serving.server import ModelCatalog, ServeError
    from robotflow.storage import Cache

    run = tmp_path / "run"
    for step in (1, 2):
        save_checkpoint(run / "checkpoints" / f"{step:06d}" / "pretrained_model")
    with s3_server(monkeypatch, tmp_path):
        url = f"s3://{BUCKET}/runs/act"
        Cache().upload(run, url)
        newest = ModelCatalog(url, None, "ee")
        assert newest.ids() == ["2"] and newest.default == "2" and newest.name == "act"
        assert newest.paths["2"].is_dir() and not (newest.paths["2"].parent.parent / "000001").exists()
        assert ModelCatalog(url, "1", None).ids() == ["1"]
        with pytest.raises(ServeError, match="available: 1, 2"):
            ModelCatalog(url, "7", None)


def test_results_of_current_servers_are_read_safely():
    """The validity marker ends a result; joint_pos drives joint targets; other command types and control
    modes are refused with one line; unstamped rows are spaced at the server's rate; JPEG images and the
    __cmd__ envelope decode."""
    from robotflow.policies.remote import chunk_to_ticks, valid_horizon
    from robotflow.wire.protocol import EE_TARGET, JOINT_TARGET, ProtocolError, encode_jpeg, pose_to_wire

    pose = pose_to_wire(np.array([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0]))
    ee = {"robot_command": {"type": "cartesian_pos", "pose": pose}, "target_grip": 0.5}
    joints = {"robot_command": {"type": "joint_pos", "positions": np.arange(7.0)}, "target_grip": 1.0}
    chunk = actions_from_wire([ee, joints, ee, {"timestamp": 2 / 15}, ee], fps=15)
    assert chunk.kinds.tolist() == [EE_TARGET, JOINT_TARGET, EE_TARGET] and chunk.valid_until == 2 / 15
    assert chunk.stamps.tolist() == pytest.approx([0, 1 / 15, 2 / 15])
    ticks = chunk_to_ticks(
        chunk.targets, chunk.grips, chunk.stamps, 15, valid_horizon(1.0, chunk.valid_until), chunk.kinds
    )
    assert len(ticks) == 2 and ticks[:, 0].tolist() == [EE_TARGET, JOINT_TARGET]  # nothing at or past the marker
    np.testing.assert_allclose(ticks[1, 1:8], np.arange(7.0))
    plain = {"type": "position_control"}
    assert len(actions_from_wire([{**ee, "robot_command": {**ee["robot_command"], "mode": plain}}], fps=15)) == 1
    for cmd, text in [
        ({"type": "joint_delta", "velocities": np.zeros(7)}, "command type 'joint_delta' cannot be executed"),
        ({"type": "cartesian_pos", "pose": pose, "mode": {"type": "impedance"}}, "control mode 'impedance'"),
    ]:
        with pytest.raises(ProtocolError, match=text):
            actions_from_wire([{"robot_command": cmd, "target_grip": 0.0}], fps=15)
    img = np.zeros((48, 64, 3), dtype=np.uint8)
    img[:, :32] = (200, 30, 10)
    back = unpack(pack({"image.wrist": encode_jpeg(img), "robot_command": {b"__cmd__": {"type": "reset"}}}))
    assert (
        back["image.wrist"].shape == (48, 64, 3) and np.abs(back["image.wrist"].astype(int) - img).mean() < 3
    )  # lossy at the edge
    assert back["robot_command"] == {"type": "reset"}


def test_version_1_requests_get_stamped_rows_and_current_clients_the_marker(server):
    """A bare observation is version 1: rows stamped i/fps; with `wall_time_ns` (Positronic 0.4's version 1
    path) the answer ends with the validity marker at n_action_steps / fps; end_session is echoed."""
    with session(server) as s:
        reply = s.infer_raw(pack(observation(3)))
        assert "timing" in reply and len(reply["result"]) == 10
        assert [a["timestamp"] for a in reply["result"]] == pytest.approx([i / 15 for i in range(10)])
        stamped = s.infer_raw(pack({**observation(3), "wall_time_ns": time.time_ns()}))["result"]
        valid = s.meta["n_action_steps"] / 15
        assert stamped[-1] == {"timestamp": pytest.approx(valid)} and len(stamped) == 11
        assert actions_from_wire(stamped, fps=15).valid_until == pytest.approx(valid)
        s.end()  # raises unless the server echoes it


def test_a_relative_codec_is_served_with_absolute_positions(tmp_path):
    """ee_cams_rel predicts positions as offsets from the observed EE position; the server adds it back, as
    policy.act's chunk executor does, so the answer is the in-process chunk and not the raw offsets."""
    import torch
    from lerobot.policies.utils import prepare_observation_for_inference

    from robotflow.codecs import codec_from_spec
    from robotflow.policies.loading import load_policy
    from robotflow.wire.protocol import channels_from_observation

    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "000001" / "pretrained_model", codec_name="ee_cams_rel")
    srv = ServeProcess("--checkpoints-dir", str(run), "--device", "cpu")
    try:
        obs = {**observation(4), "robot_state.ee_pose": np.array([0.9, -0.7, 1.1, 0.0, 1.0, 0.0, 0.0])}
        with RemoteSession(srv.url) as s:
            assert s.meta["codec"] == "ee_cams_rel"
            served = actions_from_wire(s.infer(obs), fps=s.meta["action_fps"]).targets
    finally:
        srv.stop()
    loaded = load_policy(run, device="cpu")
    codec = codec_from_spec(loaded.codec_spec)
    frame = codec.encode_live(channels_from_observation(obs, codec)[0])
    observed = frame["observation.state"][:3].copy()  # LeRobot's prepare turns the frame's arrays into tensors
    with torch.inference_mode():
        batch = loaded.preprocessor(prepare_observation_for_inference(frame, "cpu", None, None))
        offsets = loaded.postprocessor(loaded.policy.predict_action_chunk(batch))[0].numpy()
    absolute = offsets.copy()
    absolute[:, :3] += observed
    poses, _ = codec.decode_chunk(absolute)
    np.testing.assert_allclose(served, poses, atol=1e-5)
    assert np.abs(served[:, :3] - codec.decode_chunk(offsets)[0][:, :3]).min() > 0.5  # not the offsets


def test_the_cpu_server_keeps_convolutions_channels_last(run_dir):
    """A faster CPU forward pass (docs/serving.md): the served policy's conv weights are channels-last; the result
    stays the in-process one to float rounding (test_chunk_result_matches_in_process_inference)."""
    import torch

    from robotflow.serving.server import ServedModel

    model = ServedModel("2", run_dir / "checkpoints" / "000002" / "pretrained_model", "cpu", None)
    convs = [p for p in model.loaded.policy.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
