# corrgd: the two commands of README.md, and a few helpers.
#
# `make setup` installs exactly the versions uv.lock names into .venv, with uv (itself
# installed into build/uv at the version below); `make lock` refreshes uv.lock on
# purpose. Every other target runs in .venv.
PYTHON3 ?= python3
UV_VERSION := 0.13.9
UV := build/uv/bin/uv
VENV := .venv
PYTHON := $(VENV)/bin/python
CORRGD := $(VENV)/bin/corrgd

.PHONY: setup lock quickstart test test-fast lint bench services-start services-stop

# --compile-bytecode: Python does not write .pyc files where PYTHONDONTWRITEBYTECODE is
# set (as on our CI machines), so without it every process recompiles torch's sources
# at import: `import torch, torchvision` took 20-24 s uncompiled against 7-9 s compiled.
setup: $(UV)          ## install corrgd (editable), its extras and test tools, as uv.lock pins them
	$(UV) sync --locked --all-extras --compile-bytecode --python $(PYTHON3)

$(UV):
	$(PYTHON3) -m venv build/uv
	build/uv/bin/python -m pip install -q "uv==$(UV_VERSION)"

lock: $(UV)           ## refresh uv.lock: the newest releases pyproject.toml allows
	$(UV) lock --upgrade

quickstart: setup     ## the main job: a real sweep on offline data, then its report
	$(CORRGD) sweep sweeps/quickstart.yaml
	$(CORRGD) report --figure quickstart
	$(CORRGD) report --table peak --sweep quickstart
	$(CORRGD) best-params --sweep quickstart

test:                 ## lint, layer contracts + the whole test suite (service tests skip if no server runs)
	$(PYTHON) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PYTHON) -m pytest -q --durations=15

test-fast:            ## skip the slow end-to-end tests
	$(PYTHON) -m pytest -q -m "not slow"

lint:
	$(PYTHON) -m ruff check .
	$(VENV)/bin/lint-imports

bench:                ## decorrelation overhead, queue and grid throughput benchmarks
	$(PYTHON) benchmarks/decor_overhead.py
	$(PYTHON) benchmarks/queue_throughput.py
	$(PYTHON) benchmarks/grid_throughput.py --cli

services-start:       ## PostgreSQL and a single-node SLURM cluster for the service tests (root)
	CORRGD_SERVICES="postgres slurm" bash tests/services/start.sh

services-stop:
	CORRGD_SERVICES="postgres slurm" bash tests/services/stop.sh
