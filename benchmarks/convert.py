"""Episode -> LeRobot dataset conversion: robotflow's converter vs LeRobot's default recording path.

    python -m benchmarks.convert --json [--episodes 4] [--seconds 10] [--height 240 --width 320]

Both sides read the same synthetic episode files (tests/episode_factory.py, camera-like textured
JPEG frames at 15 Hz, arm at 100 Hz) through the same codec and resampling, so the difference is
only how frames reach the dataset:

- robotflow: ``robotflow.codecs.convert`` (LeRobot streaming encoding, JPEG decoding prefetched in a
  helper thread, backpressure instead of dropped frames, one temp dir + rename);
- baseline: ``LeRobotDataset.create(repo_id, fps, features, root)`` with default settings, then
  ``add_frame`` for every frame and ``save_episode`` per episode, ``finalize`` at the end (PNG files
  per frame, SVT-AV1 encoding per episode: what LeRobot's own recording scripts do by default).

It checks that both datasets have the same number of episodes and frames and the same features, then
prints ``{"episodes", "frames", "robotflow_s", "baseline_s", "speedup", ...}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # episode_factory lives with the tests (no simulator needed)


def _features_signature(features: dict) -> dict:
    """dtype/shape/names per feature, ignoring LeRobot's per-video encoder info (codec differs)."""
    return {k: (v["dtype"], tuple(v["shape"]), tuple(v.get("names") or ())) for k, v in features.items()}


def cpu_seconds() -> float:
    """User+system CPU of this process (all threads) and its waited-for children (LeRobot's encoder
    pool). Reported beside wall time because the benchmark machines are shared."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_baseline(input_dir: Path, out: Path, codec, fps: int) -> int:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robotflow.codecs.export import encode_episode, image_chunk, plan_episodes
    from robotflow.recording.reader import EpisodeFile

    planned, _ = plan_episodes(input_dir, codec, fps)
    ds = LeRobotDataset.create(repo_id="bench/baseline", fps=fps, features=codec.features(), root=out)
    frames = 0
    for p in planned:
        with EpisodeFile(p.path) as ep:
            enc = encode_episode(ep, p, codec)
            imgs = {k: image_chunk(ep, enc, codec, k, 0, enc.num_frames) for k in codec.camera_keys}
            for i in range(enc.num_frames):
                frame = {"observation.state": enc.state[i], "action": enc.action[i], "task": p.task}
                for k in codec.camera_keys:
                    frame[k] = imgs[k][i]
                ds.add_frame(frame)
            ds.save_episode()
            frames += enc.num_frames
    ds.finalize()
    return frames


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--codec", default="eepose_absolute")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print only the JSON result line")
    ap.add_argument("--keep", type=Path, default=None, help="keep the work dir here")
    args = ap.parse_args(argv)

    logging.disable(logging.WARNING)  # LeRobot logs each encoded episode at INFO/WARNING
    from datasets import disable_progress_bars
    from episode_factory import write_episodes

    from benchmarks._util import machine

    disable_progress_bars()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robotflow.codecs import ConvertOptions, convert, get_codec
    from robotflow.codecs.export import quiet_video_logs, video_backend

    quiet_video_logs()
    work = args.keep or Path(tempfile.mkdtemp(prefix="rf-bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        episodes_dir = work / "episodes"
        if not episodes_dir.exists():
            write_episodes(
                episodes_dir,
                args.episodes,
                duration_s=args.seconds,
                image_shape=(args.height, args.width),
                textured=True,
            )
        codec = get_codec(args.codec, image_size=(args.height, args.width), fps=args.fps)
        for d in ("robotflow", "baseline"):
            shutil.rmtree(work / d, ignore_errors=True)

        t, c = time.perf_counter(), cpu_seconds()
        summary = convert(episodes_dir, work / "robotflow", codec, ConvertOptions(progress=False, workers=args.workers))
        robotflow_s, robotflow_cpu = time.perf_counter() - t, cpu_seconds() - c

        t, c = time.perf_counter(), cpu_seconds()
        baseline_frames = run_baseline(episodes_dir, work / "baseline", codec, args.fps)
        baseline_s, baseline_cpu = time.perf_counter() - t, cpu_seconds() - c

        backend = video_backend()
        a = LeRobotDataset("bench/robotflow", root=work / "robotflow", video_backend=backend)
        b = LeRobotDataset("bench/baseline", root=work / "baseline", video_backend=backend)
        same_frames = a.num_frames == b.num_frames == summary.frames == baseline_frames
        same_episodes = a.num_episodes == b.num_episodes == summary.episodes
        same_features = _features_signature(a.meta.features) == _features_signature(b.meta.features)
        result = {
            "episodes": summary.episodes,
            "frames": summary.frames,
            "robotflow_s": round(robotflow_s, 3),
            "baseline_s": round(baseline_s, 3),
            "speedup": round(baseline_s / robotflow_s, 2),
            "robotflow_cpu_s": round(robotflow_cpu, 3),
            "baseline_cpu_s": round(baseline_cpu, 3),
            "same_frames": bool(same_frames),
            "same_episodes": bool(same_episodes),
            "same_features": bool(same_features),
            # Same video codec on both sides, so even LeRobot's recorded encoder info matches.
            "same_video_info": a.meta.features == b.meta.features,
            "image_size": [args.height, args.width],
            "cameras": len(codec.camera_keys),
            "robotflow_bytes": summary.size_bytes,
            "baseline_bytes": sum(f.stat().st_size for f in (work / "baseline").rglob("*") if f.is_file()),
            "workers": args.workers,
            "machine": machine(),
        }
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>16}: {v}")
    if not (result["same_frames"] and result["same_episodes"] and result["same_features"]):
        raise SystemExit("benchmark check failed: datasets differ in frames, episodes or features")
    return result


if __name__ == "__main__":
    main()
