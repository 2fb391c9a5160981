"""A real S3-compatible server on loopback for tests: moto's server mode, one bucket, credentials in the env."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator

import pytest

BUCKET = "robotflow-test"


@contextlib.contextmanager
def s3_server(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[object]:
    """Start moto on 127.0.0.1 (a free port), create BUCKET, point AWS_* and robotflow's cache at it."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("ROBOTFLOW_CACHE_DIR", str(tmp_path / "cache"))
    # moto keeps its state per Python process, across servers: start every test from an empty store.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).close()
    s3fs.S3FileSystem.clear_instance_cache()  # instances remember the endpoint they were made with
    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    try:
        yield server
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
