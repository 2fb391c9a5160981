"""`policy.remote`: drive the arm and gripper from a policy served over Positronic's protocol (docs/serving.md).

Same ports as `policy.act`; outputs `ee_target`, `joint_target` and `grip`. Each tick the node reads the
newest arm, gripper and camera messages, and, when its chunk executor needs a new chunk, sends them to the
server with Positronic's raw key names (`robot_state.q`, `robot_state.dq`, `robot_state.ee_pose`,
`robot_state.status`, `grip`, `image.<camera>`, `task`, `obs_time_ns`, `wall_time_ns`), images shrunk to the
server's `image_sizes` first, in the protocol version the server declared (robotflow.wire.client). The
answer is a list of actions (`cartesian_pos` drives `ee_target`, `joint_pos` drives `joint_target`; any
other command type or control mode is refused with one line); the node lays it onto its own ticks (action
for tick `k` = the last one stamped at or before `k / action_fps`), keeps those within the horizon and
before the validity marker, and hands the chunk to the same `ChunkExecutor` as `policy.act`: on a wall
clock the request runs on the executor's worker thread ahead of need, so a control tick never waits for
the network.

Connection loss or a refused request: the node stops emitting, so the arm holds its last target (the arm
drivers' command watchdog holds position when targets stop), reconnects with exponential backoff on a
background thread, logs every loss and recovery, and resumes with a fresh chunk. Counters are in the
node's report.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from robotflow.codecs import canonical_name, get_codec
from robotflow.codecs.codec import resize_image
from robotflow.runtime.channels import Message
from robotflow.runtime.node import Input
from robotflow.runtime.params import non_negative, positive
from robotflow.wire.client import RemoteSession, ServerError
from robotflow.wire.protocol import (
    EE_TARGET,
    KEY_DQ,
    KEY_EE_POSE,
    KEY_GRIP,
    KEY_OBS_TIME_NS,
    KEY_Q,
    KEY_STATUS,
    KEY_TASK,
    KEY_WALL_TIME_NS,
    ProtocolError,
    actions_from_wire,
    camera_wire_key,
    fit_size,
    grip_to_wire,
    image_size_for,
)

from .base import PolicyNode

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class RemoteNodeParams:
    """Params of `policy.remote`.

    server: `ws://HOST:PORT` of a Protocol v1 server (`robotflow serve`, Positronic's OpenPI/GR00T/LeRobot).
    codec: the graph's codec: which cameras the node reads (one port each) and, against a robotflow
        server, the codec its model must have been trained with.
    cameras: camera names, one input port each (None: the codec's, `wrist` and `front`), as `policy.act`.
    model: model id (a checkpoint step for `robotflow serve`); None: the server's default.
    token: bearer token; None: the ROBOTFLOW_TOKEN environment variable, if set.
    camera_keys: wire name per camera, e.g. `{front: image.exterior}` for Positronic's codecs
        (default `image.<camera>`).
    horizon_s: use the actions stamped before this many seconds of each chunk (None: the server's
        `action_horizon_sec`, else the whole chunk).
    refill_at: ticks left in the chunk when the next one is requested (None: the measured round trip in periods).
    async_inference: None = on with a wall clock, off on the simulator's virtual clock (lock-step and
        deterministic: a request costs no simulated time).
    status_timeout_s: longest silence allowed while the server waits for sessions or loads a model.
    request_timeout_s: longest wait for one answer before the connection counts as lost.
    max_observation_age_s: skip the tick when any input is older than this (a stalled camera), as `policy.act`.
    """

    server: str
    codec: str
    cameras: list[str] | None = None
    model: str | None = None
    token: str | None = None
    camera_keys: dict[str, str] | None = None
    horizon_s: float | None = positive(None)
    refill_at: int | None = non_negative(None)
    async_inference: bool | None = None
    connect_timeout_s: float = positive(10.0)
    status_timeout_s: float = positive(30.0)
    request_timeout_s: float = positive(30.0)
    max_observation_age_s: float = positive(0.25)


class RemoteUnavailable(RuntimeError):
    """The server could not answer: connection lost, timed out, or it refused the request."""


def wire_observation(
    latest: dict[str, Any],
    cameras: list[str],
    wire_keys: dict[str, str],
    meta: dict[str, Any],
    task: str | None,
    observed_ns: int | None = None,
) -> dict[str, Any]:
    """The newest message of each input port -> an observation (Positronic's raw key names).

    Grip: the gripper's width (1 open) travels as Positronic's grip (0 open, 1 closed). The arm's status is
    `robot_state.status`, always `ok`: a faulted arm sends nothing to the robot and stops the graph or recovers
    (its state's `mode`/`fault` fields stay in the recording); observed_ns,
    the control clock's time of the observation, is `obs_time_ns` beside the wall clock's `wall_time_ns`.
    """

    arm, grip = latest["arm_state"], latest["gripper_state"]
    obs: dict[str, Any] = {
        KEY_Q: np.asarray(arm["joint_pos"], dtype=np.float64),
        KEY_DQ: np.asarray(arm["joint_vel"], dtype=np.float64),
        KEY_EE_POSE: np.asarray(arm["ee_pose"], dtype=np.float64),
        KEY_GRIP: grip_to_wire(grip["width"]),
        KEY_STATUS: "ok",
        KEY_WALL_TIME_NS: time.time_ns(),
    }
    if observed_ns is not None:
        obs[KEY_OBS_TIME_NS] = int(observed_ns)
    for cam in cameras:
        key = wire_keys[cam]
        img = latest[cam]["image"]
        size = fit_size(img.shape, image_size_for(meta, key))
        # The codec's own resize (INTER_AREA when shrinking): a robotflow server then sees the pixels the
        # in-process policy node would have fed the model.
        obs[key] = resize_image(img, size) if size is not None else np.asarray(img)
    if task:
        obs[KEY_TASK] = task
    return obs


def chunk_to_ticks(
    targets: np.ndarray,
    grips: np.ndarray,
    stamps: np.ndarray,
    fps: float,
    horizon_s: float | None,
    kinds: np.ndarray | None = None,
) -> np.ndarray:
    """Timestamped actions -> one row per tick at `fps` ([kind, 7 target values, grip]), zero-order hold.

    Tick `k` (time `k / fps` after the observation) takes the last action stamped at or before it; ticks run
    up to the horizon (default: the last stamp). Stamps `i / fps` map one to one. kinds: EE_TARGET or
    JOINT_TARGET per action (default: all EE targets).
    """
    kinds = np.full(len(stamps), EE_TARGET) if kinds is None else np.asarray(kinds)
    order = np.argsort(stamps, kind="stable")
    targets, grips, stamps, kinds = targets[order], grips[order], stamps[order], kinds[order]
    end = horizon_s if horizon_s is not None else float(stamps[-1]) + 0.5 / fps
    n = max(1, int(np.ceil(end * fps - 1e-6)))
    ticks = np.arange(n) / fps
    idx = np.clip(np.searchsorted(stamps, ticks + 1e-9, side="right") - 1, 0, len(stamps) - 1)
    return np.concatenate([kinds[idx, None], targets[idx], grips[idx, None]], axis=1).astype(np.float64)


def valid_horizon(horizon_s: float | None, valid_until: float | None) -> float | None:
    """The horizon the node executes: the node's, cut at the server's validity marker."""
    if valid_until is None:
        return horizon_s
    return valid_until if horizon_s is None else min(horizon_s, valid_until)


class RemotePolicyNode(PolicyNode):
    """A policy running on a Protocol v1 server; chunks executed like `policy.act`'s."""

    Params = RemoteNodeParams
    outputs = ("ee_target", "joint_target", "grip")

    @classmethod
    def declare_inputs(cls, params: RemoteNodeParams) -> dict[str, Input]:
        inputs = {"arm_state": Input(), "gripper_state": Input()}
        for cam in params.cameras if params.cameras is not None else get_codec(params.codec).params.cameras:
            inputs[cam] = Input()
        inputs.update(PolicyNode.GATING_INPUTS)
        return inputs

    # ---- connection -------------------------------------------------------------------------------
    def _connect(self) -> RemoteSession:
        p = self.params
        return RemoteSession(
            p.server,
            p.model,
            token=self._token,
            open_timeout=p.connect_timeout_s,
            status_timeout=p.status_timeout_s,
            request_timeout=p.request_timeout_s,
            on_status=lambda status, text: self.log("server %s: %s", status, text),
        )

    def _check_meta(self, meta: dict[str, Any]) -> None:
        served = meta.get("codec")
        if served is not None and canonical_name(str(served)) != canonical_name(self.params.codec):
            raise ValueError(
                f"{self.name}: the server's model {meta.get('checkpoint_id', '?')} was trained with codec "
                f"{served!r} but the graph uses {self.params.codec!r}"
            )

    @property
    def counters(self) -> dict[str, int]:
        """The node's counters (requests, losses, reconnects, refused, held and skipped ticks)."""
        return self.counts

    def setup(self) -> None:
        from .chunking import ChunkExecutor, ChunkExecutorConfig  # heavy: torch

        p = self.params
        self._token = p.token or os.environ.get("ROBOTFLOW_TOKEN") or None
        self.codec = get_codec(p.codec)
        if getattr(self.codec.layout, "objects", None):
            raise ValueError(
                f"{self.name}: codec {p.codec!r} reads the simulator's object poses, which Protocol v1 does not carry"
            )
        self._cameras = list(p.cameras) if p.cameras is not None else list(self.codec.params.cameras)
        self._wire_keys = {cam: camera_wire_key(cam, p.camera_keys) for cam in self._cameras}
        self._lock = threading.Lock()  # guards the session between the worker and the reconnect thread
        meta = self._open_session()
        self._fps = float(meta.get("action_fps") or self.codec.params.fps)
        self._horizon = p.horizon_s if p.horizon_s is not None else meta.get("action_horizon_sec")
        # Ticks per chunk: the horizon, else the whole chunk, else (a server that says neither) about a second.
        n = (
            int(np.ceil(self._horizon * self._fps - 1e-6))
            if self._horizon
            else int(meta.get("chunk_size") or round(self._fps))
        )
        use_async = p.async_inference
        if use_async is None:
            use_async = getattr(self._clock, "kind", "wall") != "virtual"
        self._connected = True
        self._failures = 0  # consecutive failed requests: the backoff grows with them
        self._closing = False
        counts = {"requests": 0, "connection_losses": 0, "reconnects": 0, "refused": 0, "held_ticks": 0}
        cfg = ChunkExecutorConfig(n_action_steps=n, refill_at=p.refill_at, async_inference=use_async, fps=self._fps)
        self._fresh = True  # a session that has served no request yet: its state is already new
        self.executor = ChunkExecutor.from_source(self._infer, chunk_size=n, config=cfg, reset=self._new_session)
        self.start_gating(["arm_state", "gripper_state", *self._cameras], p.max_observation_age_s, counts)
        self.log(
            "connected to %s: model %s (%s), %d actions per chunk at %g Hz",
            self._session.url,
            meta.get("checkpoint_id", "?"),
            meta.get("type", "?"),
            n,
            self._fps,
        )

    def _open_session(self) -> dict[str, Any]:
        """The first session, checked against the graph's codec; returns the server's meta."""
        try:
            self._session = self._connect()
        except Exception as e:
            raise RuntimeError(f"{self.name}: cannot open a session on {self.params.server}: {_one_line(e)}") from None
        self._check_meta(self._session.meta)
        return self._session.meta

    def _infer(self, obs: dict[str, Any], observation_ns: int) -> tuple[np.ndarray, int]:
        """The executor's chunk source: runs on its worker thread (inline on a virtual clock). The server
        stamps actions relative to the observation, so the chunk starts at the observation's time."""
        with self._lock:
            session = self._session
            if session is None:
                raise RemoteUnavailable("not connected")
            self.counts["requests"] += 1
            self._fresh = False
            try:
                result = session.infer(obs)
            except ServerError as e:
                raise RemoteUnavailable(f"server refused the request: {_one_line(e)}") from None
            except Exception as e:  # ConnectionClosed, TimeoutError, OSError: the link is gone
                self._session = None
                try:
                    session.close()
                except Exception:
                    pass
                raise RemoteUnavailable(f"connection lost: {_one_line(e)}") from None
        try:
            chunk = actions_from_wire(result, self._fps)
        except ProtocolError as e:
            raise RemoteUnavailable(f"bad answer: {e}") from None
        horizon = valid_horizon(self._horizon, chunk.valid_until)
        if len(chunk) == 0 or (horizon is not None and horizon <= 0):
            # A server may answer with no command (Positronic's stub), or a marker at 0: nothing is valid.
            raise RemoteUnavailable("the answer holds no executable action")
        ticks = chunk_to_ticks(chunk.targets, chunk.grips, chunk.stamps, self._fps, horizon, chunk.kinds)
        return ticks, observation_ns

    def _new_session(self) -> None:
        """Episode start (run by the executor before its next chunk): a new session resets the server's
        per-session state (its codec's quaternion continuity, the policy's queues), as Positronic's
        RemotePolicy.reset does. A failure here surfaces as a lost connection at the next request."""
        with self._lock:
            if self._session is None or self._fresh:
                return
            old, self._session = self._session, None
            old.close()
            try:
                self._session = self._connect()
                self._fresh = True
            except Exception as e:
                self.log("new session on %s failed: %s", self.params.server, _one_line(e))

    def _recover(self) -> None:
        """Background thread: wait out the backoff, then reconnect if the session is gone, and resume."""
        attempt = 0
        while not self._closing:
            time.sleep(BACKOFF_S[min(self._failures - 1 + attempt, len(BACKOFF_S) - 1)])
            if self._closing:
                return
            with self._lock:
                alive = self._session is not None
            if alive:  # the server refused a request but the link is up: simply try again
                self._connected = True
                return
            attempt += 1
            try:
                session = self._connect()
                self._check_meta(session.meta)
            except Exception as e:
                self.log("reconnect attempt %d to %s failed: %s", attempt, self.params.server, _one_line(e))
                continue
            with self._lock:
                self._session, self._fresh = session, True
            self.counts["reconnects"] += 1
            self.log("reconnected to %s after %d attempt(s)", self.params.server, attempt)
            self._connected = True
            return

    def _lost(self, why: str) -> None:
        """Stop acting until the server answers again; the arm holds its last target meanwhile."""
        self._failures += 1
        with self._lock:
            gone = self._session is None
        self.counts["connection_losses" if gone else "refused"] += 1
        self.log("no actions from %s (%s): holding the arm", self.params.server, why)
        self.executor.reset()
        self._connected = False
        threading.Thread(target=self._recover, name=f"{self.name}-reconnect", daemon=True).start()

    # ---- ticks ------------------------------------------------------------------------------------
    def on_episode_start(self) -> None:
        self.executor.reset()

    def on_episode_end(self) -> None:
        self.executor.reset()  # a chunk in flight belongs to the episode that ended

    def on_handback(self) -> None:
        self.executor.reset()  # the chunk in flight was planned before the operator moved the arm

    def can_act(self) -> bool:
        if not self._connected:
            self.counts["held_ticks"] += 1
        return self._connected

    def act(self, latest: dict[str, Message], now_ns: int, observed_ns: int) -> None:
        episode = {self.codec.params.channels.task: self.episode_msg} if self.episode_msg is not None else {}
        task = self.codec.live_task(episode)
        obs = wire_observation(latest, self._cameras, self._wire_keys, self._session_meta(), task, observed_ns)
        try:
            action = self.executor.step(obs, now_ns, observed_ns)
        except RuntimeError as e:
            cause = e.__cause__ if isinstance(e.__cause__, RemoteUnavailable) else e
            if not isinstance(cause, RemoteUnavailable):
                raise
            self.counts["held_ticks"] += 1
            self._lost(str(cause))
            return
        if action is None:
            return  # no chunk covers now yet (first request of an episode in flight): do not act
        self._failures = 0
        target = np.array(action[1:8], dtype=np.float64)
        if int(action[0]) == EE_TARGET:
            self.emit("ee_target", ee_pose=target)
        else:
            self.emit("joint_target", joint_pos=target)
        self.emit("grip", width=float(np.clip(action[8], 0.0, 1.0)))

    def _session_meta(self) -> dict[str, Any]:
        session = self._session
        return session.meta if session is not None else {}

    def teardown(self) -> None:
        self._closing = True
        executor = getattr(self, "executor", None)
        if executor is not None:
            executor.close()
            self.log("policy stats: %s", {**executor.stats.as_dict(), **self.counts})
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def report(self) -> dict | None:
        executor = getattr(self, "executor", None)
        if executor is None:
            return None
        return {"remote": {**self.counts, **executor.stats.as_dict()}}


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]
