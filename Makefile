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
