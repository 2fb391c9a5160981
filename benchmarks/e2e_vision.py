"""Camera-only policies end to end: scripted demos -> camera dataset -> ACT from cameras -> 50 unseen seeds per task.

    python -m benchmarks.e2e_vision [--out out/e2e_vision] [--json]       # `make e2e-vision`
    python -m benchmarks.e2e_vision --tasks pick_place --jobs 1           # one task, one core
    python -m benchmarks.e2e_vision --small --out /tmp/e2e                # the pipeline check in `make test`

The deployable counterpart of `benchmarks.e2e_lowdim`: the codec `ee_cams_rel` gives the policy the wrist and front
cameras and the robot's own EE pose and grip, nothing the simulator alone knows (the codec refuses `task/objects`),
with chunk positions relative to the EE as in `ee_objects_rel`. Every stage is the public command line
(`robotflow record`, `convert`, `train`, `rollout`).

A camera run takes hours on two CPU cores, so the run resumes: re-running with the same --out skips the demos
and datasets already made, continues training from the last checkpoint (`robotflow train --resume`) up to
--steps, and rolls out the last checkpoint. The recipe and why: README, "Camera-only result".
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks._util import parser
from benchmarks.e2e_lowdim import TASK_TEXT, _final_loss, _robotflow, report, rollout_result, run_costs, run_parallel
from benchmarks.e2e_lowdim import table as lowdim_table

NORMALIZATION = {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
RUN_NAME = "act_vision"


@dataclass
class VisionConfig:
    tasks: tuple[str, ...] = ("pick_place", "stack_cubes")
    codec: str = "ee_cams_rel"  # cameras + EE pose + grip, chunk positions relative to the EE
    demos: int = 100  # scripted demonstrations per task (seeds 0..demos-1)
    expert_noise: float = 0.5
    fps: int = 15
    image_size: str = "96x128"  # height x width stored and fed to the policy (4:3 like the cameras)
    steps: int = 12000
    save_freq: int = 1000
    batch_size: int = 8
    dim_model: int = 256
    dim_feedforward: int = 1024
    chunk_size: int = 20
    n_action_steps: int = 10
    lr: float = 1e-4  # the backbone too: it starts from random weights, LeRobot's 1e-5 is for ImageNet ones
    lr_schedule: str = "cosine"
    use_vae: bool = False
    bf16: bool = True  # bfloat16 autocast: ~25% faster steps on these CPUs (avx512_bf16)
    frames_in_memory: bool = True  # decode the videos once instead of per sample
    image_shift_px: int = 4  # random-shift augmentation
    eval_episodes: int = 50
    eval_seed: int = 1000  # unseen: the demos used seeds 0..demos-1
    eval_timeout_s: float = 30.0
    jobs: int = 2  # tasks side by side (one process and one torch thread each); 1: one task after the other
    train_args: list[str] = field(default_factory=list)

    @classmethod
    def small(cls) -> VisionConfig:
        """The pipeline check: a couple of demos, a few steps, one short rollout; success is not expected."""
        return cls(
            tasks=("pick_place",),
            demos=2,
            image_size="24x32",
            steps=2,
            save_freq=2,
            batch_size=2,
            dim_model=32,
            dim_feedforward=64,
            image_shift_px=2,
            eval_episodes=1,
            eval_timeout_s=2.0,
        )


def _run_vision(cmds: dict[str, list[str]], logs: Path, stage: str) -> float:
    return run_parallel(cmds, logs, stage, name="e2e-vision")


def last_step(run_dir: Path) -> int | None:
    """The step of the run's last checkpoint, or None before the first one."""
    last = run_dir / "checkpoints" / "last"
    return int(last.resolve().name) if last.exists() else None


def _record_cmd(cfg: VisionConfig, task: str, demos: Path) -> list[str]:
    if demos.exists():  # an interrupted recording: start the demos again, seeds 0.. must all be there
        shutil.rmtree(demos)
    return [
        *_robotflow(),
        "record",
        f"graphs/sim_{task}.yaml",
        "--episodes",
        str(cfg.demos),
        "--output-dir",
        str(demos),
        "--task",
        TASK_TEXT[task],
        "--set",
        f"teleop.noise={cfg.expert_noise}",
    ]


def _convert_cmd(cfg: VisionConfig, d: Path) -> list[str]:
    return [
        *_robotflow(),
        "convert",
        "--input",
        str(d / "demos"),
        "--codec",
        cfg.codec,
        "--output-dir",
        str(d / "dataset"),
        "--fps",
        str(cfg.fps),
        "--image-size",
        cfg.image_size,
        "--json",
    ]


def _train_cmd(cfg: VisionConfig, d: Path) -> list[str]:
    resume = last_step(d / "runs" / RUN_NAME) is not None
    flags = ["--resume"] * resume + ["--bf16"] * cfg.bf16 + ["--frames-in-memory"] * cfg.frames_in_memory
    return [
        *_robotflow(),
        "train",
        *("--dataset-root", str(d / "dataset"), "--run-name", RUN_NAME, "--output-dir", str(d / "runs")),
        *("--steps", str(cfg.steps), "--save-freq", str(cfg.save_freq), "--batch-size", str(cfg.batch_size)),
        *("--device", "cpu", "--no-pretrained-backbone", "--num-workers", "0"),
        *("--dim-model", str(cfg.dim_model), "--chunk-size", str(cfg.chunk_size)),
        *("--n-action-steps", str(cfg.n_action_steps), "--lr-schedule", cfg.lr_schedule),
        *("--log-freq", str(max(1, min(100, cfg.steps // 10))), "--image-shift", str(cfg.image_shift_px)),
        f"--policy-arg=dim_feedforward={cfg.dim_feedforward}",
        f"--policy-arg=optimizer_lr={cfg.lr}",
        f"--policy-arg=optimizer_lr_backbone={cfg.lr}",
        f"--policy-arg=use_vae={json.dumps(cfg.use_vae)}",
        f"--policy-arg=normalization_mapping={json.dumps(NORMALIZATION)}",
        *flags,
        *cfg.train_args,
    ]


def _rollout_cmd(cfg: VisionConfig, task: str, d: Path) -> list[str]:
    return [
        *_robotflow(),
        "rollout",
        *("--checkpoints-dir", str(d / "runs" / RUN_NAME), "--graph", f"graphs/sim_{task}_vision_policy.yaml"),
        *("--episodes", str(cfg.eval_episodes), "--seed", str(cfg.eval_seed), "--workers", "1"),
        *("--set", f"task.timeout_s={cfg.eval_timeout_s}", "--summary", str(d / "rollout.json")),
    ]


def _stages(cfg: VisionConfig, tasks: tuple[str, ...], out: Path, say) -> dict[str, float]:
    """Record, convert, train and roll out `tasks` side by side, skipping what an earlier run already did."""
    logs, d = out / "logs", {t: out / t for t in tasks}
    stages: dict[str, float] = {}
    todo = [t for t in tasks if len(list((d[t] / "demos").glob("episode_*.h5"))) < cfg.demos]
    say(f"record {cfg.demos} demos: {', '.join(todo) or 'done already'}")
    stages["record"] = _run_vision({t: _record_cmd(cfg, t, d[t] / "demos") for t in todo}, logs, "record")
    todo = [t for t in tasks if not (d[t] / "dataset" / "meta" / "info.json").is_file()]
    say(f"convert (codec {cfg.codec}, {cfg.image_size}): {', '.join(todo) or 'done already'}")
    stages["convert"] = _run_vision({t: _convert_cmd(cfg, d[t]) for t in todo}, logs, "convert")
    todo = [t for t in tasks if (last_step(d[t] / "runs" / RUN_NAME) or 0) < cfg.steps]
    starts = ", ".join(f"{t} from step {last_step(d[t] / 'runs' / RUN_NAME) or 0}" for t in todo)
    say(f"train up to step {cfg.steps}: {starts or 'done already'}")
    stages["train"] = _run_vision({t: _train_cmd(cfg, d[t]) for t in todo}, logs, "train")
    if cfg.eval_episodes < 1:  # train only (`--episodes 0`): the last rollout's results stand
        say("roll out: skipped (--episodes 0)")
        stages["rollout"] = 0.0
        return stages
    say(f"roll out {cfg.eval_episodes} unseen seeds per task (from seed {cfg.eval_seed})")
    stages["rollout"] = _run_vision({t: _rollout_cmd(cfg, t, d[t]) for t in tasks}, logs, "rollout")
    return stages


def _task_result(cfg: VisionConfig, task: str, out: Path) -> dict:
    d = out / task
    spec = json.loads((d / "dataset" / "meta" / "robotflow_codec.json").read_text())
    info = json.loads((d / "dataset" / "meta" / "info.json").read_text())
    return {
        **rollout_result(d / "rollout.json"),
        "demo_frames": info["total_frames"],
        "features": sorted(spec["features"]),
        "checkpoint_step": last_step(d / "runs" / RUN_NAME),
        "final_loss": _final_loss(out / "logs" / f"train_{task}.log"),
    }


def run(cfg: VisionConfig, out: Path, progress: bool = True) -> dict:
    """The whole pipeline in `out` (resuming whatever an earlier run there left); returns the result document."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    load0, t_all = os.getloadavg(), time.perf_counter()
    groups = [cfg.tasks] if cfg.jobs > 1 else [(t,) for t in cfg.tasks]
    stages: dict[str, float] = {}
    for group in groups:
        for stage, secs in _stages(cfg, group, out, say).items():
            stages[stage] = stages.get(stage, 0.0) + secs
    return {
        "config": asdict(cfg),
        "results": {t: _task_result(cfg, t, out) for t in cfg.tasks},
        **run_costs(stages, t_all, load0, out),
    }


def table(doc: dict) -> str:
    return lowdim_table(doc, checkpoint_column=True, total_label="this invocation")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", default="out/e2e_vision", help="working directory; an earlier run there is resumed")
    p.add_argument("--small", action="store_true", help="the quick pipeline check (no success expected)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (pick_place,stack_cubes)")
    p.add_argument("--jobs", type=int, default=None, help="tasks side by side (2), or 1: one after the other")
    p.add_argument("--steps", type=int, default=None, help="override the training steps (a longer --steps resumes)")
    p.add_argument("--demos", type=int, default=None, help="override the demonstrations per task")
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="override the evaluation episodes per task (0: train only, keep the last rollout)",
    )
    p.add_argument("--image-size", default=None, help="override the image size, HxW")
    args = p.parse_args()
    cfg = VisionConfig.small() if args.small else VisionConfig()
    if args.tasks:
        cfg.tasks = tuple(t for t in args.tasks.split(",") if t)
        unknown = sorted(set(cfg.tasks) - set(TASK_TEXT))
        if unknown:
            raise SystemExit(f"e2e-vision: unknown task {unknown[0]!r}; tasks: {', '.join(TASK_TEXT)}")
    overrides = {"jobs": args.jobs, "steps": args.steps, "demos": args.demos, "eval_episodes": args.episodes}
    overrides["image_size"] = args.image_size
    for name, value in overrides.items():
        if value is not None:
            setattr(cfg, name, value)
    out = Path(args.out)
    doc = run(cfg, out, progress=True)
    report(doc, out, args.json, table(doc))


if __name__ == "__main__":
    main()
