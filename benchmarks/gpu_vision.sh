#!/usr/bin/env bash
# The device run of `python -m benchmarks.gpu_vision run` in one command (README, "Camera-only result"):
#   bash benchmarks/gpu_vision.sh                  # on the GPU machine, `.whl` carried, results into $OUT
#   REHEARSE=1 PYTHON=.venv/bin/python OUT=out/gpu_rehearse/results bash benchmarks/gpu_vision.sh   # `make gpu-rehearse`
# The device's python3 (3.12, torch 2.11) is used as it is: the carried wheels go into a --target directory on
# PYTHONPATH, no venv (a venv made from that python3, itself a venv, would not see its torch). Extra arguments go
# to `benchmarks.gpu_vision run` (e.g. --steps N, --budget-s S, --set batch_size=64).
set -euo pipefail
started_at=$(date +%s.%N)
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the directory the results go to}"
PYTHON=${PYTHON:-python3}
BUNDLE=${BUNDLE:-.whl}
SITE=${SITE:-/tmp/robotflow-site}
WORK=${WORK:-/tmp/gpu_vision}
args=()
if [ -n "${REHEARSE:-}" ]; then
  args+=(--rehearse)  # here, on the CPU: the venv has everything, nothing to install
else
  [ -d "$BUNDLE" ] || { echo "gpu_vision: no $BUNDLE here: run \`make gpu-bundle\` and carry $BUNDLE"; exit 2; }
  # MuJoCo renders through EGL; glvnd's loader comes from the bundle when the image has none.
  if ! ldconfig -p | grep 'libEGL.so.1 ' >/dev/null; then  # not -q: an early exit would fail the pipe
    for f in "$BUNDLE"/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  nv=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -f "$nv" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$nv
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --ignore-requires-python \
    --upgrade --target "$SITE" "$BUNDLE"/*.whl
  export PYTHONPATH=$SITE MUJOCO_GL=egl
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
# benchmarks/gpu_site/sitecustomize.py hides the image's transformers 5 from LeRobot 0.4.4 in every process.
export PYTHONPATH=$PWD/benchmarks/gpu_site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled
echo "gpu_vision: install done after $(awk "BEGIN {print $(date +%s.%N) - $started_at}") s"
exec "$PYTHON" -m benchmarks.gpu_vision run --work "$WORK" --results "$OUT" --started-at "$started_at" "${args[@]}" "$@"
