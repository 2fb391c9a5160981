"""Soak: a long recording of three 640x480 cameras at 30 fps and a 1 kHz state stream (not in `make test`).

    python -m benchmarks.soak --json [--minutes 30] [--episode-s 60]

The graph of `benchmarks.recording` (three camera nodes making fresh 640x480 frames, a 1 kHz state counter and a
500 Hz control loop), recorded for --minutes as back-to-back episodes of --episode-s, the recorder in its own
process as `robotflow record` runs it. Every 5 s the benchmark samples the resident memory (RSS) of each process
of the run. Reported:
- drops: the recorder's inputs' dropped messages plus the sequence gaps in its episodes (goal: 0);
- RSS growth after the first minute: the largest RSS after minute 1 minus the RSS at minute 1, per process and
  summed (goal: at most 50 MB);
- the writer's backlog: its largest, in messages and MB, and how often the recorder had to hold its inputs back
  because the backlog reached its bound (0: the writer kept up without leaning on backpressure);
- the control loop's p99 period error, and every episode's frame counts.

The frames are one flat colour per frame (cheap to JPEG-encode); real camera images cost more to encode, which
`benchmarks.recording --duration` with real cameras would show.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import shutil
import tempfile
import threading
import time

import psutil

from benchmarks._util import emit, machine, parser
from benchmarks.recording import BASE, RECORDER
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import Scheduler

SAMPLE_S = 5.0


def _role(p: psutil.Process, me: psutil.Process) -> str:
    if p.pid == me.pid:
        return "graph (cameras, state, control)"
    cmd = " ".join(p.cmdline())
    return "multiprocessing resource tracker" if "resource_tracker" in cmd else f"recorder process group (pid {p.pid})"


class RssSampler(threading.Thread):
    """Samples the RSS (MB) of this process and its children every SAMPLE_S seconds, by pid."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.t0 = time.monotonic()
        self.samples: dict[int, list[tuple[float, float]]] = {}
        self.names: dict[int, str] = {}
        self._done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._done.is_set():
            t = time.monotonic() - self.t0
            for p in [me, *me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss / 2**20
                    self.names.setdefault(p.pid, _role(p, me))
                except psutil.Error:
                    continue
                self.samples.setdefault(p.pid, []).append((t, rss))
            self._done.wait(SAMPLE_S)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def growth(self, after_s: float = 60.0) -> dict:
        """Per process: RSS at `after_s`, the largest later, and the growth between them (MB)."""
        out = {}
        for pid, series in self.samples.items():
            later = [(t, r) for t, r in series if t >= after_s]
            if len(later) < 2:
                continue
            start = later[0][1]
            peak = max(r for _, r in later)
            out[self.names[pid]] = {
                "rss_at_1min_mb": round(start, 1),
                "rss_max_mb": round(peak, 1),
                "growth_mb": round(peak - start, 1),
                "rss_end_mb": round(later[-1][1], 1),
            }
        return out


def run(minutes: float, episode_s: float) -> dict:
    out = tempfile.mkdtemp(prefix="robotflow-soak-")
    try:
        episodes = max(1, round(minutes * 60 / episode_s))
        text = (BASE + RECORDER.replace("PROCESS", "recorder")).replace("OUT", out)
        text = text.replace("episodes: 1, length_s: DUR", f"episodes: {episodes}, length_s: {episode_s}")
        sched = Scheduler(parse_graph(text, "soak.yaml"))
        sampler = RssSampler()
        sampler.start()
        t0 = time.monotonic()
        result = sched.run()
        wall = time.monotonic() - t0
        sampler.stop()
        if not result.ok:
            raise SystemExit(f"soak: the graph stopped early: {result.reason} {result.error or ''}")
        report = sched.reports["recorder"]
        chans = result.stats["channels"]
        inputs = [i for c in chans.values() for name, i in c["inputs"].items() if name.startswith("recorder.")]
        gaps = sum(int(ep["gaps"]) for ep in report["episodes"])
        dropped = sum(int(i["dropped"]) for i in inputs)
        growth = sampler.growth()
        total_growth = round(sum(g["growth_mb"] for g in growth.values()), 1)
        size = sum(f.stat().st_size for f in os.scandir(out) if f.is_file())
        frames = [ep["frames"] for ep in report["episodes"]]
        return {
            "minutes": round(wall / 60, 2),
            "episodes": len(report["episodes"]),
            "dropped": dropped + gaps,
            "dropped_inputs": dropped,
            "sequence_gaps": gaps,
            "rss_growth_after_1min_mb": total_growth,
            "rss_by_process": growth,
            "rss_goal_met": total_growth <= 50.0,
            "writer_backlog_max": report["backlog_max"],
            "writer_backlog_max_mb": round(report.get("backlog_max_mb", 0.0), 1),
            # Waits mean the writer fell behind and the recorder held its inputs back (the backlog's bound).
            "writer_backpressure_waits": report.get("backpressure_waits", 0),
            "writer_backpressure_ms": report.get("backpressure_ms", 0),
            "control_p99_period_error_us": round(result.stats["nodes"]["control"]["period_error_p99_us"], 1),
            "frames_per_episode_min": {ch: min(f[ch] for f in frames) for ch in frames[0]},
            "frames_per_episode_max": {ch: max(f[ch] for f in frames) for ch in frames[0]},
            # What the sources achieved (nominal: cameras 30, state 1000 per second): a loaded machine makes the
            # nodes miss ticks, which is not a recorder drop.
            "rate_hz_median": {
                ch: round(sorted(f[ch] for f in frames)[len(frames) // 2] / episode_s, 1) for ch in frames[0]
            },
            "recorded_gb": round(size / 1e9, 2),
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "machine": machine(),
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to record")
    ap.add_argument("--episode-s", type=float, default=60.0, help="each episode's length")
    args = ap.parse_args()
    if args.minutes <= 0 or args.episode_s <= 0:
        raise SystemExit("soak: --minutes and --episode-s must be positive")
    emit(run(args.minutes, args.episode_s), args.json)


if __name__ == "__main__":
    main()
