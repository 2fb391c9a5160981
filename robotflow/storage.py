"""Remote storage: any fsspec URL (``s3://bucket/path``, ``gs://...``) where a dataset, episode or checkpoint path is
expected.

LeRobot, h5py and MuJoCo read local files only, so remote data is worked on through a local mirror:

- ``download(url)`` mirrors a remote file or directory into the cache and returns the local path. Only files whose
  size or ETag changed are transferred again, so a second run starts at once.
- ``output_dir(url)`` gives the local directory an output is written to; ``upload(local, url)`` pushes what changed.
  An output stays *pinned* until it is uploaded, and pinned data is never evicted: a failed upload leaves the files
  where they are, to be uploaded by the next run that writes to the same URL.
- The cache (``$ROBOTFLOW_CACHE_DIR``, default ``~/.cache/robotflow``) is capped at ``$ROBOTFLOW_CACHE_MAX_GB``
  (default 100): after each download the least recently used unpinned entries are removed until it fits.

A local path (or ``file://``) passes through unchanged. Credentials and endpoints come from the usual places of the
filesystem's library (for S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for an
S3-compatible server such as MinIO, ``~/.aws/``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_DIR_ENV = "ROBOTFLOW_CACHE_DIR"
CACHE_MAX_GB_ENV = "ROBOTFLOW_CACHE_MAX_GB"
DEFAULT_CACHE_MAX_GB = 100.0

# Files that mark a directory complete for its readers: a checkpoint is listed once its config.json exists, a
# dataset's meta/info.json states how many episodes it has. They are uploaded after everything else, so a reader on
# another machine never sees a half-uploaded checkpoint or a dataset whose info counts episodes not yet there.
_COMMIT_FILES = ("config.json", "info.json")


class StorageError(Exception):
    """A remote path that cannot be read or written; the message is one line saying what failed."""


def is_remote(path: str | os.PathLike[str] | None) -> bool:
    """Whether `path` is a URL of a remote filesystem (anything but a plain path or ``file://``)."""
    if path is None or not isinstance(path, str):
        return False
    protocol, sep, _ = path.partition("://")
    return bool(sep) and protocol not in ("file", "local") and protocol.replace("+", "").isalnum()


def join(base: str, *parts: str) -> str:
    """`base`/`parts` for a URL or a local path."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def _strip_file(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _fs(url: str):
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:  # e.g. s3fs missing for s3://, or an unknown protocol
        raise StorageError(f"cannot open {url}: {one_line(e)}") from None
    # Filesystem instances are shared per process and cache listings; another machine may have written since.
    fs.invalidate_cache()
    return fs, path


def one_line(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _tag(info: dict[str, Any]) -> str:
    """What identifies one version of a remote file: size plus ETag (S3, GCS) or modification time."""
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated"):
        if info.get(key) is not None:
            return f"{info.get('size')}:{info[key]}"
    return str(info.get("size"))


@dataclass(frozen=True)
class CacheConfig:
    """Where the local mirror lives and how large it may grow."""

    root: Path
    max_bytes: int

    @classmethod
    def from_env(cls) -> CacheConfig:
        root = Path(os.environ.get(CACHE_DIR_ENV) or "~/.cache/robotflow").expanduser()
        raw = os.environ.get(CACHE_MAX_GB_ENV) or str(DEFAULT_CACHE_MAX_GB)
        try:
            gb = float(raw)
        except ValueError:
            raise StorageError(f"{CACHE_MAX_GB_ENV}={raw!r} is not a number of gigabytes") from None
        return cls(root=root, max_bytes=int(gb * 1e9))


class Cache:
    """The local mirror of remote paths (see the module docs)."""

    def __init__(self, config: CacheConfig | None = None):
        self.config = config or CacheConfig.from_env()
        self.root = self.config.root
        self.mirror = self.root / "mirror"
        self._index_file = self.root / "index.json"

    # ---- paths ----------------------------------------------------------------------------------
    def local_path(self, url: str) -> Path:
        """Where `url` is mirrored: ``<cache>/mirror/<protocol>/<bucket>/<key>``."""
        protocol, _, rest = url.partition("://")
        parts = [p for p in rest.split("/") if p not in ("", ".", "..")]
        return self.mirror.joinpath(protocol, *parts)

    # ---- index (last use, pins), shared by every process on the machine -------------------------
    @contextlib.contextmanager
    def _lock(self, name: str = "index") -> Iterator[None]:
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{name}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read_index(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self._index_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _write_index(self, index: dict[str, dict[str, Any]]) -> None:
        tmp = self._index_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        tmp.replace(self._index_file)

    def _touch(self, url: str, *, pinned: bool | None = None, files: dict[str, list] | None = None) -> None:
        """Record a use of `url`; `files` maps each relative path to [remote tag, local size, local mtime_ns] as
        of the last transfer, which is how both directions tell a changed file from a synced one."""
        with self._lock():
            index = self._read_index()
            entry = index.setdefault(url.rstrip("/"), {"pinned": False, "files": {}})
            entry["last_used"] = time.time()
            if pinned is not None:
                entry["pinned"] = pinned
            if files is not None:
                entry["files"] = files
            self._write_index(index)

    def entry(self, url: str) -> dict[str, Any] | None:
        return self._read_index().get(url.rstrip("/"))

    def pinned(self, url: str) -> bool:
        e = self.entry(url)
        return bool(e and e.get("pinned"))

    # ---- transfers ------------------------------------------------------------------------------
    def download(self, url: str) -> Path:
        """Mirror the remote file or directory `url` locally and return its local path.

        Files already mirrored (same remote ETag, local copy untouched since) are kept; local files the remote no
        longer has are removed, except in a pinned output (it may hold data not yet uploaded).
        """
        fs, rpath = _fs(url)
        local = self.local_path(url)
        with self._lock(hashlib.sha1(url.encode()).hexdigest()[:16]):  # one download per URL at a time
            try:
                if not fs.exists(rpath):
                    raise StorageError(f"{url} does not exist")
                single = fs.isfile(rpath)
                listing = {rpath: fs.info(rpath)} if single else fs.find(rpath, detail=True)
            except StorageError:
                raise
            except Exception as e:  # noqa: BLE001 - any client error becomes one line naming the URL
                raise StorageError(f"cannot list {url}: {one_line(e)}") from None
            known = (self.entry(url) or {}).get("files", {})
            files: dict[str, list] = {}
            for rel, info in _relative(listing, rpath).items():
                if info.get("type") == "directory":
                    continue
                remote_name = info["name"]
                dest = local if single else local / rel
                tag = _tag(info)
                if dest.is_file() and known.get(rel) == [tag, *_sig(dest)]:
                    files[rel] = known[rel]
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(dest.name + ".download")
                try:
                    fs.get_file(remote_name, str(tmp))
                except Exception as e:  # noqa: BLE001
                    tmp.unlink(missing_ok=True)
                    raise StorageError(f"cannot download {url}: {one_line(e)}") from None
                tmp.replace(dest)
                files[rel] = [tag, *_sig(dest)]
            if not single and local.is_dir() and not self.pinned(url):
                for rel in _files(local):
                    if rel not in files:
                        (local / rel).unlink()
            if not single:
                local.mkdir(parents=True, exist_ok=True)
            self._touch(url, files=files)
        self.evict(keep=url)
        return local

    def output_dir(self, url: str, *, create: bool = True) -> Path:
        """The local directory an output for `url` is written to; pinned until `finish_output(url)`."""
        local = self.local_path(url)
        if create:
            local.mkdir(parents=True, exist_ok=True)
        self._touch(url, pinned=True)
        return local

    def upload(
        self, local: str | Path, url: str, only: Iterable[str] | None = None, *, overwrite: bool = True
    ) -> list[str]:
        """Upload the files under `local` (or just the relative paths in `only`) that differ from `url`.

        Symlinks are skipped (LeRobot's `checkpoints/last`; readers pick the newest step). With
        `overwrite=False` a remote file that exists with another size is an error, not replaced. Returns the
        relative paths uploaded; raises StorageError naming the first file that failed, with the local files
        untouched.
        """
        local = Path(local)
        fs, rpath = _fs(url)
        if local.is_file():
            rels = [""]
        else:
            rels = [rel for rel in _files(local) if not rel.endswith((".partial", ".download", ".tmp"))]
            if only is not None:
                wanted = set(only)
                rels = [r for r in rels if r in wanted]
        rels.sort(key=lambda r: (Path(r).name in _COMMIT_FILES, r))
        try:
            remote = {} if not fs.exists(rpath) else fs.find(rpath, detail=True)
        except Exception as e:  # noqa: BLE001
            raise StorageError(f"cannot upload to {url}: {one_line(e)}") from None
        remote_by_rel = _relative(remote, rpath)
        known = (self.entry(url) or {}).get("files", {})
        done = []
        for rel in rels:
            src = local if rel == "" else local / rel
            dest = rpath if rel == "" else f"{rpath.rstrip('/')}/{rel}"
            there = remote_by_rel.get(rel)
            if there is not None:
                if known.get(rel) == [_tag(there), *_sig(src)]:
                    continue  # neither side changed since the last transfer
                if not overwrite:
                    # Files that are never rewritten (episodes): the same size means the same file.
                    if there.get("size") == src.stat().st_size:
                        continue
                    raise StorageError(f"{url}/{rel} already exists with other content; not overwritten")
            try:
                fs.put_file(str(src), dest)
            except Exception as e:  # noqa: BLE001
                raise StorageError(f"upload of {src} to {url} failed: {one_line(e)}") from None
            done.append(rel)
        try:  # record the new versions, so a later transfer of this URL in either direction skips them
            listing = _relative(fs.find(rpath, detail=True) if not local.is_file() else {rpath: fs.info(rpath)}, rpath)
            files = {
                rel: [_tag(info), *_sig(local if rel == "" else local / rel)]
                for rel, info in listing.items()
                if rel in rels
            }
        except Exception:  # noqa: BLE001 - the upload itself succeeded; a stale record only costs a transfer
            files = None
        self._touch(url, files=files)
        return done

    def finish_output(self, url: str) -> None:
        """Mark an output fully uploaded: from now on it is a cache entry like any download."""
        self._touch(url, pinned=False)

    # ---- size cap -------------------------------------------------------------------------------
    def size_bytes(self) -> int:
        return _du(self.mirror)

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used unpinned entries until the cache fits its cap; returns the evicted URLs.

        Never removes `keep`, a pinned entry, or an entry that contains or lies inside a pinned one.
        """
        evicted = []
        with self._lock():
            index = self._read_index()
            total = self.size_bytes()
            if total <= self.config.max_bytes:
                return []
            pinned = [self.local_path(u) for u, e in index.items() if e.get("pinned")]
            keep_path = self.local_path(keep) if keep else None
            for url, entry in sorted(index.items(), key=lambda kv: kv[1].get("last_used", 0.0)):
                if total <= self.config.max_bytes:
                    break
                path = self.local_path(url)
                protected = [*pinned, *([keep_path] if keep_path else [])]
                if entry.get("pinned") or any(_overlaps(path, p) for p in protected):
                    continue
                size = _du(path)
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                total -= size
                evicted.append(url)
                del index[url]
            self._write_index(index)
        return evicted


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _relative(listing: dict[str, dict[str, Any]], rpath: str) -> dict[str, dict[str, Any]]:
    """A remote listing keyed by path relative to `rpath` ("" for `rpath` itself when it is a file)."""
    base = rpath.rstrip("/")
    return {("" if name == base else name[len(base) + 1 :]): info for name, info in listing.items()}


def _files(root: Path) -> list[str]:
    """Regular files under `root`, relative, sorted; symlinked files and directories are not followed."""
    out = []
    for d, _, names in os.walk(root):
        for n in names:
            p = Path(d, n)
            if not p.is_symlink():
                out.append(p.relative_to(root).as_posix())
    return sorted(out)


def _sig(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ---- what the commands use ----------------------------------------------------------------------


def local_input(path: str | os.PathLike[str], cache: Cache | None = None) -> Path:
    """A dataset/episode path as a local path: downloaded first when it is a URL."""
    if isinstance(path, str) and is_remote(path):
        return (cache or Cache()).download(path)
    return Path(_strip_file(os.fspath(path))).expanduser()


def exists(url: str) -> bool:
    """Whether a remote file or directory exists."""
    fs, rpath = _fs(url)
    try:
        return bool(fs.exists(rpath))
    except Exception as e:  # noqa: BLE001
        raise StorageError(f"cannot read {url}: {one_line(e)}") from None


def list_dir(url: str) -> list[str]:
    """Names directly under a remote directory (empty when it does not exist)."""
    fs, rpath = _fs(url)
    try:
        if not fs.exists(rpath):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(rpath, detail=False))
    except Exception as e:  # noqa: BLE001
        raise StorageError(f"cannot list {url}: {one_line(e)}") from None


# ---- outputs written locally, then uploaded -----------------------------------------------------


def publish(local: Path, url: str, *, overwrite: bool, cache: Cache | None = None) -> tuple[list[str], str | None]:
    """Upload a finished local output (episodes, a converted dataset) to `url`.

    Returns (uploaded relative paths, None) or ([], a one-line error). On an error nothing local is removed and
    the output stays pinned, so the next command writing to `url` uploads it. With `overwrite=False` (episodes)
    a remote file with other content is an error rather than replaced.
    """
    cache = cache or Cache()
    try:
        done = cache.upload(local, url, overwrite=overwrite)
    except StorageError as e:
        return [], str(e)
    cache.finish_output(url)
    return done, None


@contextlib.contextmanager
def dataset_output(path: str | os.PathLike[str], *, append: bool, cache: Cache | None = None) -> Iterator[Path]:
    """The local directory to write a dataset to; for a URL it is uploaded when the block succeeds.

    A new remote dataset must not exist yet (as a local one must be empty); `append=True` downloads the
    existing one first and uploads what changed. A failed upload raises StorageError, keeping the local copy.
    """
    if not (isinstance(path, str) and is_remote(path)):
        yield Path(_strip_file(os.fspath(path))).expanduser()
        return
    cache = cache or Cache()
    url = path.rstrip("/")
    if append:
        local = cache.download(url)
    else:
        if list_dir(url):
            raise StorageError(
                f"{url}: output exists and is not empty (use 'robotflow convert append' to add episodes)"
            )
        local = cache.local_path(url)
        if local.exists() and cache.pinned(url):
            raise StorageError(f"{local} holds a conversion for {url} that was never uploaded; remove it to start over")
        shutil.rmtree(local, ignore_errors=True)  # a cached copy of a dataset deleted remotely since
    cache.output_dir(url, create=False)
    try:
        yield local
    except BaseException:
        # The conversion failed: a new dataset is half-written, an appended one untouched. Nothing to upload.
        if not append:
            shutil.rmtree(local, ignore_errors=True)
        cache.finish_output(url)
        raise
    _, error = publish(local, url, overwrite=True, cache=cache)
    if error is not None:
        raise StorageError(f"{error}; the dataset is kept in {local}")


class BackgroundUploader:
    """Uploads what appears in a local output directory to its URL while a run goes on, from its own process.

    Episodes are uploaded within about `interval_s` of closing (`*.partial` files are skipped). The process is niced
    and owns the network I/O, so a control loop in the recording process shares neither its GIL nor its CPU share.
    `finish()` makes a last pass and returns what `publish` returns.
    """

    def __init__(self, local: Path, url: str, interval_s: float = 2.0):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._results = ctx.Queue()
        self._proc = ctx.Process(
            target=_upload_loop,
            args=(str(local), url, interval_s, self._stop, self._results),
            name="robotflow-upload",
            daemon=True,
        )
        self._proc.start()

    def finish(self, timeout_s: float = 600.0) -> tuple[list[str], str | None]:
        self._stop.set()
        try:
            uploaded, error = self._results.get(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - queue.Empty, or the process died: the caller retries in-process
            uploaded, error = [], "the upload process did not finish"
        self._proc.join(timeout=5.0)
        return uploaded, error


def _upload_loop(local: str, url: str, interval_s: float, stop: Any, results: Any) -> None:
    with contextlib.suppress(OSError):
        os.nice(10)
    cache = Cache()
    uploaded: list[str] = []
    error = None
    while True:
        last = stop.wait(interval_s)
        try:
            uploaded += cache.upload(Path(local), url, overwrite=False)
            error = None
        except StorageError as e:
            error = str(e)  # tried again at the next pass; reported if the last one fails too
        if last:
            break
    if error is None:
        cache.finish_output(url)
    results.put((uploaded, error))
