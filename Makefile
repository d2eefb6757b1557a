# embdrift: every target creates or updates the virtualenv it needs, so a fresh machine
# needs nothing beyond Python 3.11 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pinned versions for every install (also applied inside pip's isolated build envs).
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: $(BIN)/python pyproject.toml constraints.txt Makefile
	$(BIN)/pip install -q -e ".[serve]"
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(BIN)/pip install -q -e ".[test,dev,serve,text,dask]"
	touch $@

demo: $(VENV)/.core
	$(BIN)/embdrift demo --out demo-output

test: $(VENV)/.test
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest --durations=15

lint: $(VENV)/.test
	$(BIN)/ruff check src tests benchmarks site
	$(BIN)/ruff format --check src tests benchmarks site
	$(BIN)/mypy

# Benchmark against the peers in their own env (.venv-peers, numpy 1.26; see PEERS.md).
# Options: make bench BENCH_ARGS="--quick" (see benchmarks/run.py --help).
bench: $(VENV)/.test
	bash benchmarks/setup_peers.sh
	DO_NOT_TRACK=1 .venv-peers/bin/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/calibration.py
	$(BIN)/python benchmarks/dask_throughput.py
	$(BIN)/python benchmarks/load.py
	$(BIN)/python benchmarks/faults.py
	$(BIN)/python benchmarks/hostile.py

clean:
	rm -rf $(VENV) demo-output .embdrift .pytest_cache
