# The two commands of the README. Each installs what it needs (tools/bootstrap.sh is idempotent).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: env test test-fast lint demo

env:
	bash tools/bootstrap.sh

lint: env
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# The whole suite, slow end-to-end tests included (what CI runs).
test: lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The quick loop while developing: no end-to-end training runs.
test-fast: lint
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The main job on the bundled (generated) demo data: train + evaluate Mask R-CNN and UperNet.
demo: env
	$(PY) tools/demo.py --out work_dirs/demo

# The GPU check (tools/gpu_check/README.md), run ON the lent GPU machine: installs the wheels
# carried in .whl (tools/gpu_check/prepare_wheels.sh) into GPU_CHECK_SITE and runs the check with
# that machine's python3 (no .venv there). GPU_CHECK_ARGS=--dry-run rehearses it on a CPU.
GPU_CHECK_PY ?= python3
GPU_CHECK_SITE ?= /tmp/site
GPU_CHECK_OUT ?= work_dirs/gpu_check
GPU_CHECK_ARGS ?=

.PHONY: gpu-check
gpu-check:
	GPU_CHECK_PY=$(GPU_CHECK_PY) GPU_CHECK_SITE=$(GPU_CHECK_SITE) \
	  bash tools/gpu_check/gpu_check.sh $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)
