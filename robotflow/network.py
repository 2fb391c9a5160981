"""Who may reach a robotflow server: the loopback rule and token checks, written once.

`robotflow serve` and the WebXR teleop page both expose something that can move a robot. They share these
checks so that "is this bind local?" and "is this token right?" have one answer. The module imports only
the standard library, so any layer may use it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets


def is_loopback(host: str) -> bool:
    """True when `host` names this machine only: `localhost`, or any loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time token comparison (a plain `==` leaks the matching prefix length through timing)."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; "" for a missing header or another scheme."""
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def token_for_bind(host: str, token: str) -> str:
    """The token a page server requires: the given one, or off loopback a fresh random one (never none)."""
    return token or ("" if is_loopback(host) else secrets.token_urlsafe(16))


def unauthenticated_bind_error(host: str, token: str | None, insecure: bool) -> str | None:
    """Why binding `host` is refused, or None: off loopback a server needs a token unless `insecure` is set."""
    if is_loopback(host) or token or insecure:
        return None
    return (
        f"refusing to bind {host} without a token: anyone who can reach it could drive your robot; "
        "pass --token (or set ROBOTFLOW_TOKEN), or --insecure on a trusted network"
    )
