"""What a live Rerun view costs a control loop: the 500 Hz node of benchmarks/scheduler.py, with and without
`launch --rerun FILE.rrd` streaming both 640x480 cameras and the control channel.

    python -m benchmarks.rerun --json [--duration 20]

Same graph as benchmarks/scheduler.py (control at `priority: 50`, two 30 fps cameras, a core-saturating numpy
node); the view is added exactly as `robotflow launch --rerun` adds it by default: a `view.tap` in the graph's
process passing each channel's newest message on at 10 Hz (`--rerun-rate`), and the `view.rerun` node in its own
niced process on the wall clock. Both sides run in this process, in alternating rounds (without, with,
without, ...). Reports the control node's p99 period error on each side (over all its rounds' ticks, and the
median of the per-round p99s) and their ratio, and this process's CPU outside the load node on each side,
which the machine's other load moves less.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._util import emit, machine, parser
from benchmarks.scheduler import GRAPH
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import Scheduler
from robotflow.views.rerun import with_view


def _thread_cpu_s() -> dict[int, float]:
    """CPU seconds so far of each thread of this process (Linux), by native thread id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # a thread that has just exited
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _one(duration: float, rrd: Path | None) -> tuple[dict, dict]:
    spec = parse_graph(GRAPH, "benchmarks/rerun.py")
    if rrd is not None:
        spec = with_view(spec, str(rrd), ("cam_a/frame", "cam_b/frame", "control/count"))
    sched = Scheduler(spec, duration_s=duration)
    # This process's CPU over the middle half of the run, outside the `load` node (which takes whatever a core
    # has left, so its share only measures the machine's other load): what the view adds here, load or not.
    samples: list[tuple[float, dict]] = []

    def sample() -> None:
        while not all(rt.setup_done.is_set() for rt in sched.runtimes):  # the view's process starts first
            time.sleep(0.01)
        for wait in (duration / 4, duration / 2):
            time.sleep(wait)
            samples.append((time.monotonic(), _thread_cpu_s()))

    threading.Thread(target=sample, daemon=True).start()
    result = sched.run()
    assert result.ok, result
    report = next((r for name, r in sched.reports.items() if name.startswith("rerun_view")), {})
    # What crossed into the view's process: the tap's outputs.
    report["crossed"] = sum(c["sent"] for name, c in result.stats["channels"].items() if name.startswith("rerun_tap"))
    ctl = dict(result.stats["nodes"]["control"])
    ctl["lateness_us"] = (
        next(rt for rt in sched.runtimes if rt.spec.name == "control").stats.lateness_us.values().copy()
    )
    load = next(rt.thread.native_id for rt in sched.runtimes if rt.spec.name == "load")
    if len(samples) == 2:
        (t0, a), (t1, b) = samples
        busy = sum(v - a.get(tid, 0.0) for tid, v in b.items() if tid != load)
        ctl["cpu_ms_per_s"] = 1000 * busy / (t1 - t0)
    return ctl, report


def run(duration: float, rounds: int) -> dict:
    """`rounds` alternating pairs (without, then with the view), `duration / rounds` seconds each, so a change in
    the machine's other load during the run hits both sides alike; each side pools its rounds."""
    without, with_view_, reports = [], [], []
    with tempfile.TemporaryDirectory(prefix="robotflow-bench-rerun-") as tmp:
        # Discarded: a process's first graph run pays for page faults and lazy imports, which would flatter the view.
        _one(min(2.0, duration / rounds), Path(tmp) / "warmup.rrd")
        (Path(tmp) / "warmup.rrd").unlink(missing_ok=True)
        for i in range(rounds):
            without.append(_one(duration / rounds, None)[0])
            ctl, report = _one(duration / rounds, Path(tmp) / f"live{i}.rrd")
            with_view_.append(ctl)
            reports.append(report)
        rrd_mb = sum(p.stat().st_size for p in Path(tmp).glob("*.rrd")) / 1e6

    def med(rows: list[dict], key: str) -> float:
        return round(float(np.median([r[key] for r in rows])), 1)

    p99_without, p99_with = med(without, "period_error_p99_us"), med(with_view_, "period_error_p99_us")

    def pooled(rows: list[dict]) -> float:
        return round(float(np.percentile(np.concatenate([r["lateness_us"] for r in rows]), 99)), 1)

    pooled_without, pooled_with = pooled(without), pooled(with_view_)
    return {
        # The p99 of every tick of a side's rounds together: the loop's p99 over the run. The median of the
        # per-round p99s (2,500 ticks each) is kept beside it; it moves about twice as much between runs.
        "p99_us_without": pooled_without,
        "p99_us_with": pooled_with,
        "ratio": round(pooled_with / pooled_without, 2),
        "p99_us_round_median_without": p99_without,
        "p99_us_round_median_with": p99_with,
        "ratio_round_median": round(p99_with / p99_without, 2),
        "p50_us_without": med(without, "period_error_p50_us"),
        "p50_us_with": med(with_view_, "period_error_p50_us"),
        "p99_us_without_rounds": [round(r["period_error_p99_us"], 1) for r in without],
        "p99_us_with_rounds": [round(r["period_error_p99_us"], 1) for r in with_view_],
        # This process's CPU outside the `load` node (graph nodes, ZeroMQ's threads, the tap), median of rounds.
        "main_process_cpu_ms_per_s_without": med(without, "cpu_ms_per_s"),
        "main_process_cpu_ms_per_s_with": med(with_view_, "cpu_ms_per_s"),
        "ticks_with": sum(r["ticks"] for r in with_view_),
        "overruns_without": sum(r["overruns"] for r in without),
        "overruns_with": sum(r["overruns"] for r in with_view_),
        "messages_to_view_process": sum(r.get("crossed", 0) for r in reports),
        "messages_logged": sum(r.get("messages", 0) for r in reports),
        "view_in_own_process": all(r.get("pid") not in (None, os.getpid()) for r in reports),
        "view_niceness": reports[0].get("niceness") if reports else None,
        "rrd_mb": round(rrd_mb, 1),
        "duration_s": duration,
        "rounds": rounds,
        "view_process": "own process group, fed by a 10 Hz tap in the graph's process, as `launch --rerun` adds it",
        "target_met": bool(pooled_with / pooled_without <= 1.3),
        "machine": machine(),
    }


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=40.0, help="seconds per side, split over the rounds")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    emit(run(args.duration, args.rounds), args.json)


if __name__ == "__main__":
    main()
