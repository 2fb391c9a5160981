"""`robotflow convert` / `convert append` from and to S3 URLs (moto's server on loopback)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from episode_factory import write_episodes
from s3_server import BUCKET, s3_server

from robotflow.scripts.cli import main
from robotflow.storage import Cache, CacheConfig


@pytest.fixture
def s3(monkeypatch, tmp_path):
    with s3_server(monkeypatch, tmp_path) as server:
        yield server


def test_convert_and_append_on_s3(s3, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    write_episodes(tmp_path / "eps", 2, duration_s=1.5, image_shape=(48, 64))
    write_episodes(tmp_path / "more", 1, duration_s=1.5, image_shape=(48, 64))
    Cache().upload(tmp_path / "eps", f"s3://{BUCKET}/raw/a")
    Cache().upload(tmp_path / "more", f"s3://{BUCKET}/raw/b")
    ds_url = f"s3://{BUCKET}/lerobot/stack"
    args = ["--codec", "ee", "--quiet", "--output-dir", ds_url]
    res = CliRunner().invoke(main, ["convert", "--input", f"s3://{BUCKET}/raw/a", "--image-size", "48x64", *args])
    assert res.exit_code == 0, res.output
    again = CliRunner().invoke(main, ["convert", "--input", f"s3://{BUCKET}/raw/a", *args])
    assert again.exit_code != 0 and "not empty" in again.output

    res = CliRunner().invoke(main, ["convert", "append", "--input", f"s3://{BUCKET}/raw/b", *args])
    assert res.exit_code == 0, res.output
    # Another machine reads the dataset from the bucket with LeRobot's defaults.
    other = Cache(CacheConfig(tmp_path / "reader_cache", 10**9))
    ds = LeRobotDataset("local/stack", root=other.download(ds_url))
    assert ds.meta.total_episodes == 3 and len(ds) > 0
    assert (other.local_path(ds_url) / "meta" / "robotflow_codec.json").is_file()
