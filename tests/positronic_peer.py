"""Positronic's own client, run by the interop tests from a side venv (`make peers`) with its own Python.

    .venv-positronic-0.4.1/bin/python tests/positronic_peer.py MODE HOST PORT [TOKEN]

MODE: `client` (their InferenceClient: one session, one inference, the end of the session), `policy`
(their RemotePolicy, as their harness drives it), `both` (one process, so one import of their stack:
`{"client": ..., "policy": ...}`) or `refused` (0.4: a session and a keepalive call without a token and
with TOKEN as a wrong one, each refusal as their wire reads it). TOKEN goes in `Authorization: Bearer`,
as their `authed_remote` sends it. Prints one JSON line describing what came back; a failure prints
`{"error": ...}` and exits 1. It imports only Positronic's packages and numpy, never
robotflow: it is the peer.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from importlib.metadata import version

import numpy as np

H, W = 48, 64


def observation() -> dict:
    rng = np.random.default_rng(0)
    return {
        "robot_state.q": rng.standard_normal(7),
        "robot_state.dq": np.zeros(7),
        "robot_state.ee_pose": np.array([0.4, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0]),
        "grip": 0.7,
        "image.wrist": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "image.exterior": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "task": "stack the cubes",
    }


def describe_actions(actions) -> dict:
    rows = actions if isinstance(actions, list) else [actions]
    commands = [r.get("robot_command") for r in rows if isinstance(r, dict)]
    return {
        "n": len(rows),
        "command_types": sorted(
            {type(c).__name__ if not isinstance(c, dict) else c.get("type") for c in commands if c}
        ),
        "keys": sorted({k for r in rows if isinstance(r, dict) for k in r}),
    }


def v021_client(host: str, port: int) -> dict:
    from positronic.offboard.client import InferenceClient

    client = InferenceClient(host, port)
    session = client.new_session()
    try:
        return {"meta": sorted(session.metadata), **describe_actions(session.infer(observation()))}
    finally:
        session.close()


def v021_policy(host: str, port: int) -> dict:
    from positronic.policy.remote import RemotePolicy

    policy = RemotePolicy(host, port)
    try:
        policy.reset()
        return describe_actions(policy.select_action(observation()))
    finally:
        policy.close()


def _address(host: str, port: int):
    from positronic_wire.wire import SESSION_PATH, HostPortAddress

    return HostPortAddress(host, port, SESSION_PATH, "")


def _headers(token: str | None) -> dict | None:
    return {"Authorization": f"Bearer {token}"} if token else None


def v04_client(host: str, port: int, token: str | None) -> dict:
    from positronic.offboard.client import InferenceClient
    from positronic_wire import registry

    client = InferenceClient(registry.client_wire("websocket"), _address(host, port), headers=_headers(token))
    session = client.new_session()
    out = {"protocol_version": int(session.protocol_version), "meta": sorted(session.metadata)}
    out.update(describe_actions(session.infer(observation())))
    out["timing"] = sorted(session.served_timing)
    session.close()  # their end_session: acknowledged or it raises
    out["keepalive"] = client.keepalive()
    return out


def v04_refused(host: str, port: int, token: str | None) -> dict:
    """What their InferenceClient meets without the token, and with `token` (a wrong one): for the session
    and the keepalive call, the refusal their wire reads (`forbidden` for a refused credential) and its text."""
    from positronic.offboard.client import InferenceClient
    from positronic_wire import registry, wire

    out: dict = {}
    for name, headers in (("none", None), ("wrong", _headers(token))):
        client = InferenceClient(registry.client_wire("websocket"), _address(host, port), headers=headers)
        for call in ("new_session", "keepalive"):
            try:
                result = getattr(client, call)()
            except wire.ConnectRefused as e:
                out[f"{name}_{call}"] = {"refusal": e.refusal.value, "message": str(e)}
            else:
                out[f"{name}_{call}"] = {"accepted": repr(result)}
                if call == "new_session":
                    result.close()
    return out


def v04_policy(host: str, port: int, token: str | None, seconds: float = 10.0, enough: int = 5) -> dict:
    from positronic.policy.executor import Executor
    from positronic.policy.remote import RemotePolicy

    policy = RemotePolicy("websocket", _address(host, port), headers=_headers(token))
    runtime = Executor(time.monotonic_ns, simulated=False, charge_inference_time=False)
    run = policy.run(runtime)
    next(run)
    steps = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end and len(steps) < enough:
            runtime.start_tick()
            step = run.send(observation())
            commands = getattr(step, "commands", None)
            if commands:
                steps.append(dict(commands))
            time.sleep(1 / 15)
    finally:
        run.close()
    commands = [s for s in steps if any(k.startswith("robot_command") for k in s)]
    first = commands[0] if commands else (steps[0] if steps else {})
    return {
        "command_steps": len(commands),
        "first": {k: type(v).__name__ for k, v in first.items()},
        "server_meta": sorted(runtime.metadata_snapshot().get("server", {})),
    }


def main() -> None:
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else None
    old = version("positronic").startswith("0.2.")
    client = (lambda: v021_client(host, port)) if old else (lambda: v04_client(host, port, token))
    policy = (lambda: v021_policy(host, port)) if old else (lambda: v04_policy(host, port, token))
    try:
        if mode == "client":
            out = client()
        elif mode == "policy":
            out = policy()
        elif mode == "refused":
            out = v04_refused(host, port, token)
        elif mode == "both":
            out = {"client": client(), "policy": policy()}
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}))
        sys.exit(1)
    print(json.dumps({"positronic": version("positronic"), **out}))


if __name__ == "__main__":
    main()
