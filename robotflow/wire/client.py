"""A synchronous client of Positronic's protocol, versions 1 to 3 (the `websockets` package): what
`policy.remote` and the tests use.

It follows the version the server declares in its ready message: `robotflow serve`, Positronic 0.2.1's
servers (version 1) and Positronic 0.4's (version 2; version 3 from positronic-model-server).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from robotflow.wire.protocol import (
    COMPRESS_IMAGES,
    END_SESSION,
    IMAGE_PREFIX,
    MODELS_PATH,
    OBSERVATION,
    PROTOCOL_VERSION,
    SESSION_ID,
    SESSION_PATH,
    SUPPORTED_VERSIONS,
    TIMING,
    V1,
    V3,
    encode_jpeg,
    pack,
    unpack,
)

log = logging.getLogger("robotflow.serving")


class ServerError(RuntimeError):
    """The server refused a session or a request; the message is the server's one line."""


def session_url(server: str, model: str | None = None) -> str:
    """`ws://host:port` (or a full `.../api/v1/session[/model]` URL) -> the session URL for `model`."""
    parts = urlsplit(server if "://" in server else f"ws://{server}")
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"server {server!r}: use ws://HOST:PORT (or wss://)")
    if not parts.hostname:
        raise ValueError(f"server {server!r} has no host; use ws://HOST:PORT")
    path = parts.path.rstrip("/")
    if not path.startswith(SESSION_PATH):
        path = SESSION_PATH
    if model and path == SESSION_PATH:
        path = f"{SESSION_PATH}/{model}"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def list_models(server: str, token: str | None = None, timeout: float = 10.0) -> list[str]:
    """`GET /api/v1/models` of a server given as `ws://host:port`."""
    parts = urlsplit(session_url(server))
    scheme = "https" if parts.scheme == "wss" else "http"
    req = urllib.request.Request(urlunsplit((scheme, parts.netloc, MODELS_PATH, "", "")), headers=_auth_headers(token))
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return list(json.loads(resp.read())["models"])


class RemoteSession:
    """One session: connect, wait through `waiting`/`loading` until `ready`, then infer.

    The ready message fixes the protocol version (`version`; absent: 1) and, from version 2, the
    `session_id` each request carries. Images are JPEG-compressed when the server's meta asks for it
    (`compress_images`). `close` ends a version 2/3 session with `end_session` and waits for its
    acknowledgement (at most `end_timeout` seconds), so the server releases the session's state.

    status_timeout: seconds allowed between two status messages while the server waits or loads (servers
        send one every 5 s; Positronic's client allows 30 s).
    """

    def __init__(
        self,
        server: str,
        model: str | None = None,
        *,
        token: str | None = None,
        open_timeout: float = 10.0,
        status_timeout: float = 30.0,
        request_timeout: float | None = 60.0,
        max_size: int | None = 64 * 1024 * 1024,
        on_status: Callable[[str, str], None] | None = None,
    ):
        from websockets.sync.client import connect

        self.url = session_url(server, model)
        self.request_timeout = request_timeout
        self.statuses: list[str] = []
        self.version = V1
        self.session_id: str | None = None
        self.timing: dict[str, float] = {}  # the server's timing block of the last answer (versions 2, 3)
        self._ended = False
        self._ws = connect(
            self.url,
            additional_headers=_auth_headers(token),
            open_timeout=open_timeout,
            max_size=max_size,
            compression=None,  # images do not compress; deflate would only cost CPU on both ends
        )
        try:
            self.meta = self._handshake(status_timeout, on_status)
        except BaseException:
            self._ws.close()
            raise

    def _handshake(self, timeout: float, on_status: Callable[[str, str], None] | None) -> dict[str, Any]:
        while True:
            try:
                msg = unpack(self._ws.recv(timeout=timeout))
            except TimeoutError:
                raise TimeoutError(f"{self.url}: no status from the server in {timeout:g} s") from None
            status = msg.get("status") if isinstance(msg, dict) else None
            if status is not None:
                self.statuses.append(status)
            if status == "ready":
                return self._ready(msg)
            if status in ("waiting", "loading"):
                text = str(msg.get("message", status))
                log.info("server %s: %s", status, text)
                if on_status is not None:
                    on_status(status, text)
                continue
            if status == "error" or (isinstance(msg, dict) and "error" in msg):
                raise ServerError(f"{self.url}: {msg.get('error', 'session refused')}")
            raise ServerError(f"{self.url}: unexpected handshake message {str(msg)[:200]}")

    def _ready(self, msg: dict[str, Any]) -> dict[str, Any]:
        version = msg.get(PROTOCOL_VERSION, V1)
        if version not in SUPPORTED_VERSIONS:
            raise ServerError(
                f"{self.url}: the server speaks protocol version {version!r}; robotflow speaks "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
            )
        self.version = int(version)
        if self.version != V1:
            if SESSION_ID not in msg:
                raise ServerError(f"{self.url}: a version {self.version} ready message without its session_id")
            self.session_id = msg[SESSION_ID]
        return dict(msg.get("meta") or {})

    def request(self, observation: dict[str, Any]) -> bytes:
        """The bytes of one request for `observation`, in the session's version (images JPEG-compressed
        when the server's meta sets `compress_images`; a version 3 server's own client stack does that)."""
        if self.meta.get(COMPRESS_IMAGES) and self.version != V3:
            observation = {k: _jpeg_if_image(k, v) for k, v in observation.items()}
        if self.version == V1:
            return pack(observation)
        return pack({SESSION_ID: self.session_id, OBSERVATION: observation})

    def exchange(self, payload: bytes) -> bytes:
        """Send already-packed bytes; return the reply's bytes, not yet unpacked."""
        self._ws.send(payload)
        return self._ws.recv(timeout=self.request_timeout)

    def infer_raw(self, payload: bytes) -> Any:
        """Send already-packed bytes; return the unpacked reply (a dict with `result` or `error`)."""
        return unpack(self.exchange(payload))

    def result(self, reply: Any) -> list[dict[str, Any]]:
        """An unpacked reply -> its action list (keeping its timing block); an error raises `ServerError`."""
        if isinstance(reply, dict) and "error" in reply:
            raise ServerError(str(reply["error"]))
        if not isinstance(reply, dict) or "result" not in reply:
            raise ServerError(f"unexpected reply {str(reply)[:200]}")
        timing = reply.get(TIMING)
        self.timing = dict(timing) if isinstance(timing, dict) else {}
        return reply["result"]

    def infer(self, observation: dict[str, Any]) -> list[dict[str, Any]]:
        """Send one observation, return the server's action list; a server-side error raises `ServerError`."""
        return self.result(self.infer_raw(self.request(observation)))

    def end(self, timeout: float = 5.0) -> None:
        """End a version 2/3 session and wait for the server's acknowledgement (a no-op on version 1)."""
        if self.version == V1 or self._ended:
            return
        self._ended = True
        message = {SESSION_ID: self.session_id, END_SESSION: True}
        self._ws.send(pack(message))
        reply = unpack(self._ws.recv(timeout=timeout))
        if reply != message:
            raise ServerError(f"{self.url}: unexpected end-of-session answer {str(reply)[:200]}")

    def close(self) -> None:
        """End the session (best effort: a server that is gone needs no goodbye), then the connection."""
        try:
            self.end()
        except Exception as e:  # ConnectionClosed, TimeoutError, ServerError: the connection closes anyway
            log.debug("%s: end of session not acknowledged: %s", self.url, e)
        finally:
            self._ws.close()

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _jpeg_if_image(key: str, value: Any) -> Any:
    if key.startswith(IMAGE_PREFIX) and isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[2] == 3:
        return encode_jpeg(value)
    return value
