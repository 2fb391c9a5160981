"""Build `.whl/`: everything the GPU machine lacks for `benchmarks/gpu_vision.sh`, within one call's upload limit.

    python -m benchmarks.gpu_bundle [--dir .whl]        # `make gpu-bundle`

The device has Python 3.12, torch 2.11, torchvision 0.26, numpy, h5py, msgpack, pyarrow, pandas, opencv, accelerate
and no package registry (DESIGN.md, "The GPU machine"). This downloads cp312 manylinux wheels of what the pipeline
imports beyond that (pinned to the versions this project runs with), builds robotflow's own wheel, and fetches
glvnd's EGL loader debs in case the image has none. Nothing of torch is carried: it is on the device.

A call carries at most 64 MiB (the repository included), and PyAV alone is a 40 MB wheel, so every wheel is
slimmed: tests and docs dropped, Cython extension modules stripped of symbols (the FFmpeg libraries auditwheel
grafted in are stripped already and are left alone), and RECORD rewritten to match. The result is checked against the limit. (gym-hil's meshes stay: the Panda that
robotflow's simulator loads uses both its own and the Robotiq gripper's.)
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from benchmarks._util import parser

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_DIR = ".whl"
RAW_DIR = ".whl-raw"  # the downloads as they came, so that a rebuild needs no network
CALL_LIMIT_MIB = 64.0  # what one `run` call carries: the working tree plus the carried paths
# The pipeline's imports the device lacks, at this project's versions (setup.cfg, and what LeRobot 0.4.4 pulls in).
# huggingface-hub and fsspec are on the device in versions LeRobot 0.4.4 / datasets 4 do not take: these shadow them.
# Left out on purpose: torchcodec (pinned to torch 2.10; robotflow decodes with PyAV when it is absent), wandb,
# rerun-sdk, pynput and pydantic (not imported on this path, or imported optionally).
WHEELS = (
    "lerobot==0.4.4",
    "datasets==4.8.5",
    "diffusers==0.35.2",
    "huggingface-hub==0.35.2",
    "fsspec==2026.2.0",
    "draccus==0.10.0",
    "mergedeep==1.3.4",
    "pyyaml-include==1.4.1",
    "toml==0.10.2",
    "mujoco==3.8.1",
    "pyopengl==3.1.10",
    "glfw==2.11.0",
    "pyzmq==27.3.0",
    "av==15.1.0",
    "gymnasium==1.4.0",
    "farama-notifications==0.0.6",
    "gym-hil==0.1.14",
    "deepdiff==8.6.2",
    "orderly-set==5.5.0",
    "termcolor==3.3.0",
    "pyserial==3.5",
    "dill==0.4.1",
    "multiprocess==0.70.19",
    "jsonlines==4.0.0",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_17_x86_64")
PLATFORMS += ("manylinux2014_x86_64", "manylinux1_x86_64")
# glvnd's loaders: MuJoCo's EGL context needs libEGL.so.1; the NVIDIA driver supplies the vendor library.
GL_DEBS = ("libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2")
# Entries no import needs: test suites, docs, type stubs for checkers.
DROP = re.compile(r"(^|/)(tests?|testing|docs?|examples?|benchmarks?)/|\.pyi$|(^|/)py\.typed$")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _strip(data: bytes) -> bytes:
    """An ELF shared object without its symbol tables (`strip --strip-unneeded`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lib.so"
        path.write_bytes(data)
        subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
        return path.read_bytes()


def keeps(name: str) -> bool:
    """Whether wheel entry `name` is carried."""
    return ".dist-info/" in name or not DROP.search(name)


def slim_wheel(src: Path, dest: Path) -> None:
    """Copy wheel `src` to `dest` without what `keeps` drops, its own extension modules stripped, RECORD rewritten."""
    out = io.BytesIO()
    record_name, lines = None, []
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for info in zin.infolist():
            name = info.filename
            if name.endswith(".dist-info/RECORD"):
                record_name = name
                continue
            if name.endswith("/") or not keeps(name):
                continue
            data = zin.read(name)
            top = name.split("/")[0]
            if data[:4] == b"\x7fELF" and not top.endswith(".libs"):  # auditwheel's grafted libs stay as they are
                data = _strip(data)
            zi = zipfile.ZipInfo(name, date_time=info.date_time)
            zi.external_attr, zi.compress_type = info.external_attr, zipfile.ZIP_DEFLATED
            zout.writestr(zi, data)
            lines.append(_record_line(name, data))
        if record_name is None:
            raise SystemExit(f"gpu-bundle: {src.name} has no RECORD; is it a wheel?")
        zout.writestr(record_name, "\n".join([*lines, f"{record_name},,"]) + "\n")
    dest.write_bytes(out.getvalue())


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def build(bundle: Path, raw: Path) -> dict:
    """Fill `bundle` from the downloads kept in `raw` (outside it: they are not carried); returns the sizes."""
    gl = bundle / "gl"
    raw.mkdir(parents=True, exist_ok=True)
    gl.mkdir(parents=True, exist_ok=True)
    plats = [a for p in PLATFORMS for a in ("--platform", p)]
    _pip(
        *("download", "-qq", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"),
        *plats,
        *("-d", str(raw), *WHEELS),
    )
    for old in [*raw.glob("robotflow-*.whl"), *bundle.glob("robotflow-*.whl")]:
        old.unlink()
    _pip("wheel", "-qq", "--no-deps", "--no-build-isolation", "-w", str(raw), str(ROOT))
    for leftover in ("build", "robotflow.egg-info"):  # setuptools' staging; the egg-info would shadow the venv's
        shutil.rmtree(ROOT / leftover, ignore_errors=True)
    # Exactly the pinned versions (and this robotflow): raw/ may keep older downloads, and two versions of one
    # distribution in the bundle would stop the whole install on the device.
    wanted = {_dist_key(w): w.split("==")[1] for w in WHEELS}
    sizes = {}
    for whl in sorted(raw.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        if _dist_key(name) != "robotflow" and wanted.get(_dist_key(name)) != version:
            continue
        dest = bundle / whl.name
        if not dest.exists() or dest.stat().st_mtime < whl.stat().st_mtime or _dist_key(name) == "robotflow":
            slim_wheel(whl, dest)
        sizes[whl.name] = dest.stat().st_size
    for stale in bundle.glob("*.whl"):
        if stale.name not in sizes:
            stale.unlink()
    missing = {*wanted, "robotflow"} - {_dist_key(n.split("-")[0]) for n in sizes}
    if missing:
        raise SystemExit(f"gpu-bundle: no wheel for {', '.join(sorted(missing))} in {raw}")
    if not list(gl.glob("*.deb")):
        subprocess.run(["apt-get", "download", *GL_DEBS], cwd=gl, check=True)
    for deb in gl.glob("*.deb"):
        sizes[f"gl/{deb.name}"] = deb.stat().st_size
    return sizes


def _dist_key(spec: str) -> str:
    return re.split(r"[=<>]", spec)[0].lower().replace("-", "_")


def tree_bytes() -> int:
    """Bytes of the working tree a call sends: tracked plus untracked files git does not ignore."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())


def carried_bytes(bundle: Path) -> int:
    """What carrying `bundle` adds to a call: the slimmed wheels and the debs, not the raw downloads."""
    return sum(p.stat().st_size for p in [*bundle.glob("*.whl"), *(bundle / "gl").glob("*.deb")])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dir", default=BUNDLE_DIR, help="bundle directory, relative to the repository root")
    args = p.parse_args()
    bundle = ROOT / args.dir
    sizes = build(bundle, ROOT / RAW_DIR)
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"{size / 2**20:7.2f} MiB  {name}")
    carried, tree = carried_bytes(bundle), tree_bytes()
    total = (carried + tree) / 2**20
    print(
        f"bundle {carried / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB = {total:.1f} MiB of {CALL_LIMIT_MIB:.0f}"
    )
    if total > CALL_LIMIT_MIB:
        raise SystemExit(f"gpu-bundle: {total:.1f} MiB is over the {CALL_LIMIT_MIB:.0f} MiB a call carries")


if __name__ == "__main__":
    main()
