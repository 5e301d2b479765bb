# Thin wrappers; the logic lives in Python (mlkkr) and scripts/.
#   make install   virtual environment (.venv, Python 3.12), the package with its pinned stack, the proxy,
#                  JuKKR (voronoi, kkr.x, kkrflex.exe) built into .venv/opt/jukkr
#   make run       the platform on its embedded default: http://127.0.0.1:8000 (data in ./var)
#   make test      the whole test suite (unit, services, browser, container, chart)
#   make bench     the benchmarks (each prints ratios against a reference run)
#   make image     the singleuser and hub images (Podman); make chart: lint and test the Helm chart
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
PORT  ?= 8000
DATA  ?= var
PYTEST_ARGS ?=
# The pinned JuKKR source: the offline copy beside the checkout when there is one, else mlkkr downloads
# the same commit from the public mirror (checksums checked either way).
JUKKR_SOURCE ?= $(wildcard $(CURDIR)/../shared/jukkr/jukkr-2a47b06b-src.tar.gz)
export MLKKR_JUKKR_SOURCE ?= $(JUKKR_SOURCE)

.PHONY: install run test bench lint image chart clean-var machine

install: $(VENV)/.installed

machine:
	scripts/prepare-machine.sh test

$(VENV)/.installed: pyproject.toml scripts/find-python.sh
	scripts/prepare-machine.sh run
	@test -x $(BIN)/python || $$(scripts/find-python.sh) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test,deploy]'
	$(BIN)/python -m pip check
	$(BIN)/python -c 'from mlkkr.aiida.kkr_compat import write_pth; print("aiida-kkr fixes hooked:", write_pth())'
	@test -x $(BIN)/configurable-http-proxy || npm install --silent -g --prefix $(VENV) configurable-http-proxy
	$(BIN)/mlkkr jukkr build
	@touch $@
	@echo "installed: $$($(BIN)/mlkkr --version), proxy $$($(BIN)/configurable-http-proxy --version)"

run: install
	$(BIN)/mlkkr hub --data-dir $(DATA) --port $(PORT)

test: machine install
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Images with Podman from a debootstrap base; the singleuser image builds JuKKR from MLKKR_JUKKR_SOURCE.
# TORCH_VARIANT=cpu (default): PyPI's torch without its CUDA wheels, stub CUDA libraries in their place
# (docker/singleuser/torch-cpu.py); TORCH_VARIANT=gpu: PyPI's torch as it is (the CUDA build).
TORCH_VARIANT ?= cpu
image: install
	scripts/install-container-tools.sh --podman
	CONTAINERS_CONF=$(CURDIR)/.tools/containers.conf docker/build.sh --variant $(TORCH_VARIANT) all

chart: install
	scripts/install-container-tools.sh --helm
	.tools/bin/helm lint helm/mlkkr
	$(BIN)/pytest -m chart tests/chart -q

lint: install
	$(BIN)/ruff check src tests benchmarks

clean-var:
	rm -rf $(DATA)
