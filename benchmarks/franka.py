"""The Franka path on franky's own SDK: `franka.arm` driving franky-sim, beside `sim.arm`, through one probe.

    python -m benchmarks.franka --json [--reps 5]

One probe node streams EE targets to the arm under test in a robotflow graph and a log node keeps every state it
publishes. The schedule of each repetition: hold the start pose; 2 cm steps (command-to-motion latency: from the
step's publication to the first state that moved 0.1 mm toward it); a 3 cm sine streamed at 100 Hz (tracking error
p50/p99: the EE against the newest target sent before each state); a stall (watchdog hold latency: from the last
target to the EE at rest, i.e. moving < 0.1 mm over 50 ms; command_timeout_s of it is the watchdog waiting, 0.2 s
here so that both arms are still moving when it fires); a fresh fast wave, then the probe raises (stop latency: from
the failure to the EE at rest).

- franky: `franka.arm` (cartesian control) on the wall clock, against franky-sim (benchmarks/_franky_sim.py) in its
  own process. franky-sim 1.0.4 reports the *desired* pose as `O_T_EE` (it equals fk(q_d), not fk(q)), so the
  measured EE is forward kinematics of the measured joints (`panda_fk(joint_pos)`, the same FR3/Hand kinematics as
  franky-sim's URDF); the figures from the published `ee_pose` are kept as `*_reported`. The stop is read by a
  thread polling the arm node's franky `Robot` after the failure, since the graph (and its log) stops with it.
- franky at normal priority: the same as franky with `control_thread_priority: 0`, alternating with it: franky's
  1 kHz control thread then runs at SCHED_OTHER (`realtime_kernel: false`) and competes with the load; a run whose
  motion franky aborts (a planner error) is counted in `aborted_runs` and has no figures.
- sim_arm: `sim.arm` (robotflow's MuJoCo Panda) on its own virtual clock, unpaced: the figures are the sim arm's
  model, independent of machine load, and the same every repetition. It has nothing to stop (ArmNode.stop_hardware):
  the world stops stepping with the graph, so it has no stop latency.

Both arms get the same safety params and watchdog. franky-sim's 1 kHz loop is Python: starved of CPU it falls behind
real time (`franky_sim_real_time_factor` < 1) while targets keep the wall clock, and the errors grow tenfold; it runs
with SCHED_FIFO where allowed (benchmarks/_franky_sim.py). The load average is recorded.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import yaml

import robotflow.drivers.sim.nodes  # noqa: F401  (registers sim.*)
from benchmarks._franky_sim import franky_sim
from benchmarks._util import emit, machine, parser
from robotflow.geometry import panda_fk
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.node import Input, Node, register
from robotflow.runtime.scheduler import run_graph

SETTLE_S = 1.0
STEPS = 4  # out and back twice
STEP_M = 0.02
STEP_HOLD_S = 1.5
TRACK_S = 4.0  # one period of the sine: it ends moving at its fastest in y (4.7 cm/s)
TRACK_AMPLITUDE_M, TRACK_PERIOD_S = 0.03, 4.0
STALL_S = 2.0
RESUME_S, RESUME_PERIOD_S = 1.0, 2.0  # the probe fails 1 s into a 2 s-period wave: at 9.4 cm/s
MOVED_M = 1e-4  # "first motion": 0.1 mm toward the step
REST_M, REST_WINDOW_S = 1e-4, 0.05  # "at rest": moves < 0.1 mm over 50 ms
COMMAND_TIMEOUT_S = 0.2  # short enough that both arms are still moving when it fires: the hold is measured too
SAFETY = {
    "workspace_min": [0.2, -0.5, 0.1],
    "workspace_max": [0.8, 0.5, 0.7],
    "max_tilt_deg": 45.0,
    "max_step_m": 0.05,
    "max_step_deg": 15.0,
    "command_timeout_s": COMMAND_TIMEOUT_S,
}
T_STEPS = SETTLE_S
T_TRACK = T_STEPS + STEPS * STEP_HOLD_S
T_STALL = T_TRACK + TRACK_S
T_RESUME = T_STALL + STALL_S
T_END = T_RESUME + RESUME_S


@dataclass
class ProbeParams:
    fail: bool = True  # raise at the end (the stop case); False: end the graph normally
    monitor_stop: bool = False  # franka.arm: poll its robot from a thread after the failure


@register("bench.arm_probe")
class ArmProbe(Node):
    """Streams the schedule's EE targets around the first measured pose; keeps every target with its time."""

    Params = ProbeParams
    inputs = {"state": Input()}
    outputs = ("ee_target",)

    def setup(self) -> None:
        self.t0: int | None = None
        self.sent: list[tuple[int, np.ndarray]] = []
        self.steps: list[tuple[int, np.ndarray]] = []  # (publication, unit direction) of each step
        self.failed_at: int | None = None
        self.monitor: StopMonitor | None = None
        self.robot_clock: list[tuple[int, float]] = []  # (wall ns, franky-sim's own time s)
        self.resume_origin: np.ndarray | None = None

    def step(self) -> None:
        msg = self.read("state")
        if msg is None:
            return
        now = self.now_ns()
        if self.t0 is None:
            self.t0, self.origin, self.quat = now, np.array(msg["ee_pose"][:3]), np.array(msg["ee_pose"][3:])
            self._robot_time(now)
        t = (now - self.t0) * 1e-9
        if t >= T_END:
            self._end(now)
        elif t >= T_RESUME:
            if self.resume_origin is None:
                self.resume_origin = np.array(msg["ee_pose"][:3])
            self._send(now, self._wave(self.resume_origin, t - T_RESUME, RESUME_PERIOD_S))
        elif t >= T_STALL:
            self.resume_origin = None
            if len(self.robot_clock) == 1:
                self._robot_time(now)
        elif t >= T_TRACK:
            self._send(now, self._wave(self.origin, t - T_TRACK, TRACK_PERIOD_S))
        else:
            k = int((t - T_STEPS) // STEP_HOLD_S) if t >= T_STEPS else -1
            pos = self.origin + (k % 2 == 0) * np.array([0.0, STEP_M, 0.0]) if k >= 0 else self.origin
            if k >= 0 and len(self.steps) == k:
                self.steps.append((now, np.array([0.0, 1.0 if k % 2 == 0 else -1.0, 0.0])))
            self._send(now, pos)

    @staticmethod
    def _wave(origin: np.ndarray, t: float, period: float) -> np.ndarray:
        phase = 2 * np.pi * t / period
        return origin + TRACK_AMPLITUDE_M * np.array([0.0, np.sin(phase), 0.5 * (1 - np.cos(phase))])

    def _send(self, now: int, pos: np.ndarray) -> None:
        self.sent.append((now, pos.copy()))
        self.emit("ee_target", ee_pose=np.concatenate([pos, self.quat]))

    def _robot_time(self, now: int) -> None:
        robot = getattr(self._peer_arm(), "robot", None)
        if robot is not None:
            self.robot_clock.append((now, float(robot.state.time.to_sec())))

    def _peer_arm(self) -> Node | None:
        try:
            return self.peer("arm")
        except KeyError:
            return None

    def _end(self, now: int) -> None:
        if not self.params.fail:
            self.request_stop("probe done")
            return
        if self.params.monitor_stop:
            self.monitor = StopMonitor(self._peer_arm().robot)
        self.failed_at = now
        raise RuntimeError("benchmark: the probe fails on purpose (the stop case)")


class StopMonitor:
    """Polls a franky Robot's measured joints from its own thread for a few seconds (the graph has stopped)."""

    def __init__(self, robot, duration_s: float = 4.0):
        self.robot = robot  # held: the arm node drops its own reference at teardown
        self.rows: list[tuple[int, np.ndarray, np.ndarray]] = []  # (wall ns, q, O_T_EE translation)
        self._thread = threading.Thread(target=self._poll, args=(duration_s,), daemon=True)
        self._thread.start()

    def _poll(self, duration_s: float) -> None:
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            state = self.robot.state
            ee = np.array(state.O_T_EE.translation, dtype=np.float64)
            self.rows.append((time.monotonic_ns(), np.array(state.q, dtype=np.float64), ee))
            time.sleep(0.001)

    def join(self) -> None:
        self._thread.join()
        self.robot = None


@register("bench.arm_log")
class ArmLog(Node):
    """Every arm state with its publication time."""

    inputs = {"state": Input(delivery="queue", queue_size=8192)}

    def setup(self) -> None:
        self.rows: list[tuple[int, np.ndarray, np.ndarray]] = []

    def step(self) -> None:
        for m in self.read_all("state"):
            self.rows.append((m.timestamp_ns, np.array(m["joint_pos"]), np.array(m["ee_pose"][:3])))

    def teardown(self) -> None:
        self.step()


# ---- figures from one run -------------------------------------------------------------------------------


def rest_time(times_ns: np.ndarray, pos: np.ndarray, after_ns: int) -> int | None:
    """The first time at or after `after_ns` from which the EE moves < REST_M over the next REST_WINDOW_S."""
    window = int(REST_WINDOW_S * 1e9)
    for i in np.nonzero(times_ns >= after_ns)[0]:
        j = np.searchsorted(times_ns, times_ns[i] + window, side="right")
        if times_ns[j - 1] - times_ns[i] < window * 0.8:  # a gap in the samples (or their end): cannot tell here
            continue
        if np.max(np.linalg.norm(pos[i:j] - pos[i], axis=1)) < REST_M:
            return int(times_ns[i])
    return None


def motion_latencies_ms(times_ns, pos, steps) -> list[float]:
    out = []
    for t_pub, direction in steps:
        before = np.nonzero(times_ns <= t_pub)[0]
        if not len(before):
            continue
        start = pos[before[-1]]
        moved = np.nonzero((times_ns > t_pub) & ((pos - start) @ direction > MOVED_M))[0]
        if len(moved):
            out.append((times_ns[moved[0]] - t_pub) / 1e6)
    return out


def tracking_errors_mm(times_ns, pos, sent, t_from_ns: int, t_to_ns: int) -> np.ndarray:
    sent_t = np.array([t for t, _ in sent])
    errs = []
    for t, p in zip(times_ns, pos, strict=True):
        k = np.searchsorted(sent_t, t) - 1
        if t_from_ns <= t < t_to_ns and k >= 0:
            errs.append(np.linalg.norm(p - sent[k][1]) * 1e3)
    return np.array(errs)


def figures(times_ns: np.ndarray, pos: np.ndarray, probe: ArmProbe) -> dict:
    """Latency, tracking, hold from one run's states (times on the graph's clock, EE positions in m)."""
    t0 = probe.t0
    track_from = t0 + int((T_TRACK + 0.5) * 1e9)  # after the sine's first half second (the arm catching up)
    errs = tracking_errors_mm(times_ns, pos, probe.sent, track_from, t0 + int(T_STALL * 1e9))
    stall = [t for t, _ in probe.sent if t < t0 + int(T_STALL * 1e9)][-1]
    rest = rest_time(times_ns, pos, stall)
    lat = motion_latencies_ms(times_ns, pos, probe.steps)
    track = (times_ns >= track_from) & (times_ns < t0 + int(T_STALL * 1e9))
    speeds = np.linalg.norm(np.diff(pos[track], axis=0), axis=1) / np.maximum(np.diff(times_ns[track]) * 1e-9, 1e-3)
    return {
        "command_to_motion_ms": float(np.median(lat)) if lat else None,
        "tracking_error_p50_mm": float(np.percentile(errs, 50)),
        "tracking_error_p99_mm": float(np.percentile(errs, 99)),
        "hold_latency_ms": (rest - stall) / 1e6 if rest else None,
        # smoothness: the sine's targets move at <= 4.7 cm/s; a jump between two states shows up here
        "tracking_peak_ee_speed_mps": float(np.max(speeds)),
    }


def franky_figures(probe: ArmProbe, log: ArmLog) -> dict:
    times = np.array([t for t, _, _ in log.rows])
    measured = np.array([panda_fk(q)[:3] for _, q, _ in log.rows])  # franky-sim's O_T_EE is the desired pose
    reported = np.array([ee for _, _, ee in log.rows])
    out = figures(times, measured, probe)
    out.update({f"{k}_reported": v for k, v in figures(times, reported, probe).items()})
    mon = probe.monitor
    if mon is not None:
        mon.join()
        t = np.array([t for t, _, _ in mon.rows])
        for key, ee in (
            ("stop_latency_ms", np.array([panda_fk(q)[:3] for _, q, _ in mon.rows])),
            ("stop_latency_ms_reported", np.array([ee for _, _, ee in mon.rows])),
        ):
            rest = rest_time(t, ee, probe.failed_at)
            out[key] = (rest - probe.failed_at) / 1e6 if rest else None
        probe.monitor = None
    if len(probe.robot_clock) == 2:
        (w0, r0), (w1, r1) = probe.robot_clock
        out["franky_sim_real_time_factor"] = (r1 - r0) / ((w1 - w0) * 1e-9)
    return out


def sim_figures(probe: ArmProbe, log: ArmLog) -> dict:
    times = np.array([t for t, _, _ in log.rows])
    return {**figures(times, np.array([ee for _, _, ee in log.rows]), probe), "stop_latency_ms": None}


# ---- the two graphs ----------------------------------------------------------------------------------------


def _graph(arm: dict, probe: dict, extra: list[dict]) -> object:
    doc = {
        "nodes": [
            *extra,
            {**arm, "name": "arm", "rate": 100, "inputs": {"ee_target": "probe/ee_target"}},
            {"name": "probe", "type": "bench.arm_probe", "rate": 100, "params": probe, "inputs": {"state": "arm/state"}},
            {"name": "log", "type": "bench.arm_log", "rate": 100, "inputs": {"state": "arm/state"}},
        ]
    }  # fmt: skip
    return parse_graph(yaml.safe_dump(doc, sort_keys=False), "benchmarks/franka.py")


def run_franky(host: str, dynamics_factor: float, control_thread_priority: int) -> dict:
    params = {"host": host, "realtime_kernel": False, "robot_model": "fr3", "home_on_start": True,
              "control": "cartesian", "dynamics_factor": dynamics_factor,
              "control_thread_priority": control_thread_priority, **SAFETY}  # fmt: skip
    graph = _graph({"type": "franka.arm", "params": params}, {"monitor_stop": True}, [])
    result, sched = run_graph(graph, duration_s=60)
    if result.failed_node == "arm":  # franky aborted a motion (the arm faulted): counted, no figures
        del sched
        gc.collect()
        return {"aborted": 1}
    assert result.failed_node == "probe", result  # the probe's failure, nothing else
    out = franky_figures(sched.nodes["probe"], sched.nodes["log"])
    out["watchdog_holds"] = sched.reports["arm"]["safety"]["timeouts"]
    out["aborted"] = 0
    del sched
    gc.collect()  # drop the last franky Robot: libfranka serves one client, the next run connects again
    return out


def run_sim() -> dict:
    world = {"name": "world", "type": "sim.world", "rate": 500, "params": {"task": "stack_cubes"}}
    graph = _graph({"type": "sim.arm", "params": SAFETY}, {"fail": False}, [world])
    result, sched = run_graph(graph, duration_s=60)
    assert result.ok, result
    return {
        **sim_figures(sched.nodes["probe"], sched.nodes["log"]),
        "watchdog_holds": sched.reports["arm"]["safety"]["timeouts"],
    }


# ---- repetitions, medians, ratios ----------------------------------------------------------------------------


def medians(runs: list[dict]) -> dict:
    out = {}
    for key in dict.fromkeys(k for r in runs for k in r):
        if key == "aborted":
            out["aborted_runs"] = sum(r.get(key, 0) for r in runs)
            continue
        vals = [r[key] for r in runs if r.get(key) is not None]
        out[key] = round(float(np.median(vals)), 3) if vals else None
        if key.startswith(("hold_latency_ms", "command_to_motion_ms", "stop_latency_ms")):
            out[f"{key}_all"] = [None if r.get(key) is None else round(r[key], 1) for r in runs]
    return out


def ratios(franky: dict, sim: dict) -> dict:
    keys = ("command_to_motion_ms", "tracking_error_p50_mm", "tracking_error_p99_mm", "hold_latency_ms")
    return {k: round(franky[k] / sim[k], 2) if franky.get(k) and sim.get(k) else None for k in keys}


CONTROL_THREAD_PRIORITY = 80  # FrankaArmParams' default


def run(reps: int, dynamics_factor: float) -> dict:
    load_before = os.getloadavg()
    sim_runs = [run_sim() for _ in range(reps)]
    franky_runs, normal_runs = [], []
    with franky_sim() as host:
        for _ in range(reps):  # alternating: franky's control thread at SCHED_FIFO (the default), then at normal
            franky_runs.append(run_franky(host, dynamics_factor, CONTROL_THREAD_PRIORITY))
            normal_runs.append(run_franky(host, dynamics_factor, 0))
    franky, sim, normal = medians(franky_runs), medians(sim_runs), medians(normal_runs)
    return {
        "franky": franky,
        "sim_arm": sim,
        "ratio_franky_over_sim": ratios(franky, sim),
        # The same schedule with franky's control thread left at normal priority (control_thread_priority 0).
        "franky_normal_priority": normal,
        "ratio_fifo_over_normal_priority": ratios(franky, normal),
        "reps": reps,
        "franky_setup": f"franka.arm (cartesian, dynamics_factor {dynamics_factor}) -> franky-control -> franky-sim "
        "(FR3 + Hand) on loopback, wall clock; measured EE = panda_fk(joint_pos)",
        "sim_setup": "sim.arm (MuJoCo Panda, IK + position servos) on its own virtual clock, unpaced",
        "targets_hz": 100,
        "command_timeout_s": COMMAND_TIMEOUT_S,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "machine": machine(),
    }


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the schedule per arm")
    ap.add_argument("--dynamics-factor", type=float, default=0.2, help="franka.arm's dynamics_factor")
    args = ap.parse_args()
    emit(run(args.reps, args.dynamics_factor), args.json)


if __name__ == "__main__":
    main()
