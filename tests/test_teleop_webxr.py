"""teleop.webxr: the pose hub, the clutch mapping, the certificate, and the page in a real headless Chromium
(Debian's package, driven by Playwright) moving the simulated arm over the node's HTTPS + WebSocket server."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from robotflow.drivers.teleop_base import EETarget
from robotflow.drivers.teleop_webxr import Clutch, PoseHub, make_certificate, server_clock_ms
from robotflow.geometry import quat_from_rotvec, quat_mul, rotation_angle
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Node, register
from robotflow.runtime.scheduler import Scheduler

HOME = np.array([0.55, 0.0, 0.48, 0.0, 0.70710678, 0.70710678, 0.0])
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pose_msg(p, q=(0, 0, 0, 1), clutch=True, grip=1.0, age_ms=0.0) -> str:
    return json.dumps(
        {"type": "pose", "t": server_clock_ms() - age_ms, "p": list(p), "q": list(q), "clutch": clutch, "grip": grip}
    )


def test_hub_drops_stale_and_invalid_messages():
    hub = PoseHub(max_age_ms=50)
    page = object()
    assert hub.claim(page) and not hub.claim(object())  # one controlling page at a time
    assert hub.silent_for() == float("inf")
    hub.handle(pose_msg([0, 1, 0], age_ms=200))  # too old on arrival
    assert hub.take() is None and hub.dropped_stale == 1 and hub.received == 1
    hub.handle(pose_msg([0, 1, 0.1], grip=0.3))
    pose = hub.take()
    assert pose is not None and np.allclose(pose.p, [0, 1, 0.1]) and pose.grip == 0.3
    assert np.allclose(pose.q, [1, 0, 0, 0])  # x y z w from the page -> w x y z
    assert hub.take() is None  # consumed
    for bad in [
        "not json",
        '{"type": "pose"}',
        '{"type": "warp"}',
        pose_msg([float("nan"), 0, 0]).replace("NaN", "NaN"),
    ]:
        hub.handle(bad)
    assert hub.invalid == 4
    hub.handle(json.dumps({"type": "episode", "action": "start"}))
    hub.handle(json.dumps({"type": "episode", "action": "explode"}))
    assert hub.actions() == ["start"] and hub.invalid == 5
    reply = hub.handle(json.dumps({"type": "ping", "t0": 123.0}))
    assert reply["type"] == "pong" and reply["t0"] == 123.0 and abs(reply["ts"] - server_clock_ms()) < 1000
    assert hub.silent_for() < 1.0
    hub.disconnect(page)
    assert hub.silent_for() == float("inf") and hub.claim(object())


def test_clutch_maps_relative_hand_motion_and_holds_on_release():
    target = EETarget.from_pose(HOME)
    clutch = Clutch()
    q0 = np.array([1.0, 0, 0, 0])
    clutch.update(target, np.array([0.3, 1.2, -0.4]), q0, engaged=True)  # anchor: nothing moves
    assert np.allclose(target.pose(), HOME)
    # Hand 5 cm forward (-z in XR), 2 cm left (-x), 3 cm up (+y): robot +x, +y, +z.
    clutch.update(target, np.array([0.28, 1.23, -0.45]), q0, engaged=True)
    assert np.allclose(target.pos, HOME[:3] + [0.05, 0.02, 0.03])
    # Hand turned 20 degrees about XR's up axis (y): the EE yaws 20 degrees about the robot's z.
    qy = np.array([np.cos(np.radians(10)), 0, np.sin(np.radians(10)), 0])
    clutch.update(target, np.array([0.28, 1.23, -0.45]), qy, engaged=True)
    assert np.isclose(np.degrees(rotation_angle(target.quat, HOME[3:])), 20.0, atol=1e-6)
    turned_left = quat_mul(quat_from_rotvec([0, 0, np.radians(20)]), HOME[3:])  # counter-clockwise seen from above
    assert rotation_angle(target.quat, turned_left) < 1e-6
    held = target.pose()
    clutch.update(target, np.array([0.0, 0.0, 0.0]), q0, engaged=False)  # released: the hand moves freely
    assert np.allclose(target.pose(), held)
    clutch.update(target, np.array([0.0, 0.0, 0.0]), q0, engaged=True)  # re-grip: a new anchor, no jump
    assert np.allclose(target.pose(), held)
    clutch.update(target, np.array([0.0, 0.0, -0.01]), q0, engaged=True)
    assert np.allclose(target.pos, held[:3] + [0.01, 0, 0])


def test_certificate_names_localhost(tmp_path):
    from cryptography import x509

    cert_path, key_path = make_certificate(tmp_path, "127.0.0.1", reuse=True)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert key_path.stat().st_mode & 0o077 == 0
    again, _ = make_certificate(tmp_path, "127.0.0.1", reuse=True)  # kept: the phone accepted it once
    assert again.read_bytes() == cert_path.read_bytes()
    lan, _ = make_certificate(tmp_path / "lan", "192.168.1.5", reuse=False)  # the address a phone opens
    san = x509.load_pem_x509_certificate(lan.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "192.168.1.5" in [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)]


SIM_GRAPH = """
nodes:
  - {name: world, type: sim.world, rate: 500, params: {task: pick_place, realtime: true, visual_cell: 0}}
  - {name: arm, type: sim.arm, rate: 100, inputs: {ee_target: teleop/ee_target}}
  - {name: gripper, type: sim.gripper, rate: 100, inputs: {target: teleop/grip}}
  - {name: teleop, type: teleop.webxr, rate: 100, params: {port: 0, timeout_s: 0.5}, inputs: {state: arm/state}}
  - {name: sink, type: test.sink, rate: 100, inputs: {t: teleop/ee_target, e: {source: teleop/episode, delivery: queue}}}
"""


@register("testteleop.arm_state")
class ArmState(Node):
    """A still arm's `state`, for tests of the page server that need no physics."""

    outputs = ("state",)

    def step(self) -> None:
        self.emit("state", ee_pose=HOME.copy(), joint_pos=np.zeros(7), joint_vel=np.zeros(7))


WALL_GRAPH = """
nodes:
  - {name: arm, type: testteleop.arm_state, rate: 100}
  - {name: teleop, type: teleop.webxr, rate: 100, params: {port: 0}, inputs: {state: arm/state}}
"""


class GraphThread:
    """Runs a graph on a thread so the test can act as the person at the page meanwhile."""

    def __init__(self, graph, duration_s: float = 60.0):
        self.sched = Scheduler(parse_graph(graph) if isinstance(graph, str) else graph, duration_s=duration_s)
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.result = self.sched.run()

    def __enter__(self):
        self.thread.start()
        return self

    def wait_for(self, cond, timeout_s=30.0, what="condition"):
        deadline = time.monotonic() + timeout_s
        while not cond():
            assert self.thread.is_alive() or cond(), f"graph ended early: {self.result}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.sched.stop("test done")
        self.thread.join(timeout=30)


def test_page_is_served_over_https_only_on_loopback():
    with GraphThread(WALL_GRAPH) as g:
        g.wait_for(lambda: hasattr(g.sched.nodes["teleop"], "url"), what="the page server")
        node = g.sched.nodes["teleop"]
        assert node.server.sock.getsockname()[0] == "127.0.0.1"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        html = urllib.request.urlopen(node.url, context=ctx, timeout=10).read().decode()
        assert "teleop.js" in html and 'id="clutch"' in html
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # self-signed: refused by default
            urllib.request.urlopen(node.url, context=ssl.create_default_context(), timeout=10)
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP is not served
            urllib.request.urlopen(node.url.replace("https", "http"), timeout=10).read()
    assert g.result.ok, g.result


def _moved_less_than(sim, metres: float, over_s: float) -> bool:
    """Whether the sim arm's EE moved less than `metres` in the next `over_s` seconds."""
    before = sim.ee_pose()[:3].copy()
    time.sleep(over_s)
    return bool(np.linalg.norm(sim.ee_pose()[:3] - before) < metres)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install adds it as root)")
def test_headless_browser_drives_the_sim_arm_and_clutch_release_holds():
    from playwright.sync_api import sync_playwright

    with GraphThread(SIM_GRAPH) as g, sync_playwright() as pw:
        g.wait_for(lambda: hasattr(g.sched.nodes["teleop"], "url"), what="the page server")
        teleop, sink, sim = g.sched.nodes["teleop"], g.sched.nodes["sink"], g.sched.nodes["world"].sim
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(ignore_https_errors=True)
        page.goto(teleop.url + "?source=test")
        page.wait_for_function("window.robotflowTest && window.robotflowTest.state.synced", timeout=10_000)
        assert page.inner_text("#conn") == "connected"
        g.wait_for(lambda: sink.received.get("t", 0) > 5, what="ee_target from the page's poses")
        page.wait_for_function("document.getElementById('latency').textContent !== '-'", timeout=5000)
        start = sim.ee_pose().copy()
        assert np.linalg.norm(teleop.target.pos - start[:3]) < 2e-3  # connecting does not move the arm

        def move_hand(dx, dy, dz, ms=600):
            page.evaluate(
                """([dx, dy, dz, ms]) => new Promise((done) => {
                     const p0 = robotflowTest.pose.p.slice(), t0 = performance.now();
                     const id = setInterval(() => {
                       const s = Math.min(1, (performance.now() - t0) / ms);
                       robotflowTest.pose = {p: [p0[0] + s * dx, p0[1] + s * dy, p0[2] + s * dz], q: [0, 0, 0, 1]};
                       if (s >= 1) { clearInterval(id); done(); }
                     }, 10);
                   })""",
                [dx, dy, dz, ms],
            )

        page.evaluate("robotflowTest.pose = {p: [0.1, 1.2, -0.3], q: [0, 0, 0, 1]}")
        page.locator("#clutch").hover()
        page.mouse.down()  # the person holds the clutch ...
        page.wait_for_function("document.getElementById('arm').textContent === 'following'", timeout=5000)
        move_hand(0.0, 0.04, -0.08)  # ... and moves the phone 8 cm forward, 4 cm up
        g.wait_for(lambda: np.linalg.norm(sim.ee_pose()[:3] - (start[:3] + [0.08, 0, 0.04])) < 0.01, 10, "the arm")
        page.mouse.up()  # clutch released: the hand moves, the arm holds
        page.wait_for_function("document.getElementById('arm').textContent === 'holding'", timeout=5000)
        # The arm was within 1 cm of the hand's last target at release and still closes that gap: let it
        # settle on the held target first, so what follows measures the hand's motion, not the arm's arrival.
        held_target = teleop.target.pos.copy()
        g.wait_for(lambda: _moved_less_than(sim, 5e-4, 0.1), 5, "the arm to settle on the held target")
        held = sim.ee_pose().copy()
        move_hand(0.1, -0.1, 0.1)
        time.sleep(0.5)
        assert np.allclose(teleop.target.pos, held_target), "the target does not follow the hand"
        assert np.linalg.norm(sim.ee_pose()[:3] - held[:3]) < 0.005
        page.locator("#grip").fill("0")  # the slider closes the gripper
        g.wait_for(lambda: float(teleop.grip) == 0.0, 5, "the grip")
        page.click("#start")
        g.wait_for(lambda: sink.received.get("e", 0) == 1, 5, "the episode start")
        assert sink.last["e"]["event"] == "start"
        assert page.is_hidden("#control")  # no arbiter in this graph: the page alone drives
        page.click("#fail")
        g.wait_for(lambda: sink.received.get("e", 0) == 2, 5, "the episode end")
        assert (sink.last["e"]["event"], sink.last["e"]["label"]) == ("end", "failure")

        other = browser.new_page(ignore_https_errors=True)  # a second page may watch but not control
        other.goto(teleop.url)
        other.wait_for_function("document.getElementById('conn').textContent.startsWith('refused')", timeout=5000)
        other.close()

        # Poses that arrive older than max_age_ms are dropped and counted; with only stale poses the node
        # holds. The page's clock is put 0.5 s behind (and pongs can no longer correct it).
        dropped, lost = teleop.hub.dropped_stale, teleop.lost_count
        page.evaluate("robotflowTest.state.bestRtt = -1; robotflowTest.state.offset -= 800")
        g.wait_for(lambda: teleop.lost_count > lost and teleop.hub.dropped_stale > dropped + 10, 5, "stale drops")
        time.sleep(0.3)
        assert sink.last["t"].timestamp_ns < teleop.lost_since_ns  # no targets while only stale poses arrive
        assert np.linalg.norm(sim.ee_pose()[:3] - held[:3]) < 0.005
        page.evaluate("robotflowTest.state.bestRtt = Infinity; robotflowTest.state.offset += 800")
        g.wait_for(lambda: not teleop._lost, 5, "fresh poses again")

        lost = teleop.lost_count
        page.close()  # the page is gone: no more targets, the arm holds
        g.wait_for(lambda: teleop.lost_count > lost and teleop._lost, 5, "the node to notice the page is gone")
        time.sleep(0.4)
        assert sink.last["t"].timestamp_ns < teleop.lost_since_ns
        assert np.linalg.norm(sim.ee_pose()[:3] - held[:3]) < 0.005
        browser.close()
    report = teleop.report()
    assert report["poses_received"] > 50 and report["page_lost"] >= 2 and report["messages_invalid"] == 0
    assert report["poses_dropped_stale"] > 10
    assert report["latency_ms_p50"] > 0
    assert g.result.ok, g.result


def test_sim_graph_file_validates():
    from pathlib import Path

    from robotflow.runtime.graph import load_graph

    spec = load_graph(Path(__file__).resolve().parents[1] / "graphs" / "sim_stack_cubes_webxr.yaml", [])
    teleop = next(n for n in spec.nodes if n.name == "teleop")
    assert teleop.params.host == "127.0.0.1"  # loopback unless the person opens it to the LAN


def test_webxr_on_the_franka_graph(monkeypatch, tmp_path):
    """graphs/franka_stack_cubes.yaml with its keyboard swapped for teleop.webxr, on the franky fake, fed by
    a WebSocket client speaking the page's protocol; closing it leaves the arm to the watchdog (no targets)."""
    import yaml
    from fakes import FAKES_DIR, install
    from websockets.sync.client import connect

    from robotflow.runtime.graph import load_graph

    franky = install(monkeypatch, "franky")
    install(monkeypatch, "pyrealsense2")
    doc = yaml.safe_load((FAKES_DIR.parents[1] / "graphs" / "franka_stack_cubes.yaml").read_text())
    doc["nodes"] = [n for n in doc["nodes"] if n["name"] != "teleop"] + [
        {"name": "teleop", "type": "teleop.webxr", "rate": 100, "params": {"port": 0}, "inputs": {"state": "arm/state"}}
    ]
    path = tmp_path / "franka_stack_cubes_webxr.yaml"
    path.write_text(yaml.safe_dump(doc))
    sets = ["wrist_camera.serial=111111111111", "front_camera.serial=222222222222"]
    sets += [f"{c}.{k}={v}" for c in ("wrist_camera", "front_camera") for k, v in (("width", 64), ("height", 48))]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def cartesian_x():
        moves = franky.Robot._instances[0]._moves if franky.Robot._instances else []
        return [m.target.pose.end_effector_pose.translation[0] for m in moves if isinstance(m, franky.CartesianMotion)]

    with GraphThread(load_graph(path, sets)) as g:
        g.wait_for(lambda: hasattr(g.sched.nodes["teleop"], "url"), what="the page server")
        teleop = g.sched.nodes["teleop"]
        with connect(teleop.url.replace("https", "wss") + "ws", ssl=ctx) as ws:
            for i in range(80):  # the hand 5 cm forward over 0.5 s, clutch held
                z = -0.05 * min(1.0, i / 50)
                ws.send(
                    json.dumps(
                        {
                            "type": "pose",
                            "t": server_clock_ms(),
                            "p": [0, 1.2, z],
                            "q": [0, 0, 0, 1],
                            "clutch": True,
                            "grip": 1.0,
                        }
                    )
                )
                time.sleep(0.01)
            g.wait_for(lambda: cartesian_x() and abs(max(cartesian_x()) - 0.45) < 0.002, 5, "the Franka target")
        g.wait_for(lambda: teleop._lost, 5, "the node to notice the client is gone")
        time.sleep(0.15)  # the arm applies what was already in flight
        n = len(cartesian_x())
        time.sleep(0.6)
        assert len(cartesian_x()) == n  # no new targets: the arm's watchdog holds it
    # It started where the arm was: the hand moves 1 mm a tick, and the arm reads its newest target (`latest`),
    # so its first motion may already hold a tick or two of hand motion, never a jump toward the 5 cm goal.
    assert abs(cartesian_x()[0] - 0.4) < 0.005, cartesian_x()[:5]
    assert g.result.ok, g.result


def test_port_in_use_is_a_one_line_error(tmp_path):
    import socket

    from robotflow.drivers.teleop_webxr import PageServer

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    cert, key = make_certificate(tmp_path, "127.0.0.1", reuse=False)
    with pytest.raises(RuntimeError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*set `port` to a free one"):
        PageServer(PoseHub(100.0), "127.0.0.1", busy.getsockname()[1], cert, key)
    busy.close()


def test_websocket_requires_the_token_and_off_loopback_one_is_always_set(tmp_path):
    """A page that moves the arm authenticates: a wrong or missing token is refused at the handshake."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from robotflow.drivers.teleop_webxr import PageServer
    from robotflow.network import token_for_bind as page_token

    assert page_token("127.0.0.1", "") == ""  # loopback: optional
    assert len(page_token("0.0.0.0", "")) >= 16 and page_token("0.0.0.0", "") != page_token("0.0.0.0", "")
    assert page_token("192.168.1.5", "mine") == "mine"
    cert, key = make_certificate(tmp_path, "127.0.0.1", reuse=False)
    hub = PoseHub(100.0)
    server = PageServer(hub, "127.0.0.1", 0, cert, key, token="s3cret")
    server.start()
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        base = f"wss://127.0.0.1:{server.port}/ws"
        for url in (base, base + "?token=wrong"):
            with pytest.raises(InvalidStatus) as e:
                connect(url, ssl=ctx, open_timeout=10)
            assert e.value.response.status_code == 403
        with connect(base + "?token=s3cret", ssl=ctx, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "ping", "t0": 1.0}))
            assert json.loads(ws.recv(timeout=10))["type"] == "pong"
    finally:
        server.stop()


def test_clutch_takes_over_from_the_policy_without_a_jump_and_fail_labels_the_episode():
    """With an arbiter's `control`, over the page's WebSocket: released, the target and grip follow the policy
    and the page is told the policy drives; the clutch takes over from the policy's last command (the gripper
    keeps the policy's width until the slider moves); the page's fail button labels the episode failure."""
    from teleop_takeover import COMMAND_B, WIDTH, check_failure, check_takeover, nodes_yaml
    from websockets.sync.client import connect

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with GraphThread("nodes:\n" + nodes_yaml("teleop.webxr", "{port: 0}", paced=True)) as g:
        g.wait_for(lambda: hasattr(g.sched.nodes["teleop"], "url"), what="the page server")
        teleop = g.sched.nodes["teleop"]
        with connect(teleop.url.replace("https", "wss") + "ws", ssl=ctx, open_timeout=10) as ws:

            def hand(n, z0, z1, clutch, grip=1.0):  # n poses at 100 Hz, the hand from z0 to z1 (XR: -z = forward)
                for i in range(n):
                    ws.send(pose_msg([0, 1.2, z0 + (z1 - z0) * i / max(n - 1, 1)], clutch=clutch, grip=grip))
                    time.sleep(0.01)

            def shown():  # what the page shows: who drives
                ws.send(json.dumps({"type": "ping", "t0": 0.0}))
                return json.loads(ws.recv(timeout=10))["control"]

            ws.send(json.dumps({"type": "episode", "action": "start"}))
            hand(60, 0.0, 0.0, clutch=False)
            assert shown() == "policy"
            hand(40, 0.0, -0.05, clutch=True)  # the clutch held, the hand 5 cm forward
            assert shown() == "human" and float(teleop.grip) == WIDTH  # the slider has not moved yet
            hand(10, -0.05, -0.05, clutch=True, grip=0.0)
            assert float(teleop.grip) == 0.0
            ws.send(json.dumps({"type": "episode", "action": "fail"}))
            hand(30, -0.05, -0.05, clutch=False)  # released: handed back
    assert g.result.ok, g.result
    log = g.sched.nodes["log"].messages
    engaged = check_takeover(log)
    assert np.allclose(engaged[:, :3].max(axis=0) - COMMAND_B[:3], [0.05, 0, 0], atol=1e-6)
    assert not log["takeover"][-1]["active"] and np.allclose(log["t"][-1]["ee_pose"], COMMAND_B)
    check_failure(log)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install adds it as root)")
def test_page_shows_who_drives():
    """With an arbiter's `control`, the page says the policy drives, and that you do while you hold the clutch."""
    from playwright.sync_api import sync_playwright
    from teleop_takeover import nodes_yaml

    shows = "(text) => document.getElementById('control').textContent === text"
    with GraphThread("nodes:\n" + nodes_yaml("teleop.webxr", "{port: 0}", paced=True)) as g, sync_playwright() as pw:
        g.wait_for(lambda: hasattr(g.sched.nodes["teleop"], "url"), what="the page server")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(ignore_https_errors=True)
        page.goto(g.sched.nodes["teleop"].url + "?source=test")
        page.wait_for_function(shows, arg="policy drives", timeout=10_000)
        assert page.is_visible("#control")
        page.locator("#clutch").hover()
        page.mouse.down()
        page.wait_for_function(shows, arg="you drive", timeout=5000)
        page.mouse.up()
        page.wait_for_function(shows, arg="policy drives", timeout=5000)
        browser.close()
    assert g.result.ok, g.result
