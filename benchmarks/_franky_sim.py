"""franky-sim as the robot under test: a MuJoCo FR3 serving the real libfranka protocol, in its own process.

The server runs as a separate process, as a robot sits on its own controller: the graph under test talks to it only
through franky-control over loopback. Each server takes a loopback address of its own (127.x.y.z), so several test
runs on one machine never share a robot. Used by tests/test_franky_sim.py and benchmarks/franka.py.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

START_TIMEOUT_S = 60.0


def free_loopback_host() -> str:
    # libfranka's ports are fixed (1337 robot, 1338 gripper), so a server is told apart by its address.
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def _robot_priority() -> None:
    """A real robot has a controller of its own; on a shared machine the simulated one gets real-time priority
    instead, so its 1 kHz Python loop keeps time while the graph under test and everything else compete for the CPU:
    at normal priority it ran at 0.2-0.5x real time at a load of 8-14, with SCHED_FIFO at 0.96x (a third of a core).
    It sleeps every millisecond, and the kernel's real-time throttling keeps 5% of each core for others anyway.
    Without the privilege it asks for nice -10, and without that runs at normal priority (noisier figures)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-10)
    except OSError:
        pass


@dataclass
class FrankySimServer:
    """A running franky-sim: its address, and its process (a fault test kills it, as a cable is pulled)."""

    host: str
    process: subprocess.Popen

    def kill(self) -> None:
        """SIGKILL the server: the robot falls silent mid-whatever, with no goodbye on the wire."""
        self.process.kill()


@contextmanager
def franky_sim(host: str | None = None) -> Iterator[str]:
    """Start `franky-sim -s mujoco` on a fresh loopback address; yields the address, kills the server after."""
    with franky_sim_server(host) as server:
        yield server.host


@contextmanager
def franky_sim_server(host: str | None = None) -> Iterator[FrankySimServer]:
    """`franky_sim`, yielding the server itself (address and process)."""
    host = host or free_loopback_host()
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    cmd = [sys.executable, "-c", "from franky_sim.run_server import main; main()", "-s", "mujoco", "--hostname", host]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=_robot_priority
    )
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:  # keep reading, so a chatty server never blocks on a full pipe
        for line in proc.stdout:
            lines.append(line.rstrip())
            if "Connect to the server" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("franky-sim did not start:\n" + "\n".join(lines[-20:]))
    try:
        yield FrankySimServer(host, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
