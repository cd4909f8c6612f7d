# corrgd: the two commands of README.md, and a few helpers.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: setup quickstart test test-fast lint bench services-start services-stop

setup:                ## install corrgd (editable) with its test tools
	$(PIP) install -q -e ".[dev]"

quickstart: setup     ## the main job: a real sweep on offline data, then its report
	corrgd sweep sweeps/quickstart.yaml
	corrgd report --figure quickstart
	corrgd report --table peak --sweep quickstart
	corrgd best-params --sweep quickstart

test:                 ## lint + the whole test suite (service tests skip if no server runs)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q --durations=15

test-fast:            ## skip the slow end-to-end tests
	$(PYTHON) -m pytest -q -m "not slow"

lint:
	$(PYTHON) -m ruff check .

bench:                ## decorrelation overhead, queue and grid throughput benchmarks
	$(PYTHON) benchmarks/decor_overhead.py
	$(PYTHON) benchmarks/queue_throughput.py
	$(PYTHON) benchmarks/grid_throughput.py --cli

services-start:       ## PostgreSQL and a single-node SLURM cluster for the service tests (root)
	CORRGD_SERVICES="postgres slurm" bash tests/services/start.sh

services-stop:
	CORRGD_SERVICES="postgres slurm" bash tests/services/stop.sh
