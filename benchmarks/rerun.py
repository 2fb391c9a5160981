"""What a live Rerun view costs a control loop: the 500 Hz node of benchmarks/scheduler.py, with and without
`launch --rerun FILE.rrd` streaming both 640x480 cameras and the control channel.

    python -m benchmarks.rerun --json [--duration 20]

Same graph as benchmarks/scheduler.py (control at `priority: 50`, two 30 fps cameras, a core-saturating numpy
node); the view node is added exactly as `robotflow launch --rerun` adds it (its own process on the wall clock).
Both runs happen in this process, the baseline first. Reports the control node's p99 period error in each and
their ratio.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import tempfile
from pathlib import Path

from benchmarks._util import emit, machine, parser
from benchmarks.scheduler import GRAPH
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import Scheduler
from robotflow.views.rerun import with_view


def run(duration: float) -> dict:
    base = Scheduler(parse_graph(GRAPH, "benchmarks/rerun.py"), duration_s=duration).run()
    assert base.ok, base
    with tempfile.TemporaryDirectory(prefix="robotflow-bench-rerun-") as tmp:
        rrd = Path(tmp) / "live.rrd"
        spec = with_view(
            parse_graph(GRAPH, "benchmarks/rerun.py"), str(rrd), ("cam_a/frame", "cam_b/frame", "control/count")
        )
        sched = Scheduler(spec, duration_s=duration)
        viewed = sched.run()
        assert viewed.ok, viewed
        rrd_mb = rrd.stat().st_size / 1e6
    report = next(iter(r for name, r in sched.reports.items() if name.startswith("rerun_view")), {})
    p99_without = base.stats["nodes"]["control"]["period_error_p99_us"]
    p99_with = viewed.stats["nodes"]["control"]["period_error_p99_us"]
    return {
        "p99_us_without": round(p99_without, 1),
        "p99_us_with": round(p99_with, 1),
        "ratio": round(p99_with / p99_without, 2),
        "p50_us_without": round(base.stats["nodes"]["control"]["period_error_p50_us"], 1),
        "p50_us_with": round(viewed.stats["nodes"]["control"]["period_error_p50_us"], 1),
        "ticks_with": viewed.stats["nodes"]["control"]["ticks"],
        "overruns_with": viewed.stats["nodes"]["control"]["overruns"],
        "messages_logged": report.get("messages"),
        "view_in_own_process": report.get("pid") not in (None, os.getpid()),
        "view_niceness": report.get("niceness"),
        "rrd_mb": round(rrd_mb, 1),
        "duration_s": duration,
        "view_process": "own process group (ipc channels), as `robotflow launch --rerun` adds it",
        "target_met": bool(p99_with / p99_without <= 1.3),
        "machine": machine(),
    }


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0)
    args = ap.parse_args()
    emit(run(args.duration), args.json)


if __name__ == "__main__":
    main()
