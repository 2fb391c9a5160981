"""CPU seconds per camera ACT training step, one torch thread: how the camera recipe was picked.

    python -m benchmarks.vision_step [--json] [--configs 2:96x128:8:bf16 2:96x128:8:fp32 ...]

LeRobot's ACTPolicy forward + backward + AdamW on random tensors (no data loading), resnet18 from random weights,
dim 256, feedforward 1024, chunk 20, no VAE: the model step of `make e2e-vision`. Each config is
CAMERAS:HxW:BATCH:fp32|bf16 (bf16: bfloat16 autocast, what `robotflow train --bf16` turns on). The figure is the
median process CPU time of a step, not wall time: on a machine shared with other jobs the CPU time a step needs
is the steady number, and the wall time is that divided by the share of a core the run gets.
"""

from __future__ import annotations

import time

from benchmarks._util import emit, machine, parser

DEFAULT_CONFIGS = ("2:96x128:8:bf16", "2:96x128:8:fp32", "2:72x96:8:bf16", "2:96x128:16:bf16", "1:96x128:8:bf16")


def cpu_seconds_per_step(cameras: int, size: tuple[int, int], batch: int, bf16: bool, steps: int = 6) -> float:
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    torch.set_num_threads(1)
    feats = {f"observation.images.c{i}": PolicyFeature(FeatureType.VISUAL, (3, *size)) for i in range(cameras)}
    feats["observation.state"] = PolicyFeature(FeatureType.STATE, (8,))
    cfg = ACTConfig(
        input_features=feats,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (8,))},
        chunk_size=20,
        n_action_steps=10,
        dim_model=256,
        dim_feedforward=1024,
        use_vae=False,
        pretrained_backbone_weights=None,
        device="cpu",
    )
    policy = ACTPolicy(cfg)
    opt = torch.optim.AdamW(policy.parameters(), 1e-4)
    sample = {k: torch.rand(batch, *f.shape) for k, f in feats.items()}
    sample["action"] = torch.randn(batch, 20, 8)
    sample["action_is_pad"] = torch.zeros(batch, 20, dtype=torch.bool)
    times = []
    for i in range(steps + 2):  # the first two allocate and pick kernels
        t0 = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = policy.forward(sample)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= 2:
            times.append(time.process_time() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="CAMERAS:HxW:BATCH:fp32|bf16 ...")
    args = p.parse_args()
    rows = []
    for item in args.configs:
        cams, hw, batch, precision = item.split(":")
        h, w = (int(v) for v in hw.split("x"))
        s = cpu_seconds_per_step(int(cams), (h, w), int(batch), precision == "bf16")
        rows.append({"config": item, "cpu_s_per_step": round(s, 3), "samples_per_cpu_s": round(int(batch) / s, 1)})
    emit({"steps": rows, "machine": machine()}, args.json)


if __name__ == "__main__":
    main()
