"""Camera-only ACT at full size on a lent GPU: demos, dataset, training and 50 seeds per task in one device call.

    bash benchmarks/gpu_vision.sh                        # on the device, after `make gpu-bundle` here (README)
    make gpu-rehearse                                    # the same run here on the CPU, tiny: checks it end to end
    python -m benchmarks.gpu_vision join PARTS_DIR --out out/gpu_vision      # `make gpu-join PARTS=...`

`run` is `benchmarks.e2e_vision`'s pipeline at the size a GPU affords (resnet18 from random weights, two 240x320
cameras, ACT dim 512 / feedforward 2048 / chunk 100, codec `ee_cams_rel`), made to fit one device command:
- the demos are recorded in parallel shards (seed ranges) on the device's 16 cores, and converted with workers;
- the model step is timed on the GPU while the demos record, a sample's loading once the data is converted, and
  the training steps are the ones that fit the time left before the rollout's reserve at the slower of the two
  rates (`plan_steps`); a training still running at that deadline is stopped and its last checkpoint rolled out;
- both tasks train side by side on the one GPU, then roll out 50 unseen seeds each with parallel workers;
- what comes back fits the device's return limits (at most 8 files of 16 MiB, 64 MiB in all): `result.json`,
  `seeds.tsv` (one line per rollout episode), `logs.txt` (the logs' tails) and the final checkpoints, their large
  weight matrices quantised to int8 (one scale per output row), split into parts. The parts are written before
  the rollout starts, so a rollout cut short still brings the checkpoints back.

`join` turns the parts back into run directories (`<out>/<task>/runs/act_vision_gpu/checkpoints/<step>/...`,
weights dequantised to float32) that `robotflow rollout --checkpoints-dir` loads here.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks._util import machine
from benchmarks.e2e_lowdim import TASK_TEXT, _final_loss, _robotflow, run_parallel
from benchmarks.e2e_vision import NORMALIZATION, last_step

RUN_NAME = "act_vision_gpu"
PACKED_MANIFEST = "robotflow_packed.json"  # beside each packed checkpoint: which tensors were quantised
PART_PREFIX = "checkpoints.tar.part"
RETURN_FILES = 8  # the device's return limits (README of the device tool)
RETURN_FILE_BYTES = 16 * 2**20
PART_BYTES = 15 * 2**20  # a margin under the per-file limit
RETURN_TOTAL_BYTES = 64 * 2**20
RESULT_FILES = ("result.json", "seeds.tsv", "logs.txt")  # what comes back beside the parts
LOG_TAIL_BYTES = 200_000
RESULTS_RESERVE_BYTES = 2**20  # result.json, seeds.tsv and the log tail, beside the parts
QUANTIZE_MIN_ELEMENTS = 4096  # smaller tensors (biases, norms, embeddings of a few rows) stay float


@dataclass
class GpuVisionConfig:
    tasks: tuple[str, ...] = ("pick_place", "stack_cubes")
    codec: str = "ee_cams_rel"
    demos: int = 100  # per task, seeds 0..demos-1
    expert_noise: float = 0.5
    fps: int = 15
    image_size: str = "240x320"  # the cameras' own resolution: nothing is downscaled
    dim_model: int = 512
    # 4 x dim as in the CPU recipe (256/1024). LeRobot's default 3200 makes a checkpoint of 34M parameters: two of
    # them do not come back within 64 MiB even as int8; at 2048 (28M) both do.
    dim_feedforward: int = 2048
    chunk_size: int = 100
    n_action_steps: int = 20  # re-plan every 1.3 s: the e2e recipes execute the first part of each chunk
    batch_size: int = 32
    lr: float = 1e-4  # transformer and backbone alike: the backbone starts from random weights
    use_vae: bool = False
    bf16: bool = True
    image_shift_px: int = 10  # random shift, the CPU recipe's 4 px at 96x128 scaled to 240x320
    device: str = "cuda"
    train_workers: int = 7  # dataloader processes per training: two trainings fill the 16 cores
    record_shards: int = 7  # recording processes per task
    convert_workers: int = 7  # per task
    rollout_workers: int = 8  # per task: the two rollouts fill the 16 cores
    eval_episodes: int = 50
    eval_seed: int = 1000  # unseen: the demos used seeds 0..demos-1
    eval_timeout_s: float = 30.0
    # The time budget of the whole command, counted from gpu_vision.sh's start (wheel install included).
    budget_s: float = 540.0
    rollout_reserve_s: float = 150.0  # rollout workers' start-up + 50 episodes per task
    pack_reserve_s: float = 25.0  # quantise and write the checkpoint parts (2 s measured here)
    train_startup_s: float = 60.0  # imports, dataset load, frames decoded into memory, checkpoint writes
    train_efficiency: float = 0.8  # of the slower of the two measured rates: logging, checkpoints, stragglers
    fallback_step_s: float = 0.1  # assumed if timing the model step failed (logs/calibrate.log says why)
    fallback_sample_s: float = 0.02  # likewise for one sample's loading
    steps: int | None = None  # fixed training steps instead of the budget's (the rehearsal)
    max_steps: int = 100_000
    weights: str = "int8"  # what comes back: int8 (large matrices), fp16 or fp32
    train_args: list[str] = field(default_factory=list)

    @classmethod
    def rehearsal(cls) -> GpuVisionConfig:
        """The same run on this CPU with everything tiny: it checks the script, not the policy."""
        return cls(
            demos=2,
            image_size="24x32",
            dim_model=32,
            dim_feedforward=64,
            chunk_size=10,
            n_action_steps=5,
            batch_size=2,
            image_shift_px=2,
            device="cpu",
            bf16=False,
            train_workers=0,
            record_shards=2,
            convert_workers=2,
            rollout_workers=1,
            eval_episodes=2,
            eval_timeout_s=2.0,
            budget_s=1800.0,
            rollout_reserve_s=120.0,
            steps=4,
        )


# --- the time budget ---------------------------------------------------------------------------------------------


def plan_steps(cfg: GpuVisionConfig, elapsed_s: float, step_s: float | None, sample_s: float | None) -> dict:
    """Training steps per task that end before the rollout's reserve, from two measured costs.

    step_s: wall seconds of one model step on the GPU. The trainings of all tasks share it, so each gets
    1/len(tasks) of its rate. sample_s: CPU seconds one training sample costs a dataloader worker; each
    training's `train_workers` build batches side by side (its main process when 0). A training runs at the
    slower of the two rates, times `train_efficiency`. Returns the plan: steps, the rates, the window and the
    deadline (seconds from the start) at which a training still running is stopped.
    """
    deadline = cfg.budget_s - cfg.rollout_reserve_s - cfg.pack_reserve_s
    window = deadline - elapsed_s - cfg.train_startup_s
    step_s = step_s if step_s and step_s > 0 else cfg.fallback_step_s
    sample_s = sample_s if sample_s and sample_s > 0 else cfg.fallback_sample_s
    gpu_rate = 1.0 / (step_s * len(cfg.tasks))
    data_rate = max(1, cfg.train_workers) / (sample_s * cfg.batch_size)
    rate = cfg.train_efficiency * min(gpu_rate, data_rate)
    if cfg.steps is not None:
        steps = cfg.steps
    else:
        steps = max(1, min(cfg.max_steps, int(max(0.0, window) * rate)))
    return {
        "steps": steps,
        "steps_per_s": round(rate, 2),
        "bound_by": "gpu" if gpu_rate <= data_rate else "data loading",
        "model_step_s": round(step_s, 4),
        "sample_s": round(sample_s, 5),
        "window_s": round(window, 1),
        "deadline_s": round(deadline, 1),
        # A checkpoint every tenth of the steps: a training stopped at the deadline loses at most a tenth.
        "save_freq": max(1, steps // 10),
    }


def model_step_s(cfg: GpuVisionConfig, steps: int = 12) -> float:
    """Median wall seconds of one ACT forward + backward + AdamW step at the config's size, on its device."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    h, w = (int(v) for v in cfg.image_size.split("x"))
    feats = {f"observation.images.c{i}": PolicyFeature(FeatureType.VISUAL, (3, h, w)) for i in range(2)}
    feats["observation.state"] = PolicyFeature(FeatureType.STATE, (8,))
    act = ACTConfig(
        input_features=feats,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (8,))},
        chunk_size=cfg.chunk_size,
        n_action_steps=cfg.n_action_steps,
        dim_model=cfg.dim_model,
        dim_feedforward=cfg.dim_feedforward,
        use_vae=cfg.use_vae,
        pretrained_backbone_weights=None,
        device=cfg.device,
    )
    dev = torch.device(cfg.device)
    if dev.type == "cuda":  # as LeRobot's training loop sets them
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    policy = ACTPolicy(act).to(dev)
    opt = torch.optim.AdamW(policy.parameters(), cfg.lr)
    b = cfg.batch_size
    sample = {k: torch.rand(b, *f.shape, device=dev) for k, f in feats.items()}
    sample["action"] = torch.randn(b, cfg.chunk_size, 8, device=dev)
    sample["action_is_pad"] = torch.zeros(b, cfg.chunk_size, dtype=torch.bool, device=dev)
    times = []
    for i in range(steps + 3):  # the first steps allocate and pick kernels
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss, _ = policy.forward(sample)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def data_sample_s(cfg: GpuVisionConfig, root: Path, samples: int = 64) -> float:
    """CPU seconds one training sample costs a dataloader worker: LeRobot's row and action-chunk query, timed on
    the dataset with the frames left out, plus two frames shifted and scaled as `--frames-in-memory` does."""
    import numpy as np
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robotflow.codecs import video_backend
    from robotflow.codecs.memory_frames import random_shift

    torch.set_num_threads(1)  # as in a dataloader worker
    chunk = {"action": [i / cfg.fps for i in range(cfg.chunk_size)]}
    ds = LeRobotDataset("local/calibrate", root=root, video_backend=video_backend(), delta_timestamps=chunk)
    h, w = (int(v) for v in cfg.image_size.split("x"))
    blank = torch.zeros(3, h, w)
    ds._query_videos = lambda query, ep_idx: {key: blank for key in query}  # frames: timed below
    t0 = time.process_time()
    for i in np.linspace(0, len(ds) - 1, samples).astype(int):
        ds[int(i)]
    rows = (time.process_time() - t0) / samples
    frame = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8)
    t0 = time.process_time()
    for _ in range(samples):
        (random_shift(frame, max(1, cfg.image_shift_px)).float() / 255.0).squeeze(0)
    return rows + 2 * (time.process_time() - t0) / samples


def calibrate(cfg: GpuVisionConfig, dataset: Path) -> dict:
    """The model step (at once, while the demos record) and then, when a line on stdin says `dataset` is
    converted, a sample's cost."""
    import torch

    out: dict = {"step_s": model_step_s(cfg), "torch": torch.__version__}
    if cfg.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()
    if sys.stdin.readline().strip() == "go":
        out["sample_s"] = data_sample_s(cfg, dataset)
    return out


# --- the stages --------------------------------------------------------------------------------------------------


def shard_seeds(demos: int, shards: int) -> list[tuple[int, int]]:
    """(first seed, episodes) of each recording shard: seeds 0..demos-1 in contiguous ranges."""
    shards = max(1, min(shards, demos))
    base, extra = divmod(demos, shards)
    out, seed = [], 0
    for k in range(shards):
        n = base + (k < extra)
        out.append((seed, n))
        seed += n
    return out


# Recording and conversion fill every core while the model step is timed; niced, they leave it its share.
NICE = ("nice", "-n", "5")


def record_cmds(cfg: GpuVisionConfig, out: Path) -> dict[str, list[str]]:
    cmds = {}
    for task in cfg.tasks:
        for k, (seed, n) in enumerate(shard_seeds(cfg.demos, cfg.record_shards)):
            cmds[f"{task}_{k:02d}"] = [
                *NICE,
                *_robotflow(),
                "record",
                f"graphs/sim_{task}.yaml",
                *("--episodes", str(n), "--output-dir", str(out / task / "demos" / f"shard_{k:02d}")),
                *("--task", TASK_TEXT[task], "--set", f"teleop.noise={cfg.expert_noise}"),
                *("--set", f"task.seed={seed}"),
            ]
    return cmds


def convert_cmd(cfg: GpuVisionConfig, d: Path) -> list[str]:
    return [
        *NICE,
        *_robotflow(),
        "convert",
        *("--input", str(d / "demos"), "--codec", cfg.codec, "--output-dir", str(d / "dataset")),
        *("--fps", str(cfg.fps), "--image-size", cfg.image_size, "--workers", str(cfg.convert_workers)),
        *("--quiet", "--json"),
    ]


def train_cmd(cfg: GpuVisionConfig, d: Path, plan: dict) -> list[str]:
    return [
        *_robotflow(),
        "train",
        *("--dataset-root", str(d / "dataset"), "--run-name", RUN_NAME, "--output-dir", str(d / "runs")),
        *("--steps", str(plan["steps"]), "--save-freq", str(plan["save_freq"]), "--batch-size", str(cfg.batch_size)),
        *("--device", cfg.device, "--no-pretrained-backbone", "--num-workers", str(cfg.train_workers)),
        *("--dim-model", str(cfg.dim_model), "--chunk-size", str(cfg.chunk_size)),
        *("--n-action-steps", str(cfg.n_action_steps), "--lr-schedule", "cosine"),
        *("--log-freq", str(max(1, min(100, plan["steps"] // 10))), "--image-shift", str(cfg.image_shift_px)),
        f"--policy-arg=dim_feedforward={cfg.dim_feedforward}",
        f"--policy-arg=optimizer_lr={cfg.lr}",
        f"--policy-arg=optimizer_lr_backbone={cfg.lr}",
        f"--policy-arg=use_vae={json.dumps(cfg.use_vae)}",
        f"--policy-arg=normalization_mapping={json.dumps(NORMALIZATION)}",
        "--frames-in-memory",
        *["--bf16"] * cfg.bf16,
        *cfg.train_args,
    ]


def rollout_cmd(cfg: GpuVisionConfig, task: str, d: Path) -> list[str]:
    return [
        *_robotflow(),
        "rollout",
        *("--checkpoints-dir", str(d / "runs" / RUN_NAME), "--graph", f"graphs/sim_{task}_vision_policy.yaml"),
        *("--episodes", str(cfg.eval_episodes), "--seed", str(cfg.eval_seed)),
        *("--workers", str(cfg.rollout_workers), "--no-record"),
        *("--set", f"task.timeout_s={cfg.eval_timeout_s}", "--summary", str(d / "rollout.json")),
    ]


def train_until(cmds: dict[str, list[str]], logs: Path, deadline: float, threads: int) -> dict[str, str]:
    """Run the trainings side by side; any still running at `deadline` (time.monotonic) is stopped (SIGINT,
    then SIGKILL). Returns each task's ending: finished, stopped at the deadline, or failed (exit status)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    env.setdefault("WANDB_MODE", "disabled")
    procs = {}
    for task, cmd in cmds.items():
        log = open(logs / f"train_{task}.log", "a")  # noqa: SIM115 - closed below
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        # Its own process group: the dataloader workers are stopped with it.
        procs[task] = (
            subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True),
            log,
        )
    ending = {}
    while len(ending) < len(procs):
        for task, (p, _) in procs.items():
            if task not in ending and p.poll() is not None:
                ending[task] = "finished" if p.returncode == 0 else f"failed (exit {p.returncode})"
        if time.monotonic() >= deadline:
            for task, (p, _) in procs.items():
                if task not in ending:
                    _stop(p)
                    ending[task] = "stopped at the deadline"
        time.sleep(0.5)
    for _, log in procs.values():
        log.close()
    return ending


def _stop(p: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _train_rate(log: Path) -> dict:
    """LeRobot's own timing of its last logged steps: seconds per update and per batch load."""
    text = log.read_text() if log.exists() else ""
    upd, data = re.findall(r"updt_s:([0-9.]+)", text), re.findall(r"data_s:([0-9.]+)", text)
    return {"updt_s": float(upd[-1]) if upd else None, "data_s": float(data[-1]) if data else None}


# --- checkpoint parts --------------------------------------------------------------------------------------------


def quantize_state(tensors: dict, weights: str) -> tuple[dict, dict]:
    """`tensors` (name -> torch tensor) for the trip back, and the manifest `dequantize_state` needs.

    int8: each float tensor of >= QUANTIZE_MIN_ELEMENTS elements and >= 2 dims becomes int8 with one float32
    scale per output row (symmetric, absmax / 127); other float tensors become float16. fp16: every float tensor
    float16. fp32: as they are."""
    import torch

    if weights not in ("int8", "fp16", "fp32"):
        raise ValueError(f"weights must be int8, fp16 or fp32, got {weights!r}")
    out, manifest = {}, {"weights": weights, "dtypes": {}, "int8": []}
    for name, t in tensors.items():
        manifest["dtypes"][name] = str(t.dtype).removeprefix("torch.")
        if weights == "fp32" or not t.is_floating_point():
            out[name] = t.contiguous()
        elif weights == "int8" and t.dim() >= 2 and t.numel() >= QUANTIZE_MIN_ELEMENTS:
            rows = t.float().reshape(t.shape[0], -1)
            scale = (rows.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
            out[name] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(t.shape)
            out[name + ".__scale__"] = scale
            manifest["int8"].append(name)
        else:
            out[name] = t.to(torch.float16).contiguous()
    return out, manifest


def dequantize_state(packed: dict, manifest: dict) -> dict:
    """The inverse of `quantize_state`: every tensor back in its original dtype."""
    import torch

    out = {}
    for name, dtype in manifest["dtypes"].items():
        t = packed[name]
        if name in manifest["int8"]:
            scale = packed[name + ".__scale__"]
            t = (t.float().reshape(t.shape[0], -1) * scale[:, None]).reshape(t.shape)
        out[name] = t.to(getattr(torch, dtype)).contiguous()
    return out


def _pack_task(model_dir: Path, arcroot: str, weights: str) -> bytes:
    """One checkpoint's pretrained_model dir as an uncompressed tar, model.safetensors quantised."""
    from safetensors.torch import load_file, save

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(model_dir.iterdir()):
            if path.name == "model.safetensors":
                packed, manifest = quantize_state(load_file(path), weights)
                blobs = {"model.safetensors": save(packed), PACKED_MANIFEST: json.dumps(manifest).encode()}
                for name, data in blobs.items():
                    info = tarfile.TarInfo(f"{arcroot}/{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            elif path.is_file():
                tar.add(path, f"{arcroot}/{path.name}")
    return buf.getvalue()


def pack_checkpoints(checkpoints: dict[str, Path], dest: Path, weights: str, budget_bytes: int, max_parts: int) -> dict:
    """Write the checkpoints (task -> pretrained_model dir) as one tar each, split into parts of at most
    PART_BYTES into `dest`, tasks in order, leaving out the last ones if the whole does not fit
    `budget_bytes` in `max_parts`. Returns {parts, bytes, tasks, left_out}."""

    def arcroot(task: str, model_dir: Path) -> str:
        return f"{task}/{model_dir.parent.name}"  # task/<step>

    # Not compressed: int8 weights of a network trained from random initialisation hardly compress (xz took 3%
    # off a full-size checkpoint, in half a minute).
    blobs = {t: _pack_task(m, arcroot(t, m), weights) for t, m in checkpoints.items()}
    tasks = list(blobs)
    limit = min(budget_bytes, max_parts * PART_BYTES)
    while tasks and sum(len(blobs[t]) for t in tasks) > limit:
        tasks.pop()
    data = b"".join(blobs[t] for t in tasks)
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    for k in range(math.ceil(len(data) / PART_BYTES)):
        part = dest / f"{PART_PREFIX}{k:02d}"
        part.write_bytes(data[k * PART_BYTES : (k + 1) * PART_BYTES])
        parts.append(part.name)
    return {"parts": parts, "bytes": len(data), "tasks": tasks, "left_out": [t for t in blobs if t not in tasks]}


def join_parts(parts_dir: Path, out: Path, run_name: str = RUN_NAME) -> dict[str, Path]:
    """Reassemble the parts in `parts_dir` into `<out>/<task>/runs/<run_name>/checkpoints/<step>/pretrained_model`
    (weights back to float32, `last` pointing at the step); returns task -> run dir for `rollout
    --checkpoints-dir`."""
    from safetensors.torch import load, save_file

    parts = sorted(parts_dir.glob(f"{PART_PREFIX}*"))
    if not parts:
        raise SystemExit(f"gpu-join: no {PART_PREFIX}NN files in {parts_dir}")
    numbers = [int(p.name.removeprefix(PART_PREFIX)) for p in parts]
    if numbers != list(range(len(parts))):
        raise SystemExit(f"gpu-join: parts {numbers} in {parts_dir} are not 0..{len(parts) - 1}; one is missing")
    data = b"".join(p.read_bytes() for p in parts)
    runs = {}
    # One tar per task, one after the other: ignore_zeros reads on past each one's end-of-archive blocks.
    with tarfile.open(fileobj=io.BytesIO(data), mode="r", ignore_zeros=True) as tar:
        members = tar.getmembers()
        files = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}
    for name in sorted(files):
        task, step, fname = name.split("/")
        if not re.fullmatch(r"[a-z_]+", task) or not step.isdigit() or "/" in fname:
            raise SystemExit(f"gpu-join: unexpected entry {name!r} in the parts")
        run = out / task / "runs" / run_name
        model_dir = run / "checkpoints" / step / "pretrained_model"
        model_dir.mkdir(parents=True, exist_ok=True)
        if fname == PACKED_MANIFEST:
            continue
        if fname == "model.safetensors":
            manifest = json.loads(files[f"{task}/{step}/{PACKED_MANIFEST}"])
            save_file(dequantize_state(load(files[name]), manifest), str(model_dir / fname))
        else:
            (model_dir / fname).write_bytes(files[name])
        last = run / "checkpoints" / "last"
        if last.is_symlink() or last.exists():
            last.unlink()
        last.symlink_to(step)
        runs[task] = run
    return runs


# --- the run -----------------------------------------------------------------------------------------------------


def _seeds_tsv(rollouts: dict[str, dict]) -> str:
    lines = ["task\tseed\tsuccess\toutcome\tduration_s"]
    for task, roll in rollouts.items():
        for e in roll.get("outcomes", roll["episodes"]):
            lines.append(
                f"{task}\t{e['seed']}\t{int(bool(e['success']))}\t{e.get('outcome', '')}\t{e.get('duration_s', '')}"
            )
    return "\n".join(lines) + "\n"


def _log_tail(logs: Path) -> str:
    chunks = []
    for log in sorted(logs.glob("*.log")):
        text = log.read_text(errors="replace")
        chunks.append(f"==== {log.name}\n{text[-LOG_TAIL_BYTES // 8 :]}")
    return "\n".join(chunks)[-LOG_TAIL_BYTES:]


def run(cfg: GpuVisionConfig, work: Path, results: Path, started_at: float | None = None, say=print) -> dict:
    """The whole device run in `work`; writes result.json, seeds.tsv, logs.txt and the checkpoint parts into
    `results`. `started_at` (time.time()) is when the command began, so the wheel install counts."""
    t_start = started_at or time.time()
    mono0 = time.monotonic() - (time.time() - t_start)

    def elapsed() -> float:
        return time.monotonic() - mono0

    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    d = {t: work / t for t in cfg.tasks}
    doc: dict = {"config": asdict(cfg), "machine": machine(), "stages_s": {}, "results": {}}

    def stage(name: str, t0: float) -> None:
        doc["stages_s"][name] = round(elapsed() - t0, 1)
        say(f"[{elapsed():6.1f} s] {name} done in {doc['stages_s'][name]} s")

    def finish() -> dict:
        doc["total_s"] = round(elapsed(), 1)
        (results / "result.json").write_text(json.dumps(doc, indent=2) + "\n")
        (results / "logs.txt").write_text(_log_tail(logs))
        return doc

    try:
        say(f"[{elapsed():6.1f} s] record {cfg.demos} demos per task in {cfg.record_shards} shards each")
        t0 = elapsed()
        # The model step is timed on the GPU while the CPUs record, the data loading once the first dataset is
        # converted (a subprocess: the GPU is free again for the trainings).
        calib = subprocess.Popen(
            [
                *(sys.executable, "-m", "benchmarks.gpu_vision", "calibrate", "--config", json.dumps(asdict(cfg))),
                *("--dataset", str(d[cfg.tasks[0]] / "dataset")),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(logs / "calibrate.log", "w"),  # noqa: SIM115 - the child holds it
            text=True,
        )
        run_parallel(record_cmds(cfg, work), logs, "record", name="gpu-vision")
        stage("record", t0)
        t0 = elapsed()
        run_parallel({t: convert_cmd(cfg, d[t]) for t in cfg.tasks}, logs, "convert", name="gpu-vision")
        stage("convert", t0)
        try:
            out, _ = calib.communicate("go\n", timeout=60)
            measured = json.loads(out) if calib.returncode == 0 and out.strip() else {}
        except subprocess.TimeoutExpired:
            calib.kill()
            measured = {}
        plan = plan_steps(cfg, elapsed(), measured.get("step_s"), measured.get("sample_s"))
        doc["plan"] = {**plan, "measured": measured}
        say(f"[{elapsed():6.1f} s] train {plan['steps']} steps per task: {plan}")
        t0 = elapsed()
        threads = max(1, (os.cpu_count() or 2) // (2 * len(cfg.tasks)))
        ending = train_until(
            {t: train_cmd(cfg, d[t], plan) for t in cfg.tasks}, logs, mono0 + plan["deadline_s"], threads
        )
        stage("train", t0)
        ckpts = {}
        for t in cfg.tasks:
            step = last_step(d[t] / "runs" / RUN_NAME)
            doc["results"][t] = {
                "training": ending[t],
                "checkpoint_step": step,
                "final_loss": _final_loss(logs / f"train_{t}.log"),
                **_train_rate(logs / f"train_{t}.log"),
            }
            if step is not None:  # LeRobot names the step directories 000400 etc.; `last` points at one
                ckpts[t] = (d[t] / "runs" / RUN_NAME / "checkpoints" / "last").resolve() / "pretrained_model"
        t0 = elapsed()
        doc["checkpoint_parts"] = pack_checkpoints(
            ckpts, results, cfg.weights, RETURN_TOTAL_BYTES - RESULTS_RESERVE_BYTES, RETURN_FILES - len(RESULT_FILES)
        )
        stage("pack", t0)
        finish()  # the checkpoints are back even if the rollout does not finish
        missing = [t for t in cfg.tasks if t not in ckpts]
        if missing:
            raise RuntimeError(f"no checkpoint to roll out for {', '.join(missing)}: see the train logs")
        say(f"[{elapsed():6.1f} s] roll out {cfg.eval_episodes} unseen seeds per task")
        t0 = elapsed()
        run_parallel({t: rollout_cmd(cfg, t, d[t]) for t in cfg.tasks}, logs, "rollout", name="gpu-vision")
        stage("rollout", t0)
        rollouts = {t: json.loads((d[t] / "rollout.json").read_text()) for t in cfg.tasks}
        for t, roll in rollouts.items():
            doc["results"][t].update(
                success=roll["successes"],
                episodes=len(roll["episodes"]),
                success_rate=roll["success_rate"],
                wilson_95=roll["wilson_95"],
                failed_seeds=[e["seed"] for e in roll["episodes"] if not e["success"]],
            )
            info = json.loads((d[t] / "dataset" / "meta" / "info.json").read_text())
            doc["results"][t]["demo_frames"] = info["total_frames"]
        (results / "seeds.tsv").write_text(_seeds_tsv(rollouts))
    except (Exception, SystemExit) as e:  # whatever broke is reported in result.json, with what was done
        doc["error"] = str(e) or type(e).__name__
        finish()
        raise
    return finish()


def set_field(cfg: GpuVisionConfig, item: str) -> None:
    """`--set FIELD=VALUE`: VALUE read as JSON (a bare word as a string); one line naming the fields otherwise."""
    name, sep, value = item.partition("=")
    if not sep or name not in cfg.__dataclass_fields__:
        raise SystemExit(
            f"gpu-vision: --set {item!r}: expected FIELD=VALUE, FIELD one of {', '.join(cfg.__dataclass_fields__)}"
        )
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    setattr(cfg, name, tuple(parsed) if isinstance(parsed, list) and name == "tasks" else parsed)


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the device run (benchmarks/gpu_vision.sh calls it)")
    r.add_argument("--work", default="/tmp/gpu_vision", help="working directory (demos, datasets, runs)")
    r.add_argument("--results", required=True, help="where the files that come back go ($OUT on the device)")
    r.add_argument("--started-at", type=float, default=None, help="epoch seconds the command started")
    r.add_argument("--rehearse", action="store_true", help="everything tiny, on the CPU")
    r.add_argument("--steps", type=int, default=None, help="fixed training steps instead of the time budget's")
    r.add_argument("--budget-s", type=float, default=None, help="the command's time budget (default 540)")
    r.add_argument("--weights", choices=("int8", "fp16", "fp32"), default=None, help="checkpoint precision back")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="any config field (JSON value)")
    c = sub.add_parser("calibrate", help="print a config's model-step time and a sample's cost as JSON")
    c.add_argument("--config", required=True)
    c.add_argument("--dataset", required=True, help="the converted dataset whose samples are timed, after `go`")
    j = sub.add_parser("join", help="checkpoint parts -> run directories `robotflow rollout` loads")
    j.add_argument("parts", help=f"directory holding {PART_PREFIX}NN")
    j.add_argument("--out", default="out/gpu_vision", help="where the run directories go")
    args = p.parse_args()
    if args.cmd == "calibrate":
        raw = json.loads(args.config)
        raw["tasks"] = tuple(raw["tasks"])
        print(json.dumps(calibrate(GpuVisionConfig(**raw), Path(args.dataset))))
    elif args.cmd == "join":
        for task, run_dir in join_parts(Path(args.parts), Path(args.out)).items():
            print(f"{task}: robotflow rollout --checkpoints-dir {run_dir} --graph graphs/sim_{task}_vision_policy.yaml")
    else:
        cfg = GpuVisionConfig.rehearsal() if args.rehearse else GpuVisionConfig()
        for name in ("steps", "budget_s", "weights"):
            if getattr(args, name) is not None:
                setattr(cfg, name, getattr(args, name))
        for item in args.set:
            set_field(cfg, item)
        work = Path(args.work)
        if work.exists():
            shutil.rmtree(work)
        doc = run(cfg, work, Path(args.results), args.started_at, say=lambda m: print(m, flush=True))
        for t, res in doc["results"].items():
            print(
                f"{t}: {res.get('success')}/{res.get('episodes')} at step {res['checkpoint_step']} ({res['training']})"
            )
        print(f"total {doc['total_s']} s; stages {doc['stages_s']}")


if __name__ == "__main__":
    main()
