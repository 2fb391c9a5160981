"""Fault injection that takes longer than `make test` allows (marked slow; `make test-all`): the inference
server killed mid-rollout and restarted. The SIGKILL sweeps of record, convert, append and train are in
tests/test_faults_kill.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import install
from test_faults_io import COMMAND_TIMEOUT_S, RunningGraph, policy_graph, run_dir, targets_and_holds, wait_for
from test_serve import free_port

from robotflow.recording.reader import EpisodeFile

pytestmark = pytest.mark.slow
__all__ = ["run_dir"]  # the module fixture, shared

ROOT = Path(__file__).resolve().parents[1]


class Serve:
    """`robotflow serve` on a given port, in its own process group (so SIGKILL takes all of it)."""

    def __init__(self, run_dir: Path, port: int):
        cmd = [sys.executable, "-m", "robotflow.scripts.cli", "serve", "--checkpoints-dir", str(run_dir)]
        cmd += ["--port", str(port), "--device", "cpu"]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(120) or self.proc.poll() is not None:
            self.kill()
            raise AssertionError("robotflow serve did not start:\n" + "\n".join(self.lines))
        self.ready_at = time.monotonic()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "serving" in line and "ws://" in line:
                self.ready.set()
        self.ready.set()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def test_inference_server_killed_mid_rollout_holds_the_arm_and_the_node_resumes_on_restart(
    monkeypatch, run_dir, tmp_path
):
    """kill -9 of `robotflow serve` while policy.remote drives the (fake) Franka: the node stops emitting once
    the chunk in hand is spent, the watchdog holds the arm within command_timeout_s of the last command, and
    after `robotflow serve` comes back on the same port the node reconnects (backoff) and drives again."""
    franky = install(monkeypatch, "franky")
    install(monkeypatch, "pyrealsense2")
    port = free_port()
    server = Serve(run_dir, port)
    out = tmp_path / "eps"
    graph = RunningGraph(policy_graph(port, out))
    try:
        with graph as sched:
            wait_for(lambda: franky.Robot._instances, 30, "the arm to connect")
            robot = franky.Robot._instances[0]
            wait_for(lambda: len(targets_and_holds(robot)[0]) >= 20, 60, "the policy to drive the arm")
            policy = sched.nodes["policy"]
            t_kill = time.monotonic()
            server.kill()
            wait_for(lambda: targets_and_holds(robot)[1], 10, "the watchdog to hold the arm")
            hold = targets_and_holds(robot)[1][-1]
            assert policy.counters["connection_losses"] == 1
            n_held = len(targets_and_holds(robot)[0])
            t_restart = time.monotonic()
            server = Serve(run_dir, port)
            wait_for(lambda: policy.counters["reconnects"] == 1, 30, "the node to reconnect")
            wait_for(lambda: len(targets_and_holds(robot)[0]) >= n_held + 10, 30, "the policy to drive again")
            t_resumed = targets_and_holds(robot)[0][n_held]
    finally:
        server.kill()
    assert graph.result.ok, graph.result.error
    with EpisodeFile(next(out.glob("episode_*.h5"))) as ep:
        commands = ep.timestamps("policy/ee_target") / 1e9
    last_command = commands[commands < t_restart].max()
    to_last, to_hold = last_command - t_kill, hold - last_command
    print(
        f"server killed: last policy command {to_last * 1e3:.0f} ms after (the chunk in hand), arm held "
        f"{to_hold * 1e3:.0f} ms after that; restarted server ready after {server.ready_at - t_restart:.1f} s, "
        f"driving again {t_resumed - server.ready_at:.2f} s after it was ready"
    )
    assert 0 <= to_last < 2.0  # at most the rest of one chunk (~1 s at 15 Hz) and a failed refill
    assert COMMAND_TIMEOUT_S - 0.05 < to_hold < COMMAND_TIMEOUT_S + 0.3
    assert not np.any((commands > last_command) & (commands < server.ready_at)), "nothing sent while it was down"
    assert t_resumed - server.ready_at < 10.0  # the node's backoff is capped at 8 s
