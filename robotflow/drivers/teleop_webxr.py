"""`teleop.webxr`: drive the arm from a phone or VR headset tracked in the browser over WebXR.

The node serves a small page (robotflow/drivers/webxr/) over HTTPS with a self-signed certificate made at
start, because browsers only allow WebXR on secure origins, and the page streams the device's pose over a
WebSocket at its frame rate. The server (FastAPI on uvicorn) runs on its own thread and only keeps the
newest pose; the node's tick maps it onto the EE target:

- Clutch: while the page's clutch (a held on-screen button, or a headset controller's squeeze) is engaged,
  the hand's motion since the clutch was pressed moves the target from where it was then. Releasing it
  holds the arm, so the user can re-grip and continue (like lifting a mouse).
- Grip: the page's slider, or a controller's trigger (pulled = closed).
- Episodes: start / stop / fail / discard buttons on the page.
- Take-over (a graph with a `control.arbiter`): the clutch is the take-over (`takeover` True while it is
  engaged). Released, the target and grip follow the policy's command, so the next clutch press maps the
  hand's motion from where the arm is headed. The page shows who drives (the arbiter's `control`). After
  a take-over the gripper keeps the policy's width until the slider or trigger moves: a slider left at
  "open" must not drop what the policy grasped.
- Freshness: the page syncs its clock to the server's (ping/pong, the lowest round trip wins) and stamps
  every pose. A pose older than `max_age_ms` on arrival is dropped and counted. No pose for `timeout_s`
  (page closed, phone locked, network gone) and the node stops emitting `ee_target`/`grip`: the arm holds.
  Only one page controls at a time.

Run it on the wall clock, or in simulation with `world.realtime: true`: a person is in the loop.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse

from robotflow.drivers.teleop_base import EETarget, TeleopNode
from robotflow.geometry import canonical_quat, matrix_to_quat, quat_conj, quat_mul
from robotflow.network import is_loopback, token_for_bind, token_matches
from robotflow.runtime.params import in_range, positive

PAGE_DIR = Path(__file__).resolve().parent / "webxr"

# WebXR reference space (x right, y up, z toward the user) -> robot base frame for a user standing behind
# the robot, looking along its +x: forward (-z) = +x, left (-x) = +y, up (+y) = +z.
XR_TO_BASE = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def server_clock_ms() -> float:
    """The clock poses are stamped in: the page learns its offset to this one."""
    return time.time_ns() / 1e6


@dataclass
class WebXRParams:
    host: str = "127.0.0.1"  # bind address; 0.0.0.0 to reach it from a phone on the LAN
    # Required in the page's WebSocket (`?token=`; the logged URL carries it). Off loopback a page that moves the
    # arm must authenticate: with "" there a random token is generated for the run.
    token: str = ""
    port: int = in_range(0, 65535, 8443)  # 0: any free port (the URL is logged)
    cert_dir: str = ""  # keep the generated certificate here and reuse it (the phone accepts it once); "": new each run
    scale: float = positive(1.0)  # EE motion per unit of hand motion
    follow_rotation: bool = True  # the EE turns with the hand while the clutch is engaged
    frame_yaw_deg: float = 0.0  # where the user faces when XR starts: 0 = along the robot's +x
    max_age_ms: float = positive(100.0)  # a pose older than this when it arrives is dropped (counted)
    timeout_s: float = positive(0.25)  # no pose for this long: the page is lost, the arm holds
    task: str = ""  # written into episode events


# ---- the certificate ----------------------------------------------------------------------------------


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses as its own name resolves them (no network traffic)."""
    try:
        return sorted(set(socket.gethostbyname_ex(socket.gethostname())[2]))
    except OSError:
        return []


def make_certificate(directory: Path, host: str, reuse: bool) -> tuple[Path, Path]:
    """A self-signed certificate (EC P-256) for localhost, this machine's names and the bind address."""
    cert_path, key_path = directory / "webxr-cert.pem", directory / "webxr-key.pem"
    if reuse and cert_path.exists() and key_path.exists():
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    hostname = socket.gethostname()
    names.append(x509.DNSName(hostname))
    ips = {host} if host not in ("", "0.0.0.0", "127.0.0.1") else set()
    if host == "0.0.0.0":  # the addresses a phone on the LAN would use
        ips.update(lan_addresses())
    for ip in sorted(ips):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            names.append(x509.DNSName(ip))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "robotflow teleop.webxr")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


# ---- what the page sends, kept for the node's tick ------------------------------------------------------


@dataclass
class Pose:
    p: np.ndarray  # position in the XR reference space (m)
    q: np.ndarray  # orientation, w x y z
    clutch: bool
    grip: float
    t_ms: float  # when the page made it, server clock
    recv_ms: float  # when the server received it


class PoseHub:
    """The hand-off between the server thread and the node: the newest pose, episode requests, counters."""

    def __init__(self, max_age_ms: float) -> None:
        self.max_age_ms = max_age_ms
        self._lock = threading.Lock()
        self._pose: Pose | None = None
        self._fresh = False
        self._last_recv = 0.0  # time.monotonic() of the newest accepted pose
        self._actions: deque[str] = deque()
        self.client: object | None = None  # the page that controls; others are refused
        self.received = 0
        self.dropped_stale = 0
        self.invalid = 0
        # Shown by the page, set by the node; control: who drives ("policy", "human"; "" without an arbiter).
        self.status = {"recording": False, "following": False, "control": ""}

    def handle(self, text: str) -> dict | None:
        """One message from the page; returns the reply, if any."""
        now_ms = server_clock_ms()
        try:
            msg = json.loads(text)
            kind = msg["type"]
            if kind == "pose":
                pose = Pose(
                    np.asarray(msg["p"], float).reshape(3),
                    np.asarray([msg["q"][3], msg["q"][0], msg["q"][1], msg["q"][2]], float),  # XR sends x y z w
                    bool(msg["clutch"]),
                    float(np.clip(float(msg["grip"]), 0.0, 1.0)),
                    float(msg["t"]),
                    now_ms,
                )
                if not (np.all(np.isfinite(pose.p)) and np.all(np.isfinite(pose.q)) and np.linalg.norm(pose.q) > 0.5):
                    raise ValueError("non-finite pose")
            elif kind == "ping":
                with self._lock:
                    status = dict(self.status, dropped=self.dropped_stale, received=self.received)
                return {"type": "pong", "t0": msg["t0"], "ts": now_ms, **status}
            elif kind == "episode":
                if msg["action"] not in ("start", "stop", "fail", "discard"):
                    raise ValueError(msg["action"])
                with self._lock:
                    self._actions.append(msg["action"])
                return None
            else:
                raise ValueError(kind)
        except (ValueError, KeyError, TypeError, IndexError):
            with self._lock:
                self.invalid += 1
            return None
        with self._lock:
            self.received += 1
            if now_ms - pose.t_ms > self.max_age_ms:
                self.dropped_stale += 1
                return None
            self._pose = pose
            self._fresh = True
            self._last_recv = time.monotonic()
        return None

    def take(self) -> Pose | None:
        """The newest pose if one arrived since the last call."""
        with self._lock:
            if not self._fresh:
                return None
            self._fresh = False
            return self._pose

    def actions(self) -> list[str]:
        with self._lock:
            out = list(self._actions)
            self._actions.clear()
        return out

    def silent_for(self) -> float:
        """Seconds since the newest accepted pose (inf before the first, or with no page connected)."""
        with self._lock:
            if self.client is None or self._pose is None:
                return float("inf")
            return time.monotonic() - self._last_recv

    def claim(self, client: object) -> bool:
        """Make `client` the controlling page, unless another one is."""
        with self._lock:
            if self.client is not None:
                return False
            self.client = client
            return True

    def set_status(self, recording: bool, following: bool, control: str = "") -> None:
        with self._lock:
            self.status = {"recording": recording, "following": following, "control": control}

    def disconnect(self, client: object) -> None:
        with self._lock:
            if self.client is client:
                self.client = None
                self._pose = None
                self._fresh = False


# ---- clutch mapping -------------------------------------------------------------------------------------


class Clutch:
    """Relative hand motion -> EE target while engaged; the anchor is re-taken at every engagement."""

    def __init__(self, frame_yaw_deg: float = 0.0, scale: float = 1.0, follow_rotation: bool = True) -> None:
        yaw = np.radians(frame_yaw_deg)
        rz = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        self.R = rz @ XR_TO_BASE
        self.qR = matrix_to_quat(self.R)
        self.scale = scale
        self.follow_rotation = follow_rotation
        self._anchor: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def engaged(self) -> bool:
        return self._anchor is not None

    def release(self) -> None:
        self._anchor = None

    def update(self, target: EETarget, p: np.ndarray, q: np.ndarray, engaged: bool) -> None:
        """Apply one hand pose (XR frame, q = w x y z) to the target."""
        if not engaged:
            self._anchor = None
            return
        if self._anchor is None:
            self._anchor = (p.copy(), canonical_quat(q), target.pos.copy(), target.quat.copy())
            return
        p0, q0, t_pos, t_quat = self._anchor
        pos = t_pos + self.scale * (self.R @ (p - p0))
        quat = t_quat
        if self.follow_rotation:
            d_xr = quat_mul(canonical_quat(q), quat_conj(q0))  # hand rotation since the anchor, XR frame
            d_base = quat_mul(quat_mul(self.qR, d_xr), quat_conj(self.qR))
            quat = quat_mul(d_base, t_quat)
        target.set(pos, quat)


# ---- the server -----------------------------------------------------------------------------------------


def make_app(hub: PoseHub, token: str = "") -> FastAPI:
    app = FastAPI(title="robotflow teleop.webxr", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/")
    def index():
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})

    @app.get("/teleop.js")
    def script():
        return FileResponse(PAGE_DIR / "teleop.js", media_type="text/javascript", headers={"Cache-Control": "no-store"})

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        if token and not token_matches(websocket.query_params.get("token"), token):
            await websocket.close(code=1008)  # before accepting: the handshake is refused (HTTP 403)
            return
        await websocket.accept()
        if not hub.claim(websocket):
            await websocket.send_text(json.dumps({"type": "refused", "reason": "another page is controlling"}))
            await websocket.close(code=1008)
            return
        try:
            while True:
                reply = hub.handle(await websocket.receive_text())
                if reply is not None:
                    await websocket.send_text(json.dumps(reply))
        except WebSocketDisconnect:
            pass
        finally:
            hub.disconnect(websocket)

    return app


class PageServer:
    """uvicorn serving the page over HTTPS on its own thread and event loop."""

    def __init__(self, hub: PoseHub, host: str, port: int, cert: Path, key: Path, token: str = "") -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise RuntimeError(
                f"teleop.webxr: cannot listen on {host}:{port} ({e.strerror}); set `port` to a free one (0 = any)"
            ) from None
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            make_app(hub, token),
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            log_level="warning",
            ws_ping_interval=5.0,
            ws_ping_timeout=5.0,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="teleop.webxr-server", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as e:  # noqa: BLE001 - surfaced by start()
            self.error = e

    def start(self, timeout_s: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"teleop.webxr: the page server did not start: {self.error}")
            if time.monotonic() > deadline:
                raise RuntimeError("teleop.webxr: the page server did not start within 10 s")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5.0)
        self.sock.close()


# ---- the node -------------------------------------------------------------------------------------------


class WebXRTeleopNode(TeleopNode):
    """Phone / VR headset teleop over WebXR in the browser; needs `arm/state` to start from the current pose."""

    Params = WebXRParams

    def setup(self) -> None:
        super().setup()
        p = self.params
        self.hub = PoseHub(p.max_age_ms)
        self.clutch = Clutch(p.frame_yaw_deg, p.scale, p.follow_rotation)
        self._tmp = None
        if p.cert_dir:
            cert_dir = Path(p.cert_dir).expanduser()
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="robotflow-webxr-")
            cert_dir = Path(self._tmp.name)
        cert, key = make_certificate(cert_dir, p.host, reuse=bool(p.cert_dir))
        self.token = token_for_bind(p.host, p.token)
        self.server = PageServer(self.hub, p.host, p.port, cert, key, self.token)
        self.server.start()
        if is_loopback(p.host):
            names = ["localhost"]
        elif p.host == "0.0.0.0":  # a phone on the LAN may not resolve this machine's name: list its addresses
            names = [socket.gethostname()] + [ip for ip in lan_addresses() if not ip.startswith("127.")]
        else:
            names = [p.host]
        query = f"?token={self.token}" if self.token else ""
        urls = [f"https://{n}:{self.server.port}/{query}" for n in names]
        self.url = urls[0]
        self.tell("open %s in the phone's or headset's browser (accept the self-signed certificate)", " or ".join(urls))
        self._lost = True
        self._page_grip_then: float | None = None  # the page's grip while the policy held the gripper
        self.lost_count = 0
        self.lost_since_ns = self.now_ns()
        # The newest 100,000 poses (about half an hour at 60 Hz): page -> server, page -> ee_target emitted.
        self.recv_ms: deque[float] = deque(maxlen=100_000)
        self.latency_ms: deque[float] = deque(maxlen=100_000)

    def step(self) -> None:
        hub = self.hub
        if hub.silent_for() > self.params.timeout_s:
            if not self._lost:
                self._lost = True
                self.lost_count += 1
                self.lost_since_ns = self.now_ns()  # no target is stamped after this until the page is back
                self.tell("page lost (no pose for %.2f s): holding the arm", self.params.timeout_s)
            self.clutch.release()  # a pose after reconnecting re-anchors; it never jumps
            hub.set_status(self.episodes.recording, False, self._control_source())
            return
        if self._lost:
            self._lost = False
            self.tell("page connected")
        if not self.sync_target():
            return
        pose = hub.take()
        # The clutch anchors at the target on its first engaged pose: following the policy up to that
        # tick is all a take-over needs to start where the arm is headed.
        followed = self.follow_control(self.clutch.engaged if pose is None else pose.clutch)
        if pose is not None:
            self.clutch.update(self.target, pose.p, pose.q, pose.clutch)
            self._page_grip(pose.grip, followed)
        for action in hub.actions():
            self.episode(action)
        hub.set_status(self.episodes.recording, self.clutch.engaged, self._control_source())
        self.emit_target(self.target.pose(), self.grip)
        self.emit_takeover(self.clutch.engaged)
        if pose is not None:
            self.latency_ms.append(server_clock_ms() - pose.t_ms)
            self.recv_ms.append(pose.recv_ms - pose.t_ms)

    def _page_grip(self, grip: float, followed: bool) -> None:
        """The page's grip drives the gripper, except that after a take-over it waits until the slider or
        trigger moves away from where it was while the policy drove."""
        if followed and self._following:
            self._page_grip_then = grip
        elif self._page_grip_then is None or abs(grip - self._page_grip_then) > 0.02:
            self._page_grip_then = None
            self.grip = grip

    def _control_source(self) -> str:
        msg = self.read("control")
        return "" if msg is None else str(msg["source"])

    def report(self) -> dict | None:
        hub = getattr(self, "hub", None)
        if hub is None:
            return None
        out = {
            "url": self.url,
            "poses_received": hub.received,
            "poses_dropped_stale": hub.dropped_stale,
            "messages_invalid": hub.invalid,
            "page_lost": self.lost_count,
        }
        if self.latency_ms:
            lat, recv = np.asarray(self.latency_ms), np.asarray(self.recv_ms)
            out.update(
                poses_used=len(lat),
                latency_ms_p50=round(float(np.percentile(lat, 50)), 3),
                latency_ms_p99=round(float(np.percentile(lat, 99)), 3),
                receive_ms_p50=round(float(np.percentile(recv, 50)), 3),
                receive_ms_p99=round(float(np.percentile(recv, 99)), 3),
            )
        return out

    def teardown(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
            self.server = None
        if getattr(self, "_tmp", None) is not None:
            self._tmp.cleanup()
            self._tmp = None
