# robotflow: `make demo` and `make test` each do the whole set-up on a fresh Debian machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
# Debian packages: EGL + Mesa (and OSMesa as fallback) for MuJoCo offscreen rendering; libusb for librealsense;
# FFmpeg 5.1's libraries for torchcodec, LeRobot's default video decoder (its wheel links libavutil.so.57 & co.);
# hidapi for the SpaceMouse (pyspacemouse dlopens it); Chromium + its driver for the WebXR teleop page's browser test.
DEB_PKGS := libegl1 libgl1-mesa-dri libosmesa6 libusb-1.0-0 \
	libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4 \
	libhidapi-hidraw0 libhidapi-libusb0 chromium chromium-driver
PYTEST_ARGS ?=

.PHONY: install sysdeps lint peers demo test test-all bench e2e-lowdim e2e-vision e2e-twin dagger-lowdim gpu-bundle \
	gpu-rehearse gpu-join clean

install: sysdeps $(STAMP)

sysdeps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "robotflow: missing Debian packages:$$missing (install them as root: apt-get install$$missing)"; exit 0; fi; \
	echo "robotflow: installing Debian packages:$$missing"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip wheel
	$(PY) -m pip install -q -e '.[test]'
	@# The build leaves robotflow.egg-info here; on sys.path before site-packages it would shadow the installed
	@# metadata (and its `robotflow.nodes` entry points) once setup.cfg changes.
	rm -rf robotflow.egg-info
	touch $@

DEMO_DIR ?= out/demo

demo: install
	rm -rf $(DEMO_DIR)/episodes
	$(VENV)/bin/robotflow record graphs/sim_stack_cubes.yaml --episodes 3 --output-dir $(DEMO_DIR)/episodes \
		--task "stack the red cube on the green cube"
	$(VENV)/bin/robotflow info $(DEMO_DIR)/episodes

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Positronic's published packages, one side venv per version, for the interop tests
# (tests/test_positronic_interop.py runs their clients and servers from these against robotflow's).
# Their own environments, so their pins (numpy, websockets, torch) stay out of ours; no code of theirs is
# imported into robotflow's process.
POSITRONIC_VERSIONS := 0.2.1 0.4.1
POSITRONIC_VENVS := $(foreach v,$(POSITRONIC_VERSIONS),.venv-positronic-$(v)/.stamp-install)
.venv-positronic-%/.stamp-install:
	$(PYTHON) -m venv .venv-positronic-$*
	.venv-positronic-$*/bin/python -m pip install -q positronic==$*
	touch $@

peers: $(POSITRONIC_VENVS)

test: install lint peers
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-all: install peers
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Each prints one JSON object; run them on an otherwise idle machine (figures in the README).
BENCHMARKS := channels scheduler recording sim convert policy rollout teleop rerun serve franka
# dora-rs, measured beside robotflow by `channels`, lives in its own environment so that its pins stay out of ours.
PEERS := .venv-peers
$(PEERS)/.stamp-install:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q dora-rs==1.1.0 dora-rs-cli==1.1.0 numpy
	touch $@

bench: install $(PEERS)/.stamp-install
	@mkdir -p out/bench
	@for b in $(BENCHMARKS); do echo "== $$b"; $(PY) -m benchmarks.$$b --json | tee out/bench/$$b.json; done

# The CPU learning result (README, "Low-dim result"): scripted demos, low-dim conversion, ACT training and
# 50 unseen seeds per task, from nothing; prints the success table and keeps everything in E2E_DIR.
E2E_DIR ?= out/e2e_lowdim
e2e-lowdim: install
	rm -rf $(E2E_DIR)
	$(PY) -m benchmarks.e2e_lowdim --out $(E2E_DIR)

# Camera-only policies (README, "Camera-only result"): the same pipeline with the codec ee_cams_rel (cameras + the
# robot's own state, no object poses). Hours on 2 CPU cores, so it resumes: running it again continues training from
# the last checkpoint in VISION_DIR (remove the directory to start over).
VISION_DIR ?= out/e2e_vision
e2e-vision: install
	$(PY) -m benchmarks.e2e_vision --out $(VISION_DIR)

# Camera-only ACT at full size on a lent GPU (README, "Camera-only result"): `make gpu-bundle` builds .whl/ here (the
# cp312 wheels the device lacks, slimmed to fit a call's 64 MiB); the device runs `bash benchmarks/gpu_vision.sh`
# with .whl carried (one call, under 9 minutes); `make gpu-join PARTS=<dir>` turns the checkpoint parts that came
# back into run directories here. `make gpu-rehearse` runs the same script tiny on this CPU, joins its parts and
# rolls the joined checkpoint out once.
gpu-bundle: install
	$(PY) -m benchmarks.gpu_bundle

REHEARSE_DIR ?= out/gpu_rehearse
gpu-rehearse: install
	rm -rf $(REHEARSE_DIR)
	REHEARSE=1 PYTHON=$(PY) WORK=$(REHEARSE_DIR)/work OUT=$(REHEARSE_DIR)/results bash benchmarks/gpu_vision.sh
	$(PY) -m benchmarks.gpu_vision join $(REHEARSE_DIR)/results --out $(REHEARSE_DIR)/joined
	$(PY) -m robotflow.scripts.cli rollout --checkpoints-dir $(REHEARSE_DIR)/joined/pick_place/runs/act_vision_gpu \
		--graph graphs/sim_pick_place_vision_policy.yaml --episodes 1 --seed 1000 --no-record --set task.timeout_s=2

GPU_DIR ?= out/gpu_vision
gpu-join: install
	@test -n "$(PARTS)" || { echo "usage: make gpu-join PARTS=<dir with checkpoints.tar.partNN> [GPU_DIR=$(GPU_DIR)]"; exit 2; }
	$(PY) -m benchmarks.gpu_vision join $(PARTS) --out $(GPU_DIR)

# Learning from interventions (README, "Operator's loop result"): a weak low-dim policy, a scripted operator taking
# over when it stalls, the interventions converted and the policy fine-tuned on demos + interventions (and, as a
# control, on the demos alone), each rolled out on the same 50 unseen seeds.
# The Franka twin through franky (README, "On the Franka twin"): the expert's demos, a low-dim policy trained on
# them and one trained on sim.arm demos, both rolled out through franky on 20 unseen seeds.
TWIN_DIR ?= out/e2e_twin
e2e-twin: install
	rm -rf $(TWIN_DIR)
	$(PY) -m benchmarks.e2e_twin --out $(TWIN_DIR)

DAGGER_DIR ?= out/dagger_lowdim
dagger-lowdim: install
	rm -rf $(DAGGER_DIR)
	$(PY) -m benchmarks.dagger_lowdim --out $(DAGGER_DIR)

clean:
	rm -rf $(VENV) .venv-peers .venv-positronic-* *.egg-info .whl .whl-raw
