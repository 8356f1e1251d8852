# The two commands: `make run` and `make test`. Both create .venv and install on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CORES ?= 2

.PHONY: install run test lint bench bench-peers clean-results

install: $(STAMP)

# Exactly the versions of constraints.txt (the library itself asks for ranges).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[workflow,test]'
	@touch $(STAMP)

# The embedded default workflow (config/config.yaml) end to end; results in results/,
# the paper's findings in results/findings.csv, figures and findings in
# results/report.html.
run: install
	$(VENV)/bin/snakemake --cores $(CORES) --profile profiles/local
	$(VENV)/bin/snakemake --profile profiles/local --report results/report.html
	@cat results/findings.md

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests scripts benchmarks

bench: install
	$(PY) benchmarks/bench_curvature.py

# Side-by-side benchmark against PyHessian, curvlinops and hessian-eigenthings, in its own
# environment (.venv-peers) so that the peers never touch .venv or `make test`.
PEERS_PYTHON ?= python3.11
PEERS_VENV := .venv-peers
PEERS_PY := $(PEERS_VENV)/bin/python
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp
BENCH_PEERS_ARGS ?=

$(PEERS_STAMP): pyproject.toml benchmarks/requirements-peers.txt
	@test -x $(PEERS_PY) || $(PEERS_PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install -q --upgrade pip
	$(PEERS_PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PEERS_PY) -m pip install -q -e .
	$(PEERS_PY) -m pip install -q --no-deps -r benchmarks/requirements-peers.txt
	$(PEERS_PY) -m pip check
	@touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)
	$(PEERS_PY) benchmarks/compare_peers.py $(BENCH_PEERS_ARGS)

clean-results:
	rm -rf results/*
