"""The pieces of the device run (`benchmarks/gpu_vision.sh`) that can be checked without a GPU: the time budget, the
recording shards, the checkpoint parts and their join, the start-up shim, and the bundle's wheel slimming.
`make gpu-rehearse` runs the whole script on the CPU."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("lerobot")

import torch
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.factory import make_pre_post_processors
from safetensors.torch import load_file
from test_policy_chunking import H, W, tiny_config, tiny_stats

from benchmarks.gpu_bundle import keeps, slim_wheel
from benchmarks.gpu_vision import (
    PART_PREFIX,
    RETURN_FILE_BYTES,
    GpuVisionConfig,
    dequantize_state,
    join_parts,
    pack_checkpoints,
    plan_steps,
    quantize_state,
    set_field,
    shard_seeds,
    train_until,
)
from robotflow.codecs import get_codec, write_checkpoint_spec
from robotflow.policies.loading import load_policy

ROOT = Path(__file__).resolve().parents[1]


def test_plan_fits_the_training_before_the_rollout_reserve():
    cfg = GpuVisionConfig()
    elapsed = 150.0
    plan = plan_steps(cfg, elapsed, step_s=0.05, sample_s=0.001)  # a fast loader: the shared GPU bounds it
    assert plan["bound_by"] == "gpu"
    assert plan["deadline_s"] == cfg.budget_s - cfg.rollout_reserve_s - cfg.pack_reserve_s
    assert plan["steps_per_s"] == pytest.approx(cfg.train_efficiency / (0.05 * len(cfg.tasks)), abs=0.01)
    assert elapsed + cfg.train_startup_s + plan["steps"] / plan["steps_per_s"] <= plan["deadline_s"] + 1e-6
    assert plan["steps"] > 0.9 * plan["window_s"] * plan["steps_per_s"]  # and uses the window
    assert plan["save_freq"] == plan["steps"] // 10

    slow = plan_steps(cfg, elapsed, step_s=0.05, sample_s=0.04)  # 7 workers x 32-sample batches at 40 ms each
    assert slow["bound_by"] == "data loading"
    data_rate = cfg.train_workers / (0.04 * cfg.batch_size)
    assert slow["steps_per_s"] == pytest.approx(cfg.train_efficiency * data_rate, abs=0.01)
    assert slow["steps"] < plan["steps"]

    later = plan_steps(cfg, elapsed + 60, step_s=0.05, sample_s=0.001)  # a slower record: fewer steps
    assert later["steps"] < plan["steps"]
    late = plan_steps(cfg, cfg.budget_s, step_s=0.05, sample_s=0.001)  # no time left: one step, not a negative
    assert late["steps"] == 1 and late["save_freq"] == 1
    failed = plan_steps(cfg, elapsed, step_s=None, sample_s=None)  # calibration failed: the fallbacks
    assert failed["model_step_s"] == cfg.fallback_step_s and failed["sample_s"] == cfg.fallback_sample_s
    fixed = GpuVisionConfig.rehearsal()
    assert plan_steps(fixed, elapsed, 0.05, 0.001)["steps"] == fixed.steps


def test_shards_cover_each_demo_seed_once():
    for demos, shards in ((100, 7), (2, 2), (3, 7), (1, 1)):
        plan = shard_seeds(demos, shards)
        seeds = [s for first, n in plan for s in range(first, first + n)]
        assert seeds == list(range(demos)) and len(plan) == min(demos, shards) and all(n > 0 for _, n in plan)


def test_a_training_still_running_at_the_deadline_is_stopped(tmp_path):
    py = [sys.executable, "-c"]
    cmds = {
        "done": [*py, "print('step:1 loss:0.5')"],
        "broken": [*py, "raise SystemExit(3)"],
        "slow": [*py, "import time; time.sleep(60)"],
    }
    t0 = time.monotonic()
    ending = train_until(cmds, tmp_path, deadline=t0 + 3.0, threads=1)
    assert ending == {"done": "finished", "broken": "failed (exit 3)", "slow": "stopped at the deadline"}
    assert time.monotonic() - t0 < 30  # not the minute the slow one would take
    assert "step:1 loss:0.5" in (tmp_path / "train_done.log").read_text()


def test_set_field_reads_json_and_refuses_unknown_fields():
    cfg = GpuVisionConfig()
    set_field(cfg, "batch_size=64")
    set_field(cfg, "weights=fp16")
    set_field(cfg, 'tasks=["stack_cubes"]')
    assert (cfg.batch_size, cfg.weights, cfg.tasks) == (64, "fp16", ("stack_cubes",))
    with pytest.raises(SystemExit, match="expected FIELD=VALUE"):
        set_field(cfg, "batchsize=64")


def test_int8_quantisation_is_within_half_a_step_per_row():
    g = torch.Generator().manual_seed(0)
    state = {
        "big": torch.randn(64, 128, generator=g),
        "conv": torch.randn(32, 16, 3, 3, generator=g),
        "bias": torch.randn(64, generator=g),
        "count": torch.tensor([7], dtype=torch.int64),
    }
    packed, manifest = quantize_state(state, "int8")
    assert manifest["int8"] == ["big", "conv"] and packed["big"].dtype == torch.int8
    back = dequantize_state(packed, manifest)
    for name in ("big", "conv"):
        rows = state[name].reshape(state[name].shape[0], -1)
        step = rows.abs().amax(dim=1) / 127
        err = (back[name] - state[name]).reshape(rows.shape).abs()
        assert back[name].dtype == torch.float32 and bool((err <= step[:, None] / 2 + 1e-7).all())
    assert torch.equal(back["count"], state["count"])
    assert (back["bias"] - state["bias"]).abs().max() < 1e-3  # float16
    exact, m32 = quantize_state(state, "fp32")
    assert all(torch.equal(dequantize_state(exact, m32)[k], v) for k, v in state.items())


def _checkpoint(run: Path, step: str) -> Path:
    """A run dir with one checkpoint as LeRobot's trainer writes it (weights, config, processors) + codec spec."""
    torch.manual_seed(0)
    cfg = tiny_config()
    model_dir = run / "checkpoints" / step / "pretrained_model"
    pre, post = make_pre_post_processors(cfg, dataset_stats=tiny_stats())
    ACTPolicy(cfg).save_pretrained(model_dir)
    pre.save_pretrained(model_dir)
    post.save_pretrained(model_dir)
    write_checkpoint_spec(model_dir, get_codec("ee_cams_rel", image_size=(H, W)).spec())
    (run / "checkpoints" / "last").symlink_to(step)
    return model_dir


def test_parts_join_into_the_same_checkpoint_that_rollout_loads(tmp_path):
    src = {t: _checkpoint(tmp_path / "device" / t, "000040") for t in ("pick_place", "stack_cubes")}
    exact = pack_checkpoints(src, tmp_path / "fp32", "fp32", budget_bytes=2**30, max_parts=20)
    assert exact["tasks"] == ["pick_place", "stack_cubes"] and exact["left_out"] == []
    parts = sorted((tmp_path / "fp32").iterdir())
    assert len(parts) == len(exact["parts"]) > 1 and all(p.stat().st_size <= RETURN_FILE_BYTES for p in parts)
    runs = join_parts(tmp_path / "fp32", tmp_path / "here32")
    for task, model_dir in src.items():
        joined = runs[task] / "checkpoints" / "last" / "pretrained_model"
        assert os.readlink(runs[task] / "checkpoints" / "last") == "000040"
        assert sorted(p.name for p in joined.iterdir()) == sorted(p.name for p in model_dir.iterdir())
        for f in model_dir.iterdir():
            assert (joined / f.name).read_bytes() == f.read_bytes(), f.name

    small = pack_checkpoints(src, tmp_path / "int8", "int8", budget_bytes=2**30, max_parts=20)
    assert small["bytes"] < exact["bytes"] / 3
    runs = join_parts(tmp_path / "int8", tmp_path / "here8")
    loaded = load_policy(runs["stack_cubes"], device="cpu", codec="ee_cams_rel")
    assert loaded.codec_spec["name"] == "ee_cams_rel" and loaded.path.parent.name == "000040"
    before = load_file(src["stack_cubes"] / "model.safetensors")
    after = {k: v.detach() for k, v in loaded.policy.state_dict().items()}
    worst = max((after[k].float() - v.float()).abs().max().item() for k, v in before.items())
    assert 0 < worst < 0.05

    # What does not fit the return is left out whole, last task first.
    one = pack_checkpoints(src, tmp_path / "one", "int8", budget_bytes=small["bytes"] - 1, max_parts=20)
    assert one["tasks"] == ["pick_place"] and one["left_out"] == ["stack_cubes"]


def test_join_refuses_a_missing_part(tmp_path, capsys):
    src = {"pick_place": _checkpoint(tmp_path / "device", "000001")}
    info = pack_checkpoints(src, tmp_path / "parts", "fp32", budget_bytes=2**30, max_parts=20)
    assert len(info["parts"]) > 1
    (tmp_path / "parts" / f"{PART_PREFIX}01").unlink()
    with pytest.raises(SystemExit, match="one is missing"):
        join_parts(tmp_path / "parts", tmp_path / "here")


def test_device_startup_hides_transformers_from_lerobot(tmp_path):
    """The device's transformers 5 (here: a package of that name behind the shim on the path) is not found."""
    (tmp_path / "transformers").mkdir()
    (tmp_path / "transformers" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    code = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('transformers') is None\n"
        "try:\n    import transformers\nexcept ModuleNotFoundError:\n    print('hidden')\n"
        "assert 'transformers' not in sys.modules\n"
        "import json; print(importlib.util.find_spec('json') is not None)\n"
    )
    for path, expect in ((f"{ROOT / 'benchmarks' / 'gpu_site'}:{tmp_path}", "hidden\nTrue"), (str(tmp_path), None)):
        env = {**os.environ, "PYTHONPATH": path}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if expect is None:  # without the shim the package is found: the check above can fail
            assert out.returncode != 0
        else:
            assert out.returncode == 0 and out.stdout.strip() == expect, out.stderr


def _record(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def test_slimmed_wheel_drops_tests_and_docs_and_keeps_a_valid_record(tmp_path):
    files = {
        "pkg/__init__.py": b"x = 1\n",
        "pkg/tests/test_x.py": b"assert 0\n",
        "pkg/docs/index.md": b"# docs\n",
        "pkg/core.pyi": b"x: int\n",
        "pkg/testing_helpers.py": b"y = 2\n",  # a module, not a test folder
        "pkg-1.0.dist-info/METADATA": b"Name: pkg\n",
    }
    src = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(src, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("pkg-1.0.dist-info/RECORD", "\n".join(_record(n, d) for n, d in files.items()))
    dest = tmp_path / "out.whl"
    slim_wheel(src, dest)
    with zipfile.ZipFile(dest) as z:
        names = set(z.namelist())
        record = z.read("pkg-1.0.dist-info/RECORD").decode().split()
        kept = {n: z.read(n) for n in names if not n.endswith("RECORD")}
    assert names == {
        "pkg/__init__.py",
        "pkg/testing_helpers.py",
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/RECORD",
    }
    assert sorted(record) == sorted([*(_record(n, d) for n, d in kept.items()), "pkg-1.0.dist-info/RECORD,,"])
    assert keeps("gym_hil/assets/robotiq_2f85/meshes/base.stl") and not keeps("datasets/tests/x.py")
