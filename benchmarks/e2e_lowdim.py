"""The CPU learning result end to end: scripted demos -> low-dim dataset -> ACT -> 50 unseen seeds per task.

    python -m benchmarks.e2e_lowdim [--out out/e2e_lowdim] [--json]       # `make e2e-lowdim`
    python -m benchmarks.e2e_lowdim --small --out /tmp/e2e                 # the pipeline check in `make test`

Every stage is the public command line (`robotflow record`, `convert`, `train`, `rollout`), so the run is
what a user would type. The privileged low-dim codec `ee_objects_rel` (EE pose + grip, and the task's object
poses from `task/objects` as `observation.environment_state`, positions relative to the EE; no cameras) makes
a policy trainable on two CPU cores. The two tasks are independent, so each stage runs them side by side, one process and one torch
thread each: on two cores that uses both without the thread oversubscription of two 2-thread processes.
The config and why it is what it is: README, "Low-dim result".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks._util import emit, machine, parser

NORMALIZATION = {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ENV": "MEAN_STD", "ACTION": "MEAN_STD"}
TASK_TEXT = {"stack_cubes": "stack the red cube on the green cube", "pick_place": "put the cube in the bin"}


@dataclass
class E2EConfig:
    tasks: tuple[str, ...] = ("stack_cubes", "pick_place")
    codec: str = "ee_objects_rel"  # object positions and actions relative to the EE: README, "Low-dim result"
    demos: int = 100  # scripted demonstrations per task (seeds 0..demos-1)
    expert_noise: float = 0.5  # per-episode plan variation of the scripted expert (state diversity)
    fps: int = 15
    steps: int = 6000
    batch_size: int = 32
    dim_model: int = 128
    dim_feedforward: int = 512
    chunk_size: int = 20
    n_action_steps: int = 10
    lr: float = 3e-4
    lr_schedule: str = "cosine"  # `robotflow train --lr-schedule`: README, "Low-dim result"
    use_vae: bool = False
    eval_episodes: int = 50
    eval_seed: int = 1000  # unseen: the demos used seeds 0..demos-1
    eval_timeout_s: float = 30.0
    workers: int = 1  # rollout worker processes per task (the tasks already run side by side)
    train_args: list[str] = field(default_factory=list)

    @classmethod
    def small(cls) -> E2EConfig:
        """The pipeline check: a couple of demos, a few steps, one short rollout; success is not expected."""
        return cls(
            tasks=("stack_cubes",),
            demos=2,
            steps=4,
            batch_size=4,
            dim_model=32,
            dim_feedforward=64,
            eval_episodes=1,
            eval_timeout_s=3.0,
        )


def _robotflow() -> list[str]:
    return [sys.executable, "-m", "robotflow.scripts.cli"]


def run_parallel(cmds: dict[str, list[str]], logs: Path, stage: str, name: str = "e2e-lowdim") -> float:
    """Run one command per task side by side, each appending to its log after a `$ command` line; returns the
    stage's wall time. A failure ends the run with the log's last line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.setdefault("WANDB_MODE", "disabled")
    t0 = time.perf_counter()
    procs = {}
    for task, cmd in cmds.items():
        log = open(logs / f"{stage}_{task}.log", "a")  # noqa: SIM115 - closed below
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        procs[task] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    failed = []
    for task, (p, log) in procs.items():
        if p.wait() != 0:
            failed.append(task)
        log.close()
    if failed:
        tail = (logs / f"{stage}_{failed[0]}.log").read_text().strip().splitlines()[-1:]
        raise SystemExit(f"{name}: {stage} failed for {failed[0]} (see {logs}/{stage}_{failed[0]}.log): {tail}")
    return time.perf_counter() - t0


def record_command(cfg: E2EConfig, task: str, out: Path, episodes: int | None = None) -> list[str]:
    """`robotflow record` of the scripted expert's demos for `task` (seeds 0..)."""
    return [
        *_robotflow(),
        "record",
        f"graphs/sim_{task}_lowdim.yaml",
        *("--episodes", str(episodes or cfg.demos), "--output-dir", str(out)),
        *("--task", TASK_TEXT[task], "--set", f"teleop.noise={cfg.expert_noise}"),
    ]


def convert_command(cfg: E2EConfig, episodes: Path, dataset: Path, *extra: str) -> list[str]:
    """`robotflow convert` (or `convert append` with extra flags) of episodes with the config's codec."""
    args = ["--input", str(episodes), "--codec", cfg.codec, "--output-dir", str(dataset), "--json", *extra]
    return [*_robotflow(), "convert", *args]


def train_command(cfg: E2EConfig, dataset: Path, runs: Path, run_name: str, steps: int, *extra: str) -> list[str]:
    """`robotflow train` of the config's ACT on `dataset` into runs/run_name, for `steps`."""
    policy_args = [
        f"--policy-arg=dim_feedforward={cfg.dim_feedforward}",
        f"--policy-arg=optimizer_lr={cfg.lr}",
        f"--policy-arg=use_vae={json.dumps(cfg.use_vae)}",
        # ACT leaves ENV features unnormalised by default; object poses in metres need MEAN_STD like the state.
        f"--policy-arg=normalization_mapping={json.dumps(NORMALIZATION)}",
    ]
    sizes = ["--dim-model", str(cfg.dim_model), "--chunk-size", str(cfg.chunk_size)]
    return [
        *_robotflow(),
        "train",
        *("--dataset-root", str(dataset), "--run-name", run_name, "--output-dir", str(runs)),
        *("--steps", str(steps), "--save-freq", str(steps), "--batch-size", str(cfg.batch_size)),
        *("--device", "cpu", "--n-action-steps", str(cfg.n_action_steps), "--num-workers", "0"),
        "--no-pretrained-backbone",  # no images: nothing to load, and no network wait for it
        *("--log-freq", str(max(1, min(500, steps // 10))), "--lr-schedule", cfg.lr_schedule),
        *(extra or (*sizes, *policy_args)),  # a fine-tuning run (--init-from) takes sizes from its checkpoint
        *cfg.train_args,
    ]


def rollout_command(
    cfg: E2EConfig, run: Path, graph: str, summary: Path, seed: int, episodes: int, *extra: str
) -> list[str]:
    """`robotflow rollout` of a run's last checkpoint on `episodes` seeds from `seed`."""
    return [
        *_robotflow(),
        "rollout",
        *("--checkpoints-dir", str(run), "--graph", graph, "--episodes", str(episodes)),
        *("--seed", str(seed), "--workers", str(cfg.workers), "--set", f"task.timeout_s={cfg.eval_timeout_s}"),
        *("--summary", str(summary), *extra),
    ]


def rollout_result(summary: Path) -> dict:
    """Success, its Wilson interval and the failed seeds from a `robotflow rollout --summary` file."""
    roll = json.loads(summary.read_text())
    return {
        "success": roll["successes"],
        "episodes": len(roll["episodes"]),
        "success_rate": roll["success_rate"],
        "wilson_95": roll["wilson_95"],
        "failed_seeds": [e["seed"] for e in roll["episodes"] if not e["success"]],
    }


def run_costs(stages: dict[str, float], t_all: float, load0: tuple[float, ...], out: Path) -> dict:
    """What a result document says about its run: stage and total wall times, load, machine, where it ran."""
    return {
        "stages_s": {k: round(v, 1) for k, v in stages.items()},
        "total_s": round(time.perf_counter() - t_all, 1),
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "machine": machine(),
        "out": str(out),
    }


def cost_line(doc: dict) -> str:
    """A result document's wall time, CPUs and load, for the line under its table."""
    return (
        f"total {doc['total_s'] / 60:.1f} min on {doc['machine']['cpus']} CPUs, load {doc['loadavg_start'][0]} "
        f"at start, {doc['loadavg_end'][0]} at end"
    )


def run(cfg: E2EConfig, out: Path, progress: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    load0 = os.getloadavg()
    t_all = time.perf_counter()
    stages: dict[str, float] = {}
    d = {t: out / t for t in cfg.tasks}

    say(f"record {cfg.demos} demos per task: {', '.join(cfg.tasks)}")
    stages["record"] = run_parallel({t: record_command(cfg, t, d[t] / "demos") for t in cfg.tasks}, logs, "record")
    say(f"convert (codec {cfg.codec})")
    convert = {t: convert_command(cfg, d[t] / "demos", d[t] / "dataset", "--fps", str(cfg.fps)) for t in cfg.tasks}
    stages["convert"] = run_parallel(convert, logs, "convert")
    say(f"train {cfg.steps} steps per task")
    train = {t: train_command(cfg, d[t] / "dataset", d[t] / "runs", "act_lowdim", cfg.steps) for t in cfg.tasks}
    stages["train"] = run_parallel(train, logs, "train")
    say(f"roll out {cfg.eval_episodes} unseen seeds per task (from seed {cfg.eval_seed})")
    rollout = {
        t: rollout_command(
            cfg,
            d[t] / "runs" / "act_lowdim",
            f"graphs/sim_{t}_lowdim_policy.yaml",
            d[t] / "rollout.json",
            cfg.eval_seed,
            cfg.eval_episodes,
        )
        for t in cfg.tasks
    }
    stages["rollout"] = run_parallel(rollout, logs, "rollout")
    results = {}
    for t in cfg.tasks:
        conv = json.loads((logs / f"convert_{t}.log").read_text().strip().splitlines()[-1])
        results[t] = {
            **rollout_result(d[t] / "rollout.json"),
            "demo_frames": conv["frames"],
            "final_loss": _final_loss(logs / f"train_{t}.log"),
        }
    return {
        "config": asdict(cfg),
        "results": results,
        **run_costs(stages, t_all, load0, out),
    }


def _final_loss(log: Path) -> float | None:
    import re

    losses = re.findall(r"loss:([0-9.]+)", log.read_text())
    return float(losses[-1]) if losses else None


def table(doc: dict, checkpoint_column: bool = False, total_label: str = "total") -> str:
    """The success table of a result document (e2e-vision adds the checkpoint step it rolled out)."""
    ckpt_head, ckpt_rule = (" checkpoint |", "---|") if checkpoint_column else ("", "")
    lines = [
        f"| task | success (unseen seeds) | 95% Wilson interval | demos (frames) |{ckpt_head} final train loss |",
        f"|---|---|---|---|{ckpt_rule}---|",
    ]
    cfg = doc["config"]
    for t, r in doc["results"].items():
        lo, hi = r["wilson_95"]
        ckpt = f" {r['checkpoint_step']} |" if checkpoint_column else ""
        lines.append(
            f"| {t} | {r['success']}/{r['episodes']} ({r['success_rate']:.0%}) | {lo:.0%} - {hi:.0%} "
            f"| {cfg['demos']} ({r['demo_frames']}) |{ckpt} {r['final_loss']} |"
        )
    st = doc["stages_s"]
    lines.append(
        f"\n{total_label} {doc['total_s'] / 60:.1f} min (record {st['record']:.0f} s, convert {st['convert']:.0f} s, "
        f"train {st['train']:.0f} s, rollout {st['rollout']:.0f} s) on {doc['machine']['cpus']} CPUs; "
        f"load average {doc['loadavg_start'][0]} at start, {doc['loadavg_end'][0]} at end"
    )
    return "\n".join(lines)


def report(doc: dict, out: Path, as_json: bool, text: str) -> None:
    """Write result.json into the run's directory; print the document (--json) or its table."""
    (out / "result.json").write_text(json.dumps(doc, indent=2) + "\n")
    if as_json:
        emit(doc, True)
    else:
        print(text)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", default="out/e2e_lowdim", help="working directory (demos, datasets, runs, rollouts)")
    p.add_argument("--small", action="store_true", help="the quick pipeline check (no success expected)")
    p.add_argument("--steps", type=int, default=None, help="override the training steps")
    p.add_argument("--demos", type=int, default=None, help="override the demonstrations per task")
    p.add_argument("--episodes", type=int, default=None, help="override the evaluation episodes per task")
    p.add_argument("--codec", default=None, help="override the codec (ee_objects_rel; ee_objects for absolute poses)")
    args = p.parse_args()
    cfg = E2EConfig.small() if args.small else E2EConfig()
    overrides = (("steps", args.steps), ("demos", args.demos), ("eval_episodes", args.episodes), ("codec", args.codec))
    for name, value in overrides:
        if value is not None:
            setattr(cfg, name, value)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"e2e-lowdim: {out} is not empty; remove it or pass another --out")
    doc = run(cfg, out, progress=True)
    report(doc, out, args.json, table(doc))


if __name__ == "__main__":
    main()
