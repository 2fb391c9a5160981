"""`robotflow serve`: LeRobot checkpoints of a robotflow run behind Positronic's protocol (WebSocket).

Routes: ``GET /api/v1/models`` -> ``{"models": [ids]}``; ``POST /api/v1/keepalive`` ->
``{"alive_seconds": null}``; WebSocket ``/api/v1/session`` (the default model) and
``/api/v1/session/{model_id}``. A session receives status messages until ``{"status": "ready",
"protocol_version": 2, "session_id": ..., "meta": ...}``, then answers each request with ``{"result":
[actions], "timing": {...}}`` (the whole predicted chunk) or ``{"error": "..."}`` and carries on. A
request is a version 2 envelope ``{"session_id", "observation"}`` (unstamped rows: the declared
``chunked_schedule`` spaces them) or a version 1 bare observation (Positronic 0.2.1's clients ignore the
declared version: rows stamped ``i / fps``, and the validity marker only when the observation carries
``wall_time_ns``, as current clients' version 1 path does; 0.2.1 reads a command in every row). ``{"session_id", "end_session": true}`` is acknowledged with the same map, and
ends the session. A session that cannot start gets ``{"status": "error", "error": ...}`` and is closed
with 1008.

One model is resident at a time (one accelerator). A session for another checkpoint waits until the
sessions on the current one have ended (``{"status": "waiting"}`` every 5 s), then the new checkpoint is
loaded (``{"status": "loading"}`` every 5 s) and warmed up. Forward passes run on one inference thread,
so concurrent sessions take turns on the model; each session has its own codec state and policy state.

Security beyond Protocol v1: loopback by default, an optional bearer token (``Authorization: Bearer``),
a non-loopback bind refused without a token unless ``insecure``, and a message size limit.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from robotflow.codecs import Codec, CodecError, checkpoint_codec, codec_from_spec
from robotflow.codecs.spec import CHECKPOINT_SPEC_FILE
from robotflow.network import bearer_token, token_matches, unauthenticated_bind_error
from robotflow.policies.checkpoints import (
    PRETRAINED_MODEL_DIR,
    CheckpointError,
    CheckpointInfo,
    list_checkpoints,
    resolve_checkpoint,
)
from robotflow.policies.inference import PolicyInference
from robotflow.policies.loading import load_policy, resolve_device
from robotflow.storage import StorageError, is_remote
from robotflow.wire.protocol import (
    ALIVE_SECONDS,
    CLOSE_POLICY_VIOLATION,
    COMPRESS_IMAGES,
    END_SESSION,
    IMAGE_PREFIX,
    KEEPALIVE_PATH,
    LOCAL_STACK,
    MODELS_PATH,
    PROTOCOL_VERSION,
    SERVER_VERSION,
    SESSION_ID,
    SESSION_PATH,
    TIMING,
    TIMING_DECODE,
    TIMING_INFER,
    TIMING_QUEUED,
    TIMING_SERVED,
    V1,
    ProtocolError,
    actions_to_wire,
    channels_from_observation,
    pack,
    parse_request,
    unpack,
)

log = logging.getLogger("robotflow.serving")

STATUS_INTERVAL_S = 5.0


class ServeError(ValueError):
    """A configuration the server refuses to start with; the message is one line."""


@dataclass
class ServeConfig:
    """What `robotflow serve` serves and how.

    checkpoints_dir: a training run (`<output-dir>/<run-name>`), or one step / pretrained_model dir, or the
        URL of either (`s3://...`: the one checkpoint `checkpoint` names is downloaded and served).
    checkpoint: the default model's step (None: the newest).
    codec: when set, every checkpoint must have been trained with this codec (name or alias); a checkpoint
        without a stored codec spec (plain `lerobot-train`) is served with it.
    token: when set, HTTP and WebSocket requests need `Authorization: Bearer <token>`.
    insecure: allow a non-loopback bind without a token.
    max_message_bytes: larger observations get an error reply (the session goes on); four times this
        closes the connection at the transport (1009), so a client cannot make the server buffer gigabytes.
    """

    checkpoints_dir: str
    checkpoint: str | None = None
    codec: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    token: str | None = None
    insecure: bool = False
    max_message_bytes: int = 16 * 1024 * 1024


def check_bind(cfg: ServeConfig) -> None:
    """Refuse to expose an unauthenticated model server beyond this machine unless asked to."""
    refusal = unauthenticated_bind_error(cfg.host, cfg.token, cfg.insecure)
    if refusal:
        raise ServeError(refusal)


# ---- models ---------------------------------------------------------------------------------------


class ModelCatalog:
    """The checkpoints served, by model id (the step as text, Positronic's convention).

    A local run directory serves every checkpoint it holds. A single checkpoint, or a URL (object storage:
    `s3://...`, any fsspec), serves one: for a URL the chosen step (`default`, else the newest), downloaded
    once rather than every step of the run.
    """

    def __init__(self, checkpoints_dir: str, default: str | None, codec: str | None):
        self.codec = codec
        self.name = checkpoints_dir.rstrip("/").rsplit("/", 1)[-1]  # the run's name: the experiment served
        remote = is_remote(checkpoints_dir)
        if not remote and not Path(checkpoints_dir).expanduser().exists():
            raise ServeError(f"--checkpoints-dir {Path(checkpoints_dir).expanduser()} does not exist")
        ckpts = [] if remote else list_checkpoints(checkpoints_dir)
        if not ckpts:
            try:
                ckpts = [resolve_checkpoint(checkpoints_dir, default if remote else None)]
            except (CheckpointError, StorageError, ValueError) as e:
                raise ServeError(str(e).splitlines()[0]) from None
            default = None if remote else default
        self.paths = {_model_id(c): c.path for c in ckpts}
        if default is None or default == "last":
            self.default = list(self.paths)[-1]
        else:
            self.default = self.resolve(str(default))
            if self.default is None:
                raise ServeError(f"--checkpoint {default}: no such checkpoint; available: {', '.join(self.paths)}")
        if codec is not None:
            for mid, path in self.paths.items():
                try:
                    checkpoint_codec(path, codec)
                except CodecError as e:
                    raise ServeError(f"model {mid}: {e}") from None

    def ids(self) -> list[str]:
        return list(self.paths)

    def resolve(self, model_id: str | None) -> str | None:
        """Canonical id for a requested one (`None`: the default; `000500` and `500` are the same step)."""
        if model_id is None or model_id == "":
            return self.default
        if model_id in self.paths:
            return model_id
        if model_id.isdigit() and str(int(model_id)) in self.paths:
            return str(int(model_id))
        if model_id == "last":
            return list(self.paths)[-1]
        return None


def _model_id(ckpt: CheckpointInfo) -> str:
    if ckpt.step is not None:
        return str(ckpt.step)
    return ckpt.path.parent.name if ckpt.path.name == PRETRAINED_MODEL_DIR else ckpt.path.name


class ServedModel:
    """One loaded checkpoint: LeRobot policy + processors + the codec spec it was trained with."""

    def __init__(self, model_id: str, path: Path, device: str, codec: str | None):
        self.id = model_id
        self.loaded = load_policy(path, device=device, codec=codec)
        self.inference = PolicyInference(
            self.loaded.policy, self.loaded.preprocessor, self.loaded.postprocessor, device=self.loaded.device
        )
        if self.inference.device.type == "cpu":
            self.inference.use_channels_last()  # a faster CPU forward pass, same actions to float rounding
        cfg = self.loaded.config
        self.chunk_size = int(getattr(cfg, "chunk_size", None) or getattr(cfg, "horizon", None) or cfg.n_action_steps)
        self.n_action_steps = int(getattr(cfg, "n_action_steps", self.chunk_size))
        codec_obj = self.new_codec()
        self.codec_name = codec_obj.name
        # Codecs with relative positions: the policy predicts each chunk's positions as offsets from the EE
        # position it observed, and the chunk executor of policy.act adds that position back. The server
        # must too, or a client would drive the arm to the offsets themselves, around the robot's base.
        self.relative = codec_obj.layout.relative
        if self.relative and not (self.loaded.codec_source or "").startswith(CHECKPOINT_SPEC_FILE):
            raise ServeError(
                f"model {model_id}: {path} was not trained by `robotflow train` (no {CHECKPOINT_SPEC_FILE} beside "
                f"it), and codec '{codec_obj.name}' needs the relative action chunks only it trains"
            )
        self.cameras = dict(codec_obj.params.cameras)
        self.fps = float(codec_obj.params.fps)
        h, w = codec_obj.params.image_size
        self.meta = {
            "server": "robotflow",
            "type": self.loaded.policy_type,
            "checkpoint_id": model_id,
            "checkpoint_path": str(path),
            "codec": self.codec_name,
            "cameras": sorted(self.cameras),
            "image_keys": [IMAGE_PREFIX + c for c in self.cameras],
            "image_sizes": [w, h],  # (width, height), Positronic's order: clients shrink images to fit
            "action_fps": self.fps,
            "action_horizon_sec": self.n_action_steps / self.fps,
            "chunk_size": self.chunk_size,
            "n_action_steps": self.n_action_steps,
            "device": self.loaded.device,
            COMPRESS_IMAGES: False,  # lossless by default: a remote rollout equals the in-process one
        }
        self._declare_stack()

    def _declare_stack(self) -> None:
        """The client stack Positronic 0.4's RemotePolicy runs around our answers: their chunked schedule
        at our rate and horizon (the codec runs here, so the client needs nothing else)."""
        horizon = self.n_action_steps / self.fps
        self.meta[LOCAL_STACK] = {
            "name": "chunked_schedule",
            "version": 3,
            "args": {"fps": self.fps, "horizon_sec": horizon},
        }

    def new_codec(self) -> Codec:
        codec = codec_from_spec(self.loaded.codec_spec)
        codec.reset()
        return codec

    # The methods below run on the inference thread only.
    def new_state(self) -> Any:
        """Fresh per-session policy state: the observation history of policies that keep one (diffusion)."""
        return self.inference.new_history()

    def predict(self, frame: dict[str, Any], state: Any) -> tuple[np.ndarray, Any]:
        """One forward pass: (chunk_size, action_dim) unnormalized, absolute actions, and the session's new
        state (relative positions made absolute as ChunkExecutor does: + the observed EE position)."""
        with torch.inference_mode():
            chunk = self.inference.predict_chunk(self.inference.batch(frame), state)
            actions = self.inference.unnormalize(chunk)
        if self.relative:
            actions[:, :3] += np.asarray(frame["observation.state"], np.float32)[:3]
        return actions, state

    def warmup(self) -> float:
        """One forward pass on zeros; the chunk it returns is the size every answer will have."""
        t = time.perf_counter()
        chunk, _ = self.predict(self.inference.dummy_observation(), self.new_state())
        elapsed = time.perf_counter() - t
        # What predict_action_chunk returns: ACT its chunk_size, diffusion its n_action_steps.
        self.chunk_size = len(chunk)
        self.n_action_steps = min(self.n_action_steps, self.chunk_size)
        self.meta.update(
            chunk_size=self.chunk_size,
            n_action_steps=self.n_action_steps,
            action_horizon_sec=self.n_action_steps / self.fps,
        )
        self._declare_stack()
        return elapsed


class PolicyManager:
    """One resident model; switching waits for the sessions on the current one (Positronic's rule)."""

    def __init__(self, loader: Callable[[str], ServedModel], say: Callable[[str], None]):
        self.loader = loader
        self.say = say
        self.current: ServedModel | None = None
        self.active = 0
        self._cond = asyncio.Condition()

    async def acquire(self, model_id: str, send_status: Callable[[dict], Any] | None) -> ServedModel:
        async with self._cond:
            if self.current is None or self.current.id != model_id:
                while self.active > 0:
                    msg = f"waiting for {self.active} active session(s) on model {self.current.id} to finish"
                    self.say(msg)
                    if send_status is not None:
                        await send_status({"status": "waiting", "message": msg})
                    try:
                        await asyncio.wait_for(self._cond.wait(), timeout=STATUS_INTERVAL_S)
                    except TimeoutError:
                        pass
                self.current = None  # drop the old weights before the new ones arrive
                await self._load(model_id, send_status)
            self.active += 1
            return self.current

    async def _load(self, model_id: str, send_status: Callable[[dict], Any] | None) -> None:
        t0 = time.monotonic()
        task = asyncio.ensure_future(asyncio.to_thread(self.loader, model_id))
        while True:
            if send_status is not None:
                elapsed = time.monotonic() - t0
                await send_status({"status": "loading", "message": f"loading model {model_id} ({elapsed:.0f}s)"})
            try:
                self.current = await asyncio.wait_for(asyncio.shield(task), timeout=STATUS_INTERVAL_S)
                return
            except TimeoutError:
                continue

    async def release(self) -> None:
        async with self._cond:
            self.active -= 1
            self._cond.notify_all()


# ---- the app --------------------------------------------------------------------------------------


class InferenceServer:
    """The FastAPI app and its state. `load_default()` before serving (it loads and warms up)."""

    def __init__(self, cfg: ServeConfig, say: Callable[[str], None] | None = None):
        check_bind(cfg)
        self.cfg = cfg
        self.say = say or (lambda msg: log.info("%s", msg))
        self.catalog = ModelCatalog(cfg.checkpoints_dir, cfg.checkpoint, cfg.codec)
        try:
            self.device = resolve_device(cfg.device)
        except RuntimeError as e:
            raise ServeError(str(e)) from None
        # One inference thread: forward passes never overlap (one model, one accelerator), and torch's
        # thread settings apply to it alone.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robotflow-serve-infer")
        self.manager = PolicyManager(self._load, self.say)
        self._session_ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self.app = self._build_app()

    def _load(self, model_id: str) -> ServedModel:
        path = self.catalog.paths[model_id]
        self.say(f"loading model {model_id} from {path} on {self.device}")
        model = ServedModel(model_id, path, self.device, self.cfg.codec)
        model.meta.update({"host": self.cfg.host, "port": self.cfg.port, "experiment_name": self.catalog.name})
        warm = self.executor.submit(model.warmup).result()
        self.say(
            f"model {model_id} ready: {model.loaded.policy_type}, codec {model.codec_name}, "
            f"chunk {model.chunk_size} at {model.fps:g} Hz, warm-up {warm * 1e3:.0f} ms"
        )
        return model

    def load_default(self) -> None:
        """Load and warm up the default model before the first connection (Positronic does the same)."""
        self.manager.current = self._load(self.catalog.default)

    # -- auth ---------------------------------------------------------------------------------------
    def _authorized(self, headers: Any) -> bool:
        if not self.cfg.token:
            return True
        return token_matches(bearer_token(headers.get("authorization")), self.cfg.token)

    def _build_app(self) -> FastAPI:
        # FastAPI reads the handlers' annotations to inject Request / WebSocket: they must be module-level names.
        app = FastAPI(title="robotflow serve", docs_url=None, redoc_url=None, openapi_url=None)

        @app.get(MODELS_PATH)
        async def models(request: Request):
            if not self._authorized(request.headers):
                return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
            return {"models": self.catalog.ids()}

        @app.post(KEEPALIVE_PATH)
        async def keepalive(request: Request):
            # Positronic's clients probe readiness here; this server has no idle timeout: null.
            if not self._authorized(request.headers):
                return JSONResponse({"detail": "Invalid or missing bearer token"}, status_code=401)
            return {ALIVE_SECONDS: None}

        async def session(websocket: WebSocket, model_id: str | None = None):
            await self.session(websocket, model_id)

        app.websocket(SESSION_PATH)(session)
        app.websocket(SESSION_PATH + "/{model_id}")(session)
        return app

    # -- sessions -----------------------------------------------------------------------------------
    async def session(self, ws: WebSocket, model_id: str | None) -> None:
        sid = next(self._session_ids)
        peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
        if not self._authorized(ws.headers):
            self.say(f"session {sid} from {peer} refused: missing or wrong bearer token")
            await ws.close(code=CLOSE_POLICY_VIOLATION)  # before accept: the handshake gets HTTP 403
            return
        await ws.accept()
        requests = errors = 0
        model: ServedModel | None = None
        try:
            mid = self.catalog.resolve(model_id)
            if mid is None:
                raise ServeError(f"unknown model {model_id!r}; available: {', '.join(self.catalog.ids())}")
            self.say(f"session {sid} from {peer}: model {mid}")
            model = await self.manager.acquire(mid, lambda m: ws.send_bytes(pack(m)))
            codec = model.new_codec()
            state = await asyncio.get_running_loop().run_in_executor(self.executor, model.new_state)
            session_id = uuid.uuid4().hex
            await ws.send_bytes(
                pack({"status": "ready", PROTOCOL_VERSION: SERVER_VERSION, SESSION_ID: session_id, "meta": model.meta})
            )
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                requests += 1
                try:
                    reply, state = await self._answer(msg.get("bytes"), session_id, codec, model, state)
                    await ws.send_bytes(pack(reply))
                except (WebSocketDisconnect, asyncio.CancelledError):
                    raise
                except Exception as e:  # one bad request never ends the session
                    errors += 1
                    text = str(e).splitlines()[0] if str(e) else type(e).__name__
                    log.debug("session %d request %d failed", sid, requests, exc_info=True)
                    self.say(f"session {sid}: request {requests} refused: {text}")
                    await ws.send_bytes(pack({"error": text}))
                    continue
                if reply.get(END_SESSION) is True:
                    requests -= 1  # the goodbye is no inference
                    await ws.close()
                    break
        except WebSocketDisconnect:
            pass
        except Exception as e:
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.say(f"session {sid} failed: {text}")
            log.debug("session %d failed", sid, exc_info=True)
            try:
                await ws.send_bytes(pack({"status": "error", "error": text}))
                await ws.close(code=CLOSE_POLICY_VIOLATION, reason=text[:100])
            except Exception:
                pass  # the client is gone already
        finally:
            if model is not None:
                await self.manager.release()
                self.say(f"session {sid} closed after {requests} request(s), {errors} refused")

    async def _answer(
        self, data: bytes | None, session_id: str, codec: Codec, model: ServedModel, state: Any
    ) -> tuple[dict[str, Any], Any]:
        """One request message -> (the reply: the whole predicted chunk with its timing, or the end of the
        session's acknowledgement; the session's new state)."""
        started = time.perf_counter()
        if data is None:
            raise ProtocolError("send observations as binary msgpack messages, not text")
        if len(data) > self.cfg.max_message_bytes:
            raise ProtocolError(
                f"message of {len(data)} bytes is over the server's limit of {self.cfg.max_message_bytes}"
            )
        # JPEG frames decode to at most what the transport would take as raw arrays (4x the limit).
        request = parse_request(unpack(data, max_jpeg_bytes=4 * self.cfg.max_message_bytes), session_id)
        if request.end_session:
            return {SESSION_ID: session_id, END_SESSION: True}, state
        latest, task = channels_from_observation(request.observation, codec)
        frame: dict[str, Any] = codec.encode_live(latest)
        if task:
            frame["task"] = task
        decoded = time.perf_counter()
        timing: dict[str, float] = {TIMING_DECODE: (decoded - started) * 1e3}

        def infer() -> tuple[np.ndarray, Any]:
            called = time.perf_counter()
            timing[TIMING_QUEUED] = (called - decoded) * 1e3
            try:
                return model.predict(frame, state)
            finally:
                timing[TIMING_INFER] = (time.perf_counter() - called) * 1e3

        chunk, state = await asyncio.get_running_loop().run_in_executor(self.executor, infer)
        # Version 2 rows are Positronic's own: unstamped, the horizon in the declared schedule, no marker.
        valid = model.n_action_steps if request.reads_marker else None
        poses, widths = codec.decode_chunk(chunk)  # the whole chunk in one pass, not a decode per step
        result = actions_to_wire(poses, widths, model.fps, valid, stamped=request.version == V1)
        timing[TIMING_SERVED] = (time.perf_counter() - started) * 1e3
        return {"result": result, TIMING: timing}, state

    def bind(self) -> socket.socket:
        """Bind the listening address (before loading: a taken port should not cost a model load).

        Bound here, not in uvicorn: a taken port is an OSError with a one-line message for the CLI, instead
        of uvicorn's log line and SystemExit from inside the event loop.
        """
        sock = socket.socket(socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.cfg.host, self.cfg.port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        return sock

    def run(self) -> None:
        """Serve until Ctrl-C / SIGTERM (uvicorn handles both)."""
        import uvicorn

        config = uvicorn.Config(
            self.app,
            host=self.cfg.host,
            port=self.cfg.port,
            log_level="warning",
            ws_max_size=4 * self.cfg.max_message_bytes,
            ws_ping_interval=20.0,
            ws_ping_timeout=60.0,  # a long forward pass on a busy CPU must not look like a dead peer
        )
        server = uvicorn.Server(config)
        sock = self._sock or self.bind()
        port = sock.getsockname()[1]

        async def serve() -> None:
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.05)
            if server.started:  # listening: say so only now, scripts wait for this line
                self.say(
                    f"serving {len(self.catalog.ids())} model(s) ({', '.join(self.catalog.ids())}; default "
                    f"{self.catalog.default}) on ws://{self.cfg.host}:{port}{SESSION_PATH}"
                    + (" (bearer token required)" if self.cfg.token else "")
                )
            await task

        try:
            asyncio.run(serve())
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.say("stopped")
