"""WebXR teleop latency: a pose made by the page in headless Chromium -> the `ee_target` it produces.

    python -m benchmarks.teleop --json

A wall-clock graph runs `teleop.webxr` at the rate the graphs use (100 Hz) beside a stand-in arm state at
100 Hz. Debian's Chromium, driven by Playwright, loads the node's page over HTTPS on loopback with the test
pose source (60 Hz, the same `sendPose` path XR frames take) and the clutch engaged, while the hand moves
on a circle. The page stamps every pose in the server's clock (ping/pong sync); the node measures, for each
pose it turns into an `ee_target`, the time from the stamp to the emit. Baseline, same run and same poses:
the time from the stamp to the server receiving it (the WebSocket transport alone, no node tick).
Goal: p99 <= 20 ms.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from benchmarks._util import emit, machine, parser
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Node, register
from robotflow.runtime.scheduler import Scheduler

HOME = [0.55, 0.0, 0.48, 0.0, 0.70710678, 0.70710678, 0.0]


@dataclass
class _NoParams:
    pass


@register("bench.arm_state")
class ArmState(Node):
    """Stands in for the arm's `state` (the teleop node starts its target from it)."""

    Params = _NoParams
    outputs = ("state",)

    def step(self) -> None:
        self.emit("state", ee_pose=np.array(HOME), joint_pos=np.zeros(7), joint_vel=np.zeros(7))


GRAPH = """
clock: wall
nodes:
  - {name: arm, type: bench.arm_state, rate: 100}
  - {name: teleop, type: teleop.webxr, rate: RATE, params: {port: 0}, inputs: {state: arm/state}}
  - {name: sink, type: test.sink, rate: 100, inputs: {t: teleop/ee_target}}
"""

CIRCLE = """() => {
  const t0 = performance.now();
  robotflowTest.controls = {clutch: true, grip: 1};
  setInterval(() => {
    const a = (performance.now() - t0) / 1000;
    robotflowTest.pose = {p: [0.05 * Math.cos(a), 1.2, -0.3 + 0.05 * Math.sin(a)], q: [0, 0, 0, 1]};
  }, 5);
}"""


def main() -> None:
    ap = parser("WebXR teleop pose-to-ee_target latency over loopback, page in headless Chromium")
    ap.add_argument("--seconds", type=float, default=15.0, help="how long the page streams poses")
    ap.add_argument("--rate", type=float, default=100.0, help="the teleop node's rate (Hz)")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("benchmarks.teleop: Debian's chromium is not installed (make install adds it, as root)")
    from playwright.sync_api import sync_playwright

    sched = Scheduler(parse_graph(GRAPH.replace("RATE", str(args.rate))), duration_s=args.seconds + 30)
    thread = threading.Thread(target=sched.run, daemon=True)
    thread.start()
    teleop = sched.nodes["teleop"]
    deadline = time.monotonic() + 30
    while not hasattr(teleop, "url"):
        if time.monotonic() > deadline or not thread.is_alive():
            sys.exit("benchmarks.teleop: the teleop node did not start its page server")
        time.sleep(0.02)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(ignore_https_errors=True)
        page.goto(teleop.url + "?source=test")
        page.wait_for_function("window.robotflowTest && window.robotflowTest.state.synced", timeout=15_000)
        time.sleep(1.0)  # let the clock sync settle on its best round trip
        teleop.latency_ms.clear()
        teleop.recv_ms.clear()
        page.evaluate(CIRCLE)
        time.sleep(args.seconds)
        sent = page.evaluate("robotflowTest.state.sent")
        browser.close()
    sched.stop("benchmark done")
    thread.join(timeout=30)
    rep = teleop.report()
    lat, recv = np.asarray(teleop.latency_ms), np.asarray(teleop.recv_ms)
    p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    b50, b99 = float(np.percentile(recv, 50)), float(np.percentile(recv, 99))
    emit(
        {
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "max_ms": round(float(lat.max()), 2),
            "baseline_transport_p50_ms": round(b50, 2),
            "baseline_transport_p99_ms": round(b99, 2),
            "ratio_p50_vs_transport": round(p50 / b50, 2) if b50 > 0 else None,
            "node_rate_hz": args.rate,
            "poses_sent": int(sent),
            "poses_received": rep["poses_received"],
            "poses_used": int(len(lat)),
            "poses_dropped_stale": rep["poses_dropped_stale"],
            "goal_p99_ms": 20.0,
            "goal_met": p99 <= 20.0,
            "machine": machine(),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
