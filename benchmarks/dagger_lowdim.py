"""A scripted DAgger round: does learning from an operator's interventions help a weak policy?

    python -m benchmarks.dagger_lowdim [--out out/dagger_lowdim] [--json]      # `make dagger-lowdim`
    python -m benchmarks.dagger_lowdim --small --out /tmp/dagger                # the pipeline check

1. A deliberately weak low-dim policy: ACT (the e2e-lowdim recipe, codec `ee_objects_rel`) trained briefly on
   a few scripted demos of pick_place.
2. It is rolled out on 50 unseen seeds: the "before" figure.
3. It is rolled out again on other seeds (2000..) with a scripted operator in the loop
   (graphs/sim_pick_place_lowdim_dagger.yaml): the expert takes over when the policy stalls and finishes the
   episode; the arbiter records who was in control.
4. `robotflow convert` builds the demos' dataset, and `convert append --interventions` adds each intervention
   (from 1 s before the take-over) to it: the union of demos and corrections.
5. `robotflow train --init-from` fine-tunes the weak policy on that union; a control run fine-tunes it for the
   same steps on the demos alone, so the figure separates the corrections from the extra training.
6. Both are rolled out on the same 50 unseen seeds: the "after" figures.

Every stage is the public command line. Goal (issue 22): the fine-tuned policy at least doubles the weak
policy's success, or reaches 80%.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks._util import emit, parser
from benchmarks.e2e_lowdim import (
    E2EConfig,
    _final_loss,
    convert_command,
    cost_line,
    record_command,
    rollout_command,
    rollout_result,
    run_costs,
    run_parallel,
    train_command,
)

TASK = "pick_place"
DAGGER_GRAPH = "graphs/sim_pick_place_lowdim_dagger.yaml"
EVAL_GRAPH = "graphs/sim_pick_place_lowdim_policy.yaml"


@dataclass
class DaggerConfig(E2EConfig):
    tasks: tuple[str, ...] = (TASK,)
    demos: int = 10  # few demos: the weak policy
    steps: int = 1000  # ... trained briefly
    dagger_episodes: int = 30  # rollouts with the operator in the loop (seeds dagger_seed..)
    dagger_seed: int = 2000  # away from the demos (0..) and the evaluation seeds (1000..)
    lead_in_s: float = 1.0  # each intervention's dataset episode starts this long before the take-over
    stall_s: float = 3.0  # the operator takes over when the EE moved < 1 cm in this long ...
    give_up_s: float = 12.0  # ... or the episode has run this long
    finetune_steps: int = 2000
    control: bool = True  # also fine-tune on the demos alone for the same steps

    @classmethod
    def small(cls) -> DaggerConfig:
        """The pipeline check: tiny everything; success is not expected."""
        return cls(
            demos=2,
            steps=4,
            batch_size=4,
            dim_model=32,
            dim_feedforward=64,
            eval_episodes=1,
            eval_timeout_s=3.0,
            dagger_episodes=2,
            finetune_steps=4,
            control=False,
            stall_s=1.0,
            give_up_s=1.0,
        )


def _collect(cfg: DaggerConfig, out: Path, logs: Path) -> float:
    """Record the weak policy's rollouts with the scripted operator taking over (stage 3)."""
    cmd = rollout_command(
        cfg,
        out / "runs" / "weak",
        DAGGER_GRAPH,
        out / "dagger_rollouts.json",
        cfg.dagger_seed,
        cfg.dagger_episodes,
        "--output-dir",
        str(out / "dagger"),
        "--video-channel",
        "",
        *("--set", f"operator.stall_s={cfg.stall_s}", "--set", f"operator.give_up_s={cfg.give_up_s}"),
    )
    return run_parallel({TASK: cmd}, logs, "collect", "dagger-lowdim")


def _datasets(cfg: DaggerConfig, out: Path, logs: Path) -> float:
    """The demos' dataset, and the union: a copy of it with every intervention appended (stage 4)."""
    t = run_parallel({TASK: convert_command(cfg, out / "demos", out / "dataset_demos")}, logs, "convert", "dagger")
    shutil.copytree(out / "dataset_demos", out / "dataset_union")
    append = convert_command(
        cfg, out / "dagger", out / "dataset_union", "--interventions", "--lead-in", str(cfg.lead_in_s)
    )
    append.insert(append.index("convert") + 1, "append")
    return t + run_parallel({TASK: append}, logs, "append", "dagger-lowdim")


def _interventions(out: Path) -> dict:
    """Interventions per collected episode and time under the operator, from the recordings."""
    from robotflow.recording.control import human_segments
    from robotflow.recording.reader import EpisodeFile, find_episode_files

    per_episode, human_s = [], 0.0
    for path in find_episode_files(out / "dagger"):
        with EpisodeFile(path) as ep:
            segs = human_segments(ep) or []
        per_episode.append(len(segs))
        human_s += sum(s.duration_s for s in segs)
    n = len(per_episode)
    return {
        "episodes": n,
        "with_intervention": sum(k > 0 for k in per_episode),
        "interventions_per_episode": round(sum(per_episode) / n, 2) if n else 0.0,
        "human_s": round(human_s, 1),
    }


def run(cfg: DaggerConfig, out: Path, say) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    load0, t_all, stages = os.getloadavg(), time.perf_counter(), {}
    say(f"record {cfg.demos} demos, train the weak policy ({cfg.steps} steps)")
    stages["record"] = run_parallel({TASK: record_command(cfg, TASK, out / "demos")}, logs, "record", "dagger")
    t = run_parallel({TASK: convert_command(cfg, out / "demos", out / "dataset_weak")}, logs, "convert_weak", "dagger")
    weak = train_command(cfg, out / "dataset_weak", out / "runs", "weak", cfg.steps)
    stages["train_weak"] = t + run_parallel({TASK: weak}, logs, "train_weak", "dagger-lowdim")
    say(
        f"roll out the weak policy on {cfg.eval_episodes} unseen seeds, and collect {cfg.dagger_episodes} with the operator"
    )
    before = rollout_command(
        cfg, out / "runs" / "weak", EVAL_GRAPH, out / "rollout_weak.json", cfg.eval_seed, cfg.eval_episodes
    )
    stages["rollout_weak"] = run_parallel({TASK: before}, logs, "rollout_weak", "dagger-lowdim")
    stages["collect"] = _collect(cfg, out, logs)
    say("convert the demos and the interventions; fine-tune")
    stages["datasets"] = _datasets(cfg, out, logs)
    init = ("--init-from", str(out / "runs" / "weak"))
    runs = {"dagger": train_command(cfg, out / "dataset_union", out / "runs", "dagger", cfg.finetune_steps, *init)}
    if cfg.control:
        runs["demos_only"] = train_command(
            cfg, out / "dataset_demos", out / "runs", "demos_only", cfg.finetune_steps, *init
        )
    stages["finetune"] = run_parallel(runs, logs, "finetune", "dagger-lowdim")
    say(f"roll out the fine-tuned policies on the same {cfg.eval_episodes} seeds")
    after = {
        name: rollout_command(
            cfg, out / "runs" / name, EVAL_GRAPH, out / f"rollout_{name}.json", cfg.eval_seed, cfg.eval_episodes
        )
        for name in runs
    }
    stages["rollout_after"] = run_parallel(after, logs, "rollout_after", "dagger-lowdim")
    results = {"weak": rollout_result(out / "rollout_weak.json")}
    results.update({name: rollout_result(out / f"rollout_{name}.json") for name in runs})
    union = json.loads((logs / f"append_{TASK}.log").read_text().strip().splitlines()[-1])
    return {
        "config": asdict(cfg),
        "results": results,
        "collection": {**_interventions(out), **rollout_result(out / "dagger_rollouts.json")},
        "intervention_frames": union["frames"],
        "losses": {name: _final_loss(logs / f"finetune_{name}.log") for name in runs},
        "goal_met": _goal_met(results),
        **run_costs(stages, t_all, load0, out),
    }


def _goal_met(results: dict) -> bool:
    """The issue's goal: the fine-tuned policy doubles the weak one's success, or reaches 80%."""
    weak, tuned = results["weak"]["success_rate"], results["dagger"]["success_rate"]
    return tuned >= 0.8 or (weak > 0 and tuned >= 2 * weak)


def table(doc: dict) -> str:
    cfg = doc["config"]
    lines = [
        f"| policy | success, {cfg['eval_episodes']} unseen seeds | 95% Wilson interval |",
        "|---|---|---|",
    ]
    names = {
        "weak": f"weak: {cfg['demos']} demos, {cfg['steps']} steps",
        "dagger": f"+ {cfg['finetune_steps']} steps on demos + interventions",
        "demos_only": f"+ {cfg['finetune_steps']} steps on the demos alone (control)",
    }
    for name, r in doc["results"].items():
        lo, hi = r["wilson_95"]
        lines.append(
            f"| {names[name]} | {r['success']}/{r['episodes']} ({r['success_rate']:.0%}) | {lo:.0%} - {hi:.0%} |"
        )
    c = doc["collection"]
    lines.append(
        f"\ncollection: {c['episodes']} episodes, {c['with_intervention']} taken over "
        f"({c['interventions_per_episode']} interventions per episode, {c['human_s']} s under the operator), "
        f"{doc['intervention_frames']} intervention frames; goal met: {doc['goal_met']}; {cost_line(doc)}"
    )
    return "\n".join(lines)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", default="out/dagger_lowdim", help="working directory")
    p.add_argument("--small", action="store_true", help="the quick pipeline check (no success expected)")
    p.add_argument("--episodes", type=int, default=None, help="override the evaluation episodes")
    args = p.parse_args()
    cfg = DaggerConfig.small() if args.small else DaggerConfig()
    if args.episodes is not None:
        cfg.eval_episodes = args.episodes
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"dagger-lowdim: {out} is not empty; remove it or pass another --out")
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if not args.json else (lambda m: None)
    doc = run(cfg, out, say)
    (out / "result.json").write_text(json.dumps(doc, indent=2) + "\n")
    emit(doc, True) if args.json else print(table(doc))


if __name__ == "__main__":
    main()
