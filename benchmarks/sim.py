"""Simulation speed: the stack-cubes graph (MuJoCo Panda, IK arm, task, scripted expert) with two 320x240
cameras at 15 fps, rendered offscreen (headless), on the virtual clock as fast as possible.

    python -m benchmarks.sim --json [--duration 20]

real_time_factor: simulated seconds per wall second over the run (all nodes included; model compilation
and the GL backend probe are done before timing). render_ms_p50: median time to render and read back one
320x240 frame, over both cameras.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # the runtime is single-threaded here; BLAS threads only contend

import numpy as np

import robotflow.drivers.sim.nodes  # noqa: F401,E402  (registers sim.*)
import robotflow.drivers.teleop_scripted  # noqa: F401,E402
from benchmarks._util import emit, machine, parser  # noqa: E402
from robotflow.drivers.sim.render import gl_backend  # noqa: E402
from robotflow.drivers.sim.world import SimWorld  # noqa: E402
from robotflow.runtime.graph import load_graph  # noqa: E402
from robotflow.runtime.scheduler import Scheduler  # noqa: E402

GRAPH = Path(__file__).resolve().parents[1] / "graphs" / "sim_stack_cubes.yaml"


def run(duration: float) -> dict:
    backend = gl_backend()
    SimWorld("stack_cubes")  # compile the model once before timing (cached per process)
    graph = load_graph(GRAPH, overrides=["task.episodes=1000", "task.timeout_s=30"])
    sched = Scheduler(graph, duration_s=duration)
    t0 = time.perf_counter()
    result = sched.run()
    total = time.perf_counter() - t0
    assert result.ok, result
    world = sched.reports["world"]
    cams = [sched.nodes[n] for n in ("wrist_camera", "front_camera")]
    render = np.concatenate([np.asarray(c.render_ms) for c in cams])
    task = sched.reports.get("task") or {}
    return {
        "real_time_factor": world["real_time_factor"],
        "render_ms_p50": round(float(np.percentile(render, 50)), 2),
        "render_ms_p99": round(float(np.percentile(render, 99)), 2),
        "frames": int(len(render)),
        "sim_time_s": world["sim_time_s"],
        "wall_s_with_setup": round(total, 2),
        "episodes_finished": task.get("episodes"),
        "expert_success_rate": task.get("success_rate"),
        "gl_backend": backend,
        "cameras": "2 x 320x240 @ 15 fps",
        "physics_hz": 500,
        **machine(),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=20.0, help="simulated seconds to run")
    args = p.parse_args()
    emit(run(args.duration), args.json)


if __name__ == "__main__":
    main()
