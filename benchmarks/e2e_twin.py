"""The Franka twin through franky: scripted demos, a low-dim policy trained on them, and the sim-to-twin gap.

    python -m benchmarks.e2e_twin [--out out/e2e_twin] [--json]       # `make e2e-twin`
    python -m benchmarks.e2e_twin --small --out /tmp/twin              # the pipeline check

The twin (robotflow/drivers/twin) is franky-sim's MuJoCo FR3 serving libfranka's protocol on loopback, with the
task's cubes; `franka.arm` and `franka.gripper` drive it through the real franky-control, on the wall clock.

1. The scripted expert records 100 stack_cubes demos (--demos) through franky (graphs/franka_twin_stack_cubes_lowdim.yaml,
   seeds 0-19): the expert's success rate.
2. The e2e-lowdim recipe (codec `ee_objects_rel`; 12,000 steps, twice its own) is trained on them and rolled out through franky on 20 unseen
   seeds (1000-1019, graphs/franka_twin_stack_cubes_lowdim_policy.yaml).
3. The sim-to-twin gap: the same recipe trained on as many `sim.arm` demos (graphs/sim_stack_cubes_lowdim.yaml, seeds
   0-19) and rolled out on the same twin seeds.

Every stage is the public command line. Re-running with the same --out resumes: stages whose output is there
(all the demos, a dataset, a finished training run, a rollout summary) are skipped and named in `resumed`. Goals (issue 20): the expert >= 90%, the twin-trained policy >= 80%.
Twin rollouts run in real time (one at a time: two franky-sims on two loaded cores would starve their 1 kHz loops).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks._util import emit, parser
from benchmarks.e2e_lowdim import (
    TASK_TEXT,
    E2EConfig,
    _final_loss,
    _robotflow,
    convert_command,
    cost_line,
    record_command,
    rollout_command,
    rollout_result,
    run_costs,
    run_parallel,
    train_command,
)

TASK = "stack_cubes"
TWIN_RECORD_GRAPH = "graphs/franka_twin_stack_cubes_lowdim.yaml"
TWIN_POLICY_GRAPH = "graphs/franka_twin_stack_cubes_lowdim_policy.yaml"
RECORD_ATTEMPTS = 3  # runs of `robotflow record` on the twin in a row that keep nothing before the benchmark gives up


@dataclass
class TwinConfig(E2EConfig):
    tasks: tuple[str, ...] = (TASK,)
    demos: int = 100  # the e2e-lowdim recipe's demo count (20 gave 1/20 through franky)
    # Twice the e2e-lowdim recipe's steps: on the twin's 100 demos 6,000 steps gave 15/20 and 14/20 through
    # franky, 12,000 gave 18/20 and 16/20 (README, "On the Franka twin").
    steps: int = 12000
    eval_episodes: int = 20
    sim_gap: bool = True  # also train on sim.arm demos and roll that policy out on the twin
    record_timeout_s: float = 30.0  # the expert's episode limit on the twin

    @classmethod
    def small(cls) -> TwinConfig:
        """The pipeline check: one short demo, a few steps, one short rollout; success is not expected."""
        return cls(
            demos=1,
            steps=2,
            batch_size=4,
            dim_model=32,
            dim_feedforward=64,
            eval_episodes=1,
            eval_timeout_s=3.0,
            record_timeout_s=4.0,
            sim_gap=False,
        )


def twin_record_command(cfg: TwinConfig, out: Path, first: int = 0) -> list[str]:
    """`robotflow record` of the scripted expert on the twin, through franky: episodes first.. of cfg.demos, with
    seeds first.. (the recorder numbers them on from the episodes already in `out`)."""
    return [
        *_robotflow(),
        "record",
        TWIN_RECORD_GRAPH,
        *("--episodes", str(cfg.demos - first), "--output-dir", str(out), "--task", TASK_TEXT[TASK]),
        *("--set", f"teleop.noise={cfg.expert_noise}", "--set", f"task.timeout_s={cfg.record_timeout_s}"),
        *("--set", f"task.seed={first}"),
    ]


def record_twin(cfg: TwinConfig, demos: Path, logs: Path, resumed: list[str], say) -> float:
    """Record the twin's demos, picking up after the episodes already there when a run stops early (the twin's
    simulated robot is a thread on a shared machine, and a recording of 100 episodes is 25 minutes of it);
    every episode kept is one the recorder closed. It gives up after RECORD_ATTEMPTS runs in a row that kept no
    new episode."""
    took, barren = 0.0, 0
    while (have := len(list(demos.glob("episode_*.h5"))) if demos.exists() else 0) < cfg.demos:
        if have:
            resumed.append(f"record twin from episode {have}")
            say(f"record the twin's demos {have}..{cfg.demos - 1}")
        t0 = time.perf_counter()
        try:
            run_parallel({"twin": twin_record_command(cfg, demos, have)}, logs, "record", "e2e-twin")
        except SystemExit as e:
            kept = len(list(demos.glob("episode_*.h5"))) - have
            barren = 0 if kept else barren + 1
            if barren >= RECORD_ATTEMPTS:
                raise
            say(f"{e}; {kept} episode(s) kept, resuming")
        finally:
            took += time.perf_counter() - t0  # the failed runs' real time too
    return took


def _expert(demos: Path) -> dict:
    """The expert's success over the recorded demos, from `robotflow info --json`."""
    info = json.loads(
        subprocess.run([*_robotflow(), "info", str(demos), "--json"], capture_output=True, text=True, check=True).stdout
    )
    s = info["metrics"]["success_outcome"]
    return {
        "success": s["successes"],
        "episodes": s["episodes"],
        "success_rate": s["rate"],
        "wilson_95": s["wilson_95"],
        "failed_seeds": [e["seed"] for e in info["episodes"] if e["outcome"] != "success"],
        "durations_s": [e["duration_s"] for e in info["episodes"]],
    }


def _done(path: Path, what: str, k: str, resumed: list[str]) -> bool:
    """Whether a stage's output is already there (an earlier run in the same --out); noted in `resumed`."""
    if path.exists():
        resumed.append(f"{what} {k}")
        return True
    return False


def run(cfg: TwinConfig, out: Path, say) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    load0, t_all, resumed = os.getloadavg(), time.perf_counter(), []
    stages = {"record": 0.0, "convert": 0.0, "train": 0.0, "rollout": 0.0}
    sources = {"twin": out / "twin_demos"}
    if cfg.sim_gap:
        sources["sim"] = out / "sim_demos"
    say(f"record {cfg.demos} expert demos through franky on the twin" + (", and on sim.arm" if cfg.sim_gap else ""))
    # One after the other: the twin runs on the wall clock, and a simulation beside it would take its CPU.
    for k, demos in sources.items():
        if not _done(demos / f"episode_{cfg.demos - 1:06d}.h5", "record", k, resumed):
            if k == "twin":
                stages["record"] += record_twin(cfg, demos, logs, resumed, say)
            else:
                stages["record"] += run_parallel({k: record_command(cfg, TASK, demos)}, logs, "record", "e2e-twin")
    say(f"convert (codec {cfg.codec}) and train {cfg.steps} steps on each")
    convert = {
        k: convert_command(cfg, d, out / f"dataset_{k}", "--fps", str(cfg.fps))
        for k, d in sources.items()
        if not _done(out / f"dataset_{k}" / "meta" / "info.json", "convert", k, resumed)
    }
    if convert:
        stages["convert"] = run_parallel(convert, logs, "convert", "e2e-twin")
    train = {
        k: train_command(cfg, out / f"dataset_{k}", out / "runs", k, cfg.steps)
        for k in sources
        if not _done(out / "runs" / k / "checkpoints" / f"{cfg.steps:06d}", "train", k, resumed)
    }
    if train:
        stages["train"] = run_parallel(train, logs, "train", "e2e-twin")
    for k in sources:
        if _done(out / f"rollout_{k}.json", "rollout", k, resumed):
            continue
        shutil.rmtree(out / f"rollouts_{k}", ignore_errors=True)  # an interrupted rollout's episodes
        say(f"roll out the {k}-trained policy through franky on {cfg.eval_episodes} unseen seeds")
        roll = rollout_command(
            cfg,
            out / "runs" / k,
            TWIN_POLICY_GRAPH,
            out / f"rollout_{k}.json",
            cfg.eval_seed,
            cfg.eval_episodes,
            "--output-dir",
            str(out / f"rollouts_{k}"),
            "--video-channel",
            "",
        )
        stages["rollout"] += run_parallel({k: roll}, logs, "rollout", "e2e-twin")
    expert = _expert(sources["twin"])
    results = {k: rollout_result(out / f"rollout_{k}.json") for k in sources}
    return {
        "config": asdict(cfg),
        "expert": expert,
        "results": results,
        "demo_frames": {
            k: json.loads((logs / f"convert_{k}.log").read_text().strip().splitlines()[-1])["frames"] for k in sources
        },
        "losses": {k: _final_loss(logs / f"train_{k}.log") for k in sources},
        # The goals: the expert >= 90% through franky, the twin-trained policy >= 80%.
        "goal_met": expert["success_rate"] >= 0.9 and results["twin"]["success_rate"] >= 0.8,
        "resumed": resumed,
        **run_costs(stages, t_all, load0, out),
    }


def table(doc: dict) -> str:
    cfg = doc["config"]
    names = {
        "twin": f"ACT trained on the twin's {cfg['demos']} demos, rolled out through franky",
        "sim": f"ACT trained on {cfg['demos']} `sim.arm` demos, rolled out through franky (sim-to-twin gap)",
    }
    e = doc["expert"]
    rows = [
        f"| what | success, {cfg['eval_episodes']} seeds | 95% Wilson interval |",
        "|---|---|---|",
        f"| scripted expert through franky, seeds 0-{cfg['demos'] - 1} | {e['success']}/{e['episodes']} "
        f"({e['success_rate']:.0%}) | {e['wilson_95'][0]:.0%} - {e['wilson_95'][1]:.0%} |",
    ]
    for k, r in doc["results"].items():
        lo, hi = r["wilson_95"]
        rows.append(f"| {names[k]} | {r['success']}/{r['episodes']} ({r['success_rate']:.0%}) | {lo:.0%} - {hi:.0%} |")
    rows.append(f"\n{cfg['steps']} training steps; goal met: {doc['goal_met']}; {cost_line(doc)}")
    return "\n".join(rows)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", default="out/e2e_twin", help="working directory; an earlier run there is resumed")
    p.add_argument("--small", action="store_true", help="the quick pipeline check (no success expected)")
    p.add_argument("--steps", type=int, default=None, help="override the training steps")
    p.add_argument("--demos", type=int, default=None, help="override the expert demos per source (default 100)")
    args = p.parse_args()
    cfg = TwinConfig.small() if args.small else TwinConfig()
    if args.steps is not None:
        cfg.steps = args.steps
    if args.demos is not None:
        if args.demos < 1:
            p.error("--demos must be at least 1")
        cfg.demos = args.demos
    out = Path(args.out)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if not args.json else (lambda m: None)
    doc = run(cfg, out, say)
    (out / "result.json").write_text(json.dumps(doc, indent=2) + "\n")
    emit(doc, True) if args.json else print(table(doc))


if __name__ == "__main__":
    main()
