"""Recording load: three 640x480 cameras at 30 fps and a 1 kHz state stream, recorded for one episode.

    python -m benchmarks.recording --json [--duration 60]

Runs the same graph twice in one process, with and without the recorder, and reports drops, how long
after the episode's end its file was closed, and the 500 Hz control node's p99 period error in both.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import tempfile

from benchmarks._util import emit, machine, parser
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import Scheduler

BASE = """
nodes:
  - {name: task, type: test.episodes, rate: 100, params: {episodes: 1, length_s: DUR, gap_s: 0.5}}
  - {name: control, type: test.counter, rate: 500}
  - {name: state, type: test.counter, rate: 1000}
  - {name: cam_a, type: test.frames, rate: 30, params: {width: 640, height: 480}}
  - {name: cam_b, type: test.frames, rate: 30, params: {width: 640, height: 480}}
  - {name: cam_c, type: test.frames, rate: 30, params: {width: 640, height: 480}}
"""
RECORDER = """
  - name: recorder
    type: record.hdf5
    process: PROCESS
    rate: 50
    params: {output_dir: "OUT", image_encoding: jpeg, jpeg_quality: 90}
    inputs:
      episode: task/episode
      a: {source: cam_a/frame, delivery: queue}
      b: {source: cam_b/frame, delivery: queue}
      c: {source: cam_c/frame, delivery: queue}
      s: {source: state/count, delivery: queue, queue_size: 4096}
"""


def run(duration: float, in_process: bool = False) -> dict:
    out = tempfile.mkdtemp(prefix="robotflow-bench-rec-")
    rec_yaml = RECORDER.replace("    process: PROCESS\n", "") if in_process else RECORDER.replace("PROCESS", "recorder")
    with_rec = parse_graph((BASE + rec_yaml).replace("DUR", str(duration)).replace("OUT", out), "recording.yaml")
    without = parse_graph(BASE.replace("DUR", str(duration)), "baseline.yaml")
    base = Scheduler(without).run()
    sched = Scheduler(with_rec)
    rec = sched.run()
    assert base.ok and rec.ok, (base, rec)
    report = sched.reports["recorder"]
    ep = report["episodes"][0]
    chans = rec.stats["channels"]
    inputs = [i for c in chans.values() for name, i in c["inputs"].items() if name.startswith("recorder.")]
    p99 = rec.stats["nodes"]["control"]["period_error_p99_us"]
    p99_base = base.stats["nodes"]["control"]["period_error_p99_us"]
    return {
        "streams": {ch: n for ch, n in ep["frames"].items()},
        "duration_s": round(ep["duration_s"], 2),
        "dropped": int(sum(i["dropped"] for i in inputs) + ep["gaps"]),
        "close_s": round((ep["closed_monotonic_ns"] - ep["end_timestamp_ns"]) / 1e9, 3),
        "p99_period_error_us": round(p99, 1),
        "p99_period_error_us_without_recorder": round(p99_base, 1),
        "p99_ratio": round(p99 / p99_base, 2),
        "writer_backlog_max": report["backlog_max"],
        "recorder_process": "same process as the control loop" if in_process else "own process (ipc channels)",
        "file_mb": round(os.path.getsize(ep["path"]) / 1e6, 1),
        "machine": machine(),
    }


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="run the recorder in the control loop's process (default: its own process group)",
    )
    args = ap.parse_args()
    emit(run(args.duration, args.in_process), args.json)


if __name__ == "__main__":
    main()
