"""Load on `robotflow serve`: concurrent sessions for minutes, with bad messages mixed in.

    python -m benchmarks.serve_load --json [--minutes 5 --sessions 8 --fault-rate 0.01]

A real `robotflow serve` subprocess on loopback (bearer token, a 1 MB message limit) serves a small randomly
initialised ACT (resnet18, dim 64, chunk 20, two 48x64 cameras). Each session is a thread with its own
WebSocket session sending observations back to back. In place of a valid request, with probability
`fault_rate`, it sends one fault, the kinds taken in turn:

- `malformed`: bytes that are not msgpack                                  -> an error reply, session goes on
- `bad_values`: msgpack with a non-finite pose and a wrong-shaped image    -> an error reply, session goes on
- `oversize`: a valid observation padded past the limit (1.5x)             -> an error reply, session goes on
- `oversize_transport`: one past four times the limit (5x)                 -> the connection is closed (1009)
- `jpeg_bomb`: a 600-byte JPEG whose header declares 20000x20000          -> an error reply, nothing decoded
- `jpeg_oversize`: a real 1600x1200 JPEG, more pixels than 4x the limit    -> an error reply, session goes on
- `unauthenticated`: a second connection without the token                 -> refused at the upgrade (403)
- `wrong_token`: a second connection with a wrong token                    -> refused at the upgrade (403)

About one request in 200 ends its session and opens a new one (sessions come and go, as clients do).

Required: `crashes` 0 (the server process alive and answering at the end, and no session of it failed) and
`valid_unanswered` 0 (every valid request got its whole chunk); each fault must meet its expected refusal
(`faults_unexpected` 0). Reported: latency p50/p99 of the valid requests and the server's RSS: at the start
of the load, after the warm-up (the first minute, or a fifth of a shorter run), and at the end.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from benchmarks._util import emit, machine, parser
from benchmarks.serve import BenchConfig, Process, free_port, make_checkpoint

FAULTS = (
    "malformed",
    "bad_values",
    "oversize",
    "oversize_transport",
    "jpeg_bomb",
    "jpeg_oversize",
    "unauthenticated",
    "wrong_token",
)
# What each fault must meet: an error reply on the same session, the connection closed, or a refused upgrade.
EXPECTED = {
    "malformed": "error_reply",
    "bad_values": "error_reply",
    "oversize": "error_reply",
    "oversize_transport": "closed",
    "jpeg_bomb": "error_reply",
    "jpeg_oversize": "error_reply",
    "unauthenticated": "refused",
    "wrong_token": "refused",
}


def _jpeg_frames() -> dict[str, bytes]:
    from robotflow.wire.protocol import encode_jpeg

    big = encode_jpeg(np.full((1200, 1600, 3), 90, dtype=np.uint8))[b"frames"][0]
    bomb = bytearray(encode_jpeg(np.zeros((8, 8, 3), dtype=np.uint8))[b"frames"][0])
    sof = bomb.find(b"\xff\xc0")  # the frame header: its height and width say 20000
    bomb[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") * 2
    return {"jpeg_bomb": bytes(bomb), "jpeg_oversize": big}


JPEG_FRAMES = _jpeg_frames()


@dataclass
class LoadConfig:
    minutes: float = 5.0
    sessions: int = 8
    fault_rate: float = 0.01
    renew_rate: float = 0.005  # a request ends its session and opens a new one
    max_message_mb: float = 1.0
    height: int = 48
    width: int = 64
    seed: int = 0


class RssSampler:
    """The server's resident set size (VmRSS), sampled once a second on a thread."""

    def __init__(self, pid: int):
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.samples.append((time.monotonic() - self._t0, self.rss_mb()))
            except OSError:
                return  # the process is gone: the crash check reports it

    def at(self, seconds: float) -> float:
        """The first sample at or after `seconds` (the last one if none)."""
        return next((mb for t, mb in self.samples if t >= seconds), self.samples[-1][1])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def observation(rng: np.random.Generator, cfg: LoadConfig) -> dict:
    return {
        "robot_state.q": rng.standard_normal(7),
        "robot_state.dq": np.zeros(7),
        "robot_state.ee_pose": np.array([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0]),
        "grip": float(rng.uniform()),
        "image.wrist": rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8),
        "image.front": rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8),
    }


class SessionWorker:
    """One client session on its own thread; counts what happened to every message it sent."""

    def __init__(self, index: int, url: str, token: str, cfg: LoadConfig, end: float, turn: itertools.count):
        self.index, self.url, self.token, self.cfg, self.end = index, url, token, cfg, end
        self.rng = np.random.default_rng(cfg.seed + index)
        self.latencies_ms: list[float] = []
        self.valid_sent = self.valid_answered = 0
        self.valid_failures: list[str] = []
        self.faults = {k: 0 for k in FAULTS}
        self.faults_unexpected: list[str] = []
        self.sessions_opened = 0
        self.turn = turn  # the fault kinds in turn across all sessions: the first len(FAULTS) faults cover all
        self.thread = threading.Thread(target=self.run, name=f"load-session-{index}", daemon=True)

    def open(self):
        from robotflow.wire.client import RemoteSession

        session = RemoteSession(self.url, token=self.token, request_timeout=120.0)
        self.sessions_opened += 1
        return session

    def run(self) -> None:
        from robotflow.wire.protocol import actions_from_wire

        session = self.open()
        chunk = int(session.meta["chunk_size"])
        while time.monotonic() < self.end:
            if self.rng.random() < self.cfg.fault_rate:
                kind = FAULTS[next(self.turn) % len(FAULTS)]  # count's next() is atomic under the GIL
                session = self.fault(kind, session)
                continue
            if self.rng.random() < self.cfg.renew_rate:
                session.close()
                session = self.open()
            self.valid_sent += 1
            t = time.perf_counter()
            try:
                n = len(actions_from_wire(session.infer(observation(self.rng, self.cfg)), session.meta["action_fps"]))
            except Exception as e:  # noqa: BLE001 - every failure of a valid request is counted
                self.valid_failures.append(f"{type(e).__name__}: {str(e)[:200]}")
                session = self._reopen(session)
                continue
            self.latencies_ms.append((time.perf_counter() - t) * 1e3)
            if n == chunk:
                self.valid_answered += 1
            else:
                self.valid_failures.append(f"a chunk of {n} actions, not {chunk}")
        session.close()

    def _reopen(self, session):
        try:
            session.close()
        except Exception:  # noqa: BLE001 - the connection is being replaced anyway
            pass
        return self.open()

    def fault(self, kind: str, session):
        """Send one fault of `kind`; returns the session to go on with (a new one if the server closed it)."""
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        from robotflow.wire.client import RemoteSession
        from robotflow.wire.protocol import OBSERVATION, SESSION_ID, pack

        self.faults[kind] += 1
        limit = int(self.cfg.max_message_mb * 1024 * 1024)
        outcome = "?"
        try:
            if kind in ("unauthenticated", "wrong_token"):
                token = None if kind == "unauthenticated" else "not-" + self.token
                try:
                    RemoteSession(self.url, token=token).close()
                    outcome = "accepted"
                except InvalidStatus as e:
                    outcome = "refused" if e.response.status_code == 403 else f"HTTP {e.response.status_code}"
            else:
                if kind == "malformed":
                    payload = b"\xc1" + self.rng.bytes(int(self.rng.integers(1, 4096)))  # 0xc1: never valid msgpack
                elif kind in ("jpeg_bomb", "jpeg_oversize"):
                    obs = observation(self.rng, self.cfg)
                    obs["image.wrist"] = {b"__jpeg__": True, b"frames": [JPEG_FRAMES[kind]], b"ndim": 3}
                    payload = pack({SESSION_ID: session.session_id, OBSERVATION: obs})
                elif kind == "bad_values":
                    obs = observation(self.rng, self.cfg)
                    obs["robot_state.ee_pose"] = np.full(7, np.nan)
                    obs["image.front"] = np.zeros((3, 3), dtype=np.uint8)
                    payload = pack({SESSION_ID: session.session_id, OBSERVATION: obs})
                else:  # a valid observation padded past the limit: only the size refuses it
                    obs = observation(self.rng, self.cfg)
                    obs["padding"] = bytes(int(limit * (1.5 if kind == "oversize" else 5)))
                    payload = pack({SESSION_ID: session.session_id, OBSERVATION: obs})
                try:
                    reply = session.infer_raw(payload)
                    outcome = "error_reply" if isinstance(reply, dict) and "error" in reply else "answered"
                except ConnectionClosed as e:
                    code = e.rcvd.code if e.rcvd is not None else None
                    # 1009 when the close frame arrives; none when the server drops the socket mid-send
                    outcome = "closed" if code in (1009, None) else f"closed {code}"
                    session = self.open()
        except Exception as e:  # noqa: BLE001 - an unexpected outcome is counted, not raised
            outcome = f"{type(e).__name__}: {str(e)[:200]}"
            session = self._reopen(session)
        if outcome != EXPECTED[kind]:
            self.faults_unexpected.append(f"{kind}: {outcome}")
        return session


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2) if xs else float("nan")


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__.splitlines()[0])
    for f in fields(LoadConfig):
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = ap.parse_args(argv)
    cfg = LoadConfig(**{f: getattr(args, f) for f in asdict(LoadConfig())})
    token = secrets.token_urlsafe(16)
    # The oversize_transport fault makes the server drop a socket mid-send; websockets' reader thread in
    # this client logs that with a traceback. The outcome is counted below; the log would only be noise.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="robotflow-bench-serve-load-") as tmp:
        bench = BenchConfig(height=cfg.height, width=cfg.width, dim_model=64, chunk_size=20, seed=cfg.seed)
        make_checkpoint(bench, Path(tmp) / "run")
        port = free_port()
        server = Process(
            [sys.executable, "-m", "robotflow.scripts.cli", "serve", "--checkpoints-dir", str(Path(tmp) / "run")]
            + ["--port", str(port), "--device", "cpu", "--token", token, "--max-message-mb", str(cfg.max_message_mb)],
            ready="serving",
        )
        url = f"ws://127.0.0.1:{port}"
        rss = RssSampler(server.proc.pid)
        rss_start = rss.rss_mb()
        t0 = time.monotonic()
        try:
            end = t0 + cfg.minutes * 60
            turn = itertools.count()
            workers = [SessionWorker(i, url, token, cfg, end, turn) for i in range(cfg.sessions)]
            for w in workers:
                w.thread.start()
            for w in workers:
                w.thread.join(cfg.minutes * 60 + 300)
            elapsed = time.monotonic() - t0
            stuck = sum(w.thread.is_alive() for w in workers)
            rss_end = rss.rss_mb() if server.proc.poll() is None else float("nan")
            alive = server.proc.poll() is None and _still_serving(url, token, cfg)
        finally:
            rss.stop()
            server.stop()

    warm_s = min(60.0, cfg.minutes * 60 / 5)
    rss_warm = rss.at(warm_s) if rss.samples else float("nan")
    session_failures = [line for line in server.lines if "failed" in line or "Traceback" in line]
    latencies = [x for w in workers for x in w.latencies_ms]
    result = {
        "crashes": int(not alive) + len(session_failures) + stuck,
        "valid_sent": sum(w.valid_sent for w in workers),
        "valid_answered": sum(w.valid_answered for w in workers),
        "valid_unanswered": sum(w.valid_sent - w.valid_answered for w in workers),
        "faults": {k: sum(w.faults[k] for w in workers) for k in FAULTS},
        "faults_unexpected": sum(len(w.faults_unexpected) for w in workers),
        "latency_ms_p50": pct(latencies, 50),
        "latency_ms_p99": pct(latencies, 99),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "sessions_opened": sum(w.sessions_opened for w in workers),
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_after_warmup": round(rss_warm, 1),
        "rss_mb_end": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_warm, 1),
        "warmup_s": warm_s,
        "seconds": round(elapsed, 1),
        "examples": {
            "valid_failures": [f for w in workers for f in w.valid_failures][:5],
            "faults_unexpected": [f for w in workers for f in w.faults_unexpected][:5],
            "server_failures": session_failures[:5],
        },
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": machine(),
        "config": asdict(cfg),
    }
    emit(result, args.json)
    return result


def _still_serving(url: str, token: str, cfg: LoadConfig) -> bool:
    """After the load: the models route and one more session answer."""
    from robotflow.wire.client import RemoteSession, list_models

    try:
        if not list_models(url, token=token):
            return False
        with RemoteSession(url, token=token, request_timeout=120.0) as s:
            return len(s.infer(observation(np.random.default_rng(1), cfg))) > 0
    except Exception:  # noqa: BLE001 - any failure here is the crash being measured
        return False


if __name__ == "__main__":
    main()
