"""Codec specs of datasets and checkpoints, and checkpoints trained by plain `lerobot-train` (no robotflow_codec.json
beside them): the codec comes from train_config.json's dataset, or the codec the caller names, and is always checked
against the policy's own feature shapes in config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lerobot")

from test_policy_chunking import H, W
from test_policy_node import GRAPH, save_checkpoint

from robotflow.codecs import (
    CHECKPOINT_SPEC_FILE,
    CodecError,
    CodecMismatchError,
    checkpoint_codec,
    get_codec,
    read_dataset_spec,
    spec_differences,
    write_dataset_spec,
)
from robotflow.codecs.spec import check_same_codec
from robotflow.runtime.graph import parse_graph
from robotflow.runtime.scheduler import Scheduler


def make_dataset_meta(root: Path, codec) -> Path:
    """The metadata part of a converted dataset (what the spec lookup reads)."""
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0", "fps": 15}))
    write_dataset_spec(root, codec)
    return root


def train_config(model_dir: Path, root: str | None, repo_id: str = "robotflow/dataset") -> None:
    """train_config.json as lerobot-train saves it beside every checkpoint (the fields the lookup reads, and more)."""
    doc = {
        "dataset": {"repo_id": repo_id, "root": root, "episodes": None, "revision": None, "video_backend": "pyav"},
        "env": None,
        "policy": {"type": "act", "device": "cpu"},
        "output_dir": str(model_dir.parents[2]),
        "job_name": "act",
        "resume": False,
        "seed": 1000,
        "steps": 2,
        "batch_size": 2,
    }
    (model_dir / "train_config.json").write_text(json.dumps(doc, indent=4))


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint written like lerobot-train's: weights, config, processors, train_config.json; no codec spec."""
    tmp = tmp_path_factory.mktemp("plain")
    model = save_checkpoint(tmp / "outputs" / "checkpoints" / "000002" / "pretrained_model")
    (model / CHECKPOINT_SPEC_FILE).unlink()
    return model


def test_channels_are_wiring_not_a_difference():
    a = get_codec("ee", channels={"arm/state": "robot/state"}, cameras={"wrist": "cam_w/frame", "front": "cam_f/frame"})
    assert spec_differences(a.spec(), get_codec("ee").spec()) == []
    old = get_codec("ee").spec()
    del old["params"]["channels"]  # a spec written before channels were params
    assert spec_differences(old, a.spec()) == []
    with pytest.raises(CodecMismatchError, match="codec mismatch: dataset x has codec 'eepose_absolute'.*image_size"):
        check_same_codec(old, get_codec("ee", image_size=(48, 64)), have_what="dataset x", want_what="this run")
    with pytest.raises(CodecError, match="unknown codec channel 'arm/stat'"):
        get_codec("ee", channels={"arm/stat": "robot/state"})
    with pytest.raises(CodecError, match="must be 'node/output'"):
        get_codec("ee", channels={"arm_state": "robot"})


def test_dataset_through_train_config(plain_checkpoint, tmp_path):
    model = plain_checkpoint
    data = make_dataset_meta(tmp_path / "data", get_codec("ee", image_size=(H, W)))
    train_config(model, str(data))
    found = checkpoint_codec(model)
    assert found.spec == read_dataset_spec(data) and found.name == "eepose_absolute"
    assert str(data) in found.source and "train_config.json" in found.source
    assert checkpoint_codec(model, "ee", cameras=["front", "wrist"]).spec == found.spec

    # The usual mismatch checks, each one line.
    for codec, cameras, match in (
        ("joints", None, "trained with codec 'eepose_absolute' but the graph uses 'joints_absolute'"),
        ("ee", ["top"], r"trained with cameras \['front', 'wrist'\] but the graph declares \['top'\]"),
    ):
        with pytest.raises(CodecMismatchError, match=match) as e:
            checkpoint_codec(model, codec, cameras=cameras)
        assert "\n" not in str(e.value)

    # A dataset converted at another image size than the policy was trained on is refused by the policy's shapes.
    other = make_dataset_meta(tmp_path / "other", get_codec("ee", image_size=(96, 128)))
    train_config(model, str(other))
    with pytest.raises(CodecMismatchError, match=r"observation.images.\w+ is \[3, 48, 64\] in the policy"):
        checkpoint_codec(model)

    # dataset.root null: LeRobot's cache for the repo id.
    train_config(model, None, repo_id="me/stack")
    cache = tmp_path / "lerobot_home"
    make_dataset_meta(cache / "me" / "stack", get_codec("ee", image_size=(H, W)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_LEROBOT_HOME", str(cache))
        assert str(cache / "me" / "stack") in checkpoint_codec(model).source


def test_named_codec_when_the_dataset_is_elsewhere(plain_checkpoint, tmp_path):
    model = plain_checkpoint
    train_config(model, str(tmp_path / "trained_on_another_machine"))
    with pytest.raises(CodecError, match="trained_on_another_machine.*is not on this machine.*--codec") as e:
        checkpoint_codec(model)
    assert "\n" not in str(e.value)

    found = checkpoint_codec(model, "ee")  # cameras and image size from the policy's config.json
    assert found.spec["params"]["image_size"] == [H, W]
    assert sorted(found.spec["params"]["cameras"]) == ["front", "wrist"]
    assert "named" in found.source
    with pytest.raises(CodecMismatchError, match=r"observation.state is \[8\] in the policy and \[15\] from the codec"):
        checkpoint_codec(model, "ee_joints")

    # A LeRobot dataset robotflow did not convert (no codec spec in it): the named codec is used the same way.
    foreign = tmp_path / "hub_dataset"
    (foreign / "meta").mkdir(parents=True)
    (foreign / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0", "fps": 30}))
    train_config(model, str(foreign))
    with pytest.raises(CodecError, match="hub_dataset .*has no robotflow codec.*--codec"):
        checkpoint_codec(model)
    assert checkpoint_codec(model, "ee").spec == found.spec

    from robotflow.policies.loading import load_policy

    train_config(model, str(tmp_path / "trained_on_another_machine"))
    loaded = load_policy(model, device="cpu", codec="ee")
    assert loaded.codec_spec == found.spec
    with pytest.raises(CodecError, match="is not on this machine"):
        load_policy(model, device="cpu")
    assert load_policy(model, device="cpu", require_codec=False).codec_spec is None


@pytest.mark.parametrize("node_type", ["policy.lerobot"])
def test_policy_node_runs_a_plain_lerobot_checkpoint(plain_checkpoint, tmp_path, node_type):
    model = plain_checkpoint
    train_config(model, str(make_dataset_meta(tmp_path / "data", get_codec("ee", image_size=(H, W)))))
    sched = Scheduler(parse_graph(GRAPH.format(node_type=node_type, ckpt=model, codec="ee")), duration_s=2.0)
    result = sched.run()
    assert result.ok, result.error
    assert sched.nodes["sink"].received.get("target", 0) >= 5

    # The graph's codec differs from the dataset's: setup fails, naming both.
    result = Scheduler(parse_graph(GRAPH.format(node_type=node_type, ckpt=model, codec="joints")), duration_s=2.0).run()
    assert not result.ok and result.failed_node == "policy"
    assert "'eepose_absolute'" in result.error and "'joints_absolute'" in result.error


def test_serve_runs_a_plain_lerobot_checkpoint(plain_checkpoint, tmp_path):
    from robotflow.serving.server import ModelCatalog, ServedModel, ServeError

    model = plain_checkpoint
    train_config(model, str(make_dataset_meta(tmp_path / "data", get_codec("ee", image_size=(H, W)))))
    assert ServedModel("2", model, "cpu", None).meta["codec"] == "eepose_absolute"
    assert ModelCatalog(str(model), None, "ee").ids() == ["2"]
    with pytest.raises(ServeError, match="model 2: codec mismatch.*'joints_absolute'"):
        ModelCatalog(str(model), None, "joints")

    train_config(model, str(tmp_path / "elsewhere"))  # trained on another machine: serve --codec names it
    served = ServedModel("2", model, "cpu", "ee")
    assert served.meta["codec"] == "eepose_absolute" and served.meta["image_sizes"] == [W, H]
