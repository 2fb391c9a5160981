"""Remote paths through fsspec against a real S3-compatible server (moto's server mode on loopback)."""

from __future__ import annotations

import os

import pytest
from s3_server import BUCKET, s3_server

from robotflow.storage import Cache, CacheConfig, StorageError, is_remote, join, local_input


@pytest.fixture
def s3(monkeypatch, tmp_path):
    with s3_server(monkeypatch, tmp_path) as server:
        yield server


def _tree(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _make_run(root):
    (root / "checkpoints" / "000002" / "pretrained_model").mkdir(parents=True)
    (root / "checkpoints" / "000002" / "pretrained_model" / "config.json").write_text('{"type": "act"}')
    (root / "checkpoints" / "000002" / "pretrained_model" / "model.safetensors").write_bytes(os.urandom(5000))
    (root / "checkpoints" / "last").symlink_to("000002")
    (root / "meta").mkdir()
    (root / "meta" / "info.json").write_text('{"total_episodes": 10}')
    return root


def test_paths():
    assert is_remote("s3://bucket/x") and is_remote("gs://b/x")
    assert not is_remote("data/x") and not is_remote("file:///tmp/x") and not is_remote(None)
    assert join("s3://b/runs/", "act", "checkpoints") == "s3://b/runs/act/checkpoints"
    assert local_input("file:///tmp/x") == local_input("/tmp/x")


def test_upload_then_download_mirrors_changes(s3, tmp_path):
    src = _make_run(tmp_path / "run")
    url = f"s3://{BUCKET}/runs/act"
    writer = Cache(CacheConfig(tmp_path / "writer_cache", 10**9))
    uploaded = writer.upload(src, url)
    # The symlink `last` is not uploaded; files that mark a directory complete go last.
    assert "checkpoints/last/pretrained_model/config.json" not in uploaded
    assert uploaded[-2:] == ["checkpoints/000002/pretrained_model/config.json", "meta/info.json"]
    assert writer.upload(src, url) == []  # nothing changed

    reader = Cache(CacheConfig(tmp_path / "reader_cache", 10**9))
    local = reader.download(url)
    assert _tree(local) == _tree(src)
    model = local / "checkpoints" / "000002" / "pretrained_model" / "model.safetensors"
    first_mtime = model.stat().st_mtime_ns
    # Same size, other content (an append rewrites the episode count): the ETag tells them apart.
    (src / "meta" / "info.json").write_text('{"total_episodes": 12}')
    (src / "checkpoints" / "000002" / "pretrained_model" / "config.json").unlink()
    import s3fs

    s3fs.S3FileSystem().rm(f"{BUCKET}/runs/act/checkpoints/000002/pretrained_model/config.json")
    s3fs.S3FileSystem().put_file(str(src / "meta" / "info.json"), f"{BUCKET}/runs/act/meta/info.json")
    again = reader.download(url)
    assert (again / "meta" / "info.json").read_text() == '{"total_episodes": 12}'
    assert not (again / "checkpoints" / "000002" / "pretrained_model" / "config.json").exists()
    assert model.stat().st_mtime_ns == first_mtime  # unchanged files are not transferred again

    one = reader.download(f"{url}/meta/info.json")
    assert one.is_file() and one.read_text() == '{"total_episodes": 12}'
    with pytest.raises(StorageError, match="does not exist"):
        reader.download(f"s3://{BUCKET}/nothing/here")


def test_cache_cap_evicts_least_recently_used_but_never_pinned(s3, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem()
    for name in ("a", "b", "c"):
        fs.pipe(f"{BUCKET}/{name}/blob.bin", os.urandom(4000))
    cache = Cache(CacheConfig(tmp_path / "cache", 9000))
    out = cache.output_dir(f"s3://{BUCKET}/outbox")
    (out / "episode_000000.h5").write_bytes(os.urandom(3000))  # not uploaded yet: pinned
    a = cache.download(f"s3://{BUCKET}/a")
    b = cache.download(f"s3://{BUCKET}/b")
    assert not a.exists() and b.is_dir()  # 3000 + 4000 + 4000 > 9000: `a` was the least recently used
    cache.download(f"s3://{BUCKET}/c")
    assert not b.exists()
    assert (out / "episode_000000.h5").is_file() and cache.pinned(f"s3://{BUCKET}/outbox")
    assert cache.size_bytes() <= 9000 + 3000


def test_failed_upload_keeps_local_files_and_pin(s3, tmp_path, monkeypatch):
    cache = Cache(CacheConfig(tmp_path / "cache", 10**9))
    url = f"s3://{BUCKET}/episodes"
    out = cache.output_dir(url)
    data = os.urandom(2000)
    (out / "episode_000000.h5").write_bytes(data)
    s3.stop()
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # no pooled connection to the stopped server: fail at once
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StorageError) as e:
        cache.upload(out, url)
    assert "\n" not in str(e.value) and url in str(e.value)
    assert (out / "episode_000000.h5").read_bytes() == data
    assert cache.pinned(url)


def _upload_run(tmp_path, url, steps=(1, 2)):
    run = tmp_path / "run_src"
    for step in steps:
        model = run / "checkpoints" / f"{step:06d}" / "pretrained_model"
        model.mkdir(parents=True)
        (model / "config.json").write_text('{"type": "act"}')
        (model / "model.safetensors").write_bytes(os.urandom(100 * step))
        (run / "checkpoints" / f"{step:06d}" / "training_state").mkdir()
        (run / "checkpoints" / f"{step:06d}" / "training_state" / "training_step.json").write_text(
            f'{{"step": {step}}}'
        )
    incomplete = run / "checkpoints" / "000003" / "pretrained_model"  # config.json not uploaded yet
    incomplete.mkdir(parents=True)
    (incomplete / "model.safetensors").write_bytes(b"x")
    Cache().upload(run, url)


def test_resolving_a_remote_checkpoint_downloads_only_the_chosen_one(s3, tmp_path):
    from robotflow.policies.checkpoints import CheckpointError, remote_checkpoints, resolve_checkpoint

    url = f"s3://{BUCKET}/runs/act"
    _upload_run(tmp_path, url)
    assert [s for s, _ in remote_checkpoints(url)] == [1, 2]
    found = resolve_checkpoint(url)
    newest = found.path
    assert found.step == 2 and newest.name == "pretrained_model" and newest.parent.name == "000002"
    assert (newest / "model.safetensors").stat().st_size == 200
    assert not (newest.parent.parent / "000001").exists()  # nothing else was downloaded
    assert resolve_checkpoint(url, 1).path.parent.name == "000001"
    assert resolve_checkpoint(f"{url}/checkpoints/000002").path.parent.name == "000002"
    with pytest.raises(CheckpointError, match="available: 1, 2"):
        resolve_checkpoint(url, 7)


def test_remote_resume_downloads_the_last_checkpoint(s3, tmp_path):
    from robotflow.training import TrainError, TrainOptions
    from robotflow.training.upload import remote_output

    _upload_run(tmp_path, f"s3://{BUCKET}/runs/act")
    cache = Cache()
    opts = TrainOptions(dataset_root=tmp_path, run_name="act", output_dir=f"s3://{BUCKET}/runs", resume=True)
    local_opts, run_url = remote_output(opts, cache)
    assert run_url == f"s3://{BUCKET}/runs/act"
    last = local_opts.run_dir / "checkpoints" / "last"
    assert last.is_symlink() and (last / "training_state" / "training_step.json").read_text() == '{"step": 2}'
    with pytest.raises(TrainError, match="already exists"):
        remote_output(TrainOptions(dataset_root=tmp_path, run_name="act", output_dir=f"s3://{BUCKET}/runs"), cache)


def test_serve_and_rollout_name_a_missing_remote_run_in_one_line(s3):
    from click.testing import CliRunner

    from robotflow.scripts.cli import main

    url = f"s3://{BUCKET}/runs/none"
    for args in (["serve", "--checkpoints-dir", url], ["rollout", "--checkpoints-dir", url]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code != 0 and f"no checkpoints under {url}" in res.output, res.output
        assert "Traceback" not in res.output


def test_background_uploader_sends_closed_files_while_running(s3, tmp_path):
    import time

    import s3fs

    from robotflow.storage import BackgroundUploader

    url = f"s3://{BUCKET}/live"
    local = Cache().output_dir(url)
    uploader = BackgroundUploader(local, url, interval_s=0.2)
    try:
        (local / "episode_000000.h5.partial").write_bytes(os.urandom(1000))  # still being written: not uploaded
        time.sleep(1.0)
        (local / "episode_000000.h5.partial").rename(local / "episode_000000.h5")
        fs = s3fs.S3FileSystem()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            fs.invalidate_cache()
            if fs.exists(f"{BUCKET}/live/episode_000000.h5"):
                break
            time.sleep(0.2)
        assert fs.exists(f"{BUCKET}/live/episode_000000.h5")  # uploaded before the run ended
        assert not fs.exists(f"{BUCKET}/live/episode_000000.h5.partial")
    finally:
        uploaded, error = uploader.finish()
    assert error is None and uploaded == ["episode_000000.h5"]
    assert not Cache().pinned(url)
