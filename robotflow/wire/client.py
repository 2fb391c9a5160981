"""A synchronous Protocol v1 client (the `websockets` package): what `policy.remote` and the tests use.

It speaks to any Protocol v1 server: `robotflow serve`, and Positronic's LeRobot / OpenPI / GR00T servers.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from robotflow.wire.protocol import MODELS_PATH, SESSION_PATH, pack, unpack

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
    """One Protocol v1 session: connect, wait through `waiting`/`loading` until `ready`, then infer.

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
                return dict(msg.get("meta") or {})
            if status in ("waiting", "loading"):
                text = str(msg.get("message", status))
                log.info("server %s: %s", status, text)
                if on_status is not None:
                    on_status(status, text)
                continue
            if status == "error" or (isinstance(msg, dict) and "error" in msg):
                raise ServerError(f"{self.url}: {msg.get('error', 'session refused')}")
            raise ServerError(f"{self.url}: unexpected handshake message {str(msg)[:200]}")

    def infer_raw(self, payload: bytes) -> Any:
        """Send already-packed bytes; return the unpacked reply (a dict with `result` or `error`)."""
        self._ws.send(payload)
        return unpack(self._ws.recv(timeout=self.request_timeout))

    def infer(self, observation: dict[str, Any]) -> list[dict[str, Any]]:
        """Send one observation, return the server's action list; a server-side error raises `ServerError`."""
        reply = self.infer_raw(pack(observation))
        if isinstance(reply, dict) and "error" in reply:
            raise ServerError(str(reply["error"]))
        if not isinstance(reply, dict) or "result" not in reply:
            raise ServerError(f"unexpected reply {str(reply)[:200]}")
        return reply["result"]

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
