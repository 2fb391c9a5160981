"""Rollout throughput: the same checkpoint and seeds evaluated by 1 and by 2 worker processes.

    python -m benchmarks.rollout --json [--modality vision|lowdim] [--checkpoints-dir RUN --graph G] [--episodes 8]

Without --checkpoints-dir the benchmark makes its own ACT checkpoint first: `vision` (the default) the
camera-only recipe's network and images (resnet18, two 96x128 cameras, dim 256) after 2 training steps on 2
scripted demos, `lowdim` the small `benchmarks.e2e_lowdim` pipeline. Neither is a good policy: its episodes
run to the timeout, so every episode simulates the same `--timeout-s` and the comparison is of equal work. Each episode is its own graph (robotflow.evaluation), so both runs must give identical
per-seed results (`same_results`). Workers use one torch thread each; the 1-worker run too, so the
speedup is the parallelism, not a thread-count change.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._util import emit, machine, parser

GRAPHS = {"vision": "graphs/sim_pick_place_vision_policy.yaml", "lowdim": "graphs/sim_stack_cubes_lowdim_policy.yaml"}


def _checkpoint(work: Path, modality: str) -> Path:
    if modality == "lowdim":
        from benchmarks.e2e_lowdim import E2EConfig, run

        cfg = E2EConfig.small()
        cfg.eval_episodes = 1
        run(cfg, work, progress=False)
        return work / "stack_cubes" / "runs" / "act_lowdim"
    from benchmarks.e2e_vision import RUN_NAME, VisionConfig
    from benchmarks.e2e_vision import run as run_vision

    full = VisionConfig()
    cfg = VisionConfig.small()
    # The full recipe's images and network, so that an episode costs what a real vision rollout does.
    cfg.image_size, cfg.dim_model, cfg.dim_feedforward = full.image_size, full.dim_model, full.dim_feedforward
    cfg.eval_episodes, cfg.eval_timeout_s = 1, 1.0  # the pipeline's own rollout: short, not measured
    run_vision(cfg, work, progress=False)
    return work / "pick_place" / "runs" / RUN_NAME


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--checkpoints-dir", default=None, help="a training run of a low-dim ee_objects policy")
    p.add_argument("--modality", choices=sorted(GRAPHS), default="vision", help="the policy made and its graph")
    p.add_argument("--graph", default=None, help="the policy graph (default: the modality's)")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--timeout-s", type=float, default=10.0, help="episode timeout (simulated seconds)")
    p.add_argument("--seed", type=int, default=1000)
    args = p.parse_args()

    # LeRobot prints while loading a policy (here and in the workers, which inherit the descriptors): keep
    # stdout for the one JSON object.
    sys.stdout.flush()
    json_out = os.dup(1)
    os.dup2(2, 1)
    try:
        result = _measure(args)
    finally:
        sys.stdout.flush()
        os.dup2(json_out, 1)
        os.close(json_out)
    emit(result, args.json)


def _measure(args) -> dict:
    from robotflow.evaluation import EpisodeJob, EvalPlan, run_episodes
    from robotflow.policies.checkpoints import resolve_checkpoint
    from robotflow.runtime.graph import load_graph

    with tempfile.TemporaryDirectory(prefix="rf-bench-rollout-") as tmp:
        run_dir = Path(args.checkpoints_dir) if args.checkpoints_dir else _checkpoint(Path(tmp) / "ckpt", args.modality)
        model_dir = resolve_checkpoint(run_dir, None).path
        graph = load_graph(args.graph or GRAPHS[args.modality]).set_params("policy", {"checkpoint": str(model_dir)})
        plan = EvalPlan(graph.set_params("task", {"timeout_s": args.timeout_s}), "task", None, torch_threads=1)
        jobs = [EpisodeJob(i, args.seed + i) for i in range(args.episodes)]
        timings, outcomes = {}, {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            outcomes[workers] = run_episodes(plan, jobs, workers)
            timings[workers] = time.perf_counter() - t0

    def key(outs):
        return [(o.seed, o.success, o.outcome, o.duration_s) for o in outs]

    eps = {w: args.episodes / timings[w] * 60.0 for w in timings}
    result = {
        "episodes": args.episodes,
        "workers_1_eps_per_min": round(eps[1], 2),
        "workers_2_eps_per_min": round(eps[2], 2),
        "speedup": round(eps[2] / eps[1], 2),
        "workers_1_s": round(timings[1], 1),
        "workers_2_s": round(timings[2], 1),
        "same_results": key(outcomes[1]) == key(outcomes[2]),
        "successes": sum(o.success for o in outcomes[1]),
        "timeout_s": args.timeout_s,
        "modality": args.modality,
        "graph": args.graph or GRAPHS[args.modality],
        "checkpoint": str(model_dir) if args.checkpoints_dir else f"made by the benchmark ({args.modality}, 2 demos)",
        **machine(),
    }
    return result


if __name__ == "__main__":
    main()
