# make test   : create .venv, install the pinned deps (requirements.txt, with the optional
#               tensorboard and the export extra: onnx, onnxscript, onnxruntime) and this package
#               (building the extension), run ruff (make lint), then the test suite. Works on a
#               fresh clone; CI runs exactly this.
# make demo   : same setup, then a short baseline-vs-LGF training demo on synthetic data.
# make bench  : the kernel benchmark (benchmarks/bench_op.py) on CPU.
# make build  : rebuild the extension in place (incremental, for development).
# make lint   : ruff check and ruff format --check over the repository (pyproject.toml).
# make gpu-check : on a machine with an NVIDIA GPU, in about 10 minutes: build in place, the GPU
#               tests, compute-sanitizer, the GPU benchmarks and the static estimates
#               (benchmarks/gpu_check.py; JSON in runs/gpu_check/). Uses .venv/bin/python when it
#               exists, else python3; needs no venv. Without a GPU it says so and exits 0.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export MAX_JOBS ?= 2
# The nvcc on PATH may be a wrapper; point torch at the real toolkit when it exists.
ifneq ($(wildcard /usr/local/cuda/bin/nvcc),)
export CUDA_HOME ?= /usr/local/cuda
endif
export TORCH_CUDA_ARCH_LIST ?= 8.0;9.0+PTX

SOURCES := setup.py $(wildcard csrc/*.h csrc/*.cpp csrc/cpu/*.h csrc/cpu/*.cpp csrc/cuda/*.cu csrc/cuda/*.cuh csrc/cuda/*.h)

.PHONY: test demo bench build install clean lint gpu-check

$(VENV)/.deps: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.installed: $(VENV)/.deps $(SOURCES)
	$(PIP) install --no-build-isolation --no-deps -e .
	touch $@

install: $(VENV)/.installed

test: install lint
	$(PY) -m pytest -q tests

demo: install
	$(PY) -m train.demo

bench: install
	$(PY) benchmarks/bench_op.py

lint: $(VENV)/.deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

build: $(VENV)/.deps
	$(PY) setup.py build_ext --inplace

gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf build *.egg-info lgf_ops/_C*.so
